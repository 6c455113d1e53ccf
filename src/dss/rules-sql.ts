/** Statements on `dss_rules` and `dss_rule_state`, one function each. */
import crypto from 'node:crypto';
import type pg from 'pg';
import type { CanonicalValue, Rule } from './rules.js';
import { everySeconds, type RuleCreateBody, type RuleUpdateBody } from './schemas.js';

type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

const COLUMNS = `id, name, enabled, match, action, cooldown_seconds as "cooldownSeconds", every, created_at as "createdAt", updated_at as "updatedAt"`;

export async function insertRule(db: Queryable, body: RuleCreateBody): Promise<Rule> {
  const { rows } = await db.query<Rule>(
    // An interval rule's first evaluation is due at once.
    `insert into dss_rules (id, name, enabled, match, action, cooldown_seconds, every, every_seconds, next_run_at)
     values ($1, $2, $3, $4, $5, $6, $7, $8, case when $7::text is not null then now() end) returning ${COLUMNS}`,
    [
      crypto.randomUUID(),
      body.name,
      body.enabled,
      JSON.stringify(body.match),
      JSON.stringify(body.action),
      body.cooldownSeconds,
      body.every ?? null,
      body.every === undefined ? null : everySeconds(body.every)!,
    ],
  );
  return rows[0]!;
}

/** `onlyEnabled`: the enabled event rules (what the rule engine runs on events). */
export async function listRules(db: Queryable, onlyEnabled = false): Promise<Rule[]> {
  const { rows } = await db.query<Rule>(`select ${COLUMNS} from dss_rules ${onlyEnabled ? 'where enabled and every is null' : ''} order by created_at, id`);
  return rows;
}

export async function getRule(db: Queryable, id: string): Promise<Rule | undefined> {
  const { rows } = await db.query<Rule>(`select ${COLUMNS} from dss_rules where id = $1`, [id]);
  return rows[0];
}

/**
 * A changed match forgets the rule's state: the remembered values belonged to
 * what it matched before. A new `every` (an interval rule's; the route refuses a change of
 * kind) moves the next evaluation to one new interval after the last one started (now if
 * that has passed; unchanged before the first, or while one runs: its end computes the next
 * from the new interval).
 */
export async function updateRule(db: Queryable, id: string, body: RuleUpdateBody): Promise<Rule | undefined> {
  const { rows } = await db.query<Rule>(
    `with updated as (
       update dss_rules set
         name = coalesce($2, name),
         enabled = coalesce($3, enabled),
         match = coalesce($4::jsonb, match),
         action = coalesce($5::jsonb, action),
         cooldown_seconds = coalesce($6, cooldown_seconds),
         every = coalesce($7, every),
         every_seconds = coalesce($8::int, every_seconds),
         next_run_at = case when $7::text is null or evaluation_open then next_run_at else coalesce(
           (select case when max(e.started_at) is null then null else greatest(now(), max(e.started_at) + make_interval(secs => $8::int)) end
              from dss_rule_evaluations e where e.rule_id = dss_rules.id),
           next_run_at) end,
         updated_at = now()
       where id = $1 returning *
     ), forget as (
       delete from dss_rule_state s using updated u where s.rule_id = u.id and $4::jsonb is not null
     )
     select ${COLUMNS} from updated`,
    [
      id,
      body.name ?? null,
      body.enabled ?? null,
      body.match ? JSON.stringify(body.match) : null,
      body.action ? JSON.stringify(body.action) : null,
      body.cooldownSeconds ?? null,
      body.every ?? null,
      typeof body.every === 'string' ? everySeconds(body.every)! : null,
    ],
  );
  return rows[0];
}

export async function deleteRule(db: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from dss_rules where id = $1', [id]);
  return rowCount === 1;
}

export interface RuleStateKey {
  ruleId: string;
  streamId: string;
  dsn: string;
  propertyName: string;
}

export interface RuleState {
  lastValue: CanonicalValue;
  evaluatedSeq: number;
  /** The cooldown since the last firing has not run out yet (by the database clock). */
  coolingDown: boolean;
}

export async function getRuleState(db: Queryable, key: RuleStateKey, cooldownSeconds: number): Promise<RuleState | undefined> {
  const { rows } = await db.query<RuleState>(
    `select last_value as "lastValue", evaluated_seq as "evaluatedSeq",
            coalesce(last_fired_at > now() - make_interval(secs => $5), false) as "coolingDown"
     from dss_rule_state where rule_id = $1 and stream_id = $2 and dsn = $3 and property_name = $4`,
    [key.ruleId, key.streamId, key.dsn, key.propertyName, cooldownSeconds],
  );
  return rows[0];
}

/** Written after the actuation (if any) is committed; `fired` moves the cooldown start to now. */
export async function saveRuleState(db: Queryable, key: RuleStateKey, value: CanonicalValue, seq: number, fired: boolean): Promise<void> {
  await db.query(
    `insert into dss_rule_state (rule_id, stream_id, dsn, property_name, last_value, evaluated_seq, last_fired_at)
     values ($1, $2, $3, $4, $5::jsonb, $6, case when $7 then now() end)
     on conflict (rule_id, stream_id, dsn, property_name) do update set
       last_value = excluded.last_value,
       evaluated_seq = greatest(dss_rule_state.evaluated_seq, excluded.evaluated_seq),
       last_fired_at = coalesce(excluded.last_fired_at, dss_rule_state.last_fired_at)`,
    [key.ruleId, key.streamId, key.dsn, key.propertyName, JSON.stringify(value), seq, fired],
  );
}
