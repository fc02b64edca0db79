-- Delivering the outbox: the relay (in every worker) publishes each event to NATS JetStream and
-- only then marks it published. Guarantees, each enforced here:
--   * a relay finds an event by `published_at IS NULL`, never by "id > the last one published":
--     identities become visible in commit order, not in id order, so a watermark would skip an
--     event whose transaction committed late.
--   * every transaction that writes events wakes the relays once it commits (NOTIFY), so delivery
--     follows a commit in milliseconds without polling.
--   * the worker's role can mark events published and prune what was published long ago, through
--     these two functions only: it cannot unpublish an event, nor change or delete an unpublished one.

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('incentives_outbox', '');  -- one per transaction: identical notifications fold
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE FUNCTION outbox_mark_published(ids bigint[]) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH marked AS (
        UPDATE outbox SET published_at = clock_timestamp()
        WHERE event_id = ANY(ids) AND published_at IS NULL
        RETURNING 1)
    SELECT count(*)::integer FROM marked
$$;

CREATE FUNCTION outbox_prune(retention interval, max_rows integer) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH pruned AS (
        DELETE FROM outbox WHERE event_id IN (
            SELECT event_id FROM outbox
            WHERE published_at IS NOT NULL AND published_at < now() - retention
            ORDER BY event_id LIMIT max_rows)
        RETURNING 1)
    SELECT count(*)::integer FROM pruned
$$;

REVOKE ALL ON FUNCTION outbox_mark_published(bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_prune(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_mark_published(bigint[]) TO incentives_worker;
GRANT EXECUTE ON FUNCTION outbox_prune(interval, integer) TO incentives_worker;

-- Published events are read by age when pruning.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
