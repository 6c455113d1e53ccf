/** Request schema of the audit log's route. */
import { z } from 'zod';

export const auditQuery = z.object({
  /** Only this API key's calls. */
  keyId: z.uuid().optional(),
  /** Only calls at or after this time (ISO 8601 with an offset, e.g. `2026-01-01T00:00:00Z`). */
  since: z.iso.datetime({ offset: true }).optional(),
  /** `nextCursor` of the previous page. */
  cursor: z.uuid({ message: 'not a cursor from a previous page' }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
