-- The ledger. Guarantees, each enforced here rather than trusted to the code:
--   * ledger_entries is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.
--   * at most one ledger row per idempotency key (UNIQUE), so a retried write cannot double.
--   * a lot never holds less than zero nor more than it was granted (CHECK), so no stale or
--     concurrent caller can overspend, whatever it believes.
--   * for a credit lot, remaining_minor = the sum of its ledger rows' amount_minor.
--   * money is bigint minor units beside an ISO 4217 code; never a float.

CREATE TABLE lots (
    lot_id                  text PRIMARY KEY,
    customer_id             text NOT NULL,
    promotion_id            text,
    kind                    text NOT NULL CHECK (kind IN ('credit', 'coupon')),
    currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor            bigint NOT NULL,
    remaining_minor         bigint NOT NULL,
    coupon_amount_off_minor bigint CHECK (coupon_amount_off_minor > 0),
    coupon_percent_off      smallint,
    coupon_cap_minor        bigint CHECK (coupon_cap_minor > 0),
    coupon_min_order_minor  bigint CHECK (coupon_min_order_minor > 0),
    uses_allowed            integer CHECK (uses_allowed > 0),
    uses_left               integer,
    status                  text NOT NULL
                            CHECK (status IN ('pending', 'active', 'used_up', 'expired', 'revoked')),
    effective_at            timestamptz,
    expires_at              timestamptz,
    remind_before           interval CHECK (remind_before > interval '0'),
    reminded_at             timestamptz,
    granted_at              timestamptz NOT NULL,
    grant_digest            text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uses_within_allowed CHECK (uses_left >= 0 AND uses_left <= uses_allowed),
    CONSTRAINT percent_off_in_range CHECK (coupon_percent_off > 0 AND coupon_percent_off <= 100),
    CONSTRAINT remaining_not_negative CHECK (remaining_minor >= 0),
    CONSTRAINT remaining_within_amount CHECK (remaining_minor <= amount_minor),
    CONSTRAINT expiry_after_effective CHECK (expires_at > effective_at),
    CONSTRAINT reminder_needs_expiry CHECK (remind_before IS NULL OR expires_at IS NOT NULL),
    CONSTRAINT credit_or_coupon CHECK (
        (kind = 'credit' AND amount_minor > 0
            AND coupon_amount_off_minor IS NULL AND coupon_percent_off IS NULL
            AND coupon_cap_minor IS NULL AND coupon_min_order_minor IS NULL
            AND uses_allowed IS NULL AND uses_left IS NULL)
        OR
        (kind = 'coupon' AND amount_minor = 0
            AND uses_allowed IS NOT NULL AND uses_left IS NOT NULL
            AND (coupon_amount_off_minor IS NULL) <> (coupon_percent_off IS NULL)
            AND (coupon_cap_minor IS NULL OR coupon_percent_off IS NOT NULL))
    )
);
CREATE INDEX lots_by_customer ON lots (customer_id, status);
CREATE INDEX lots_by_promotion ON lots (promotion_id) WHERE promotion_id IS NOT NULL;

CREATE TABLE ledger_entries (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    entry_type      text NOT NULL CHECK (entry_type IN ('grant', 'redeem', 'reverse', 'expire', 'revoke')),
    lot_id          text NOT NULL REFERENCES lots (lot_id),
    customer_id     text NOT NULL,
    promotion_id    text,
    order_id        text,
    reversal_id     text,
    amount_minor    bigint NOT NULL,
    currency        char(3) NOT NULL,
    reason          text,
    workflow_id     text,
    run_id          text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT signed_by_type CHECK (
        (entry_type = 'grant' AND amount_minor >= 0)
        OR (entry_type = 'redeem' AND amount_minor < 0 AND order_id IS NOT NULL)
        OR (entry_type = 'reverse' AND amount_minor > 0 AND order_id IS NOT NULL AND reversal_id IS NOT NULL)
        OR (entry_type IN ('expire', 'revoke') AND amount_minor <= 0)
    )
);
CREATE INDEX ledger_by_customer ON ledger_entries (customer_id, entry_id);
CREATE INDEX ledger_by_lot ON ledger_entries (lot_id, entry_id);
CREATE INDEX ledger_by_promotion ON ledger_entries (promotion_id, entry_type) WHERE promotion_id IS NOT NULL;

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_entries_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

-- One row per order and customer; the order id is the idempotency key of a redemption, and
-- request_digest tells a retry (same digest) from a conflicting reuse of the id.
CREATE TABLE redemptions (
    customer_id     text NOT NULL,
    order_id        text NOT NULL,
    currency        char(3) NOT NULL,
    total_minor     bigint NOT NULL CHECK (total_minor > 0),
    discount_minor  bigint NOT NULL CHECK (discount_minor > 0 AND discount_minor <= total_minor),
    to_pay_minor    bigint NOT NULL,
    reversed_minor  bigint NOT NULL DEFAULT 0
                    CHECK (reversed_minor >= 0 AND reversed_minor <= discount_minor),
    coupon_lot_id   text REFERENCES lots (lot_id),
    breakdown       jsonb NOT NULL,
    request_digest  text NOT NULL,
    redeemed_at     timestamptz NOT NULL,
    workflow_id     text,
    run_id          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, order_id),
    CONSTRAINT to_pay_is_the_rest CHECK (to_pay_minor = total_minor - discount_minor)
);
CREATE INDEX redemptions_by_time ON redemptions (customer_id, redeemed_at);

CREATE TABLE reversals (
    reversal_id     text PRIMARY KEY,
    customer_id     text NOT NULL,
    order_id        text NOT NULL,
    currency        char(3) NOT NULL,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    breakdown       jsonb NOT NULL,
    request_digest  text NOT NULL,
    reversed_at     timestamptz NOT NULL,
    workflow_id     text,
    run_id          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (customer_id, order_id) REFERENCES redemptions (customer_id, order_id)
);
CREATE INDEX reversals_by_order ON reversals (customer_id, order_id);

-- Events for downstream systems, written in the same transaction as the change they describe.
CREATE TABLE outbox (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type   text NOT NULL
                 CHECK (event_type IN ('granted', 'activated', 'reminder', 'expired', 'redeemed', 'reversed', 'revoked')),
    customer_id  text NOT NULL,
    lot_id       text,
    order_id     text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (event_id) WHERE published_at IS NULL;
CREATE INDEX outbox_by_customer ON outbox (customer_id, event_id);
