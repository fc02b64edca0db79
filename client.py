"""The client entry point: the `incentives` command, and `connect` for Python services.

    from client import connect
    async with connect() as incentives:
        await incentives.redeem(...)

The command lives in `incentives.cli`, the typed client in `incentives.app.client`; this file keeps
the top level's promise that the roles are visible, and the README's import working.
"""

from __future__ import annotations

from incentives.app.client import IncentivesClient, connect
from incentives.cli import main, run

__all__ = ["IncentivesClient", "connect", "main", "run"]

if __name__ == "__main__":
    main()
