"""A promotion's spec file (YAML or JSON) into `PromotionTerms`, and its audience into customer ids.

Every error is an `InvalidSpec` naming the field's path in the file (`budget.pool.amount`,
`audience.customers[3]`) and why; nothing is started. The text is read by `spec_documents`
(nesting deeper than 20 levels, a key given twice, YAML anchors, aliases and tags are refused
there). YAML plain scalars are read as text (no YAML floats, integers or timestamps):
`amount: 10.10` is exactly 10.10, never a binary float, and an instant keeps the time zone it was
written with, which must be there. In JSON, amounts are strings ("10.00") and whole numbers may
be numbers.

Keys (more may be added; none renamed):

    id, name, kind (credit | coupon), currency
    value:    {amount} for a credit; {percent, cap} or {amount} for a coupon; plus min_order, uses
    validity: {expires_after | expires_at, remind_before, effective_after}
    budget:   {amount, max_grants, per_customer, pool: {id, amount}}
    audience: {file} (relative to the spec file) or {customers: [...]}
    schedule: {starts_at, ends_at}, each optional: without starts_at the promotion starts when it
              is started; without ends_at it has no end of its own (it ends when its last lot closes)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from incentives.domain.errors import InvalidCombination, InvalidInput, InvalidText
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
from incentives.domain.spec_documents import InvalidSpec, key_name, load_document
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
    starts_at: Text | None = None
    ends_at: Text | None = None


class _Spec(_Shape):
    id: Text
    name: Text
    kind: Literal["credit", "coupon"]
    value: _Value
    currency: Text
    validity: _Validity
    budget: _Budget
    audience: _Audience
    schedule: _Schedule = _Schedule()


# -- reading --------------------------------------------------------------------------------------


def parse_spec(text: str, *, json_file: bool = False) -> PromotionSpec:
    """A spec file's text as `PromotionSpec`, or the first error as an `InvalidSpec` naming the
    spec's own field (`currency`, never the command line's `--currency`)."""
    try:
        return _parse(text, json_file=json_file)
    except InvalidSpec:
        raise
    except InvalidInput as error:
        raise InvalidSpec(_SPEC_FIELDS.get(error.field, error.field), error.reason) from error


def _parse(text: str, *, json_file: bool) -> PromotionSpec:
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
        text += f"[{part}]" if isinstance(part, int) else (f".{key_name(part)}" if text else key_name(part))
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
    name = _name(shape.name)
    currency = check_currency(shape.currency, "currency")
    try:
        amount, coupon = _value(shape.kind, shape.value, currency)
        return PromotionTerms(
            promotion_id=promotion_id,
            name=name[:200],
            kind=shape.kind,
            currency=currency,
            amount=amount,
            coupon=coupon,
            validity=_validity(shape.validity),
            budget=_budget(shape.budget, currency),
            starts_at=_instant(shape.schedule.starts_at, "schedule.starts_at"),
            ends_at=_instant(shape.schedule.ends_at, "schedule.ends_at"),
        )
    except ValidationError as error:
        raise _value_error(error) from None


def _instant(text: str | None, field: str) -> datetime | None:
    return None if text is None else parse_instant(text, field)


def _name(text: str) -> str:
    if not text.strip():
        raise InvalidText("name", "is blank: give the promotion a name people will recognise")
    return check_reason(text, "name")


# The terms' models name their fields as a Python caller does; a spec names them by their path.
_SPEC_FIELDS = {
    "promotion_id": "id",
    "pool_id": "budget.pool.id",
    "amount_off": "value.amount",
    "percent_off": "value.percent",
    "cap": "value.cap",
    "min_order": "value.min_order",
    "uses": "value.uses",
    "starts_at": "schedule.starts_at",
    "ends_at": "schedule.ends_at",
}


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
            pool_id=check_promotion_id(budget.pool.id, "budget.pool.id", what="pool id"),
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
    """Customer ids from a CSV's lines, streamed (`audience_id` says how a line is read). The first
    bad line stops it, naming its number."""
    seen_any = False
    for number, line in enumerate(lines, start=1):
        if (customer := audience_id(line, number, field)) is not None:
            seen_any = True
            yield customer
    if not seen_any:
        raise InvalidSpec(field, NO_AUDIENCE_IDS)


NO_AUDIENCE_IDS = "holds no customer ids"


def audience_id(line: str, number: int, field: str) -> str | None:
    """Line `number` of an audience CSV: its customer id, the first field (RFC 4180; the other
    columns are ignored, and so are the spaces around it), or None for a blank line and for a
    header line (`customer_id`, `customer`, `customerid` or `id`, first, after any byte-order
    mark); `InvalidSpec` naming the line otherwise."""
    try:
        text = first_field(line.lstrip("\ufeff"))
        if not text or (number == 1 and text.lower() in AUDIENCE_HEADERS):
            return None
        check_id(text, field)
    except InvalidInput as error:
        raise InvalidSpec(field, f"line {number}: {error.reason}") from None
    return text


def first_field(line: str) -> str:
    """The first field of one CSV line (RFC 4180), without the spaces around it: a quoted field
    may hold commas and doubled quotes (`""`); it must close on its line."""
    if '"' not in line:  # the common case, and the quick one
        return line.split(",", 1)[0].strip(" \t\r\n")
    text = line.removesuffix("\n").removesuffix("\r").lstrip(" \t")
    if not text.startswith('"'):
        unquoted = text.split(",", 1)[0]
        if '"' in unquoted:
            raise InvalidText("field", "a quote inside an unquoted field: quote the whole field, doubling its quotes")
        return unquoted.strip(" \t")
    parts, position = [], 1
    while True:
        end = text.find('"', position)
        if end == -1:
            raise InvalidText("field", "a quote that does not close on its line (a field cannot span lines)")
        parts.append(text[position:end])
        if not text.startswith('"', end + 1):
            break
        parts.append('"')  # a doubled quote is one quote
        position = end + 2
    if text[end + 1 :].lstrip(" \t")[:1] not in ("", ","):
        raise InvalidText("field", "text after a closing quote: a quoted field ends at a comma or the line's end")
    return "".join(parts)
