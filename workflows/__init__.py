"""Workflows: deterministic, replay-safe; they hold time and transitions, never money."""

from __future__ import annotations

from typing import Any

from workflows.promotion import PromotionWorkflow
from workflows.wallet import WalletWorkflow

WORKFLOWS: list[type[Any]] = [WalletWorkflow, PromotionWorkflow]
