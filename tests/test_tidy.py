"""Tidiness the linters cannot see, in TigerBeetle's spirit: checked on every run, ratcheted.

- No function is longer than 70 lines, tests included: one you can read at once. The few that are
  longer today are listed below; the list may only shrink (a listed function that got short must
  leave it).
- Value tables are written only by activities (and created by migrations): an INSERT, UPDATE or
  DELETE on one anywhere else in the project's code would bypass the ledger's guarantees.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 70
# "path:function" of the functions over the limit today. Shrink only.
LONG_FUNCTIONS: set[str] = set()
VALUE_TABLES = (
    "lots", "ledger_entries", "redemptions", "reversals", "outbox", "promotions", "promotion_pools", "promotion_batches",
)  # fmt: skip
# Staging tables (a promotion's audience) are input, not value: the client writes them (`incentives.app.audience`).
WRITERS = ("activities/", "migrations/")


def _project_files(*, tests: bool = False) -> list[Path]:
    """The project's Python files; with `tests`, the tests too (they plant faults in value tables on
    purpose, so the writers' rule leaves them out; the length rule does not)."""
    skip = {".venv", ".git", "node_modules"} | (set() if tests else {"tests"})
    return sorted(path for path in ROOT.rglob("*.py") if not skip.intersection(path.relative_to(ROOT).parts[:1]))


def _long_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
            continue
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
            found.add(f"{path.relative_to(ROOT)}:{node.name}")
    return found


def test_no_function_is_longer_than_70_lines_except_the_listed_ones() -> None:
    found = set().union(*(_long_functions(path) for path in _project_files(tests=True)))
    assert found - LONG_FUNCTIONS == set(), "shorten these, or split them into named steps"
    assert LONG_FUNCTIONS - found == set(), "these are short now: remove them from LONG_FUNCTIONS"


def test_only_activities_write_value_tables() -> None:
    write = re.compile(
        r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE)\s+(" + "|".join(VALUE_TABLES) + r")\b", re.IGNORECASE
    )
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _project_files()
        if not str(path.relative_to(ROOT)).startswith(WRITERS)
        for match in write.finditer(path.read_text())
    ]
    assert offenders == []
