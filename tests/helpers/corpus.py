"""The replay corpus: every recorded history under tests/replay/histories, and how to load one."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory

from incentives.domain.models import wallet_id

HISTORIES = sorted((Path(__file__).parents[1] / "replay" / "histories").rglob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(wallet_id(path.stem), path.read_text())
