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
from incentives.domain.promotion_spec import audience_ids, first_field, parse_spec
from incentives.domain.spec_documents import MAX_DEPTH, InvalidSpec

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


def spec_error(text: str, *, json_file: bool = False) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        parse_spec(text, json_file=json_file)
    return raised.value


class TestHostileDocuments:
    @pytest.mark.parametrize(
        ("text", "json_file"),
        [
            ("[" * 100_000, False),
            ("{a: " * 100_000, False),
            ("- " * 100_000 + "x\n", False),
            ("".join(" " * level + "a:\n" for level in range(1_400)), False),
            ("[" * 100_000, True),
            ('{"a": ' * 100_000, True),
        ],
        ids=["yaml-flow-list", "yaml-flow-map", "yaml-block-list", "yaml-block-map", "json-list", "json-object"],
    )
    def test_deep_nesting_is_refused_without_recursing(self, text: str, json_file: bool) -> None:
        error = spec_error(text, json_file=json_file)
        assert isinstance(error, InvalidSpec)
        assert str(error).startswith(f"spec: is nested deeper than {MAX_DEPTH} levels, at line ")

    @pytest.mark.parametrize("json_file", [False, True])
    def test_nesting_up_to_the_limit_is_read_and_past_it_refused(self, json_file: bool) -> None:
        def nested(depth: int) -> str:
            # The spec itself is the first level; `name` holds the rest.
            inner = "[" * (depth - 1) + '"x"' + "]" * (depth - 1)
            return json.dumps(BASE).replace('"Spring credit"', inner)

        assert str(spec_error(nested(MAX_DEPTH), json_file=json_file)) == "name: must be text"
        assert "nested deeper than" in str(spec_error(nested(MAX_DEPTH + 1), json_file=json_file))

    def test_anchors_and_aliases_are_refused_so_a_billion_laughs_is_not_expanded(self) -> None:
        laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
        )
        assert str(spec_error(laughs)) == (
            "spec: line 1: anchors (&) and aliases (*) are not allowed: write each value out"
        )
        assert "aliases" in str(spec_error("id: *x\n"))

    @pytest.mark.parametrize(
        "value", ["!!python/object:os.system x", "!!int 7", "!!timestamp 2027-13-45", "!!binary '%%%'", "!!set {a}"]
    )
    def test_yaml_tags_are_refused(self, value: str) -> None:
        error = spec_error(f"id: x\nname: {value}\n")
        assert isinstance(error, InvalidSpec)
        assert str(error).startswith("spec: line 2: the tag '!!")

    def test_keys_must_be_text(self) -> None:
        assert str(spec_error("id: x\ntrue: 1\n")) == "spec: line 2: the key 'true' must be text: quote it"
        assert str(spec_error("id: x\n? [a, b]\n: 1\n")).startswith("spec: line 2: a key must be text")

    def test_a_json_number_too_long_for_int_is_an_input_error(self) -> None:
        spec = json.dumps(with_("budget.max_grants", 0)).replace(": 0", ": " + "9" * 5_000)
        assert str(spec_error(spec, json_file=True)) == "spec: holds a number 5,000 digits long; at most 30"

    def test_a_second_yaml_document_is_refused(self) -> None:
        assert str(spec_error(yaml.safe_dump(BASE) + "---\nid: other\n")).startswith("spec: line ")


