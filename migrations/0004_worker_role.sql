-- The worker's least-privilege role. Migrations run as the owner; the worker connects as
-- incentives_worker (or as a login role granted it), which can:
--   * read every table it needs, and INSERT the rows its activities append;
--   * UPDATE only the columns a transition changes: a lot's remaining value, uses and status, a
--     redemption's reversed total, a promotion's progress and state, a pool's commitment;
--   * never UPDATE or DELETE a ledger row, a reversal, an outbox event or a batch outcome (no
--     privilege, on top of the ledger's append-only trigger), nor write the audience staged by the
--     client, nor create, alter or drop anything (no CREATE on the schema, owner of nothing).
-- A later migration that adds a table or a column the worker writes grants it there.
--
-- Roles belong to the cluster, not the database: the role is created once and granted per database.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'incentives_worker') THEN
        CREATE ROLE incentives_worker LOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created meanwhile by a migration of another database on this cluster
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'the migrations need the role incentives_worker and may not create roles'
            USING HINT = 'create it once as an administrator: CREATE ROLE incentives_worker LOGIN PASSWORD ''...''';
END
$$;

GRANT USAGE ON SCHEMA public TO incentives_worker;

GRANT SELECT, INSERT ON ledger_entries, reversals, outbox, promotion_batches TO incentives_worker;
GRANT SELECT ON promotion_audience, promotion_audience_loads TO incentives_worker;

GRANT SELECT, INSERT, UPDATE (remaining_minor, uses_left, status, reminded_at) ON lots TO incentives_worker;
GRANT SELECT, INSERT, UPDATE (reversed_minor) ON redemptions TO incentives_worker;
GRANT SELECT, INSERT, UPDATE (committed_minor) ON promotion_pools TO incentives_worker;
GRANT SELECT, INSERT,
      UPDATE (state, ends_at, report, updated_at, processed, granted_count, committed_minor, skipped,
              threshold_reached)
      ON promotions TO incentives_worker;
