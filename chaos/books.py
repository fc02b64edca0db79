"""What the checks read: the books in one snapshot of Postgres (or the part of them in a scope), and
the verdict they write, violation by violation, each under the name of the check that found it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from incentives.adapters.db import Connection, Pool
from incentives.adapters.rows import Row

# Every check, by the name its violations are recorded under.
CHECKS = (
    "reconcile",  # the engine's own invariants (`incentives reconcile`)
    "answers",  # what each caller was told is what the ledger holds
    "refusals_wrote_nothing",  # a refused operation left no row and no status change
    "refusals_justified",  # the model agrees a refused operation had to be refused, for the same rule
    "model",  # every lot, redemption, reversal, expiry and revocation as the model replays them
    "activations",  # a pending lot is active once its effective time has passed, and announced once
    "expiries",  # no lot live past its expiry, none expired before it
    "budgets",  # every promotion's grants and commitments as its terms and the model say, within budget and pool
    "events",  # no event published twice
    "closed_promotions",  # a reversal into a closed promotion's lot gives nothing back
    "answered",  # every operation answered; hostile input refused
    "delivered",  # every outbox event in the stream once, each customer's in effect order, nothing invented
    "metrics",  # the workers' counters claim nothing the ledger lacks; what they miss, a kill explains
)


@dataclass(frozen=True)
class Scope:
    """The customers and promotions to check (the rest of the database is left alone): tests share
    one database, and each plants its fault in its own customers. A promotion brings along every
    customer it granted to (its commitments are their redemptions)."""

    customers: frozenset[str] = frozenset()
    promotions: frozenset[str] = frozenset()


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    by_check: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    checked: Counter[str] = field(default_factory=Counter)

    def fail(self, check: str, what: str) -> None:
        assert check in CHECKS, f"unknown check {check}"
        self.violations.append(f"{check}: {what}")
        self.by_check[check].append(what)

    @property
    def reported_by(self) -> set[str]:
        """The checks that found something."""
        return {check for check, found in self.by_check.items() if found}


@dataclass
class Snapshot:
    lots: dict[str, Row]
    ledger: list[Row]  # with each row's commit timestamp (`committed_at`)
    redemptions: dict[tuple[str, str], Row]
    reversals: dict[tuple[str, str], Row]
    events: Counter[tuple[str, str]]
    promotions: dict[str, Row]
    pools: dict[str, Row]
    # (customer, order, lot): a grant that committed while the redemption ran and that its credit
    # query could not see (not in the snapshot it recorded).
    unseen: set[tuple[str, str, str]] = field(default_factory=set)
    customers: frozenset[str] | None = None  # None: every customer


# A grant's transaction id as the 64-bit id `pg_visible_in_snapshot` takes: `xmin` holds its low 32
# bits; the epoch is the current one, or the one before if that would put it in the future.
_FULL_XID = """(CASE WHEN ((n.top >> 32) << 32) + g.xmin::text::bigint > n.top
                    THEN ((n.top >> 32) << 32) + g.xmin::text::bigint - 4294967296
                    ELSE ((n.top >> 32) << 32) + g.xmin::text::bigint END)::text::xid8"""

_UNSEEN = f"""
SELECT r.customer_id, r.order_id, g.lot_id
FROM redemptions r
JOIN ledger_entries g ON g.customer_id = r.customer_id AND g.entry_type = 'grant'
CROSS JOIN (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS top) n
WHERE r.credit_snapshot IS NOT NULL AND ($1::text[] IS NULL OR r.customer_id = ANY($1))
  AND pg_xact_commit_timestamp(g.xmin) >= r.created_at
  AND NOT pg_visible_in_snapshot({_FULL_XID}, r.credit_snapshot)
"""

_EVENTS = """
SELECT event_type, CASE WHEN event_type IN ('redeemed', 'reversed')
                        THEN customer_id || '/' || coalesce(payload->>'reversal_id', order_id)
                        ELSE coalesce(lot_id, '') || '/' || coalesce(payload->>'reversal_id', '')
                   END AS subject
FROM outbox WHERE event_type <> 'budget_threshold' AND ($1::text[] IS NULL OR customer_id = ANY($1))
"""


async def load(pool: Pool, scope: Scope | None) -> Snapshot:
    """The books (in scope) as one repeatable-read snapshot sees them."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        customers = None if scope is None else await _customers(conn, scope)
        promotions = None if scope is None else sorted(scope.promotions)
        where = "WHERE ($1::text[] IS NULL OR customer_id = ANY($1))"
        lots = {row["lot_id"]: row for row in await conn.fetch(f"SELECT * FROM lots {where}", customers)}
        ledger = list(
            await conn.fetch(
                f"""SELECT *, pg_xact_commit_timestamp(xmin) AS committed_at FROM ledger_entries {where}
                    ORDER BY entry_id""",
                customers,
            )
        )
        redemptions = {
            (r["customer_id"], r["order_id"]): r
            for r in await conn.fetch(f"SELECT * FROM redemptions {where}", customers)
        }
        reversals = {
            (r["customer_id"], r["reversal_id"]): r
            for r in await conn.fetch(f"SELECT * FROM reversals {where}", customers)
        }
        events = Counter((row["event_type"], row["subject"]) for row in await conn.fetch(_EVENTS, customers))
        promotions_rows = await conn.fetch(
            "SELECT * FROM promotions WHERE $1::text[] IS NULL OR promotion_id = ANY($1)", promotions
        )
        pools = {row["pool_id"]: row for row in await conn.fetch("SELECT * FROM promotion_pools")}
        unseen = {(r["customer_id"], r["order_id"], r["lot_id"]) for r in await conn.fetch(_UNSEEN, customers)}
    return Snapshot(
        lots=lots,
        ledger=ledger,
        redemptions=redemptions,
        reversals=reversals,
        events=events,
        promotions={row["promotion_id"]: row for row in promotions_rows},
        pools=pools,
        unseen=unseen,
        customers=None if customers is None else frozenset(customers),
    )


async def _customers(conn: Connection, scope: Scope) -> list[str]:
    granted: list[str] = await conn.fetchval(
        "SELECT coalesce(array_agg(DISTINCT customer_id), '{}') FROM lots WHERE promotion_id = ANY($1)",
        sorted(scope.promotions),
    )
    return sorted(scope.customers | set(granted))
