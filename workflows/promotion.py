"""The promotion: one workflow per promotion (id `promotion:<id>`) that drives its whole life.

scheduled → granting → active → ended → closed, with paused (granting stops, the clock does not)
and cancelled (granting stops; lots live out their validity unless revoked).

- Grants cost Postgres rows, not workflows: the audience is staged in Postgres and granted in
  batches of positions, one activity each (`activities.promotions.grant_batch`). No wallet is
  started; a lot is redeemable the moment its batch commits, because the ledger decides.
- The history holds positions and counts, never an audience: it stays bounded whatever the
  audience size, and the run continues-as-new past `MAX_HISTORY_EVENTS`.
- The promotion keeps its lots' clock: lots granted in one wave (the spec's audience, or one added
  audience) share their instants, so a few durable timers cover them all; each tick applies every
  transition due (activate, remind, expire) to all the lots due, set-based.
- Controls are Updates (`pause`, `resume`, `cancel`, `add_audience`, `extend`). A validator
  refuses what the state does not allow; the main loop does the work and records each state in
  Postgres before the Update answers.
- It writes its report when it ends (interim: lots may still hold value) and closes, with the
  final report, once no lot it granted holds value any more.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from incentives.domain.errors import PromotionConflict, to_failure
    from incentives.domain.promotions import (
        BATCHES_IN_FLIGHT,
        AudienceLoad,
        BatchOutcome,
        CancelRequest,
        ClockInput,
        Extend,
        GrantBatchInput,
        OpenPromotion,
        PromotionFigures,
        PromotionInput,
        PromotionProgress,
        PromotionState,
        RevokeOutstanding,
        StateChange,
    )
    from incentives.domain.search_attributes import INCENTIVE_STATE
    from workflows import activity_calls

PROMOTION_WORKFLOW = "Promotion"
# Runs past this patch grant two batches at once when far from their limits; runs before it, one.
PAIRED_BATCHES = "paired-batches"
_LIVE: tuple[PromotionState, ...] = ("scheduled", "granting", "paused", "active")


@workflow.defn(name=PROMOTION_WORKFLOW)
class PromotionWorkflow:
    @workflow.init
    def __init__(self, start: PromotionInput) -> None:
        self._terms = start.terms
        self._batch_size = start.batch_size
        self._history_limit = start.history_limit
        self._p = start.progress or PromotionProgress(
            promotion_id=start.terms.promotion_id, ends_at=start.terms.ends_at, loads=[start.audience]
        )
        self._wake = False

    @workflow.run
    async def run(self, start: PromotionInput) -> PromotionFigures:
        p = self._p
        if not p.opened:
            await activity_calls.open_promotion(OpenPromotion(terms=self._terms, audience=p.loads[0]))
            p.opened = True
        while True:
            await self._record_state()
            self._continue_as_new_if_long()
            if await self._step():
                continue
            if p.state in ("ended", "cancelled") and p.holding == 0:
                return await self._close()
            await self._sleep()

    async def _step(self) -> bool:
        """Does the next piece of work that is due; False when there is none until a timer or an Update."""
        p, now = self._p, workflow.now()
        if p.state == "cancelled" and p.revoke_outstanding:
            reason = f"promotion {p.promotion_id} cancelled"
            await activity_calls.revoke_outstanding(
                RevokeOutstanding(promotion_id=p.promotion_id, as_of=now, reason=reason)
            )
            p.revoke_outstanding = False
            p.next_due = now  # recount what holds value
            return True
        if p.state == "scheduled" and now >= self._terms.starts_at:
            p.state = "granting"
            return True
        if p.state in _LIVE and now >= p.ends_at:
            p.state = "ended"
            await self._record_state(write_report=True)
            return True
        if p.next_due is not None and p.next_due <= now:
            await self._tick(now)
            return True
        if p.state == "granting":
            if p.next_position <= self._last_position():
                await self._grant_next(now)
            else:
                p.state = "active"
            return True
        return False

    async def _grant_next(self, now: datetime) -> None:
        """The next batch, and the ones after it in the same audience load (up to
        `BATCHES_IN_FLIGHT`) when the promotion is far enough from its limits that granting them at
        once cannot change who gets a lot."""
        p = self._p
        batches = [self._batch_at(p.next_position, now)]
        load = self._load_of(p.next_position)
        while (
            len(batches) < BATCHES_IN_FLIGHT
            and (after := batches[-1].last_position + 1) <= self._last_position()
            and self._load_of(after) == load
            and self._far_from_limits()
            and workflow.patched(PAIRED_BATCHES)
        ):
            batches.append(self._batch_at(after, now))
        outcomes = await asyncio.gather(*(activity_calls.grant_batch(batch) for batch in batches))
        for batch, outcome in zip(batches, outcomes, strict=True):
            self._count(outcome, batch.last_position - batch.first_position + 1)
            p.next_position = batch.last_position + 1
            if outcome.granted:
                p.holding += outcome.granted
                first_due = self._first_due(batch.wave)
                p.next_due = first_due if p.next_due is None else min(p.next_due, first_due)
            workflow.logger.info(
                "batch granted",
                extra={
                    "promotion_id": p.promotion_id,
                    "last_position": batch.last_position,
                    "granted": outcome.granted,
                },
            )

    def _load_of(self, position: int) -> AudienceLoad:
        return next(load for load in self._p.loads if load.first_position + load.size > position)

    def _batch_at(self, first: int, now: datetime) -> GrantBatchInput:
        """The batch from audience position `first`, never past the end of its load; the load's
        wave (the instant its lots' validity counts from) is the first batch's `now`."""
        load = self._load_of(first)
        wave = self._p.waves.setdefault(load.load_no, now)
        last = min(first + self._batch_size, load.first_position + load.size) - 1
        return GrantBatchInput(promotion_id=self._p.promotion_id, first_position=first, last_position=last, wave=wave)

    def _far_from_limits(self) -> bool:
        """Whether the batches in flight together fit the promotion's limits whatever they grant,
        so the order they commit in cannot matter. A pool's room is shared with other promotions
        and unknown here: a pooled promotion grants one batch at a time."""
        budget, p = self._terms.budget, self._p
        if budget.pool is not None:
            return False
        rooms = [] if budget.max_grants is None else [budget.max_grants - p.granted]
        if self._terms.grant_cost:
            rooms.append((budget.amount - p.committed) // self._terms.grant_cost)
        needed = BATCHES_IN_FLIGHT * self._batch_size
        return min(rooms, default=needed) >= needed

    def _count(self, outcome: BatchOutcome, entries: int) -> None:
        p = self._p
        p.processed += entries
        p.granted += outcome.granted
        p.committed += outcome.committed
        for reason, n in outcome.skipped.items():
            p.skipped[reason] = p.skipped.get(reason, 0) + n

    def _first_due(self, wave: datetime) -> datetime:
        """The first instant a lot granted in `wave` needs its clock (every lot of a wave shares them)."""
        validity = self._terms.validity
        expires_at = validity.expires_at_for(wave)
        instants = [expires_at]
        if (effective_at := validity.effective_at(wave)) is not None:
            instants.append(effective_at)
        if validity.remind_before is not None:
            instants.append(expires_at - validity.remind_before)
        return min(instants)

    async def _tick(self, now: datetime) -> None:
        p = self._p
        outcome = await activity_calls.tick_clock(ClockInput(promotion_id=p.promotion_id, as_of=now))
        p.holding, p.next_due = outcome.holding, outcome.next_due
        workflow.logger.info("clock ticked", extra={"promotion_id": p.promotion_id, **outcome.model_dump(mode="json")})

    async def _close(self) -> PromotionFigures:
        self._p.state = "closed"
        figures = await self._record_state(write_report=True)
        assert figures is not None, "write_report returns the figures"
        return figures

    async def _record_state(self, *, write_report: bool = False) -> PromotionFigures | None:
        p = self._p
        if p.recorded == (p.state, p.ends_at) and not write_report:
            return None
        change = StateChange(
            promotion_id=p.promotion_id,
            state=p.state,
            ends_at=p.ends_at,
            as_of=workflow.now(),
            write_report=write_report,
        )
        figures = await activity_calls.record_state(change)
        p.recorded = (change.state, change.ends_at)
        workflow.upsert_search_attributes([INCENTIVE_STATE.value_set(change.state)])
        return figures

    def _last_position(self) -> int:
        last = self._p.loads[-1]
        return last.first_position + last.size - 1

    async def _sleep(self) -> None:
        p = self._p
        deadlines = [d for d in (p.next_due, p.ends_at if p.state in _LIVE else None) if d is not None]
        if p.state == "scheduled":
            deadlines.append(self._terms.starts_at)
        deadline = min(deadlines, default=None)
        timeout = None if deadline is None else max(deadline - workflow.now(), timedelta(0))
        self._wake = False
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._wake, timeout=timeout)

    def _continue_as_new_if_long(self) -> None:
        info = workflow.info()
        if info.get_current_history_length() < self._history_limit and not info.is_continue_as_new_suggested():
            return
        if not workflow.all_handlers_finished():
            return  # a control is waiting for its state to be recorded: the loop comes back here
        workflow.continue_as_new(
            PromotionInput(
                terms=self._terms,
                audience=self._p.loads[0],
                batch_size=self._batch_size,
                history_limit=self._history_limit,
                progress=self._p,
            )
        )

    # -- controls: each answers once its state is recorded in Postgres -----------------------------

    async def _settled(self) -> PromotionProgress:
        self._wake = True
        p = self._p
        await workflow.wait_condition(lambda: p.recorded == (p.state, p.ends_at) and not p.revoke_outstanding)
        return self._p

    def _refuse_unless(self, allowed: tuple[PromotionState, ...], action: str) -> None:
        if self._p.state not in allowed:
            raise to_failure(
                PromotionConflict(f"cannot {action} promotion {self._p.promotion_id}: it is {self._p.state}")
            )

    @workflow.update
    async def pause(self) -> PromotionProgress:
        p = self._p
        if p.state != "paused":
            p.resume_to, p.state = p.state, "paused"
        return await self._settled()

    @pause.validator
    def _validate_pause(self) -> None:
        self._refuse_unless(("scheduled", "granting", "active", "paused"), "pause")

    @workflow.update
    async def resume(self) -> PromotionProgress:
        p = self._p
        if p.state == "paused":
            p.state, p.resume_to = p.resume_to or "granting", None
        return await self._settled()

    @resume.validator
    def _validate_resume(self) -> None:
        self._refuse_unless(("paused", "scheduled", "granting", "active"), "resume")

    @workflow.update
    async def cancel(self, request: CancelRequest) -> PromotionProgress:
        p = self._p
        if p.state != "cancelled":
            p.state, p.resume_to = "cancelled", None
            p.revoke_outstanding = request.revoke_outstanding
        return await self._settled()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse_unless((*_LIVE, "ended", "cancelled"), "cancel")

    @workflow.update
    async def add_audience(self, load: AudienceLoad) -> PromotionProgress:
        p = self._p
        if all(known.load_no != load.load_no for known in p.loads):
            p.loads.append(load)
            if p.state == "active":
                p.state = "granting"
        return await self._settled()

    @add_audience.validator
    def _validate_add_audience(self, load: AudienceLoad) -> None:
        if any(known == load for known in self._p.loads):
            return  # a retry: answered with the state as it is
        self._refuse_unless(_LIVE, "add an audience to")
        expected = self._last_position() + 1
        if load.load_no != len(self._p.loads) or load.first_position != expected:
            raise to_failure(
                PromotionConflict(
                    f"audience load {load.load_no} starts at position {load.first_position}; "
                    f"expected load {len(self._p.loads)} at {expected}"
                )
            )

    @workflow.update
    async def extend(self, request: Extend) -> PromotionProgress:
        self._p.ends_at = request.ends_at
        return await self._settled()

    @extend.validator
    def _validate_extend(self, request: Extend) -> None:
        self._refuse_unless(_LIVE, "change the end of")
        if request.ends_at <= max(workflow.now(), self._terms.starts_at):
            raise to_failure(PromotionConflict("ends_at must be in the future and after the promotion starts"))
        expires_at = self._terms.validity.expires_at
        if expires_at is not None and request.ends_at >= expires_at:
            raise to_failure(
                PromotionConflict("ends_at must stay before validity.expires_at: lots must outlive granting")
            )

    @workflow.query(name="progress")
    def progress(self) -> PromotionProgress:
        return self._p
