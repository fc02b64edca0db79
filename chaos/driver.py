"""Sends the plan's operations through the real clients, concurrently, retrying each with the same
ids until it is answered (a result or a refusal), while the stack suffers the plan's faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from chaos.stack import TASK_QUEUE, Stack
from chaos.workload import Op, Plan
from incentives.adapters.db import Pool
from incentives.adapters.failures import infrastructure_failure
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient
from incentives.app.spec_files import audience, read_spec
from incentives.domain.errors import InvalidInput, OutcomeUnknown, Rejected, Unavailable
from incentives.domain.models import (
    CouponTerms,
    GrantRequest,
    Model,
    RedeemRequest,
    ReverseRequest,
    RevokeRequest,
)
from incentives.domain.money import parse_amount
from incentives.domain.promotions import Budget, PoolTerms, PromotionTerms, Validity

Status = Literal["done", "rejected", "refused", "unresolved"]
POOL = PoolTerms(pool_id="chaos-pool", amount=15_000)
CALL_TIMEOUT = timedelta(seconds=8)
ANSWER_DEADLINE_S = 180.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    """How an operation was answered. `sent_at` (its first send) and `answered_at` bound when the
    engine decided it: a refusal is judged against the books as they stood in between."""

    op: Op
    status: Status
    request: Model | None
    result: dict[str, Any] | None = None
    rule: str | None = None
    attempts: int = 0
    sent_at: datetime = field(default_factory=_now)
    answered_at: datetime = field(default_factory=_now)


class Driver:
    def __init__(self, stack: Stack, temporal: Client, pool: Pool, plan: Plan, concurrency: int) -> None:
        self.stack, self.plan = stack, plan
        self.wallets = IncentivesClient(temporal, pool, task_queue=TASK_QUEUE, default_timeout=CALL_TIMEOUT)
        self.promotions = PromotionsClient(temporal, pool, task_queue=TASK_QUEUE, batch_size=4)
        self.requests: dict[int, Model] = {}
        self.terms: dict[str, PromotionTerms] = {}
        self.abandoned = Counter[str]()
        # The steps of a scripted sequence (close_then_reverse) before its last, answered like any op.
        self.steps: list[Outcome] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._fault_lock = asyncio.Lock()

    async def run(self) -> list[Outcome]:
        watchdog = asyncio.create_task(self._watch_worker())
        faults: list[asyncio.Task[None]] = []
        tasks = []
        try:
            for op in self.plan.ops:
                await self._slots.acquire()
                if op.index in self.plan.fault_at:
                    faults.append(asyncio.create_task(self._fault(self.plan.fault_at[op.index])))
                tasks.append(asyncio.create_task(self._one(op)))
            outcomes = list(await asyncio.gather(*tasks))
            await asyncio.gather(*faults)
        finally:
            watchdog.cancel()
        return self.steps + outcomes

    async def _one(self, op: Op) -> Outcome:
        try:
            return await self._send(op)
        finally:
            self._slots.release()

    async def _fault(self, kind: str) -> None:
        async with self._fault_lock:
            await self.stack.inject(kind)

    async def _watch_worker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            async with self._fault_lock:
                self.stack.keep_worker_alive()

    # -- one operation -----------------------------------------------------------------------------

    async def _send(self, op: Op) -> Outcome:
        if op.kind == "hostile":
            return refuse_hostile(op, self.stack.home / "hostile")
        if op.kind == "close_then_reverse":
            return await self._close_then_reverse(op)
        try:
            request = self._request(op)
        except (ValidationError, InvalidInput) as refused:
            return Outcome(op, "refused", None, rule=type(refused).__name__)
        return await self._until_answered(op, request, self._caller(op, request))

    def _request(self, op: Op) -> Model:
        """Built once; a duplicate re-sends the request of the operation it duplicates."""
        if op.duplicate_of is not None and op.duplicate_of in self.requests:
            request = self.requests[op.duplicate_of]
        else:
            request = _build(op, datetime.now(UTC))
        self.requests[op.index] = request
        if isinstance(request, PromotionTerms):
            self.terms.setdefault(request.promotion_id, request)
        return request

    def _caller(self, op: Op, request: Model) -> Callable[[timedelta], Awaitable[BaseModel | None]]:
        wallets, promotions = self.wallets, self.promotions
        if isinstance(request, GrantRequest):
            return lambda timeout: wallets.grant(request, timeout=timeout)
        if isinstance(request, RedeemRequest):
            return lambda timeout: wallets.redeem(request, timeout=timeout)
        if isinstance(request, ReverseRequest):
            return lambda timeout: wallets.reverse(request, timeout=timeout)
        if isinstance(request, RevokeRequest):
            return lambda timeout: wallets.revoke(request, timeout=timeout)
        if isinstance(request, PromotionTerms):
            audience = list(op.fields["audience"])  # type: ignore[call-overload]
            return lambda timeout: promotions.start(request, audience)
        action, promotion_id = str(op.fields["action"]), str(op.fields["promotion"])
        control = {"pause": promotions.pause, "resume": promotions.resume}
        if action in control:
            return lambda timeout: control[action](promotion_id, timeout=timeout)
        return lambda timeout: promotions.cancel(promotion_id, timeout=timeout)

    async def _until_answered(
        self, op: Op, request: Model, call: Callable[[timedelta], Awaitable[BaseModel | None]]
    ) -> Outcome:
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        attempts, backoff, sent_at = 0, 0.2, _now()
        while True:
            attempts += 1
            abandon = op.abandon_first and attempts == 1
            try:
                result = await call(timedelta(milliseconds=20) if abandon else CALL_TIMEOUT)
            except Rejected as rejected:
                return Outcome(
                    op, "rejected", request, rule=type(rejected).__name__, attempts=attempts, sent_at=sent_at
                )
            except (OutcomeUnknown, Unavailable, Exception) as error:
                if not isinstance(error, OutcomeUnknown | Unavailable) and infrastructure_failure(error) is None:
                    raise
                if abandon:
                    self.abandoned["client_abandoned"] += 1
                if time.monotonic() > deadline:
                    return Outcome(
                        op, "unresolved", request, rule=type(error).__name__, attempts=attempts, sent_at=sent_at
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            dumped = result.model_dump(mode="json") if result is not None else None
            return Outcome(op, "done", request, result=dumped, attempts=attempts, sent_at=sent_at)

    async def _close_then_reverse(self, op: Op) -> Outcome:
        """A one-customer promotion: its lot redeemed whole, the promotion cancelled with its
        outstanding lots revoked and closed, then the order reversed. Each step waits for the one
        before it; the reversal's outcome is this op's, the others are recorded as steps."""
        customer, amount = op.customer, int(str(op.fields["amount"]))
        promotion_id, order_id = f"chaos-closer-p{op.index}", f"o-closer-{op.index}"
        terms = _build(Op(op.index, "promotion", "", _closer_fields(promotion_id, amount)), datetime.now(UTC))
        assert isinstance(terms, PromotionTerms)
        self.terms[promotion_id] = terms
        start = await self._step(
            Op(op.index, "promotion", ""), terms, lambda _: self.promotions.start(terms, [customer])
        )
        if start.status == "done" and await self._reaches(promotion_id, "active"):
            redeem = RedeemRequest(customer_id=customer, order_id=order_id, currency="USD", total=amount)
            await self._step(Op(op.index, "redeem", customer), redeem, lambda t: self.wallets.redeem(redeem, timeout=t))
            cancel = Control(action="cancel", promotion=promotion_id)
            await self._step(
                Op(op.index, "control", ""),
                cancel,
                lambda t: self.promotions.cancel(promotion_id, revoke_outstanding=True, timeout=t),
            )
            await self._reaches(promotion_id, "closed")
        reverse = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=f"r-closer-{op.index}")
        return await self._until_answered(op, reverse, lambda t: self.wallets.reverse(reverse, timeout=t))

    async def _step(self, op: Op, request: Model, call: Callable[[timedelta], Awaitable[BaseModel | None]]) -> Outcome:
        outcome = await self._until_answered(op, request, call)
        self.steps.append(outcome)
        return outcome

    async def _reaches(self, promotion_id: str, state: str) -> bool:
        """Whether the promotion reaches `state` within the answer deadline (faults may slow it)."""
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        while time.monotonic() < deadline:
            with contextlib.suppress(Rejected):
                if (await self._retrying(lambda: self.promotions.status(promotion_id))).state == state:
                    return True
            await asyncio.sleep(0.5)
        return False

    async def settle(self) -> None:
        """Every paused promotion resumed, then every promotion done granting."""
        for promotion_id in self.terms:

            async def resume(p: str = promotion_id) -> object:
                return await self.promotions.resume(p, timeout=CALL_TIMEOUT)

            async def granting(p: str = promotion_id) -> bool:
                return (await self.promotions.status(p)).state in ("scheduled", "granting", "paused")

            with contextlib.suppress(Rejected):
                await self._retrying(resume)
            while True:
                if not await self._retrying(granting):
                    break
                await asyncio.sleep(0.5)

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        while True:
            try:
                return await call()
            except (OutcomeUnknown, Unavailable, Exception) as error:
                if isinstance(error, Rejected):
                    raise
                if not isinstance(error, OutcomeUnknown | Unavailable) and infrastructure_failure(error) is None:
                    raise
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


def _build(op: Op, now: datetime) -> Model:
    f = op.fields
    if op.kind == "grant":
        coupon = _coupon(f) if f["kind"] == "coupon" else None
        effective_in = f.get("effective_in")
        return GrantRequest(
            lot_id=str(f["lot_id"]), customer_id=op.customer, currency="USD", kind=f["kind"],
            amount=f.get("amount"), coupon=coupon,
            effective_at=now + effective_in if isinstance(effective_in, timedelta) else None,
            expires_in=f.get("expires_in"), remind_before=f.get("remind_before"),
        )  # fmt: skip
    if op.kind == "redeem":
        return RedeemRequest(customer_id=op.customer, **f)
    if op.kind == "reverse":
        return ReverseRequest(customer_id=op.customer, **f)
    if op.kind == "revoke":
        return RevokeRequest(customer_id=op.customer, **f)
    if op.kind == "promotion":
        return PromotionTerms(
            promotion_id=str(f["promotion"]), name="chaos", kind=f["kind"], currency="USD", amount=f.get("amount"),
            coupon=_coupon(f) if f["kind"] == "coupon" else None,
            validity=Validity(expires_after=f["expires_in"], effective_after=f.get("effective_in")),
            budget=Budget(amount=f["budget"], pool=POOL if f.get("pooled") else None),
            starts_at=now, ends_at=now + timedelta(hours=1),
        )  # fmt: skip
    return Control(action=str(f["action"]), promotion=str(f["promotion"]))


def _coupon(f: dict[str, Any]) -> CouponTerms:
    return CouponTerms(
        amount_off=f.get("amount_off"), percent_off=f.get("percent_off"), cap=f.get("cap"),
        min_order=f.get("min_order"), uses=f["uses"],
    )  # fmt: skip


def _closer_fields(promotion_id: str, amount: int) -> dict[str, object]:
    """A promotion for one customer, on its own budget (not the shared pool): its lot is the one."""
    return {
        "promotion": promotion_id,
        "kind": "credit",
        "amount": amount,
        "budget": amount,
        "expires_in": timedelta(hours=1),
        "pooled": False,
    }


class Control(Model):
    action: str
    promotion: str


# A valid spec: a hostile value put in one of its fields must be what makes it refused.
BASE_SPEC: dict[str, Any] = {
    "id": "chaos-hostile", "name": "hostile", "kind": "credit", "value": {"amount": "1.00"}, "currency": "USD",
    "validity": {"expires_after": "1d"}, "budget": {"amount": "10.00"}, "audience": {"customers": ["c1"]},
    "schedule": {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"},
}  # fmt: skip


def refuse_hostile(op: Op, scratch: Path) -> Outcome:
    """Hostile input through each way in, as a caller or a product team would send it (a model, an
    amount, a spec file, an audience inline or in a CSV file); every one must be refused before
    anything is written."""
    where, value = str(op.fields["where"]), str(op.fields["value"])
    attempts: list[Callable[[], object]] = []
    if where == "spec":
        attempts.append(lambda: read_spec_files(scratch / f"{op.index}-spec", {**BASE_SPEC, "id": value}))
    elif where == "audience":
        inline = {**BASE_SPEC, "audience": {"customers": [value]}}
        attempts.append(lambda: read_spec_files(scratch / f"{op.index}-inline", inline))
        if "\n" not in value and "\r" not in value:  # in a CSV, a line break separates two ids
            attempts.append(
                lambda: read_spec_files(scratch / f"{op.index}-csv", BASE_SPEC, csv=f"customer_id\n{value}\n")
            )
    elif where == "amount":
        attempts.append(lambda: parse_amount(value, "USD"))
    else:
        ids = {"customer_id": "c", "order_id": "o", "lot_id": "l", where: value}
        attempts.append(
            lambda: RedeemRequest(
                customer_id=ids["customer_id"],
                order_id=ids["order_id"],
                currency="USD",
                total=100,
                coupon_lot_id=ids["lot_id"],
            )
        )
    refusals = []
    for attempt in attempts:
        try:
            attempt()
        except (ValidationError, InvalidInput) as refused:
            refusals.append(type(refused).__name__)
        else:
            return Outcome(op, "done", None, rule="accepted hostile input")
    return Outcome(op, "refused", None, rule=refusals[0])


def read_spec_files(directory: Path, spec: dict[str, Any], csv: str | None = None) -> list[str]:
    """The spec (and its audience) as `incentives promotion check` reads them from files."""
    directory.mkdir(parents=True, exist_ok=True)
    if csv is not None:
        (directory / "audience.csv").write_text(csv, encoding="utf-8")
        spec = {**spec, "audience": {"file": "audience.csv"}}
    path = directory / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return list(audience(read_spec(path), path))
