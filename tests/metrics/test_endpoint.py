"""A worker whose metrics port cannot be had does not start unwatched: exit 2, naming the flag,
before it connects to anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

INCENTIVES = Path(sys.executable).parent / "incentives"


def test_a_busy_metrics_port_stops_the_worker_naming_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(INCENTIVES), "worker", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            # Nothing answers here: had it gone on to connect, it would have said so instead.
            env={"INCENTIVES_HOME": str(tmp_path), "TEMPORAL_ADDRESS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"},
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"incentives: error: --metrics-port: cannot serve metrics on 127.0.0.1:{port}: Address already in use "
        "(0 serves none)"
    ]
