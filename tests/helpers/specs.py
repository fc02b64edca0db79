"""Spec files for CLI tests: a valid credit spec and its audience CSV in a directory, with changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml


def write_spec(tmp_path: Path, promotion_id: str, customers: list[str], **changes: object) -> Path:
    now = datetime.now(UTC)
    spec: dict[str, object] = {
        "id": promotion_id,
        "name": "CLI test credit",
        "kind": "credit",
        "value": {"amount": "10.00"},
        "currency": "USD",
        "validity": {"expires_after": "14d", "remind_before": "2d"},
        "budget": {"amount": "35.00"},
        "audience": {"file": "audience.csv"},
        "schedule": {"starts_at": now.isoformat(), "ends_at": (now + timedelta(days=7)).isoformat()},
        **changes,
    }
    (tmp_path / "audience.csv").write_text("customer_id\n" + "\n".join(customers) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
