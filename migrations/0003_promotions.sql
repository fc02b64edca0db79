-- Promotions. A promotion grants lots in set-based batches straight into the ledger (no wallet is
-- started) and keeps its lots' clock. Guarantees, each enforced here:
--   * a promotion never commits more than its budget, nor grants more than max_grants, nor a pool
--     more than its cap (CHECK): two batches, two workers or two promotions on one pool racing
--     cannot exceed them, whatever each believes.
--   * a batch is recorded once per (promotion, first position): a retried batch returns the
--     first result; lot ids are deterministic, so a retry cannot grant twice either.
--   * a lot records which workflow keeps its clock (clock_workflow_id): its customer's wallet, or
--     the promotion that granted it. Exactly one workflow activates, reminds and expires it.

CREATE TABLE promotion_pools (
    pool_id         text PRIMARY KEY,
    currency        char(3) NOT NULL,
    cap_minor       bigint NOT NULL CHECK (cap_minor > 0),
    committed_minor bigint NOT NULL DEFAULT 0,
    CONSTRAINT pool_within_cap CHECK (committed_minor >= 0 AND committed_minor <= cap_minor)
);

CREATE TABLE promotions (
    promotion_id     text PRIMARY KEY,
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('credit', 'coupon')),
    currency         char(3) NOT NULL,
    terms            jsonb NOT NULL,
    terms_digest     text NOT NULL,
    budget_minor     bigint NOT NULL CHECK (budget_minor > 0),
    max_grants       bigint CHECK (max_grants > 0),
    pool_id          text REFERENCES promotion_pools (pool_id),
    state            text NOT NULL
                     CHECK (state IN ('scheduled', 'granting', 'paused', 'active', 'ended', 'cancelled', 'closed')),
    ends_at          timestamptz NOT NULL,
    processed        bigint NOT NULL DEFAULT 0,
    granted_count    bigint NOT NULL DEFAULT 0,
    committed_minor  bigint NOT NULL DEFAULT 0,
    skipped          jsonb NOT NULL DEFAULT '{}',
    threshold_reached smallint NOT NULL DEFAULT 0,
    report           jsonb,
    workflow_id      text,
    run_id           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT within_budget CHECK (committed_minor >= 0 AND committed_minor <= budget_minor),
    CONSTRAINT within_max_grants CHECK (max_grants IS NULL OR granted_count <= max_grants)
);

-- Input staging: the audience, loaded by the client where the file is (COPY), duplicates of one
-- load counted once. Batches reference it by position; it never passes through a workflow.
CREATE TABLE promotion_audience_loads (
    promotion_id   text NOT NULL,
    load_no        integer NOT NULL CHECK (load_no >= 0),
    checksum       text NOT NULL,
    first_position bigint NOT NULL CHECK (first_position >= 1),
    size           bigint NOT NULL CHECK (size >= 0),
    duplicates     bigint NOT NULL CHECK (duplicates >= 0),
    loaded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (promotion_id, load_no)
);

CREATE TABLE promotion_audience (
    promotion_id text NOT NULL,
    position     bigint NOT NULL,
    customer_id  text NOT NULL,
    PRIMARY KEY (promotion_id, position)
);

CREATE TABLE promotion_batches (
    promotion_id   text NOT NULL REFERENCES promotions (promotion_id),
    first_position bigint NOT NULL,
    last_position  bigint NOT NULL,
    wave           timestamptz NOT NULL,
    outcome        jsonb NOT NULL,
    workflow_id    text,
    run_id         text,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (promotion_id, first_position),
    CONSTRAINT positions_in_order CHECK (last_position >= first_position)
);

-- A promotion lot's id: '<promotion>:<customer>' for a customer's first lot of the promotion,
-- '<promotion>@<n>:<customer>' for the n-th. Promotion ids hold neither ':' nor '@', so no two
-- (promotion, customer, n) share an id; a customer id too long for 128 characters is hashed.
CREATE FUNCTION promotion_lot_id(promotion text, customer text, ordinal bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN length(prefix || ':' || customer) <= 128 THEN prefix || ':' || customer
                ELSE prefix || ':' || md5(customer) END
    FROM (SELECT CASE WHEN ordinal = 1 THEN promotion ELSE promotion || '@' || ordinal END AS prefix) p
$$;

ALTER TABLE lots ADD COLUMN clock_workflow_id text;
UPDATE lots SET clock_workflow_id = 'wallet:' || customer_id;
ALTER TABLE lots ALTER COLUMN clock_workflow_id SET NOT NULL;
-- The clock's lookups: a promotion's live lots, by the instant they are due.
CREATE INDEX lots_by_clock ON lots (clock_workflow_id, status);
-- Promotion reports read the ledger (ledger_by_promotion); lots are found by clock or customer.
DROP INDEX lots_by_promotion;

-- Budget thresholds (50%, 80%, 100%) are events about a promotion, not a customer.
ALTER TABLE outbox ALTER COLUMN customer_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN promotion_id text;
ALTER TABLE outbox DROP CONSTRAINT outbox_event_type_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_event_type_check CHECK (event_type IN (
    'granted', 'activated', 'reminder', 'expired', 'redeemed', 'reversed', 'revoked', 'budget_threshold'));
