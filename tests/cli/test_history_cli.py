"""`incentives history`: the timeline in a table; `--json` writes a history `incentives replay` accepts."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.devstack.servers import TEMPORAL_BIN
from tests.cli.conftest import Cli, grant
from tests.helpers.builders import NewId
from workflows.registry import WORKFLOWS


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
