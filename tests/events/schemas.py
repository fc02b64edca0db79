"""`./dev schemas`: writes the JSON Schema of every event type under docs/events/, from the models
that state them (`incentives.domain.events.event_schema`). The committed files are the contract;
`tests/events/test_schemas.py` fails when they and the models part."""

from __future__ import annotations

import json
from pathlib import Path

from incentives.domain.events import CLOUD_EVENT_TYPES, event_schema

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"


def schema_files() -> dict[Path, str]:
    """Each schema file's path and text, as `./dev schemas` writes it."""
    return {
        SCHEMAS / f"{cloud_type}.schema.json": json.dumps(event_schema(event_type), indent=2, sort_keys=True) + "\n"
        for event_type, (_, cloud_type) in CLOUD_EVENT_TYPES.items()
    }


if __name__ == "__main__":
    SCHEMAS.mkdir(parents=True, exist_ok=True)
    for path, text in schema_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(SCHEMAS.parents[1])}")
