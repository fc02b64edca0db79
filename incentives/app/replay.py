"""Replaying saved workflow histories against the code at hand, as a worker of this code would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.domain.errors import InvalidInput
from workflows import WORKFLOWS


@dataclass(frozen=True)
class ReplayOutcome:
    path: Path
    events: int
    failure: str | None  # None: the code replays this history


def replayer() -> Replayer:
    """The workflows this code registers, decoded as the worker decodes them."""
    return Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)


def load_history(path: Path) -> WorkflowHistory:
    try:
        return WorkflowHistory.from_json(path.stem, path.read_text())
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInput(str(path), f"not a workflow history in JSON ({error})") from None


async def replay_files(paths: list[Path]) -> list[ReplayOutcome]:
    """Every file is read before any is replayed: a bad path is an input error, not a divergence."""
    histories = [(path, load_history(path)) for path in paths]
    outcomes = []
    for path, history in histories:
        result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
        failure = None if result.replay_failure is None else str(result.replay_failure)
        outcomes.append(ReplayOutcome(path, len(history.events), failure))
    return outcomes
