"""Fixtures of the event tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from incentives.devstack.servers import EmbeddedNats, free_port


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of the test's own: killing or restarting it disturbs no other test."""
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
