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
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from incentives.domain.errors import PromotionConflict, to_failure
    from incentives.domain.promotions import (
        BATCHES_IN_FLIGHT,
        AudienceLoad,
        BatchOutcome,
        CancelRequest,
        ClockInput,
        ControlOutcome,
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
    from workflows.patches import PAIRED_BATCHES, REVOKE_AFTER_CANCEL, STEERABLE_BATCHES

PROMOTION_WORKFLOW = "Promotion"
_LIVE: tuple[PromotionState, ...] = ("scheduled", "granting", "paused", "active")
# States in which granting has stopped for good: the promotion closes once no lot holds value.
_WINDING_DOWN: tuple[PromotionState, ...] = ("ended", "cancelled", "failed")


@workflow.defn(name=PROMOTION_WORKFLOW)
class PromotionWorkflow:
    @workflow.init
    def __init__(self, start: PromotionInput) -> None:
        self._terms = start.terms
        self._batch_size = start.batch_size
        self._history_limit = start.history_limit
        self._progress = start.progress or PromotionProgress(
            promotion_id=start.terms.promotion_id, ends_at=start.terms.ends_at, loads=[start.audience]
        )
        self._wake = False
        # Controls number themselves in arrival order; the last one that changed the state is
        # remembered, so an earlier control's answer can say it was superseded.
        self._controls = 0
        self._changed_by: tuple[int, str] | None = None

    @workflow.run
    async def run(self, start: PromotionInput) -> PromotionFigures:
        progress = self._progress
        if not progress.opened:
            await activity_calls.open_promotion(OpenPromotion(terms=self._terms, audience=progress.loads[0]))
            progress.opened = True
        while True:
            await self._record_state()
            self._continue_as_new_if_long()
            if await self._step():
                continue
            if progress.state in _WINDING_DOWN and progress.holding == 0:
                return await self._close()
            await self._sleep()

    async def _step(self) -> bool:
        """Does the next piece of work that is due; False when there is none until a timer or an Update."""
        progress, now, end = self._progress, workflow.now(), self._end()
        if progress.state == "cancelled" and progress.revoke_outstanding:
            reason = f"promotion {progress.promotion_id} cancelled"
            await activity_calls.revoke_outstanding(
                RevokeOutstanding(promotion_id=progress.promotion_id, as_of=now, reason=reason)
            )
            progress.revoke_outstanding = False
            progress.next_due = now  # recount what holds value
            return True
        if progress.state == "scheduled" and (self._terms.starts_at is None or now >= self._terms.starts_at):
            progress.state = "granting"
            return True
        if progress.state in _LIVE and end is not None and now >= end:
            progress.state = "ended"
            await self._record_state(write_report=True)
            return True
        if progress.next_due is not None and progress.next_due <= now:
            await self._tick(now)
            return True
        if progress.state == "granting":
            if progress.next_position <= self._last_position():
                await self._grant_next(now)
            else:
                progress.state = "active"
            return True
        if progress.state == "active" and end is None and progress.holding == 0:
            # No end of its own: everyone is granted and the last lot has closed.
            progress.state = "ended"
            await self._record_state(write_report=True)
            return True
        return False

    def _end(self) -> datetime | None:
        """When granting stops: the promotion's end (which `extend` moves), or, without one, the
        last instant a lot could still be granted before a fixed expiry; None: no end of its own."""
        return self._terms.grant_until(self._progress.ends_at)

    async def _grant_next(self, now: datetime) -> None:
        """The next batch, and the ones after it in the same audience load (up to
        `BATCHES_IN_FLIGHT`) when the promotion is far enough from its limits that granting them at
        once cannot change who gets a lot."""
        progress = self._progress
        batches = [self._batch_at(progress.next_position, now)]
        load = self._load_of(progress.next_position)
        while (
            len(batches) < BATCHES_IN_FLIGHT
            and (after := batches[-1].last_position + 1) <= self._last_position()
            and self._load_of(after) == load
            and self._far_from_limits()
            and workflow.patched(PAIRED_BATCHES)
        ):
            batches.append(self._batch_at(after, now))
        if workflow.patched(STEERABLE_BATCHES):
            await self._grant_watched(batches)
            return
        outcomes = await asyncio.gather(*(activity_calls.grant_batch(batch) for batch in batches))
        for batch, outcome in zip(batches, outcomes, strict=True):
            self._granted(batch, outcome)

    async def _grant_watched(self, batches: list[GrantBatchInput]) -> None:
        """Runs the batches while watching the state: a control that stops granting (pause, cancel)
        cancels the batches still running, and waits until each has stopped (rolled back, or
        committed first). Only the batches that committed in order from the next position are
        counted now; a later one that committed is counted when it is granted again (a retry
        returns its recorded outcome), and the clock recounts what holds value meanwhile. A batch
        the database refuses for good stops granting: the promotion is `failed`, with the reason."""
        progress = self._progress
        handles = [activity_calls.start_grant_batch(batch) for batch in batches]
        await workflow.wait_condition(lambda: all(h.done() for h in handles) or progress.state != "granting")
        for handle in handles:
            if not handle.done():
                handle.cancel()
        in_order, failure = True, None
        for batch, handle in zip(batches, handles, strict=True):
            try:
                outcome = await activity_calls.batch_outcome(handle)
            except ApplicationError as refused:  # BatchRefused: retrying cannot help
                in_order, failure = False, failure or refused.message
                continue
            except ActivityError:  # cancelled by a control before it committed
                in_order = False
                continue
            if in_order:
                self._granted(batch, outcome)
        if not in_order:
            progress.next_due = workflow.now()  # recount what holds value from the ledger
        if failure is not None:
            self._fail(failure)

    def _fail(self, failure: str) -> None:
        progress = self._progress
        progress.failure = failure
        if progress.state in ("granting", "paused"):
            progress.state, progress.resume_to = "failed", None
        workflow.logger.error(
            "grant batch refused by the database; granting stops",
            extra={"promotion_id": progress.promotion_id, "failure": failure},
        )

    def _granted(self, batch: GrantBatchInput, outcome: BatchOutcome) -> None:
        progress = self._progress
        self._count(outcome, batch.last_position - batch.first_position + 1)
        progress.next_position = batch.last_position + 1
        if outcome.granted:
            progress.holding += outcome.granted
            first_due = self._first_due(batch.wave)
            progress.next_due = first_due if progress.next_due is None else min(progress.next_due, first_due)
        workflow.logger.info(
            "batch granted",
            extra={
                "promotion_id": progress.promotion_id,
                "last_position": batch.last_position,
                "granted": outcome.granted,
            },
        )

    def _load_of(self, position: int) -> AudienceLoad:
        return next(load for load in self._progress.loads if load.first_position + load.size > position)

    def _batch_at(self, first: int, now: datetime) -> GrantBatchInput:
        """The batch from audience position `first`, never past the end of its load; the load's
        wave (the instant its lots' validity counts from) is the first batch's `now`."""
        load = self._load_of(first)
        wave = self._progress.waves.setdefault(load.load_no, now)
        last = min(first + self._batch_size, load.first_position + load.size) - 1
        return GrantBatchInput(
            promotion_id=self._progress.promotion_id, first_position=first, last_position=last, wave=wave
        )

    def _far_from_limits(self) -> bool:
        """Whether the batches in flight together fit the promotion's limits whatever they grant,
        so the order they commit in cannot matter. A pool's room is shared with other promotions
        and unknown here: a pooled promotion grants one batch at a time."""
        budget, progress = self._terms.budget, self._progress
        if budget.pool is not None:
            return False
        rooms = [] if budget.max_grants is None else [budget.max_grants - progress.granted]
        if self._terms.grant_cost:
            rooms.append((budget.amount - progress.committed) // self._terms.grant_cost)
        needed = BATCHES_IN_FLIGHT * self._batch_size
        return min(rooms, default=needed) >= needed

    def _count(self, outcome: BatchOutcome, entries: int) -> None:
        progress = self._progress
        progress.processed += entries
        progress.granted += outcome.granted
        progress.committed += outcome.committed
        for reason, n in outcome.skipped.items():
            progress.skipped[reason] = progress.skipped.get(reason, 0) + n

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
        progress = self._progress
        outcome = await activity_calls.tick_clock(ClockInput(promotion_id=progress.promotion_id, as_of=now))
        progress.holding, progress.next_due = outcome.holding, outcome.next_due
        workflow.logger.info(
            "clock ticked", extra={"promotion_id": progress.promotion_id, **outcome.model_dump(mode="json")}
        )

    async def _close(self) -> PromotionFigures:
        self._progress.state = "closed"
        figures = await self._record_state(write_report=True)
        assert figures is not None, "write_report returns the figures"
        return figures

    async def _record_state(self, *, write_report: bool = False) -> PromotionFigures | None:
        progress = self._progress
        if progress.recorded == (progress.state, progress.ends_at) and not write_report:
            return None
        change = StateChange(
            promotion_id=progress.promotion_id,
            state=progress.state,
            ends_at=progress.ends_at,
            as_of=workflow.now(),
            write_report=write_report,
            failure=progress.failure,
        )
        figures = await activity_calls.record_state(change)
        progress.recorded = (change.state, change.ends_at)
        workflow.upsert_search_attributes([INCENTIVE_STATE.value_set(change.state)])
        return figures

    def _last_position(self) -> int:
        last = self._progress.loads[-1]
        return last.first_position + last.size - 1

    async def _sleep(self) -> None:
        progress, end = self._progress, self._end()
        deadlines = [d for d in (progress.next_due, end if progress.state in _LIVE else None) if d is not None]
        if progress.state == "scheduled" and self._terms.starts_at is not None:
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
                audience=self._progress.loads[0],
                batch_size=self._batch_size,
                history_limit=self._history_limit,
                progress=self._progress,
            )
        )

    # -- controls: each answers once its state is recorded in Postgres, saying what it did ---------

    def _numbered(self, action: str, *, changes_state: bool) -> int:
        self._controls += 1
        if changes_state:
            self._changed_by = (self._controls, action)
        return self._controls

    async def _answer(self, number: int, effect: str, *, changed_state: bool) -> ControlOutcome:
        """The control's answer once the state is recorded; if a later control changed the state
        this one set, the effect says which."""
        self._wake = True
        progress = self._progress
        await workflow.wait_condition(
            lambda: progress.recorded == (progress.state, progress.ends_at) and not progress.revoke_outstanding
        )
        if changed_state and self._changed_by is not None and self._changed_by[0] != number:
            effect = f"{effect}, then superseded by {self._changed_by[1]}"
        return ControlOutcome.model_validate({**progress.model_dump(), "effect": effect})

    def _refuse_unless(self, allowed: tuple[PromotionState, ...], action: str) -> None:
        progress = self._progress
        if progress.state not in allowed:
            raise to_failure(
                PromotionConflict(f"cannot {action} promotion {progress.promotion_id}: it is {progress.state}")
            )

    @workflow.update
    async def pause(self) -> ControlOutcome:
        progress = self._progress
        changes = progress.state != "paused"
        if changes:
            progress.resume_to, progress.state = progress.state, "paused"
        number = self._numbered("pause", changes_state=changes)
        return await self._answer(number, "paused" if changes else "already paused", changed_state=changes)

    @pause.validator
    def _validate_pause(self) -> None:
        self._refuse_unless(("scheduled", "granting", "active", "paused"), "pause")

    @workflow.update
    async def resume(self) -> ControlOutcome:
        progress = self._progress
        changes = progress.state == "paused"
        effect = "resumed" if changes else f"not paused (it was {progress.state}): nothing to resume"
        if changes:
            progress.state, progress.resume_to = progress.resume_to or "granting", None
        number = self._numbered("resume", changes_state=changes)
        return await self._answer(number, effect, changed_state=changes)

    @resume.validator
    def _validate_resume(self) -> None:
        self._refuse_unless(("paused", "scheduled", "granting", "active"), "resume")

    @workflow.update
    async def cancel(self, request: CancelRequest) -> ControlOutcome:
        progress = self._progress
        changes = progress.state != "cancelled"
        revoke = request.revoke_outstanding and (changes or workflow.patched(REVOKE_AFTER_CANCEL))
        effect = "cancelled" if changes else "already cancelled"
        if changes:
            progress.state, progress.resume_to = "cancelled", None
        if revoke:
            progress.revoke_outstanding = True
            effect += "; outstanding lots revoked"
        number = self._numbered("cancel", changes_state=changes)
        return await self._answer(number, effect, changed_state=changes)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        self._refuse_unless((*_LIVE, *_WINDING_DOWN), "cancel")

    @workflow.update
    async def add_audience(self, load: AudienceLoad) -> ControlOutcome:
        progress = self._progress
        new = all(known.load_no != load.load_no for known in progress.loads)
        changes = new and progress.state == "active"
        if new:
            progress.loads.append(load)
        if changes:
            progress.state = "granting"
        effect = f"added audience load {load.load_no}: {load.size:,} customers" if new else "already added"
        number = self._numbered("add-audience", changes_state=changes)
        return await self._answer(number, effect, changed_state=changes)

    @add_audience.validator
    def _validate_add_audience(self, load: AudienceLoad) -> None:
        progress = self._progress
        if any(known == load for known in progress.loads):
            return  # a retry: answered with the state as it is
        self._refuse_unless(_LIVE, "add an audience to")
        expected = self._last_position() + 1
        if load.load_no != len(progress.loads) or load.first_position != expected:
            raise to_failure(
                PromotionConflict(
                    f"audience load {load.load_no} starts at position {load.first_position}; "
                    f"expected load {len(progress.loads)} at {expected}"
                )
            )

    @workflow.update
    async def extend(self, request: Extend) -> ControlOutcome:
        progress = self._progress
        effect = (
            "end unchanged"
            if progress.ends_at == request.ends_at
            else f"end moved to {request.ends_at:%Y-%m-%dT%H:%M:%SZ}"
        )
        progress.ends_at = request.ends_at
        number = self._numbered("extend", changes_state=False)
        return await self._answer(number, effect, changed_state=False)

    @extend.validator
    def _validate_extend(self, request: Extend) -> None:
        self._refuse_unless(_LIVE, "change the end of")
        starts_at = self._terms.starts_at or workflow.now()
        if request.ends_at <= max(workflow.now(), starts_at):
            raise to_failure(PromotionConflict("ends_at must be in the future and after the promotion starts"))
        validity = self._terms.validity
        if validity.expires_at is not None and request.ends_at >= validity.expires_at:
            raise to_failure(
                PromotionConflict("ends_at must stay before validity.expires_at: lots must outlive granting")
            )
        if (
            validity.expires_at is not None
            and validity.effective_after is not None
            and request.ends_at + validity.effective_after >= validity.expires_at
        ):
            raise to_failure(
                PromotionConflict(
                    "ends_at must stay more than validity.effective_after before validity.expires_at: "
                    "a lot granted at the end must become usable before it expires"
                )
            )

    @workflow.query(name="progress")
    def progress(self) -> PromotionProgress:
        return self._progress
