-- One payload per event type. A lot's events (granted, activated, reminder, expired, revoked) are
-- written by the wallet's ledger activities one lot at a time and by a promotion's batches and
-- clock set-based; both build the payload with this one function, from the lot's row as the same
-- statement leaves it, so a consumer sees one shape whichever path wrote it:
--   lot_id, customer_id, promotion_id, kind, currency, amount (granted, minor units), remaining and
--   uses_left (after the change), status, effective_at, expires_at, granted_at (UTC, ISO 8601),
--   change (minor units the event moved into (+) or out of (-) the lot: the grant's amount, what
--   expired or was revoked, 0 for an activation or a reminder), and, when the change comes from a
--   reversal, order_id and reversal_id; reason for a revocation or a write-off.

CREATE FUNCTION event_instant(instant timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(instant AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION lot_event(lot lots, change bigint, order_id text, reversal_id text, reason text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'lot_id', lot.lot_id, 'customer_id', lot.customer_id, 'promotion_id', lot.promotion_id,
        'kind', lot.kind, 'currency', lot.currency, 'amount', lot.amount_minor,
        'remaining', lot.remaining_minor, 'uses_left', lot.uses_left, 'status', lot.status,
        'effective_at', event_instant(lot.effective_at), 'expires_at', event_instant(lot.expires_at),
        'granted_at', event_instant(lot.granted_at), 'change', change,
        'order_id', order_id, 'reversal_id', reversal_id, 'reason', reason)
$$;
