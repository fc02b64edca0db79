"""Workflows with a careless edit each, for the tests that prove replay catches a breaking change.

In a module of their own, importing only workflow code: the sandbox imports the module that
defines a workflow, and re-importing a test module's drivers (asyncpg) inside it corrupts the
process (a later segfault in a live worker's activity).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from incentives.domain.messages import WalletClosed, WalletInput
    from incentives.domain.promotions import PromotionFigures, PromotionInput
    from workflows.promotion import PROMOTION_WORKFLOW, PromotionWorkflow
    from workflows.wallet import WALLET_WORKFLOW, WalletWorkflow


@workflow.defn(name=WALLET_WORKFLOW)
class WalletThatSleepsFirst(WalletWorkflow):
    """The wallet with one change a careless edit could make: a timer before loading its memory."""

    @workflow.run
    async def run(self, start: WalletInput) -> WalletClosed:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)


@workflow.defn(name=PROMOTION_WORKFLOW)
class PromotionThatSkipsOpening(PromotionWorkflow):
    """The promotion with a careless edit: it no longer records that it is scheduled."""

    @workflow.run
    async def run(self, start: PromotionInput) -> PromotionFigures:
        return await super().run(start)

    async def _record_state(self, *, write_report: bool = False) -> PromotionFigures | None:
        if self._progress.state == "scheduled":
            self._progress.recorded = (self._progress.state, self._progress.ends_at)
            return None
        return await super()._record_state(write_report=write_report)
