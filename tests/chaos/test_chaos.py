"""The chaos run, short: a few hundred operations with every kind of fault, fixed seeds, 0 violations,
every kind of check exercised; and the model's rules on their own. (That each check can fail:
`test_checks_fail.py`.)"""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from chaos import model
from chaos.__main__ import run
from chaos.books import Snapshot
from chaos.replay import steps, timing
from chaos.stack import FAULTS


@pytest.mark.parametrize("seed", [7])
async def test_a_short_run_with_every_fault_ends_with_no_violation(seed: int) -> None:
    args = argparse.Namespace(ops=300, faults=2 * len(FAULTS), seed=seed, concurrency=12, json=None)
    summary = await run(args)
    assert summary["violations"] == []
    faults = Counter(summary["faults"])
    assert all(faults[kind] >= 2 for kind in FAULTS), faults
    assert summary["answers"].get("unresolved", 0) == 0
    assert summary["checked"]["redemptions against the model"] > 20
    assert summary["refusals"]  # refusals happened, and wrote nothing
    assert summary["checked"]["refusals justified by the model"] > 20
    assert summary["checked"]["activations"] > 0  # lots granted pending, through wallets and promotions
    assert summary["checked"]["promotion lots against the model"] > 0
    assert summary["checked"]["reversals after close"] >= 1  # the close-then-reverse sequence ran
    assert summary["checked"]["events delivered"] > 100  # the stream, checked against the outbox
    assert summary["checked"]["metrics against the ledger"] > 20  # the workers' counters, killed ones' too
    assert summary["metrics"]["operations"]["redeem/applied/none"] > 20


def test_a_pending_lot_is_usable_from_its_effective_time_and_a_redeem_activates_it() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    customer = model.Customer()
    customer.grant(model.Lot("later", "credit", "USD", 500, t0, t0 + timedelta(seconds=5), None), pending=True)
    with pytest.raises(model.Refused, match=r"^NothingToRedeem$"):
        customer.copy().redeem("o", "USD", 100, None, None, t0 + timedelta(seconds=4))
    assert customer.lots["later"].status == "pending"  # the copy was asked, not the customer
    assert customer.redeem("o", "USD", 100, None, None, t0 + timedelta(seconds=5)) == [("later", "credit", 100)]
    assert (customer.lots["later"].status, customer.lots["later"].activated_by_redeem) == ("active", True)


def test_the_model_follows_the_documented_order_of_use() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    customer = model.Customer()
    customer.grant(model.Lot("late", "credit", "USD", 500, t0, None, t0 + timedelta(days=9)), pending=False)
    customer.grant(model.Lot("soon", "credit", "USD", 300, t0, None, t0 + timedelta(days=2)), pending=False)
    customer.grant(model.Lot("never", "credit", "USD", 900, t0, None, None), pending=False)
    customer.grant(model.Lot("c", "coupon", "USD", 0, t0, None, None, percent_off=20, cap=150, uses=1), pending=False)
    applied = customer.redeem("o", "USD", 1000, "c", None, t0)
    assert applied == [("c", "coupon", 150), ("soon", "credit", 300), ("late", "credit", 500), ("never", "credit", 50)]
    restored, written_off = customer.reverse("o", 400, t0 + timedelta(days=5))
    assert restored == [("never", 50), ("late", 350)]
    assert written_off == []
    restored, written_off = customer.reverse("o", None, t0 + timedelta(days=5))
    assert restored == [("late", 150), ("soon", 300), ("c", 150)]
    assert written_off == ["soon"]  # past its expiry: written off again at once
    assert (customer.lots["c"].uses_left, customer.lots["soon"].status) == (1, "expired")
    with pytest.raises(model.Refused, match="ReversalExceedsRedeemed"):
        customer.reverse("o", None, t0)


def test_a_lot_the_model_used_and_the_ledger_did_not_is_reported_with_the_times_that_decide_it() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    snapshot = Snapshot(
        lots={}, ledger=[{"entry_type": "grant", "lot_id": "promo", "committed_at": t0}], redemptions={},
        reversals={}, events=Counter(), promotions={}, pools={}, unseen={("c", "o", "promo")},
    )  # fmt: skip
    stored = {"breakdown": [{"lot_id": "own", "amount": 212}], "created_at": t0 + timedelta(milliseconds=3)}
    redeem_row = {"customer_id": "c", "order_id": "o", "committed_at": t0 + timedelta(milliseconds=9)}
    applied = [("promo", "credit", 500), ("own", "credit", 212)]
    text = timing(snapshot, stored, redeem_row, applied)
    assert text == (
        f" (redeem began {t0 + timedelta(milliseconds=3)}, committed {t0 + timedelta(milliseconds=9)}; "
        f"promo granted {t0} (not seen))"
    )
    assert timing(snapshot, stored, redeem_row, [("own", "credit", 212)]) == ""


def test_a_grant_committed_while_a_redemption_ran_counts_before_it_only_if_its_credit_query_saw_it() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)

    def row(entry_id: int, entry_type: str, lot_id: str, order_id: str | None, ms: int) -> dict[str, object]:
        at = t0 + timedelta(milliseconds=ms)
        return {
            "entry_id": entry_id, "entry_type": entry_type, "customer_id": "c", "lot_id": lot_id,
            "order_id": order_id, "reversal_id": None, "created_at": at, "committed_at": at,
        }  # fmt: skip

    # The redemption began at 0 ms (its rows at 5 ms, committed then); the promotion's grant committed at 3 ms.
    ledger = [row(1, "redeem", "own", "o", 5), row(2, "grant", "promo", None, 3)]

    def order(unseen: set[tuple[str, str, str]]) -> list[str]:
        snapshot = Snapshot(
            lots={}, ledger=ledger, redemptions={}, reversals={}, events=Counter(), promotions={}, pools={},
            unseen=unseen,
        )  # fmt: skip
        ordered, _ = steps(snapshot)
        return [step.kind for step in ordered]

    assert order(set()) == ["grant", "redeem"]  # seen: it took effect first, and the model holds it to that
    assert order({("c", "o", "promo")}) == ["redeem", "grant"]  # not seen: after the redemption
