"""The wallet: one long-lived workflow per customer (id `wallet:<customer>`), the single entry
point for every change to that customer's value.

- Operations are Updates (`grant`, `redeem`, `reverse`, `revoke`), serialized by one lock, each
  doing its one ledger call (a local activity). The first operation of a run started without
  memory (a new wallet, or one restarted after completing) loads the memory in that same call.
  Redeems that arrive while the ledger call is busy go to the ledger together, in one call that
  applies each in its own transaction, in arrival order (`_redeem_in_turn`).

The rule: **the ledger decides.** The wallet's memory is a cache that may be older than the
ledger: a promotion writes lots without waking the wallet, and a local activity's write can
outlive a workflow task the server discarded. So a validator refuses only what no ledger write it
has not seen could make untrue: a request for another customer, a lot id it saw granted with a
different payload (grants are permanent), revoking a lot it saw expire (expiry is final), and
reversing more than an order has left (unseen reversals only lower what is left). Everything else
goes to the ledger activity, which looks up the idempotency key first and decides under the
customer's lock; its refusal is the Update's failure. Each validator below says which case it is.
- Time is durable timers, for the lots whose clock the wallet keeps (those granted through it; a
  promotion keeps the clock of the lots it grants, and the ledger redeems those all the same): a
  pending lot activates at `effective_at`, a reminder is recorded once
  at `expires_at - remind_before`, what is left expires at `expires_at`.
- The wallet never computes value on its own: its lots are copies of what the ledger activities
  returned.
- It completes when no lot is pending or active and no order is inside the reversal window; any
  later operation starts a new run (update-with-start), which reloads its memory from the ledger.
- History stays bounded: when the server suggests it, and once every handler has finished, it
  continues-as-new carrying its memory (`WalletMemory`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from incentives.domain import rules
    from incentives.domain.errors import (
        LotConflict,
        LotNotRevocable,
        ReversalExceedsRedeemed,
        WrongWallet,
        to_failure,
    )
    from incentives.domain.messages import (
        FirstCall,
        GrantInput,
        Loaded,
        LoadWalletInput,
        LotTransition,
        RedeemAnswer,
        RedeemInput,
        RedeemTogether,
        ReverseInput,
        RevokeInput,
        WalletClosed,
        WalletInput,
        WalletMemory,
    )
    from incentives.domain.models import (
        GrantRequest,
        Lot,
        Model,
        RedeemRequest,
        Redemption,
        RedemptionSummary,
        Reversal,
        ReverseRequest,
        Revocation,
        RevokeRequest,
        wallet_id,
    )
    from incentives.domain.money import format_money
    from incentives.domain.recent_orders import RecentOrders
    from workflows import activity_calls
    from workflows.patches import BATCHED_REDEEMS, FIRST_CALL_LOADS

WALLET_WORKFLOW = "Wallet"
Arg = TypeVar("Arg", bound=Model)
Result = TypeVar("Result", bound=Model)
# Bounds the memory carried across continue-as-new (well under the 2 MB payload limit).
MAX_REMEMBERED_ORDERS = 1000
# Redeems in one ledger call: at ~2-5 ms each, well inside the call's 5 s deadline.
MAX_REDEEMS_TOGETHER = 50


@workflow.defn(name=WALLET_WORKFLOW)
class WalletWorkflow:
    @workflow.init
    def __init__(self, start: WalletInput) -> None:
        self._customer_id = start.customer_id
        self._window = start.reversal_window
        self._lots: dict[str, Lot] = {}
        self._digests: dict[str, str] = {}
        self._orders = RecentOrders(MAX_REMEMBERED_ORDERS)
        self._loaded = False
        # A ledger call is loading the memory (run() itself, or the run's first Update).
        self._loading = False
        self._lock = asyncio.Lock()
        # Redeems waiting for the ledger, in arrival order (see `_redeem_in_turn`).
        self._waiting: list[_WaitingRedeem] = []
        # The instant the main loop sleeps until; a handler that needs it sooner wakes it.
        self._planned: datetime | None = None
        self._wake = False
        if start.memory is not None:
            self._restore(start.memory)

    # -- the main loop: load, then timers, then complete or continue-as-new --------------------

    @workflow.run
    async def run(self, start: WalletInput) -> WalletClosed:
        if not self._loaded:
            await self._load()
        while True:
            async with self._lock:
                await self._apply_due()
            if self._idle():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._idle():
                    return WalletClosed(customer_id=self._customer_id, closed_at=workflow.now())
                continue
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    WalletInput(customer_id=self._customer_id, reversal_window=self._window, memory=self._memory())
                )
            self._planned = self._next_deadline()
            self._wake = False
            timeout = None if self._planned is None else max(self._planned - workflow.now(), timedelta(0))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or workflow.info().is_continue_as_new_suggested(), timeout=timeout
                )

    async def _load(self) -> None:
        """Loads the memory of a run started without it. Since FIRST_CALL_LOADS, the Update that
        started the run (update-with-start; its handler runs before this) loads it with its own
        ledger call, and this waits; it loads by itself for a run started without an Update, or
        when the ledger refused that Update (which loaded nothing)."""
        if workflow.patched(FIRST_CALL_LOADS):
            await workflow.wait_condition(lambda: self._loaded or not self._loading)
            if self._loaded:
                return
        self._loading = True
        self._restore(await activity_calls.load_wallet(self._load_input()))

    def _load_input(self) -> LoadWalletInput:
        since = workflow.now() - self._window
        return LoadWalletInput(customer_id=self._customer_id, redeemed_since=since, max_orders=MAX_REMEMBERED_ORDERS)

    async def _apply_due(self) -> None:
        now = workflow.now()
        for lot in sorted(self._lots.values(), key=lambda lot: lot.lot_id):
            transition = LotTransition(customer_id=self._customer_id, lot_id=lot.lot_id, as_of=now)
            ids = {"customer_id": self._customer_id, "lot_id": lot.lot_id, "promotion_id": lot.promotion_id}
            try:
                if lot.status == "pending" and lot.effective_at is not None and lot.effective_at <= now:
                    lot = self._remember(await activity_calls.activate_lot(transition))
                    workflow.logger.info("lot activated", extra=ids)
                if _reminder_due(lot, now):
                    lot = self._remember(await activity_calls.record_reminder(transition))
                    workflow.logger.info("reminder recorded", extra=ids)
                if lot.status in ("pending", "active") and lot.expires_at is not None and lot.expires_at <= now:
                    expired = await activity_calls.expire_lot(transition)
                    self._remember(expired.lot)
                    workflow.logger.info("lot expired", extra={**ids, "amount": expired.expiry.amount})
            except ApplicationError as refused:
                # The ledger refused a timer's transition: it knows better than this copy. Reload the
                # lot's truth on the next run instead of failing the wallet; say so loudly.
                workflow.logger.error(
                    "ledger refused a timed transition; dropping the lot from memory",
                    extra={**ids, "error_type": refused.type, "error": refused.message},
                )
                self._lots.pop(lot.lot_id, None)
        self._orders.forget_redeemed_until(now - self._window)

    def _next_deadline(self) -> datetime | None:
        deadlines: list[datetime] = []
        for lot in self._lots.values():
            if lot.status == "pending" and lot.effective_at is not None:
                deadlines.append(lot.effective_at)
            if lot.status in ("pending", "active"):
                if lot.expires_at is not None:
                    deadlines.append(lot.expires_at)
                remind_at = lot.remind_at
                if remind_at is not None and not lot.reminded and lot.has_value:
                    deadlines.append(remind_at)
        earliest_order = self._orders.earliest()
        if earliest_order is not None:
            deadlines.append(earliest_order + self._window)
        return min(deadlines, default=None)

    def _idle(self) -> bool:
        """Nothing left that time or a reversal could change: the run may complete."""
        return not self._orders and not any(lot.status in ("pending", "active") for lot in self._lots.values())

    # -- memory -----------------------------------------------------------------------------

    def _restore(self, memory: WalletMemory) -> None:
        for lot in memory.lots:
            self._lots[lot.lot_id] = lot
        self._digests.update(memory.grant_digests)
        for summary in memory.redemptions:
            self._remember_order(summary)
        self._loaded = True

    def _memory(self) -> WalletMemory:
        live = [lot for lot in self._lots.values() if lot.status in ("pending", "active")]
        return WalletMemory(
            customer_id=self._customer_id,
            lots=live,
            grant_digests={lot.lot_id: self._digests[lot.lot_id] for lot in live if lot.lot_id in self._digests},
            redemptions=list(self._orders),
        )

    def _remember(self, lot: Lot) -> Lot:
        if not lot.clock_kept_by(wallet_id(self._customer_id)):
            return lot  # a promotion's lot: its clock and its memory are the promotion's
        self._lots[lot.lot_id] = lot
        deadline = self._next_deadline()
        if deadline is not None and (self._planned is None or deadline < self._planned):
            self._wake = True
        return lot

    def _remember_order(self, summary: RedemptionSummary) -> None:
        """Remembers an order until its reversal window ends, fully reversed or not, so that a
        retried redeem or reversal is recognised. Only the most recent orders are kept: for older
        ones the validators defer to the ledger, which remembers everything."""
        self._orders.remember(summary)
        if self._planned is None:
            self._wake = True

    async def _ready(self) -> LoadWalletInput | None:
        """None once the memory is loaded. The first Update of a run started without memory, while
        nobody loads it yet, is given the load instead, to make in its own ledger call."""
        if not self._loaded and not self._loading and workflow.patched(FIRST_CALL_LOADS):
            self._loading = True
            return self._load_input()
        await workflow.wait_condition(lambda: self._loaded)
        return None

    async def _ledger_call(
        self,
        call: Callable[[Arg], Awaitable[Result]],
        first_call: Callable[[FirstCall[Arg]], Awaitable[Loaded[Result]]],
        arg: Arg,
        load: LoadWalletInput | None,
    ) -> Result:
        """The operation's ledger call; with `load`, the one that also loads the memory."""
        if load is None:
            return await call(arg)
        try:
            loaded = await first_call(FirstCall(operation=arg, load=load))
        except BaseException:
            self._loading = False  # refused: nothing written or loaded; run() loads instead
            raise
        self._restore(loaded.memory)
        return loaded.result

    def _check_customer(self, customer_id: str) -> None:
        if customer_id != self._customer_id:
            raise to_failure(WrongWallet(f"this is the wallet of {self._customer_id}, not of {customer_id}"))

    # -- updates: each method name is its wire name, held in histories; never rename one --

    @workflow.update
    async def grant(self, request: GrantRequest) -> Lot:
        load = await self._ready()
        async with self._lock:
            grant = GrantInput(request=request, granted_at=workflow.now())
            lot = await self._ledger_call(activity_calls.grant_lot, activity_calls.load_and_grant, grant, load)
            self._digests[lot.lot_id] = request.digest()
            return self._remember(lot)

    @grant.validator
    def _validate_grant(self, request: GrantRequest) -> None:
        """Refuses another customer's grant, and a lot id seen granted with another payload."""
        self._check_customer(request.customer_id)
        known = self._digests.get(request.lot_id)
        if known is not None and known != request.digest():
            raise to_failure(LotConflict(f"lot {request.lot_id} was already granted with a different payload"))

    @workflow.update
    async def redeem(self, request: RedeemRequest) -> Redemption:
        load = await self._ready()
        if load is None and workflow.patched(BATCHED_REDEEMS):
            return await self._redeem_in_turn(request)
        async with self._lock:
            redeem = RedeemInput(request=request, as_of=workflow.now())
            outcome = await self._ledger_call(activity_calls.redeem, activity_calls.load_and_redeem, redeem, load)
            for lot in outcome.lots:
                self._remember(lot)
            self._remember_order(outcome.order)
            return outcome.redemption

    async def _redeem_in_turn(self, request: RedeemRequest) -> Redemption:
        """Waits for the ledger like any operation; the redeem that gets it takes every redeem
        waiting by then (up to `MAX_REDEEMS_TOGETHER`, in arrival order) into one ledger call, and
        the others find their answer ready when their turn comes."""
        mine = _WaitingRedeem(request)
        self._waiting.append(mine)
        async with self._lock:
            if mine.answer is None:
                together = self._waiting[:MAX_REDEEMS_TOGETHER]
                del self._waiting[:MAX_REDEEMS_TOGETHER]
                try:
                    await self._redeem_together(together)
                except BaseException:
                    # This handler was cancelled (the ledger call itself retries until it answers):
                    # the others it took go back to the front of the line for the next turn.
                    self._waiting[:0] = [other for other in together if other is not mine and other.answer is None]
                    raise
        return mine.result()

    async def _redeem_together(self, waiting: list[_WaitingRedeem]) -> None:
        now = workflow.now()
        redeems = [RedeemInput(request=each.request, as_of=now) for each in waiting]
        answers = await activity_calls.redeem_together(RedeemTogether(redeems=redeems))
        for each, answer in zip(waiting, answers.answers, strict=True):
            if answer.outcome is not None:
                for lot in answer.outcome.lots:
                    self._remember(lot)
                self._remember_order(answer.outcome.order)
            each.answer = answer

    @redeem.validator
    def _validate_redeem(self, request: RedeemRequest) -> None:
        """Refuses only another customer's order. Whether there is anything to redeem is the
        ledger's call: a lot granted without waking this wallet, or a retry of an order charged
        by a write this memory never saw, would make a refusal from memory untrue."""
        self._check_customer(request.customer_id)

    @workflow.update
    async def reverse(self, request: ReverseRequest) -> Reversal:
        load = await self._ready()
        async with self._lock:
            reverse = ReverseInput(request=request, as_of=workflow.now())
            outcome = await self._ledger_call(activity_calls.reverse, activity_calls.load_and_reverse, reverse, load)
            for lot in outcome.lots:
                self._remember(lot)
            self._remember_order(outcome.order)
            return outcome.reversal

    @reverse.validator
    def _validate_reverse(self, request: ReverseRequest) -> None:
        """Refuses reversing more than the order has left: writes unseen here only lower that."""
        self._check_customer(request.customer_id)
        order = self._orders.get(request.order_id)
        if order is None or request.reversal_id in order.reversal_ids:
            return  # an older order, or a retry: the ledger decides
        wanted = request.amount if request.amount is not None else order.reversible
        if wanted > order.reversible:
            raise to_failure(
                ReversalExceedsRedeemed(
                    f"cannot reverse {format_money(wanted, order.currency)}: only "
                    f"{format_money(order.reversible, order.currency)} of order {request.order_id} is left to reverse"
                )
            )

    @workflow.update
    async def revoke(self, request: RevokeRequest) -> Revocation:
        load = await self._ready()
        async with self._lock:
            revoke = RevokeInput(request=request, as_of=workflow.now())
            outcome = await self._ledger_call(activity_calls.revoke_lot, activity_calls.load_and_revoke, revoke, load)
            self._remember(outcome.lot)
            self._wake = True
            return outcome.revocation

    @revoke.validator
    def _validate_revoke(self, request: RevokeRequest) -> None:
        """Refuses revoking a lot seen expired: expiry is final."""
        self._check_customer(request.customer_id)
        lot = self._lots.get(request.lot_id)
        if lot is not None and lot.status == "expired":
            raise to_failure(LotNotRevocable(f"lot {request.lot_id} has already expired"))

    # -- queries -------------------------------------------------------------------------------

    @workflow.query(name="lots")
    def lots(self) -> list[Lot]:
        return sorted(self._lots.values(), key=rules.credit_order)

    @workflow.query(name="balances")
    def balances(self) -> dict[str, int]:
        """Available now, per currency: the remaining value of the active credits."""
        now = workflow.now()
        totals: dict[str, int] = {}
        for lot in self._lots.values():
            if lot.kind == "credit" and rules.usable_at(lot, now):
                totals[lot.currency] = totals.get(lot.currency, 0) + lot.remaining
        return totals

    @workflow.query(name="recent_redemptions")
    def recent_redemptions(self) -> list[RedemptionSummary]:
        return sorted(self._orders, key=lambda summary: summary.redeemed_at)


@dataclass
class _WaitingRedeem:
    """A redeem waiting for the ledger, then its answer."""

    request: RedeemRequest
    answer: RedeemAnswer | None = None

    def result(self) -> Redemption:
        assert self.answer is not None, "answered by the ledger call that took this turn"
        if self.answer.refusal is not None:
            refusal = self.answer.refusal
            raise ApplicationError(refusal.message, type=refusal.type, non_retryable=True)
        assert self.answer.outcome is not None, "an answer is an outcome or a refusal"
        return self.answer.outcome.redemption


def _reminder_due(lot: Lot, now: datetime) -> bool:
    remind_at = lot.remind_at
    return (
        remind_at is not None
        and remind_at <= now
        and not lot.reminded
        and lot.has_value
        and lot.status in ("pending", "active")
        and (lot.expires_at is None or lot.expires_at > now)
    )
