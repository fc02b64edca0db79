"""A promotion's spec file (YAML or JSON) into `PromotionTerms`, and its audience into customer ids.

Every error is an `InvalidInput` naming the field's path in the file (`budget.pool.amount`,
`audience.customers[3]`) and why; nothing is started. YAML plain scalars are read as text (no
YAML floats, integers or timestamps): `amount: 10.10` is exactly 10.10, never a binary float,
and an instant keeps the time zone it was written with, which must be there. In JSON, amounts are
strings ("10.00") and whole numbers may be numbers.

Keys (more may be added; none renamed):

    id, name, kind (credit | coupon), currency
    value:    {amount} for a credit; {percent, cap} or {amount} for a coupon; plus min_order, uses
    validity: {expires_after | expires_at, remind_before, effective_after}
    budget:   {amount, max_grants, per_customer, pool: {id, amount}}
    audience: {file} (relative to the spec file) or {customers: [...]}
    schedule: {starts_at, ends_at}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from incentives.domain.errors import InvalidCombination, InvalidId, InvalidInput
from incentives.domain.inputs import check_id, check_reason, parse_whole
from incentives.domain.models import CouponTerms, Model
from incentives.domain.money import check_currency, parse_amount
from incentives.domain.promotions import (
    MAX_PER_CUSTOMER,
    Budget,
    PoolTerms,
    PromotionTerms,
    Validity,
    check_promotion_id,
)
from incentives.domain.timeparse import parse_duration, parse_instant

MAX_GRANTS = 10**9
# A first line equal to one of these (any case) is a header, not a customer.
AUDIENCE_HEADERS = frozenset({"id", "customer", "customer_id", "customerid"})


class AudienceSource(Model):
    """Where the audience is: a file (as written, relative to the spec file) or inline ids."""

    file: str | None = None
    customers: list[str] | None = None


class PromotionSpec(Model):
    terms: PromotionTerms
    audience: AudienceSource


# -- the file's shape: keys and types, before any value is read ---------------------------------


def _whole_as_text(value: object) -> object:
    """JSON may give whole numbers as numbers; they are read like YAML's text. Never a bool."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Text = str
