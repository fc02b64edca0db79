-- A promotion's lifecycle, hardened:
--   * a promotion id is claimed by its terms when it is first started, in the same transaction as
--     its audience is staged: two starts of different specs under one id cannot both pass the
--     comparison (the claim is the one row per id, taken under the id's lock).
--   * `failed`: a batch the database refused for good (a constraint or a value out of range)
--     stops granting with its reason, instead of retrying forever; the clock keeps running.
--   * a spec without an end (`schedule.ends_at`) has none of its own: ends_at may be NULL.

CREATE TABLE promotion_claims (
    promotion_id text PRIMARY KEY,
    terms_digest text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO promotion_claims (promotion_id, terms_digest)
    SELECT promotion_id, terms_digest FROM promotions;

ALTER TABLE promotions DROP CONSTRAINT promotions_state_check;
ALTER TABLE promotions ADD CONSTRAINT promotions_state_check CHECK (
    state IN ('scheduled', 'granting', 'paused', 'active', 'ended', 'cancelled', 'failed', 'closed'));
ALTER TABLE promotions ADD COLUMN failure text;
ALTER TABLE promotions ALTER COLUMN ends_at DROP NOT NULL;

GRANT SELECT ON promotion_claims TO incentives_worker;
GRANT UPDATE (failure) ON promotions TO incentives_worker;