class TestDuplicateKeys:
    def test_a_key_given_twice_in_yaml_names_its_path_and_both_lines(self) -> None:
        text = yaml.safe_dump(BASE, sort_keys=False)
        lines = text.splitlines()
        assert lines[3] == "value:"
        text += "value:\n  amount: '1000.00'\n"
        assert str(spec_error(text)) == f"value: given twice, at lines 4 and {len(lines) + 1}"

    def test_a_nested_key_given_twice_in_yaml(self) -> None:
        text = yaml.safe_dump(BASE, sort_keys=False).replace(
            "    amount: '2000.00'\n", "    amount: '2.00'\n    amount: '2000.00'\n"
        )
        assert str(spec_error(text)).startswith("budget.pool.amount: given twice, at lines ")
        flow = "id: x\nvalue: {amount: '1.00', amount: '1000.00'}\n"
        assert str(spec_error(flow)) == "value.amount: given twice, on line 2"

    def test_a_key_given_twice_in_json_names_its_path_and_both_lines_whatever_its_escapes(self) -> None:
        text = json.dumps(BASE, indent=1).replace('"value": {', '"value": {\n  "\\u0061mount": "1000.00",', 1)
        error = spec_error(text, json_file=True)
        assert isinstance(error, InvalidSpec)
        assert str(error) == "value.amount: given twice, at lines 6 and 7"
        listed = json.dumps({**BASE, "audience": {"customers": [{"a": 1}]}})
        assert str(spec_error(listed.replace('{"a": 1}', '{"a": 1, "a": 2}'), json_file=True)).startswith(
            "audience.customers[0].a: given twice"
        )


class TestSpecFieldNames:
    def test_every_spec_error_is_an_invalid_spec_naming_the_spec_field(self) -> None:
        currency = spec_error(yaml.safe_dump(with_("currency", "usd")))
        assert isinstance(currency, InvalidSpec)
        assert currency.field == "currency"
        for spec, message in ERRORS:
            error = spec_error(yaml.safe_dump(spec))
            assert isinstance(error, InvalidSpec), message
            assert str(error).startswith(message)

    @pytest.mark.parametrize("value", ["spring 2027", "", "x" * 65, "spring:2027", "-spring"])
    def test_a_promotion_id_error_states_only_the_promotion_id_rule(self, value: str) -> None:
        message = str(spec_error(yaml.safe_dump(with_("id", value))))
        assert message.startswith("id: ")
        assert ": @" not in message, message
        assert "_ :" not in message, message
        assert "64" in message

    def test_a_pool_id_error_says_pool_id(self) -> None:
        message = str(spec_error(yaml.safe_dump(with_("budget.pool.id", "a b"))))
        assert message.startswith("budget.pool.id: 'a b' is not a pool id: at most 64 letters")

    @pytest.mark.parametrize("name", ["", "   "])
    def test_a_blank_name_has_its_own_message(self, name: str) -> None:
        assert str(spec_error(yaml.safe_dump(with_("name", name)))) == (
            "name: is blank: give the promotion a name people will recognise"
        )


class TestAudienceCsvFields:
    @pytest.mark.parametrize(
        ("line", "field"),
        [
            ("c1", "c1"),
            ("  c1  ,gold", "c1"),
            ('"c1",gold', "c1"),
            ('"c1" , gold', "c1"),
            ('"q,2",x', "q,2"),
            ('"a""b"', 'a"b'),
            ('""', ""),
            ('c1,"x"', "c1"),
            ("c1\r\n", "c1"),
        ],
    )
    def test_the_first_field_is_read_as_rfc_4180_says(self, line: str, field: str) -> None:
        assert first_field(line) == field

    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            ('c"1,x', "a quote inside an unquoted field"),
            ('"c1', "a quote that does not close on its line"),
            ('"c1"x,y', "text after a closing quote"),
        ],
    )
    def test_a_malformed_first_field_is_refused(self, line: str, reason: str) -> None:
        with pytest.raises(InvalidInput, match=reason):
            first_field(line)

    def test_a_quoted_field_is_one_id_and_its_errors_name_the_line(self) -> None:
        assert list(audience_ids(['"customer_id"\n', '"c1",gold\n', '"c2"\n'])) == ["c1", "c2"]
        with pytest.raises(InvalidSpec, match=r"^audience.file: line 2: 'q,2' is not an id"):
            list(audience_ids(["c1\n", '"q,2"\n']))
        with pytest.raises(InvalidSpec, match=r"^audience.file: line 3: a quote that does not close on its line"):
            list(audience_ids(["c1\n", "c2\n", '"c3\n', 'c4"\n']))
