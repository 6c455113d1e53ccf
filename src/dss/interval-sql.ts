/** Statements of interval rules (migration 0016): claim, page through the state, finish, show. */
import type pg from 'pg';
import type { RuleAction, RuleMatch } from './schemas.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

export interface ClaimedEvaluation {
  ruleId: string;
  /** The evaluation's number: new, or that of an evaluation a crash left open (resumed). */
  number: number;
  match: RuleMatch;
  action: RuleAction;
  cooldownSeconds: number;
}

/**
 * Takes one due interval rule (FOR UPDATE SKIP LOCKED: two instances never take the
 * same one) and pushes its `next_run_at` `leaseSeconds` ahead, which keeps every other
 * instance off it while this one evaluates (`extendLease` per page). An evaluation left
 * open (its instance died) keeps its number, so its idempotency keys are the same.
 */
export async function claimDueEvaluation(db: Queryable, leaseSeconds: number, instanceId: string): Promise<ClaimedEvaluation | undefined> {
  const { rows } = await db.query<ClaimedEvaluation>(
    `with due as (
       select id from dss_rules
        where every_seconds is not null and enabled and next_run_at <= now()
        order by next_run_at limit 1 for update skip locked
     ), claimed as (
       update dss_rules r set
         next_run_at = now() + make_interval(secs => $1),
         evaluations = case when r.evaluation_open then r.evaluations else r.evaluations + 1 end,
         evaluation_open = true
       from due where r.id = due.id
       returning r.id, r.evaluations, r.match, r.action, r.cooldown_seconds
     ), recorded as (
       insert into dss_rule_evaluations (rule_id, number, instance_id) select id, evaluations, $2 from claimed
       on conflict (rule_id, number) do update set claims = dss_rule_evaluations.claims + 1, instance_id = excluded.instance_id
     )
     select id as "ruleId", evaluations as number, match, action, cooldown_seconds as "cooldownSeconds" from claimed`,
    [leaseSeconds, instanceId],
  );
  return rows[0];
}

export async function extendLease(db: Queryable, ruleId: string, number: number, leaseSeconds: number): Promise<void> {
  await db.query(`update dss_rules set next_run_at = now() + make_interval(secs => $3) where id = $1 and evaluations = $2 and evaluation_open`, [ruleId, number, leaseSeconds]);
}

/** A device's state as an interval rule tests it; `coolingDown` by the database clock. */
export interface StateRow {
  dsn: string;
  propertyName: string;
  streamId: string;
  seq: number;
  oemModel: string | null;
  baseType: string | null;
  value: unknown;
  updatedAt: Date;
  coolingDown: boolean;
}

/** `*` in a dsn pattern is any run of characters; everything else is literal (LIKE's own wildcards escaped). */
export function dsnLikePattern(pattern: string): string {
  return pattern.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');
}

/**
 * One page of the devices an interval rule looks at, in (dsn, property) order after
 * `after`: the state rows (datapoint rules) or connectivity rows that pass the match's
 * oem model, dsn, dsn pattern, property and staleness, filtered in SQL on the table.
 * The condition is tested by the caller (the event rules' comparison, by `base_type`).
 */
export async function stateRowsPage(
  db: Queryable,
  ruleId: string,
  match: RuleMatch,
  cooldownSeconds: number,
  after: { dsn: string; propertyName: string } | undefined,
  limit: number,
): Promise<StateRow[]> {
  const connectivity = match.eventType === 'connectivity';
  const source = connectivity
    ? `select dsn, '' as property_name, stream_id, seq, oem_model, null::text as base_type, to_jsonb(status) as value, updated_at from dss_device_connectivity`
    : `select dsn, property_name, stream_id, seq, oem_model, base_type, value, updated_at from dss_device_state`;
  const { rows } = await db.query<StateRow>(
    `select s.dsn, s.property_name as "propertyName", s.stream_id as "streamId", s.seq, s.oem_model as "oemModel",
            s.base_type as "baseType", s.value, s.updated_at as "updatedAt",
            exists (select 1 from dss_interval_fired f
                     where f.rule_id = $1 and f.dsn = s.dsn and f.last_fired_at > now() - make_interval(secs => $2)) as "coolingDown"
       from (${source}) s
      where ($3::text is null or s.property_name = $3)
        and ($4::text is null or s.oem_model = $4)
        and ($5::text is null or s.dsn = $5)
        and ($6::text is null or s.dsn like $6)
        and ($7::int is null or s.updated_at <= now() - make_interval(secs => $7))
        and ($8::text is null or (s.dsn, s.property_name) > ($8, $9))
      order by s.dsn, s.property_name
      limit $10`,
    [
      ruleId,
      cooldownSeconds,
      connectivity ? null : (match.propertyName ?? null),
      match.oemModel ?? null,
      match.dsn ?? null,
      match.dsnPattern === undefined ? null : dsnLikePattern(match.dsnPattern),
      match.staleForSeconds ?? null,
      after?.dsn ?? null,
      after?.propertyName ?? '',
      limit,
    ],
  );
  return rows;
}

/** Starts the cooldown of the devices just fired at (by the database clock). */
export async function markFired(db: Queryable, ruleId: string, dsns: string[]): Promise<void> {
  if (dsns.length === 0) return;
  await db.query(
    `insert into dss_interval_fired (rule_id, dsn, last_fired_at) select $1, d, now() from unnest($2::text[]) d
     on conflict (rule_id, dsn) do update set last_fired_at = excluded.last_fired_at`,
    [ruleId, dsns],
  );
}

/** Evaluations kept per rule (older ones are deleted as each finishes): a rule every 10 s would otherwise add 8,640 rows a day. */
export const KEPT_EVALUATIONS = 100;

/** Closes the evaluation with its counts; the next one is due one interval after this one started. */
export async function finishEvaluation(db: Queryable, ruleId: string, number: number, counts: { matched: number; fired: number }): Promise<void> {
  await db.query(
    `with finished as (
       update dss_rule_evaluations set finished_at = now(), matched = $3, fired = $4
        where rule_id = $1 and number = $2 returning started_at
     ), pruned as (
       delete from dss_rule_evaluations where rule_id = $1 and number <= $2 - $5
     )
     update dss_rules r set evaluation_open = false,
            next_run_at = greatest(now(), (select started_at from finished) + make_interval(secs => r.every_seconds))
      where r.id = $1 and r.evaluations = $2 and r.evaluation_open`,
    [ruleId, number, counts.matched, counts.fired, KEPT_EVALUATIONS],
  );
}

export interface EvaluationView {
  number: number;
  /** The instance that took it (last, when taken up again). */
  instanceId: string;
  /** How many times it was taken: more than 1 when an instance died in it. */
  claims: number;
  startedAt: Date;
  finishedAt: Date | null;
  matched: number;
  fired: number;
}

/** The newest evaluations of a rule, and when its next one is due. */
export async function recentEvaluations(db: Queryable, ruleId: string, limit = 10): Promise<{ nextRunAt: Date | null; evaluations: EvaluationView[] }> {
  const [rule, evaluations] = await Promise.all([
    db.query<{ nextRunAt: Date | null }>(`select next_run_at as "nextRunAt" from dss_rules where id = $1`, [ruleId]),
    db.query<EvaluationView>(
      `select number, instance_id as "instanceId", claims, started_at as "startedAt", finished_at as "finishedAt", matched, fired
         from dss_rule_evaluations where rule_id = $1 order by number desc limit $2`,
      [ruleId, limit],
    ),
  ]);
  return { nextRunAt: rule.rows[0]?.nextRunAt ?? null, evaluations: evaluations.rows };
}
