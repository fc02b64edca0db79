"""Where the wallet's own code is restricted by the sandbox: the worker passes its module through
(one import for every wallet, see `incentives.app.worker.WORKFLOW_RUNNER`), and replay keeps the
full sandbox, so every recorded history replays the wallet with a clock read from its module
refused. A change that reads the clock in a recorded path fails CI here, not in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.worker import WORKFLOW_RUNNER
from tests.helpers.corpus import HISTORIES, load
from workflows.registry import WORKFLOWS

# What the wallet's module saw when it read the clock, one entry per replayed run.
_clock_reads: list[str] = []


class _ReadTheClockAsTheWalletModule(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        wallet_module_datetime = type(workflow.instance()).run.__globals__["datetime"]
        try:
            wallet_module_datetime.now()
            _clock_reads.append("read")
        except RestrictedWorkflowAccessError:
            _clock_reads.append("refused")
        return await super().execute_workflow(input)


class _Probe(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _ReadTheClockAsTheWalletModule


def _a_wallet_history() -> Path:
    return next(path for path in HISTORIES if path.parent.name == "first_call_loads")


async def _clock_read_under(runner: WorkflowRunner | None) -> str:
    _clock_reads.clear()
    options: dict[str, Any] = {"workflow_runner": runner} if runner is not None else {}
    probe = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER, interceptors=[_Probe()], **options)
    await probe.replay_workflow(load(_a_wallet_history()))
    return _clock_reads[0]


async def test_replay_refuses_a_clock_read_in_the_wallet_module() -> None:
    assert await _clock_read_under(None) == "refused"


async def test_the_worker_shares_the_wallet_module_so_only_replay_can_refuse() -> None:
    assert await _clock_read_under(WORKFLOW_RUNNER) == "read"