Whole = Annotated[str, BeforeValidator(_whole_as_text)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Value(_Shape):
    amount: Text | None = None
    percent: Whole | None = None
    cap: Text | None = None
    min_order: Text | None = None
    uses: Whole | None = None


class _Validity(_Shape):
    expires_after: Text | None = None
    expires_at: Text | None = None
    effective_after: Text | None = None
    remind_before: Text | None = None


class _Pool(_Shape):
    id: Text
    amount: Text


class _Budget(_Shape):
    amount: Text
    max_grants: Whole | None = None
    per_customer: Whole | None = None
    pool: _Pool | None = None


class _Audience(_Shape):
    file: Text | None = None
    customers: list[Text] | None = None


class _Schedule(_Shape):
    starts_at: Text
    ends_at: Text


class _Spec(_Shape):
    id: Text
    name: Text
    kind: Literal["credit", "coupon"]
    value: _Value
    currency: Text
    validity: _Validity
    budget: _Budget
    audience: _Audience
    schedule: _Schedule


# -- reading --------------------------------------------------------------------------------------


class _TextLoader(yaml.SafeLoader):
    """YAML whose plain scalars stay text, except booleans and nulls."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_document(text: str, *, json_file: bool) -> Any:
    """The file's structure; a syntax error names its line."""
    try:
        if json_file:
            return json.loads(text)
        return yaml.load(text, Loader=_TextLoader)
    except json.JSONDecodeError as error:
        raise InvalidInput("spec", f"not valid JSON: {error.msg} at line {error.lineno}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be read"
        raise InvalidInput("spec", f"not valid YAML: {problem}{where}") from None


def parse_spec(text: str, *, json_file: bool = False) -> PromotionSpec:
    """A spec file's text as `PromotionSpec`, or the first `InvalidInput` naming its field."""
    document = load_document(text, json_file=json_file)
    if not isinstance(document, dict):
        raise InvalidInput("spec", "must be a mapping of keys (id, name, kind, value, ...)")
    try:
        shape = _Spec.model_validate(document)
    except ValidationError as error:
        raise _shape_error(error) from None
    return PromotionSpec(terms=_terms(shape), audience=_audience(shape.audience))


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_AMOUNT_KEYS = {"amount", "cap", "min_order"}


def _shape_error(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    path, kind = _path(first["loc"]), first["type"]
    reasons = {
        "extra_forbidden": "unknown key",
        "missing": "is missing",
        "model_type": "must be a mapping of keys",
        "model_attributes_type": "must be a mapping of keys",
        "list_type": "must be a list",
        "literal_error": f"must be one of {first.get('ctx', {}).get('expected', '')}",
    }
    reason = reasons.get(kind)
    if reason is None and kind == "string_type":
        last = str(first["loc"][-1])
        reason = (
            'must be a decimal string in quotes, such as "10.00" (a number is read inexactly)'
            if last in _AMOUNT_KEYS and isinstance(first["input"], (int, float))
            else "must be text"
        )
    return InvalidInput(path, reason or first["msg"])


# -- values ---------------------------------------------------------------------------------------


def _terms(shape: _Spec) -> PromotionTerms:
    promotion_id = check_promotion_id(shape.id, "id")
    name = check_reason(shape.name, "name")
    currency = check_currency(shape.currency, "currency")
    amount, coupon = _value(shape.kind, shape.value, currency)
    try:
        return PromotionTerms(
            promotion_id=promotion_id,
            name=name[:200],
            kind=shape.kind,
            currency=currency,
            amount=amount,
            coupon=coupon,
            validity=_validity(shape.validity),
            budget=_budget(shape.budget, currency),
            starts_at=parse_instant(shape.schedule.starts_at, "schedule.starts_at"),
            ends_at=parse_instant(shape.schedule.ends_at, "schedule.ends_at"),
        )
    except ValidationError as error:
        raise _value_error(error) from None


def _value_error(error: ValidationError) -> InvalidInput:
    """A rule of the terms' models (raised as InvalidInput inside pydantic), or a bound."""
    first = error.errors()[0]
    raised = first.get("ctx", {}).get("error")
    if isinstance(raised, InvalidInput):
        return raised
    return InvalidInput(_path(first["loc"]), first["msg"])


def _value(kind: str, value: _Value, currency: str) -> tuple[int | None, CouponTerms | None]:
    def amount(text: str | None, path: str) -> int | None:
        return None if text is None else parse_amount(text, currency, path)

    if kind == "credit":
        if value.amount is None or any(v is not None for v in (value.percent, value.cap, value.min_order, value.uses)):
            raise InvalidCombination("value", "a credit gives an `amount` and nothing else")
        return amount(value.amount, "value.amount"), None
    if (value.amount is None) == (value.percent is None):
        raise InvalidCombination("value", "a coupon takes exactly one of `amount` or `percent` off")
    if value.cap is not None and value.percent is None:
        raise InvalidCombination("value.cap", "applies to `percent` coupons only")
    percent = None if value.percent is None else parse_whole(value.percent, "value.percent", low=1, high=100)
    uses = 1 if value.uses is None else parse_whole(value.uses, "value.uses", low=1, high=10_000)
    coupon = CouponTerms(
        amount_off=amount(value.amount, "value.amount"),
        percent_off=percent,
        cap=amount(value.cap, "value.cap"),
        min_order=amount(value.min_order, "value.min_order"),
        uses=uses,
    )
    return None, coupon


def _validity(validity: _Validity) -> Validity:
    def duration(text: str | None, key: str) -> timedelta | None:
        return None if text is None else parse_duration(text, f"validity.{key}")

    if (validity.expires_after is None) == (validity.expires_at is None):
        raise InvalidCombination("validity", "give expires_after or expires_at, not both and not neither")
    return Validity(
        expires_after=duration(validity.expires_after, "expires_after"),
        expires_at=None if validity.expires_at is None else parse_instant(validity.expires_at, "validity.expires_at"),
        effective_after=duration(validity.effective_after, "effective_after"),
        remind_before=duration(validity.remind_before, "remind_before"),
    )


def _budget(budget: _Budget, currency: str) -> Budget:
    pool = None
    if budget.pool is not None:
        pool = PoolTerms(
            pool_id=check_promotion_id(budget.pool.id, "budget.pool.id"),
            amount=parse_amount(budget.pool.amount, currency, "budget.pool.amount"),
        )
    max_grants = None
    if budget.max_grants is not None:
        max_grants = parse_whole(budget.max_grants, "budget.max_grants", low=1, high=MAX_GRANTS)
    per_customer = 1
    if budget.per_customer is not None:
        per_customer = parse_whole(budget.per_customer, "budget.per_customer", low=1, high=MAX_PER_CUSTOMER)
    return Budget(
        amount=parse_amount(budget.amount, currency, "budget.amount"),
        max_grants=max_grants,
        per_customer=per_customer,
        pool=pool,
    )


def _audience(audience: _Audience) -> AudienceSource:
    if (audience.file is None) == (audience.customers is None):
        raise InvalidCombination("audience", "give file or customers, not both and not neither")
    if audience.file is not None:
        if not audience.file.strip():
            raise InvalidInput("audience.file", "is empty: give the path of a CSV of customer ids")
        return AudienceSource(file=audience.file)
    customers = audience.customers or []
    if not customers:
        raise InvalidInput("audience.customers", "is empty: give at least one customer id")
    for index, customer in enumerate(customers):
        check_id(customer, f"audience.customers[{index}]")
    return AudienceSource(customers=customers)


# -- the audience file ----------------------------------------------------------------------------


def audience_ids(lines: Iterable[str], field: str = "audience.file") -> Iterator[str]:
    """Customer ids from a CSV's lines, streamed: one id a line (the first column when there are
    several), surrounding spaces and blank lines ignored, a byte-order mark and a header line
    (`customer_id`, `customer` or `id`) skipped. The first bad id stops it, naming its line."""
    seen_any = False
    for number, line in enumerate(lines, start=1):
        text = line.lstrip("\ufeff").split(",", 1)[0].strip().strip('"')
        if not text or (number == 1 and text.lower() in AUDIENCE_HEADERS):
            continue
        try:
            check_id(text, field)
        except InvalidId as error:
            raise InvalidId(field, f"line {number}: {error.reason}") from None
        seen_any = True
        yield text
    if not seen_any:
        raise InvalidInput(field, "holds no customer ids")
