"""Activities: the only code that writes value to Postgres. `all_activities` is what a worker registers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from incentives.adapters.db import Pool


def all_activities(pool: Pool) -> list[Callable[..., Any]]:
    return [*LedgerActivities(pool).activities(), *PromotionActivities(pool).activities()]
