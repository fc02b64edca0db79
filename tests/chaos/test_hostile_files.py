"""The chaos run's hostile spec files and audiences: the base spec is valid, so a refusal is the
hostile value's doing; and each hostile id is refused through every file route."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.driver import BASE_SPEC, read_spec_files, refuse_hostile
from chaos.workload import HOSTILE_IDS, Op


def test_the_base_spec_and_a_plain_csv_are_accepted(tmp_path: Path) -> None:
    assert read_spec_files(tmp_path / "inline", BASE_SPEC) == ["c1"]
    assert read_spec_files(tmp_path / "csv", BASE_SPEC, csv="customer_id\nc2\nc3\n") == ["c2", "c3"]


@pytest.mark.parametrize("value", HOSTILE_IDS)
@pytest.mark.parametrize("where", ["spec", "audience", "customer_id", "order_id", "lot_id"])
def test_every_hostile_id_is_refused_through_every_route(tmp_path: Path, where: str, value: str) -> None:
    outcome = refuse_hostile(Op(1, "hostile", "c", {"where": where, "value": value}), tmp_path)
    assert outcome.status == "refused", outcome
