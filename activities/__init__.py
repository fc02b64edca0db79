"""Activities: the only code that writes to Postgres."""

from activities.ledger import LedgerActivities

__all__ = ["LedgerActivities"]
