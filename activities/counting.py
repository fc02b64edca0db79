"""What the ledger decided, counted once its transaction is over (`incentives.adapters.metrics`
names the series).

An operation is counted per attempt, after its transaction: `applied` when it wrote, `replayed`
when its key was already there (the first result returned, nothing written), `refused` when a rule
said no (nothing written; `reason` is the refusal's class), `failed` when anything else went wrong
(the database, a timeout: Temporal retries it, and the retry is counted too). Value is counted
from the ledger rows the transaction wrote (`moved`, called where each is written), and only once
it has committed: a rolled-back attempt moved nothing. So the counters agree with the ledger,
except for an attempt whose process died between its commit and its count (its retry is then
counted as `replayed`); the chaos run checks exactly that bound.

A worker whose activities get `UNCOUNTED` counts nothing: how the cost of counting is measured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from temporalio.exceptions import ApplicationError

from incentives.adapters.metrics import MOVEMENTS, OPERATION_DURATION, OPERATIONS, PROMOTION_GRANTS, VALUE_MOVED
from incentives.domain.errors import REJECTIONS

OperationName = Literal["grant", "redeem", "reverse", "revoke"]


@dataclass
class _Decision:
    replayed: bool = False
    moves: list[tuple[str, str, int]] = field(default_factory=list)  # (movement, currency, minor units)


_deciding: ContextVar[_Decision | None] = ContextVar("incentives_ledger_decision", default=None)


def moved(entry_type: str, currency: str, amount: int) -> None:
    """A ledger row written by the transaction being counted (if one is: see `Meter.counted`)."""
    decision = _deciding.get()
    if decision is not None and amount:
        decision.moves.append((MOVEMENTS[entry_type], currency, abs(amount)))


def replayed() -> None:
    """The operation being counted found its key already there: it answers the first result."""
    decision = _deciding.get()
    if decision is not None:
        decision.replayed = True


@dataclass(frozen=True)
class Meter:
    """Counts what the ledger activities decide, or nothing when not `enabled`."""

    enabled: bool = True

    @contextmanager
    def counted(self, operation: OperationName | None) -> Iterator[None]:
        """Counts the block: an operation's outcome and duration (None: a clock transition, whose
        value moved is counted but which is no caller's operation), and its ledger rows' value,
        once the block has left its transaction."""
        if not self.enabled:
            yield
            return
        decision = _Decision()
        token = _deciding.set(decision)
        started = time.perf_counter()
        try:
            yield
        except ApplicationError as failure:
            refusal = failure.type if failure.non_retryable and failure.type in REJECTIONS else None
            self._count(operation, started, "refused" if refusal else "failed", refusal or "none")
            raise
        except Exception:
            self._count(operation, started, "failed", "none")
            raise
        else:
            self._count(operation, started, "replayed" if decision.replayed else "applied", "none")
            for movement, currency, amount in decision.moves:
                VALUE_MOVED.labels(movement, currency).inc(amount)
        finally:
            _deciding.reset(token)

    def moved_in_bulk(self, entry_type: str, currency: str | None, amount: int) -> None:
        """Value a set-based statement moved, once its transaction has committed."""
        if self.enabled and amount and currency is not None:
            VALUE_MOVED.labels(MOVEMENTS[entry_type], currency).inc(abs(amount))

    def granted_by_promotion(self, lots: int) -> None:
        if self.enabled and lots:
            PROMOTION_GRANTS.inc(lots)

    @staticmethod
    def _count(operation: OperationName | None, started: float, outcome: str, reason: str) -> None:
        if operation is None:
            return
        OPERATIONS.labels(operation, outcome, reason).inc()
        OPERATION_DURATION.labels(operation).observe(time.perf_counter() - started)


COUNTED = Meter()
UNCOUNTED = Meter(enabled=False)
