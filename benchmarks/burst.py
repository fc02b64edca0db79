"""400 concurrent redeems on one wallet, as a checkout rush would send them, checked against the ledger.

Every call must end in one of three kinds of answer: a redemption, a business refusal, or
`OutcomeUnknown` (its deadline passed), which a retry with the same ids resolves. The wallet holds
credit for fewer orders than are sent, so refusals are part of the answer. Afterwards the ledger
is the judge: every order charged at most once, every redemption the callers were given equal to
the ledger's, every refused order absent from it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.client import Client

from benchmarks.measure import Figure
from incentives.adapters.db import Pool
from incentives.adapters.rows import redemption_from_row
from incentives.app import history
from incentives.app.client import IncentivesClient
from incentives.domain.errors import OutcomeUnknown, Rejected
from incentives.domain.models import GrantRequest, RedeemRequest, Redemption, wallet_id

ORDER_TOTAL = 100
# Credit for three orders in four: the rest are refused (NothingToRedeem).
CREDIT_SHARE = 0.75
# A checkout's own deadline: short enough that a rush can outlast it.
DEADLINE = timedelta(seconds=5)
RETRY_DEADLINE = timedelta(seconds=60)

Answer = Redemption | Rejected | OutcomeUnknown | Exception


@dataclass
class Burst:
    figure: Figure
    first: Counter[str] = field(default_factory=Counter)
    after_retry: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    ledger_calls: int = 0  # the wallet's redeem_together calls: redeems that arrived together went together

    def summary(self) -> str:
        first = ", ".join(f"{count} {kind}" for kind, count in sorted(self.first.items()))
        retried = ", ".join(f"{count} {kind}" for kind, count in sorted(self.after_retry.items())) or "none needed"
        verdict = (
            "every order charged at most once, every answer matches the ledger"
            if not self.problems
            else (f"{len(self.problems)} PROBLEMS: " + "; ".join(self.problems[:5]))
        )
        return (
            f"{self.figure.count} concurrent redeems on one wallet (deadline {DEADLINE.total_seconds():g} s), "
            f"{self.figure.per_second:.0f}/s, p50 {self.figure.p50_ms or 0:.0f} ms, p99 {self.figure.p99_ms or 0:.0f} ms\n"
            f"  first answers: {first}\n  the OutcomeUnknown ones retried with the same ids: {retried}\n"
            f"  ledger calls: {self.ledger_calls} for {self.figure.count} redeems (those waiting went together)\n"
            f"  ledger: {verdict}"
        )


def _kind(answer: Answer) -> str:
    return "redeemed" if isinstance(answer, Redemption) else type(answer).__name__


async def checkout_burst(
    wallets: IncentivesClient, pool: Pool, customer: str, count: int, temporal: Client | None = None
) -> Burst:
    """The rush; with `temporal`, also how many ledger calls the wallet made for it."""
    credit = int(count * ORDER_TOTAL * CREDIT_SHARE)
    lot = GrantRequest(lot_id=f"{customer}-credit", customer_id=customer, currency="USD", kind="credit", amount=credit)
    await wallets.grant(lot)
    orders = [
        RedeemRequest(customer_id=customer, order_id=f"{customer}-{i}", currency="USD", total=ORDER_TOTAL)
        for i in range(count)
    ]
    burst = Burst(Figure(f"{count} concurrent redeems, one wallet"))

    async def redeem(request: RedeemRequest, deadline: timedelta) -> Answer:
        t0 = time.perf_counter()
        try:
            return await wallets.redeem(request, timeout=deadline)
        except (Rejected, OutcomeUnknown) as answer:
            return answer
        except Exception as fourth_kind:  # what must never happen: counted and reported, not raised
            return fourth_kind
        finally:
            burst.figure.latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    answers = dict(zip(orders, await asyncio.gather(*(redeem(o, DEADLINE) for o in orders)), strict=True))
    burst.figure.seconds, burst.figure.count = time.perf_counter() - started, count
    burst.first.update(_kind(answer) for answer in answers.values())
    unknown = [order for order, answer in answers.items() if isinstance(answer, OutcomeUnknown)]
    for order in unknown:
        answers[order] = await redeem(order, RETRY_DEADLINE)
        burst.after_retry[_kind(answers[order])] += 1
    burst.figure.failures = sum(
        1 for answer in answers.values() if _kind(answer) not in ("redeemed", "NothingToRedeem")
    )
    burst.problems = await _against_the_ledger(pool, customer, answers)
    if temporal is not None:
        for _, run in await history.runs(temporal, wallet_id(customer)):
            burst.ledger_calls += history.ledger_calls(run).count("redeem_together")
    return burst


async def _against_the_ledger(pool: Pool, customer: str, answers: dict[RedeemRequest, Answer]) -> list[str]:
    """Each order charged at most once (its redeem rows add up to its one redemption's discount),
    each redemption a caller was given equal to the ledger's, each refused order absent from it."""
    rows = {r["order_id"]: r for r in await pool.fetch("SELECT * FROM redemptions WHERE customer_id = $1", customer)}
    charged = {
        r["order_id"]: -r["charged"]
        for r in await pool.fetch(
            """SELECT order_id, sum(amount_minor) AS charged FROM ledger_entries
               WHERE customer_id = $1 AND entry_type = 'redeem' GROUP BY order_id""",
            customer,
        )
    }
    problems = [
        f"order {order_id}: charged {amount}, redeemed {rows[order_id]['discount_minor'] if order_id in rows else 0}"
        for order_id, amount in charged.items()
        if order_id not in rows or rows[order_id]["discount_minor"] != amount
    ]
    for order, answer in answers.items():
        row = rows.get(order.order_id)
        if isinstance(answer, Redemption):
            if row is None or redemption_from_row(row) != answer:
                problems.append(f"order {order.order_id}: the answer differs from the ledger")
        elif row is not None:
            problems.append(f"order {order.order_id}: answered {_kind(answer)}, but the ledger charged it")
    return problems
