-- The books reconciled on a schedule: each run of the `Reconcile` workflow (started hourly by the
-- Temporal Schedule `incentives-reconcile`) records its result here, once. Guarantees:
--   * one row per workflow run: the run id is the key, so a retried activity finds the first
--     result and writes nothing (INSERT ... ON CONFLICT DO NOTHING, then read back);
--   * every check's count is whole (`checks`: check -> violations found), while `violations` keeps
--     only a few examples of each (the activity keeps 20 a check): a disastrous run, a million lots
--     wrong, is still a small row. `violation_count` is the total, computed from `checks`, so the
--     two cannot disagree; the cap below is a backstop far above what the activity keeps.
-- Runs are few (24 a day) and small, so nothing is pruned.
-- The worker's role inserts and reads (its activity); it may not change or delete a result.

CREATE FUNCTION reconcile_total(checks jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(sum(value::bigint), 0)::bigint FROM jsonb_each_text(checks)
$$;

CREATE TABLE reconcile_runs (
    run_id          text PRIMARY KEY,
    workflow_id     text NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    lots            bigint NOT NULL CHECK (lots >= 0),
    ledger_rows     bigint NOT NULL CHECK (ledger_rows >= 0),
    checks          jsonb NOT NULL CHECK (jsonb_typeof(checks) = 'object'),
    violations      jsonb NOT NULL CHECK (jsonb_typeof(violations) = 'array'),
    violation_count bigint GENERATED ALWAYS AS (reconcile_total(checks)) STORED,
    CONSTRAINT finished_after_started CHECK (finished_at >= started_at),
    CONSTRAINT violations_kept_are_counted CHECK (jsonb_array_length(violations) <= violation_count),
    CONSTRAINT violations_kept_are_few CHECK (jsonb_array_length(violations) <= 1000)
);
-- `incentives reconcile --last` and the metrics' collector read the latest.
CREATE INDEX reconcile_runs_latest ON reconcile_runs (finished_at DESC, run_id DESC);

GRANT SELECT, INSERT (run_id, workflow_id, started_at, finished_at, lots, ledger_rows, checks, violations)
      ON reconcile_runs TO incentives_worker;
