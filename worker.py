"""The worker entry point: `incentives worker` or `python worker.py`.

The worker itself is assembled in `incentives.app.worker` (one way, shared by the CLI, the demo,
the tests and the benchmarks); this file keeps the top level's promise that the roles are visible.
"""

from __future__ import annotations

import asyncio

from incentives.adapters.settings import Settings
from incentives.app.worker import build_worker, run_worker

__all__ = ["build_worker", "run_worker"]

if __name__ == "__main__":
    asyncio.run(run_worker(Settings()))
