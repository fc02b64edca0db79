"""`incentives history`: the timeline in a table; `--json` writes a history `incentives replay` accepts."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, grant
from tests.helpers.builders import NewId


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
