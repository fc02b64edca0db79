"""Every workflow type the worker hosts and the replayer knows.

Not in `workflows/__init__.py`: the workflow sandbox re-imports a workflow's module, and so its
package, for every run it starts; a package that imported every workflow would make each new
wallet build the promotion workflow too.
"""

from __future__ import annotations

from typing import Any

from workflows.promotion import PromotionWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.wallet import WalletWorkflow

WORKFLOWS: list[type[Any]] = [WalletWorkflow, PromotionWorkflow, ReconcileWorkflow]
