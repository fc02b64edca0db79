"""`incentives history`: the timeline in a table; `--json` writes a history `incentives replay` accepts.
`incentives replay` refuses what is not one history (exit 2, in seconds, before replaying anything),
and never hands the SDK a history it would panic and hang on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.devstack.servers import TEMPORAL_BIN
from tests.cli.conftest import Cli, grant
from tests.helpers.builders import NewId
from workflows.registry import WORKFLOWS

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"
# 92 KB: twice is the 184 KB a tester fed in.
RECORDED = HISTORIES / "local_ledger_calls" / "wallet_continue_as_new_0.json"
# Well within what a person waits for: each of these took forever (or panicked) before.
REFUSED_WITHIN_S = 20.0
SECOND_RUN_STARTS = (
    f"event {len(json.loads(RECORDED.read_text())['events']) + 1} has id 1: a history's events are numbered"
)


async def test_history_prints_the_timeline_and_its_json_replays(cli: Cli, new_id: NewId, tmp_path: Path) -> None:
    customer, lot_id = new_id("c"), new_id("lot")
    assert (await cli(*grant(customer, lot_id, "--credit", "10.00"))).code == 0
    shown = await cli("history", customer)
    assert shown.code == 0, shown.err
    assert f"wallet:{customer}: 1 run(s)" in shown.out
    assert f"granted 10.00 USD lot {lot_id}" in shown.out
    raw = await cli("history", f"wallet:{customer}", "--json")
    saved = tmp_path / "history.json"
    saved.write_text(raw.out)
    replayed = await cli("replay", str(saved), f"wallet:{customer}")
    assert replayed.code == 0, replayed.out
    assert replayed.out.count("ok ") == 2
    unknown_run = await cli("history", f"wallet:{customer}", "--json", "--run", "nope")
    assert unknown_run.refused_with("--run: nope is not a run of this workflow")


async def test_history_json_replays_with_the_sdk_and_a_temporal_cli_export_replays_with_ours(
    cli: Cli, new_id: NewId, tmp_path: Path
) -> None:
    customer, lot_id = new_id("c"), new_id("lot")
    workflow_id = f"wallet:{customer}"
    assert (await cli(*grant(customer, lot_id, "--credit", "10.00"))).code == 0
    raw = await cli("history", workflow_id, "--json")
    ours = WorkflowHistory.from_json(workflow_id, raw.out)
    result = await Replayer(workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER).replay_workflow(ours)
    assert result.replay_failure is None
    exported = tmp_path / "exported.json"
    shown = await asyncio.to_thread(
        subprocess.run,
        [str(TEMPORAL_BIN), "workflow", "show", "--address", os.environ["TEMPORAL_ADDRESS"],
         "--workflow-id", workflow_id, "--output", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    exported.write_text(shown.stdout)
    replayed = await cli("replay", str(exported))
    assert replayed.code == 0, replayed.out
    assert replayed.out.count("ok ") == 1


def _events() -> list[object]:
    events: list[object] = json.loads(RECORDED.read_text())["events"]
    return events


def _repeated_to(size: int) -> dict[str, object]:
    events = _events()
    return {"events": events * (size // len(RECORDED.read_bytes()) + 1)}


def _history_file(document: Callable[[], object]) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "history.json"
        path.write_text(json.dumps(document()))
        return path

    return make


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


def _huge(tmp_path: Path) -> Path:
    with (tmp_path / "huge.json").open("wb") as file:
        file.truncate(65 * 1024 * 1024)
    return tmp_path / "huge.json"


def _text(tmp_path: Path) -> Path:
    (tmp_path / "notes.json").write_text("these are not the events you are looking for")
    return tmp_path / "notes.json"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_history_file(lambda: {"events": []}), "history.json: not a workflow history: it has no events"),
        (_history_file(lambda: _repeated_to(20_000_000)), SECOND_RUN_STARTS),
        (_history_file(lambda: {"events": _events() * 2}), SECOND_RUN_STARTS),
        (_history_file(lambda: {"events": [e for e in _events() for e in (e, e)]}), "event 2 has id 1"),
        (lambda tmp_path: tmp_path, "not a regular file (a directory, FIFO or device)"),
        (_fifo, "fifo: not a regular file (a directory, FIFO or device)"),
        (lambda tmp_path: Path("/dev/zero"), "/dev/zero: not a regular file (a directory, FIFO or device)"),
        (_huge, "huge.json: larger than 64 MiB: too large for one history"),
        (_text, "notes.json: not JSON (Expecting value: line 1 column 1 (char 0))"),
        (_history_file(lambda: {"workflow": "wallet:x"}), "a JSON object with a list of events is expected"),
    ],
    ids=[
        "no-events",
        "repeated-to-20MB",
        "twice",
        "each-event-twice",
        "directory",
        "fifo",
        "device",
        "huge",
        "text",
        "not-a-history",
    ],
)
async def test_replay_refuses_what_is_not_one_history_in_seconds(
    offline_cli: Cli, tmp_path: Path, make: Callable[[Path], Path], why: str
) -> None:
    """Every file is checked before any is replayed: a good one beside it replays nothing."""
    path = make(tmp_path)
    started = time.monotonic()
    result = await asyncio.wait_for(offline_cli("replay", str(RECORDED), str(path)), timeout=120)
    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert result.refused_with(f"incentives: error: {path}: "), result
    assert why in result.err


def test_replay_of_an_empty_history_exits_2_without_a_panic(tmp_path: Path) -> None:
    """The SDK's core panicked on it (a Rust backtrace on stderr), then the command hung."""
    path = tmp_path / "empty.json"
    path.write_text('{"events": []}')
    env = os.environ | {"INCENTIVES_HOME": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1", "RUST_BACKTRACE": "1"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "incentives"), "replay", str(path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"incentives: error: {path}: not a workflow history: it has no events\n"
