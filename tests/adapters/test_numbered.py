"""`numbered`: a statement written with `:name` placeholders pairs each value with its name."""

from __future__ import annotations

import pytest

from incentives.adapters.db import numbered


def test_names_become_numbers_in_order_of_first_use_and_casts_stay() -> None:
    sql, values = numbered("SELECT :b::int, :a, :b, 'x::y', t.a::text FROM t", {"a": 1, "b": 2})
    assert sql == "SELECT $1::int, $2, $1, 'x::y', t.a::text FROM t"
    assert values == [2, 1]


@pytest.mark.parametrize("params", [{"a": 1}, {"a": 1, "b": 2, "c": 3}], ids=["a value missing", "a value unused"])
def test_a_name_without_a_value_or_a_value_without_a_name_is_an_error(params: dict[str, object]) -> None:
    with pytest.raises(AssertionError, match="placeholders"):
        numbered("SELECT :a, :b", params)
