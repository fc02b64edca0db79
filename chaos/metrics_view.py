"""The metrics' view of a chaos run, against the ledger.

Every worker the run starts (and kills) counts into files of its own in one directory
(prometheus_client's multiprocess mode: each increment is written to a memory-mapped file at
once, so a SIGKILLed worker's counts outlive it), and the view is their sum.

What must hold (check "metrics"):
- No phantom: what the metrics say was applied or moved, the ledger holds: per operation, applied
  decisions <= its rows; per movement and currency, value counted <= value in the ledger; promotion
  grants <= promotion lots.
- Any shortfall is a kill's: a worker killed between its commit and its count loses that count,
  and the operation's retry finds it applied and is counted `replayed`. So rows - applied <=
  replayed, per operation. (Value has no such witness; it is bounded by the first rule only.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from chaos.books import Verdict
from incentives.adapters.db import Pool
from incentives.adapters.metrics import MOVEMENTS

# Each operation's rows in the ledger: one per decision that applied it.
_ROWS = """
SELECT (SELECT count(*) FROM lots WHERE grant_digest NOT LIKE 'promotion:%') AS grant,
       (SELECT count(*) FROM redemptions) AS redeem,
       (SELECT count(*) FROM reversals) AS reverse,
       (SELECT count(*) FROM ledger_entries WHERE entry_type = 'revoke' AND workflow_id LIKE 'wallet:%'
                                              AND order_id IS NULL AND reversal_id IS NULL) AS revoke,
       (SELECT count(*) FROM lots WHERE grant_digest LIKE 'promotion:%') AS promotion_grants
"""
_VALUE = "SELECT entry_type, currency, sum(abs(amount_minor))::bigint AS value FROM ledger_entries GROUP BY 1, 2"
OPERATIONS = ("grant", "redeem", "reverse", "revoke")


@dataclass
class MetricsView:
    operations: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (operation, outcome, reason)
    value: Counter[tuple[str, str]] = field(default_factory=Counter)  # (movement, currency)
    promotion_grants: int = 0

    def outcomes(self, operation: str, outcome: str) -> int:
        return sum(n for (op, out, _), n in self.operations.items() if (op, out) == (operation, outcome))


@dataclass
class LedgerFigures:
    rows: dict[str, int]  # operation (and "promotion_grants") -> rows
    value: Counter[tuple[str, str]]  # (movement, currency)


def read_view(directory: Path) -> MetricsView:
    """The sum of every worker's counts, killed ones included."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]  # (unannotated)
    view = MetricsView()
    for family in registry.collect():
        for sample in family.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == "incentives_operations_total":
                view.operations[(labels["operation"], labels["outcome"], labels["reason"])] += value
            elif sample.name == "incentives_value_minor_total":
                view.value[(labels["movement"], labels["currency"])] += value
            elif sample.name == "incentives_promotion_grants_total":
                view.promotion_grants += value
    return view


async def ledger_figures(pool: Pool) -> LedgerFigures:
    rows = dict(await pool.fetchrow(_ROWS) or {})
    value: Counter[tuple[str, str]] = Counter()
    for row in await pool.fetch(_VALUE):
        value[(MOVEMENTS[row["entry_type"]], row["currency"])] += row["value"]
    return LedgerFigures(rows={name: int(n) for name, n in rows.items()}, value=value)


def judge(view: MetricsView, ledger: LedgerFigures, verdict: Verdict) -> dict[str, Any]:
    """Fails "metrics" where the view and the ledger cannot both be true; returns the comparison."""
    lost: dict[str, int] = {}
    for operation in OPERATIONS:
        applied, replayed = view.outcomes(operation, "applied"), view.outcomes(operation, "replayed")
        rows = ledger.rows[operation]
        if applied > rows:
            verdict.fail("metrics", f"{applied} {operation}s counted applied, {rows} in the ledger")
        elif rows - applied > replayed:
            verdict.fail(
                "metrics", f"{rows - applied} {operation}s in the ledger never counted, only {replayed} replays"
            )
        lost[operation] = rows - applied
        verdict.checked["metrics against the ledger"] += rows
    for key in view.value.keys() | ledger.value.keys():
        if view.value[key] > ledger.value[key]:
            verdict.fail("metrics", f"{view.value[key]} {key[1]} counted {key[0]}, {ledger.value[key]} in the ledger")
    if view.promotion_grants > ledger.rows["promotion_grants"]:
        verdict.fail(
            "metrics", f"{view.promotion_grants} promotion grants counted, {ledger.rows['promotion_grants']} lots"
        )
    return {
        "operations": {"/".join(key): n for key, n in sorted(view.operations.items())},
        "value_moved": {f"{movement} {currency}": n for (movement, currency), n in sorted(view.value.items())},
        "value_not_counted": {
            f"{movement} {currency}": n - view.value[(movement, currency)]
            for (movement, currency), n in sorted(ledger.value.items())
        },
        "promotion_grants": {"counted": view.promotion_grants, "in_ledger": ledger.rows["promotion_grants"]},
        "counts_lost_to_kills": lost,
    }
