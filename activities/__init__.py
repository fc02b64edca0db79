"""Activities: the only code that writes value to Postgres. `all_activities` is what a worker registers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.counting import COUNTED, Meter
from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from activities.reconcile import ReconcileActivities
from incentives.adapters.db import Pool


def all_activities(pool: Pool, meter: Meter = COUNTED) -> list[Callable[..., Any]]:
    """Every activity, counting what it decides with `meter`."""
    return [
        *LedgerActivities(pool, meter).activities(),
        *PromotionActivities(pool, meter).activities(),
        *ReconcileActivities(pool).activities(),
    ]
