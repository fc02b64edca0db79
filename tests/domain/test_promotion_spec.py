"""Spec files: every field's error names its path and says why; nothing else gets through."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from incentives.domain.errors import InvalidInput
from incentives.domain.promotion_spec import audience_ids, parse_spec

EXAMPLES = Path(__file__).parents[2] / "examples" / "promotions"

BASE: dict[str, Any] = {
    "id": "spring-2027",
    "name": "Spring credit",
    "kind": "credit",
    "value": {"amount": "10.00"},
    "currency": "USD",
    "validity": {"expires_after": "14d", "remind_before": "2d"},
    "budget": {"amount": "500.00", "max_grants": "40", "pool": {"id": "spring", "amount": "2000.00"}},
    "audience": {"customers": ["c1", "c2"]},
    "schedule": {"starts_at": "2027-03-20T09:00:00-04:00", "ends_at": "2027-04-20T23:59:59-04:00"},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with the value at a dotted `path` replaced (`...` deletes the key)."""
    spec: dict[str, Any] = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return spec


def error_of(spec: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as raised:
        parse_spec(yaml.safe_dump(spec))
    return str(raised.value)


class TestValid:
    def test_the_base_spec_reads_into_minor_units_and_utc(self) -> None:
        spec = parse_spec(yaml.safe_dump(BASE))
        terms = spec.terms
        assert (terms.amount, terms.budget.amount, terms.budget.max_grants) == (1000, 50_000, 40)
        assert terms.budget.pool is not None
        assert terms.budget.pool.amount == 200_000
        assert terms.validity.expires_after == timedelta(days=14)
        assert terms.starts_at == datetime(2027, 3, 20, 13, 0, tzinfo=UTC)
        assert spec.audience.customers == ["c1", "c2"]

    def test_plain_yaml_scalars_are_read_exactly_as_text(self) -> None:
        text = (
            yaml.safe_dump(BASE)
            .replace("'10.00'", "10.10")
            .replace("'2027-03-20T09:00:00-04:00'", "2027-03-20T09:00:00-04:00")
        )
        spec = parse_spec(text)
        assert spec.terms.amount == 1010
        assert spec.terms.starts_at == datetime(2027, 3, 20, 13, 0, tzinfo=UTC)

    def test_json_takes_whole_numbers_as_numbers_and_amounts_as_strings(self) -> None:
        spec = with_("budget.max_grants", 40)
        assert parse_spec(json.dumps(spec), json_file=True).terms.budget.max_grants == 40
        with pytest.raises(InvalidInput, match=r"^value\.amount: must be a decimal string in quotes"):
            parse_spec(json.dumps(with_("value.amount", 10.0)), json_file=True)

    def test_a_coupon_spec(self) -> None:
        spec = with_("value", {"percent": "20", "cap": "15.00", "min_order": "30.00", "uses": "2"})
        spec["kind"] = "coupon"
        coupon = parse_spec(yaml.safe_dump(spec)).terms.coupon
        assert coupon is not None
        assert (coupon.percent_off, coupon.cap, coupon.min_order, coupon.uses) == (20, 1500, 3000, 2)

    @pytest.mark.parametrize("name", ["spring-credit.yaml", "weekend-coupon.yaml"])
    def test_the_examples_are_valid(self, name: str) -> None:
        parse_spec((EXAMPLES / name).read_text())


ERRORS = [
    (with_("budget.amount", "0"), "budget.amount: '0' must be greater than zero"),
    (with_("budget.amount", "-5"), "budget.amount: '-5' is not a positive decimal amount such as 10.00"),
    (with_("budget.amont", "5"), "budget.amont: unknown key"),
    (with_("budget.amount", ...), "budget.amount: is missing"),
    (with_("value.amount", "10.001"), "value.amount: '10.001' has more decimals than USD allows"),
    (with_("currency", "usd"), "currency: 'usd' is not an ISO 4217 currency code"),
    (with_("kind", "voucher"), "kind: must be one of 'credit' or 'coupon'"),
    (with_("id", "spring:2027"), "id: 'spring:2027' is not a promotion id"),
    (with_("validity.expires_at", "2027-05-01T00:00:00Z"), "validity: give expires_after or expires_at, not both"),
    (with_("validity.expires_after", ...), "validity: give expires_after or expires_at, not both and not neither"),
    (with_("validity.expires_after", "14 days"), "validity.expires_after: '14 days' is not a duration"),
    (with_("validity.remind_before", "20d"), "validity.remind_before: must be shorter than the time the lot is usable"),
    (with_("schedule.starts_at", "2027-03-20T09:00:00"), "schedule.starts_at:"),
    (with_("schedule.ends_at", "2027-03-01T00:00:00Z"), "schedule.ends_at: must be after schedule.starts_at"),
    (with_("budget.max_grants", "0"), "budget.max_grants: '0' is not a whole number from 1 to 1000000000"),
    (with_("budget.per_customer", "101"), "budget.per_customer: '101' is not a whole number from 1 to 100"),
    (with_("budget.pool.amount", ...), "budget.pool.amount: is missing"),
    (with_("audience.customers", []), "audience.customers: is empty"),
    (with_("audience.customers", ["ok", "not ok"]), "audience.customers[1]: 'not ok' is not an id"),
    (with_("audience.file", "x.csv"), "audience: give file or customers, not both and not neither"),
    (with_("value.percent", "20"), "value: a credit gives an `amount` and nothing else"),
    (with_("budget", "lots"), "budget: must be a mapping of keys"),
]


class TestErrors:
    @pytest.mark.parametrize(
        ("spec", "message"), ERRORS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(ERRORS)]
    )
    def test_each_field_error_names_the_field_and_why(self, spec: dict[str, Any], message: str) -> None:
        assert error_of(spec).startswith(message)

    def test_bad_yaml_names_its_line(self) -> None:
        with pytest.raises(InvalidInput, match=r"^spec: not valid YAML: .* at line 2"):
            parse_spec("id: x\n- item\n")

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=20,
        )
    )
    def test_any_structure_is_refused_with_an_input_error_never_anything_else(self, document: object) -> None:
        with pytest.raises(InvalidInput):
            parse_spec(json.dumps(document), json_file=True)


class TestAudienceFile:
    def test_header_blank_lines_bom_spaces_and_extra_columns(self) -> None:
        lines = ["\ufeffcustomer_id\n", "c1\n", "\n", "  c2  \n", "c3,gold\n"]
        assert list(audience_ids(lines)) == ["c1", "c2", "c3"]

    def test_a_bad_id_names_its_line(self) -> None:
        with pytest.raises(InvalidInput, match=r"^audience.file: line 3: 'bad id' is not an id"):
            list(audience_ids(["c1\n", "c2\n", "bad id\n"]))

    def test_an_empty_file_is_refused(self) -> None:
        with pytest.raises(InvalidInput, match="holds no customer ids"):
            list(audience_ids(["customer_id\n", "\n"]))
