-- What a redemption's credit query could see. A promotion's batch grants lots without taking the
-- customer's lock, so a lot may be granted while a redemption of that customer runs: the redemption
-- used it only if the statement that read (and locked) the customer's credits could see it. That
-- statement's snapshot (pg_current_snapshot(), taken in the same statement: under READ COMMITTED
-- each statement reads with its own) is kept with the redemption; pg_visible_in_snapshot of a
-- grant's transaction id against it says whether the redemption could have used that lot.
-- NULL for redemptions written before this column. The worker's table-level INSERT on redemptions
-- (0004) covers the new column.
ALTER TABLE redemptions ADD COLUMN credit_snapshot pg_snapshot;
