"""Spec files for CLI tests: a valid credit spec and its audience CSV in a directory, with changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml


def credit_spec(promotion_id: str, name: str, budget: str, /, **changes: object) -> dict[str, object]:
    """A valid credit promotion's spec, as its file's keys: 10.00 USD a customer, for 14 days; `changes`
    replace keys (the parameters are positional-only, so a change may name `budget` too)."""
    return {
        "id": promotion_id,
        "name": name,
        "kind": "credit",
        "value": {"amount": "10.00"},
        "currency": "USD",
        "validity": {"expires_after": "14d", "remind_before": "2d"},
        "budget": {"amount": budget},
        **changes,
    }


def write_spec(tmp_path: Path, promotion_id: str, customers: list[str], **changes: object) -> Path:
    now = datetime.now(UTC)
    schedule = {"starts_at": now.isoformat(), "ends_at": (now + timedelta(days=7)).isoformat()}
    defaults: dict[str, object] = {"audience": {"file": "audience.csv"}, "schedule": schedule}
    spec = credit_spec(promotion_id, "CLI test credit", "35.00", **(defaults | changes))
    (tmp_path / "audience.csv").write_text("customer_id\n" + "\n".join(customers) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
