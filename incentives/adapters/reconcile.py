"""The books' invariants as set-based SQL, one statement per invariant, all in one snapshot; and the
results the scheduled runs recorded (`reconcile_runs`). Reads only: `incentives reconcile` runs the
checks on demand; the scheduled run's activity (`activities.reconcile`) runs them and records the
result, and `incentives reconcile --last` and the metrics' collector read it back.

Each check returns its violations, never stops at the first: an engineer at 3am needs the list.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, TypeAlias

from incentives.adapters.db import Connection, Pool, numbered
from incentives.adapters.rows import Row
from incentives.domain.events import OUTBOX_RETENTION
from incentives.domain.reconcile import ReconcileRun, Reconciliation, Violation

WHOLE_DATABASE = "the whole database"
# A lot's clock fires at its expiry; past this grace, a lot still holding value is a violation.
CLOCK_GRACE = timedelta(minutes=1)

# Each: (name, what it proves, SQL returning (subject, detail) per violation). `:customer` and
# `:promotion` scope it: NULL means all.
_SCOPE_LOTS = "(:customer::text IS NULL OR l.customer_id = :customer) AND (:promotion::text IS NULL OR l.promotion_id = :promotion)"
_CHECKS: list[tuple[str, str, str]] = [
    (
        "lot_balance",
        "every credit lot: amount - redeemed + reversed - expired - revoked = remaining, within [0, amount]",
        f"""SELECT l.lot_id, format('remaining %s, ledger says %s (amount %s)', l.remaining_minor,
                                    coalesce(sum(e.amount_minor), 0), l.amount_minor)
            FROM lots l LEFT JOIN ledger_entries e ON e.lot_id = l.lot_id
            WHERE l.kind = 'credit' AND {_SCOPE_LOTS}
            GROUP BY l.lot_id
            HAVING l.remaining_minor <> coalesce(sum(e.amount_minor), 0)
                OR l.remaining_minor < 0 OR l.remaining_minor > l.amount_minor""",
    ),
    (
        "order_charged_once",
        "every order: its redeem rows sum to its discount, its reverse rows to what was reversed",
        """SELECT r.customer_id || '/' || r.order_id,
                  format('discount %s, redeem rows %s; reversed %s, reverse rows %s', r.discount_minor,
                         coalesce(-sum(e.amount_minor) FILTER (WHERE e.entry_type = 'redeem'), 0), r.reversed_minor,
                         coalesce(sum(e.amount_minor) FILTER (WHERE e.entry_type = 'reverse'), 0))
           FROM redemptions r
           LEFT JOIN ledger_entries e ON e.customer_id = r.customer_id AND e.order_id = r.order_id
                                     AND e.entry_type IN ('redeem', 'reverse')
           WHERE (:customer::text IS NULL OR r.customer_id = :customer) AND :promotion::text IS NULL
           GROUP BY r.customer_id, r.order_id
           HAVING r.discount_minor <> coalesce(-sum(e.amount_minor) FILTER (WHERE e.entry_type = 'redeem'), 0)
               OR r.reversed_minor <> coalesce(sum(e.amount_minor) FILTER (WHERE e.entry_type = 'reverse'), 0)""",
    ),
    (
        "promotion_counters",
        "every promotion: lots granted and value committed equal its grant rows (credits) or its coupons' net discounts",
        """WITH rows AS (
               SELECT p.promotion_id, p.kind, p.granted_count, p.committed_minor,
                      (SELECT count(*) FROM ledger_entries e JOIN lots l USING (lot_id)
                       WHERE e.promotion_id = p.promotion_id AND e.entry_type = 'grant'
                         AND l.clock_workflow_id = 'promotion:' || p.promotion_id) AS grants,
                      (SELECT coalesce(sum(e.amount_minor), 0) FROM ledger_entries e JOIN lots l USING (lot_id)
                       WHERE e.promotion_id = p.promotion_id AND e.entry_type = 'grant'
                         AND l.clock_workflow_id = 'promotion:' || p.promotion_id) AS granted,
                      (SELECT coalesce(-sum(e.amount_minor), 0) FROM ledger_entries e JOIN lots l USING (lot_id)
                       WHERE e.promotion_id = p.promotion_id AND l.kind = 'coupon'
                         AND e.entry_type IN ('redeem', 'reverse')) AS discounts
               FROM promotions p WHERE (:promotion::text IS NULL OR p.promotion_id = :promotion) AND :customer::text IS NULL)
           SELECT promotion_id, format('granted_count %s, grant rows %s; committed %s, ledger %s', granted_count,
                                       grants, committed_minor,
                                       CASE WHEN kind = 'credit' THEN granted ELSE discounts END)
           FROM rows
           WHERE granted_count <> grants OR committed_minor <> CASE WHEN kind = 'credit' THEN granted ELSE discounts END""",
    ),
    (
        "budgets",
        "no promotion past its budget or max_grants, no pool past its cap or apart from its promotions",
        """SELECT 'promotion ' || promotion_id, format('committed %s of %s; %s grants of %s', committed_minor,
                                                     budget_minor, granted_count, max_grants)
           FROM promotions
           WHERE (committed_minor > budget_minor OR granted_count > coalesce(max_grants, granted_count))
             AND (:promotion::text IS NULL OR promotion_id = :promotion) AND :customer::text IS NULL
           UNION ALL
           SELECT 'pool ' || o.pool_id, format('committed %s of a %s cap; its promotions committed %s',
                                               o.committed_minor, o.cap_minor, coalesce(sum(p.committed_minor), 0))
           FROM promotion_pools o LEFT JOIN promotions p ON p.pool_id = o.pool_id
           WHERE :customer::text IS NULL AND (:promotion::text IS NULL OR o.pool_id IN (
                     SELECT pool_id FROM promotions WHERE promotion_id = :promotion))
           GROUP BY o.pool_id
           HAVING o.committed_minor > o.cap_minor OR o.committed_minor <> coalesce(sum(p.committed_minor), 0)""",
    ),
    (
        "outbox",
        "every ledger row has its event: grant, expiry and revocation by lot; redemption and reversal by order "
        "(rows older than the outbox's retention: their events were published and pruned)",
        f"""SELECT e.entry_type || ' row ' || e.entry_id, format('lot %s, order %s: no %s event', e.lot_id,
                                                          coalesce(e.order_id, '-'), e.entry_type)
            FROM ledger_entries e JOIN lots l ON l.lot_id = e.lot_id
            WHERE {_SCOPE_LOTS} AND e.created_at > now() - :retention::interval AND NOT EXISTS (
                SELECT 1 FROM outbox o
                WHERE o.event_type = CASE e.entry_type WHEN 'grant' THEN 'granted' WHEN 'redeem' THEN 'redeemed'
                                      WHEN 'reverse' THEN 'reversed' WHEN 'expire' THEN 'expired' ELSE 'revoked' END
                  AND o.customer_id = e.customer_id
                  AND CASE WHEN e.entry_type IN ('redeem', 'reverse') THEN o.order_id = e.order_id
                           ELSE o.lot_id = e.lot_id END)""",
    ),
    (
        "clock_running",
        "every lot that holds value has a clock that still runs: a promotion keeping its clock has not closed",
        f"""SELECT l.lot_id, format('%s, expires %s, but its clock %s has closed', l.status, l.expires_at,
                                    l.clock_workflow_id)
            FROM promotions p JOIN lots l ON l.clock_workflow_id = 'promotion:' || p.promotion_id
            WHERE p.state = 'closed' AND l.status IN ('pending', 'active') AND {_SCOPE_LOTS}""",
    ),
    (
        "expired_on_time",
        "no lot past its expiry still holds value once its clock has had a minute to fire",
        f"""SELECT l.lot_id, format('%s, expired at %s, kept by %s', l.status, l.expires_at, l.clock_workflow_id)
            FROM lots l
            WHERE l.status IN ('pending', 'active') AND l.expires_at < now() - :grace::interval AND {_SCOPE_LOTS}""",
    ),
]

CHECKS = {name: meaning for name, meaning, _ in _CHECKS}


async def reconcile(
    pool: Pool, *, customer: str | None = None, promotion: str | None = None, keep: int | None = None
) -> Reconciliation:
    """Runs every check in one repeatable-read snapshot, so they all see the same books. With
    `keep`, at most that many violations of each check come back (its count stays whole), so that
    what a run holds in memory is bounded however broken the books are."""
    violations: list[Violation] = []
    checks: dict[str, int] = {}
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        given = {"customer": customer, "promotion": promotion, "grace": CLOCK_GRACE, "retention": OUTBOX_RETENTION}
        for name, _, text in _CHECKS:
            # The window counts every violation before the limit applies; LIMIT NULL is no limit.
            # Ordered, so that the list (and what a run keeps of it) is the same from run to run.
            sql, values = numbered(
                f"""SELECT v.*, count(*) OVER () AS found FROM ({text}) AS v (subject, detail)
                    ORDER BY v.subject LIMIT :keep""",
                {"keep": keep} | {key: value for key, value in given.items() if f":{key}" in text},
            )
            rows = await conn.fetch(sql, *values)
            checks[name] = rows[0]["found"] if rows else 0
            violations.extend(Violation(check=name, subject=row["subject"], detail=row["detail"]) for row in rows)
        sql, values = numbered(
            f"""SELECT (SELECT count(*) FROM lots l WHERE {_SCOPE_LOTS}) AS lots,
                       (SELECT count(*) FROM ledger_entries l WHERE {_SCOPE_LOTS}) AS ledger_rows""",
            {"customer": customer, "promotion": promotion},
        )
        sizes = await conn.fetchrow(sql, *values)
    assert sizes is not None, "an aggregate returns one row"
    scope = f"customer {customer}" if customer else f"promotion {promotion}" if promotion else WHOLE_DATABASE
    return Reconciliation(
        scope=scope, lots=sizes["lots"], ledger_rows=sizes["ledger_rows"], checks=checks, violations=violations
    )


if TYPE_CHECKING:
    import asyncpg

    # Where a recorded run can be read from: a pool, or a connection (the metrics' collector holds one).
    Reader: TypeAlias = Pool | Connection | asyncpg.Connection[asyncpg.Record]
_RUN_COLUMNS = "workflow_id, run_id, started_at, finished_at, lots, ledger_rows, checks, violations"


async def last_reconcile(reader: Reader) -> ReconcileRun | None:
    """The most recently finished scheduled run's result; None when no run has been recorded yet."""
    row = await reader.fetchrow(
        f"SELECT {_RUN_COLUMNS} FROM reconcile_runs ORDER BY finished_at DESC, run_id DESC LIMIT 1"
    )
    return None if row is None else _run_from_row(row)


async def recorded_reconcile(pool: Pool, run_id: str) -> ReconcileRun | None:
    """The result the scheduled run `run_id` recorded, if it has."""
    row = await pool.fetchrow(f"SELECT {_RUN_COLUMNS} FROM reconcile_runs WHERE run_id = $1", run_id)
    return None if row is None else _run_from_row(row)


def _run_from_row(row: Row) -> ReconcileRun:
    return ReconcileRun(
        scope=WHOLE_DATABASE,
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lots=row["lots"],
        ledger_rows=row["ledger_rows"],
        # jsonb keeps its keys in its own order: shown in the checks' order, as `reconcile` shows them.
        checks={**{name: row["checks"][name] for name in CHECKS if name in row["checks"]}, **row["checks"]},
        violations=[Violation(**violation) for violation in row["violations"]],
    )
