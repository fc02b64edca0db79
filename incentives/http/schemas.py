"""JSON Schemas the OpenAPI document states beyond the models' own: the rules of ids, the
`timeout` parameter, and a promotion spec's keys. Each states what the API checks, no more and no
less, so that a request the schema allows is read, and one it does not is refused (the fuzz test
holds both to it).
"""

from __future__ import annotations

import itertools
import string
from typing import Any

from incentives.app.client import DEFAULT_CALL_TIMEOUT
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import ID_MAX_LENGTH
from incentives.domain.money import check_currency
from incentives.domain.promotions import PROMOTION_ID_MAX_LENGTH
from incentives.domain.timeparse import format_duration
from incentives.http.operations import Parameter
from incentives.http.reading import MAX_TIMEOUT

ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": ID_MAX_LENGTH,
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@/-]*$",
}
PROMOTION_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": PROMOTION_ID_MAX_LENGTH,
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._/-]*$",
}


def _currencies() -> list[str]:
    """Every code `check_currency` takes, found by asking it of every three capital letters."""
    codes = []
    for code in ("".join(letters) for letters in itertools.product(string.ascii_uppercase, repeat=3)):
        try:
            codes.append(check_currency(code))
        except InvalidInput:
            continue
    return codes


CURRENCY_SCHEMA: dict[str, Any] = {"type": "string", "enum": _currencies(), "description": "an ISO 4217 code"}
# The request models' id fields, and the currency: their patterns are added to the models' schemas.
ID_FIELDS = ("lot_id", "customer_id", "order_id", "reversal_id", "coupon_lot_id", "promotion_id")
# A duration as the CLI takes it: an integer and a unit, or ISO 8601 without years or months
# (`incentives.domain.timeparse`; the API also refuses zero, `P`, `PT` and more than ten years).
DURATION_PATTERN = "^([0-9]+[smhdw]|P([0-9]+W)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?)$"

TIMEOUT = Parameter(
    "timeout",
    "query",
    {"type": "string", "pattern": DURATION_PATTERN},
    f"how long to wait for the engine's answer (default {format_duration(DEFAULT_CALL_TIMEOUT)}, at most "
    f"{format_duration(MAX_TIMEOUT)}; 5s, 2m, PT30S); past it, 504: the outcome is unknown, and the same "
    "request again is safe",
)

_TEXT: dict[str, Any] = {"type": "string"}
_WHOLE: dict[str, Any] = {"type": ["string", "integer"], "description": "a whole number, as text or a number"}
_AMOUNT: dict[str, Any] = {"type": "string", "description": 'a decimal in major units, such as "10.00"'}


def _mapping(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


# The keys of a spec file (README, "Starting a promotion"), in JSON.
PROMOTION_SPEC: dict[str, Any] = {
    **_mapping(
        {
            "id": PROMOTION_ID_SCHEMA,
            "name": _TEXT,
            "kind": {"type": "string", "enum": ["credit", "coupon"]},
            "value": _mapping(
                {"amount": _AMOUNT, "percent": _WHOLE, "cap": _AMOUNT, "min_order": _AMOUNT, "uses": _WHOLE}
            ),
            "currency": CURRENCY_SCHEMA,
            "validity": _mapping(
                {"expires_after": _TEXT, "expires_at": _TEXT, "effective_after": _TEXT, "remind_before": _TEXT}
            ),
            "budget": _mapping(
                {
                    "amount": _AMOUNT,
                    "max_grants": _WHOLE,
                    "per_customer": _WHOLE,
                    "pool": _mapping({"id": PROMOTION_ID_SCHEMA, "amount": _AMOUNT}, ("id", "amount")),
                },
                ("amount",),
            ),
            "audience": _mapping({"customers": {"type": "array", "items": ID_SCHEMA, "minItems": 1}}),
            "schedule": _mapping({"starts_at": _TEXT, "ends_at": _TEXT}),
        },
        ("id", "name", "kind", "value", "currency", "validity", "budget"),
    ),
    "title": "PromotionSpec",
    "description": "A spec file's keys, as JSON (README: Starting a promotion). As JSON, the audience is inline "
    "(`audience.customers`); uploaded, the `audience` part is the CSV and the spec leaves `audience` out.",
}
