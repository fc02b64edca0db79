"""`incentives explain CUSTOMER`: where each lot's value went, row by row, and where a running
wallet's memory (a cache) differs from the ledger (the truth)."""

from __future__ import annotations

from datetime import datetime

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from incentives.adapters.db import Pool
from incentives.app.views import wallet_view
from incentives.domain.models import EntryType, LedgerEntry, Lot, Model, wallet_id
from incentives.domain.money import format_money
from workflows.wallet import WalletWorkflow


class Movement(Model):
    entry_id: int
    at: datetime
    entry_type: EntryType
    amount: int
    order_id: str | None
    reversal_id: str | None
    reason: str | None
    workflow_id: str | None
    run_id: str | None


class LotStory(Model):
    lot: Lot
    movements: list[Movement]


class MemoryDifference(Model):
    lot_id: str
    ledger: str
    wallet: str


class Explanation(Model):
    customer_id: str
    lots: list[LotStory]
    wallet_running: bool
    differences: list[MemoryDifference]


async def explain(pool: Pool, client: Client, customer_id: str) -> Explanation:
    view = await wallet_view(pool, customer_id, ledger_limit=None)
    stories = [LotStory(lot=lot, movements=_movements(view.ledger, lot.lot_id)) for lot in view.lots]
    memory = await _wallet_memory(client, customer_id)
    differences = [] if memory is None else _differences(view.lots, memory, customer_id)
    return Explanation(
        customer_id=customer_id, lots=stories, wallet_running=memory is not None, differences=differences
    )


def _movements(ledger: list[LedgerEntry], lot_id: str) -> list[Movement]:
    return [
        Movement(
            entry_id=entry.entry_id,
            at=entry.created_at,
            entry_type=entry.entry_type,
            amount=entry.amount,
            order_id=entry.order_id,
            reversal_id=entry.reversal_id,
            reason=entry.reason,
            workflow_id=entry.workflow_id,
            run_id=entry.run_id,
        )
        for entry in ledger
        if entry.lot_id == lot_id
    ]


async def _wallet_memory(client: Client, customer_id: str) -> list[Lot] | None:
    """The running wallet's lots (its `lots` query), or None when no wallet runs."""
    handle = client.get_workflow_handle_for(WalletWorkflow.run, wallet_id(customer_id))
    try:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return None
        return await handle.query(WalletWorkflow.lots)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _differences(ledger_lots: list[Lot], memory: list[Lot], customer_id: str) -> list[MemoryDifference]:
    """Lots whose clock the wallet keeps, live in either, compared on what the wallet acts on."""
    keeper = wallet_id(customer_id)
    live = {lot.lot_id: lot for lot in ledger_lots if lot.clock_kept_by(keeper) and lot.status in ("pending", "active")}
    remembered = {lot.lot_id: lot for lot in memory if lot.status in ("pending", "active")}
    differences = []
    for lot_id in sorted(live.keys() | remembered.keys()):
        truth, copy = live.get(lot_id), remembered.get(lot_id)
        if truth is None or copy is None or _state(truth) != _state(copy):
            differences.append(MemoryDifference(lot_id=lot_id, ledger=_shown(truth), wallet=_shown(copy)))
    return differences


def _state(lot: Lot) -> tuple[str, int, int | None]:
    return lot.status, lot.remaining, lot.uses_left


def _shown(lot: Lot | None) -> str:
    if lot is None:
        return "not live"
    if lot.kind == "coupon":
        return f"{lot.status}, {lot.uses_left} uses left"
    return f"{lot.status}, {format_money(lot.remaining, lot.currency)} left"
