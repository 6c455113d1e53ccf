/**
 * Which devices a caller may see: the one rule every route applies, in SQL.
 *
 * An API key may be limited to accounts (`api_keys.accounts`); it then sees a device
 * only when the device's registry row (`devices.account_id`, migrations/0008) names one
 * of them. A device with no account, or with no registry row at all, is visible only to
 * callers without a limit (keys without `accounts`, the bootstrap administrator). Whatever
 * hangs off a device (its actuations, sessions, events, job items) is visible exactly when
 * the device is: join or `exists` on `devices` with these fragments, never filter rows in
 * memory after the query.
 *
 * Callers without a limit get no fragment at all (`'true'`): their queries are the same
 * statements as before accounts existed, and pay nothing.
 */

/** `null`: every account (no limit). Otherwise the accounts a caller is limited to (never empty). */
export type AccountScope = readonly string[] | null;

/**
 * SQL condition "the device `deviceIdSql` (a column or expression) is visible to `scope`".
 * Appends its parameter to `params` and refers to it by position, so it composes with any
 * query built the same way. Example:
 *   const params: unknown[] = [id];
 *   `select … from actuations a where a.id = $1 and ${deviceVisibleSql('a.device_id', scope, params)}`
 * Uses the primary key of `devices`: one index probe per row it is applied to.
 */
export function deviceVisibleSql(deviceIdSql: string, scope: AccountScope, params: unknown[]): string {
  if (scope === null) return 'true';
  params.push([...scope]);
  return `exists (select 1 from devices scope_d where scope_d.device_id = ${deviceIdSql} and scope_d.account_id = any ($${params.length}::text[]))`;
}

/**
 * SQL condition "a row whose account is `accountIdSql` is visible to `scope`", for tables
 * that carry the account themselves (`devices.account_id`, `events.account_id`): a null
 * account is visible only without a limit (`= any` is never true for null).
 */
export function accountVisibleSql(accountIdSql: string, scope: AccountScope, params: unknown[]): string {
  if (scope === null) return 'true';
  params.push([...scope]);
  return `${accountIdSql} = any ($${params.length}::text[])`;
}

/** Whether `scope` includes the account `accountId` (for checking an account a caller names in a body). */
export function scopeIncludes(scope: AccountScope, accountId: string | null): boolean {
  return scope === null || (accountId !== null && scope.includes(accountId));
}
