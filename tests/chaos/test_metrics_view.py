"""The chaos run's metrics check can fail: a count the ledger lacks, and a shortfall no replay
explains, are each reported; a kill's lost count, followed by its retry's replay, is not."""

from __future__ import annotations

from collections import Counter

from chaos.books import Verdict
from chaos.metrics_view import LedgerFigures, MetricsView, judge

ROWS = {"grant": 5, "redeem": 10, "reverse": 2, "revoke": 1, "promotion_grants": 100}


def view(redeems_applied: int, redeems_replayed: int = 0, redeemed: int = 900) -> MetricsView:
    return MetricsView(
        operations=Counter(
            {
                ("grant", "applied", "none"): 5,
                ("redeem", "applied", "none"): redeems_applied,
                ("redeem", "replayed", "none"): redeems_replayed,
                ("redeem", "refused", "NothingToRedeem"): 4,
                ("reverse", "applied", "none"): 2,
                ("revoke", "applied", "none"): 1,
            }
        ),
        value=Counter({("granted", "USD"): 5000, ("redeemed", "USD"): redeemed}),
        promotion_grants=100,
    )


LEDGER = LedgerFigures(rows=ROWS, value=Counter({("granted", "USD"): 5000, ("redeemed", "USD"): 1000}))


def test_counts_that_agree_with_the_ledger_pass() -> None:
    verdict = Verdict()
    comparison = judge(view(10), LEDGER, verdict)
    assert verdict.violations == []
    assert verdict.checked["metrics against the ledger"] == 18
    assert comparison["counts_lost_to_kills"]["redeem"] == 0
    assert comparison["value_not_counted"]["redeemed USD"] == 100


def test_a_count_lost_to_a_kill_and_replayed_by_its_retry_passes() -> None:
    verdict = Verdict()
    assert judge(view(9, redeems_replayed=1), LEDGER, verdict)["counts_lost_to_kills"]["redeem"] == 1
    assert verdict.violations == []


def test_an_applied_count_the_ledger_lacks_is_reported() -> None:
    verdict = Verdict()
    judge(view(11), LEDGER, verdict)
    assert verdict.by_check["metrics"] == ["11 redeems counted applied, 10 in the ledger"]


def test_a_shortfall_no_replay_explains_is_reported() -> None:
    verdict = Verdict()
    judge(view(8, redeems_replayed=1), LEDGER, verdict)
    assert verdict.by_check["metrics"] == ["2 redeems in the ledger never counted, only 1 replays"]


def test_value_counted_beyond_the_ledger_is_reported() -> None:
    verdict = Verdict()
    judge(view(10, redeemed=1001), LEDGER, verdict)
    assert verdict.by_check["metrics"] == ["1001 USD counted redeemed, 1000 in the ledger"]
