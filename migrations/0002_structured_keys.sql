-- Idempotency keys as columns, not joined strings. A key like 'redeem:<customer>:<order>:<lot>'
-- let ids containing ':' collide (order 'x:y' with lot 'kcL' against order 'x' with lot 'y:kcL').
-- A ledger row is now unique by what it is: its type, its lot, and the order and reversal it
-- belongs to (NULLs equal, so a lot has one grant, one expiry and one revocation).
ALTER TABLE ledger_entries
    ADD CONSTRAINT one_entry_per_key UNIQUE NULLS NOT DISTINCT (entry_type, lot_id, order_id, reversal_id);
ALTER TABLE ledger_entries DROP COLUMN idempotency_key;

-- Reversal ids are the caller's, scoped to the customer: one customer's 'refund-1' neither blocks
-- nor reveals another's.
ALTER TABLE reversals DROP CONSTRAINT reversals_pkey;
ALTER TABLE reversals ADD PRIMARY KEY (customer_id, reversal_id);
