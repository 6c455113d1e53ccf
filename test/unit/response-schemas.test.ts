/**
 * The response schemas (src/http/response-schemas.ts, which the OpenAPI document
 * declares) and the types the routes answer with are the same shapes, as JSON (times as
 * strings): checked by the compiler (`npm run typecheck`), so neither can change alone.
 */
import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { ActuationRecord } from '../../src/actuations/query-sql.js';
import type { ActuationSummary } from '../../src/actuations/types.js';
import type { Rule } from '../../src/dss/rules.js';
import type { SessionRow } from '../../src/gateway/sessions-sql.js';
import type * as out from '../../src/http/response-schemas.js';
import type { streamView } from '../../src/http/routes/dss.js';
import type { ApiKeyRecord } from '../../src/keys/keys-sql.js';
import type { AccountChange, DeviceRecord } from '../../src/devices/registry-sql.js';

/** What `res.json()` makes of a value: Dates become strings. */
type Json<T> = T extends Date ? string : T extends (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;

describe('response schemas', () => {
  it('describe what the routes answer', () => {
    expectTypeOf<Json<ActuationSummary>>().toEqualTypeOf<z.infer<typeof out.actuationSummary>>();
    expectTypeOf<Json<SessionRow>>().toEqualTypeOf<z.infer<typeof out.session>>();
    expectTypeOf<Json<ReturnType<typeof streamView>>>().toEqualTypeOf<z.infer<typeof out.stream>>();
    expectTypeOf<Json<Rule>>().toEqualTypeOf<z.infer<typeof out.rule>>();
    expectTypeOf<Json<ApiKeyRecord>>().toEqualTypeOf<z.infer<typeof out.apiKey>>();
    expectTypeOf<Json<DeviceRecord>>().toEqualTypeOf<z.infer<typeof out.deviceRecord>>();
    expectTypeOf<Json<AccountChange>>().toEqualTypeOf<z.infer<typeof out.accountChange>>();
    expectTypeOf<Omit<Json<ActuationRecord>, 'history' | 'params'>>().toEqualTypeOf<Omit<z.infer<typeof out.actuationRecord>, 'history' | 'params'>>();
  });
});
