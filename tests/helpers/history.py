"""Reading a wallet run's history back, for tests that assert on which ledger calls it made."""

from __future__ import annotations

from temporalio.client import Client

from incentives.app import history
from incentives.domain.models import wallet_id


async def ledger_calls(temporal: Client, customer_id: str, run_id: str | None = None) -> list[str]:
    """The activity types the wallet's run called, in order: local ones (from their markers) and regular ones."""
    return history.ledger_calls(
        await temporal.get_workflow_handle(wallet_id(customer_id), run_id=run_id).fetch_history()
    )
