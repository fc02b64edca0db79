"""Reading a request, within limits, into the app's models: path ids, query values, bodies.

Every refusal is an `InvalidInput` naming the field (a body field's path, a parameter's or a
header's name, or `body`), raised before anything is sent. Bodies are read up to a stated limit
(`Content-Length` checked first, then what arrives) and each chunk within `IDLE`: a body that
stops arriving is refused, not waited on. JSON bodies are parsed strictly: no key twice, no NaN or
Infinity, amounts integers only (never a float, a string or a boolean), instants and durations as
ISO 8601 strings, no field the model does not have.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import ClientDisconnect, Request

from incentives.app.client import DEFAULT_CALL_TIMEOUT
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import check_id, parse_whole, shown
from incentives.domain.promotions import check_promotion_id
from incentives.domain.spec_documents import key_name
from incentives.domain.timeparse import format_duration, parse_duration
from incentives.http.problems import InvalidRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

# A wallet operation's or a control's body: a revocation's reason is at most 500 characters, a
# grant a few hundred bytes; this leaves room and no more.
MAX_JSON_BYTES = 16 * 1024
# A body that sends nothing for this long is refused (a slow upload still streams: each chunk resets it).
IDLE = timedelta(seconds=30)
# The longest a caller may ask the API to wait for an answer (`timeout`): past it, a proxy would cut it.
MAX_TIMEOUT = timedelta(seconds=60)

_TYPE_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
    "int_type": "must be an integer (amounts are integer minor units: never a float, a string or a boolean)",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "datetime_type": "must be an ISO 8601 instant with a time zone, such as 2026-12-01T09:00:00Z",
    "datetime_parsing": "must be an ISO 8601 instant with a time zone, such as 2026-12-01T09:00:00Z",
    "timezone_aware": "must have a time zone, such as 2026-12-01T09:00:00Z or +01:00",
    "time_delta_type": "must be an ISO 8601 duration, such as P14D or PT2H",
    "time_delta_parsing": "must be an ISO 8601 duration, such as P14D or PT2H",
}


def path_id(value: str, field: str) -> str:
    return check_id(value, field)


def path_promotion_id(value: str, field: str = "id") -> str:
    return check_promotion_id(value, field)


def query_value(request: Request, name: str) -> str | None:
    """The query parameter `name`, given once, or None; given twice, nobody can tell which was meant."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidInput(name, "given more than once: give it once")
    return values[0] if values else None


def query_whole(request: Request, name: str, *, low: int, high: int, default: int) -> int:
    text = query_value(request, name)
    return default if text is None else parse_whole(text, name, low=low, high=high)


def deadline(request: Request) -> timedelta:
    """How long the caller waits for the engine's answer (`timeout`, default 30s); past it, 504."""
    text = query_value(request, "timeout")
    if text is None:
        return DEFAULT_CALL_TIMEOUT
    wait = parse_duration(text, "timeout")
    if wait > MAX_TIMEOUT:
        raise InvalidInput("timeout", f"{shown(text)} is longer than {format_duration(MAX_TIMEOUT)}")
    return wait


def media_type(request: Request) -> str | None:
    """The body's media type, lower case, without its parameters; None when not given."""
    header = request.headers.get("content-type")
    return None if header is None else header.split(";", 1)[0].strip().lower()


def require_json(request: Request) -> None:
    kind = media_type(request)
    if kind is not None and kind != "application/json" and not kind.endswith("+json"):
        raise InvalidInput("Content-Type", f"{shown(kind)} is not JSON: send application/json")


async def chunks(request: Request, *, limit: int, field: str = "body") -> AsyncIterator[bytes]:
    """The body as it arrives, refused past `limit` bytes, or when nothing arrives within `IDLE`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInput(field, f"is larger than {limit:,} bytes")
    stream, total = request.stream(), 0
    while True:
        try:
            async with asyncio.timeout(IDLE.total_seconds()):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise InvalidInput(field, f"nothing arrived for {format_duration(IDLE)}: the upload stalled") from None
        except ClientDisconnect:
            raise InvalidInput(field, "the client closed the connection before the body ended") from None
        total += len(chunk)
        if total > limit:
            raise InvalidInput(field, f"is larger than {limit:,} bytes")
        if chunk:
            yield chunk


async def body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in chunks(request, limit=limit)])


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def json_document(raw: bytes, field: str = "body") -> object:
    """`raw` as JSON, refusing what a strict reader refuses: not UTF-8, not JSON, a key given
    twice in one object (readers disagree on which wins), NaN or Infinity, nesting too deep."""
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as duplicate:
        raise InvalidInput(key_name(str(duplicate)), "given twice in one object: give it once") from None
    except RecursionError:
        raise InvalidInput(field, "is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidInput(field, "is not UTF-8 text") from None
    except ValueError as error:  # JSONDecodeError, a number too long for int, NaN or Infinity
        raise InvalidInput(field, f"is not JSON: {str(error).splitlines()[0][:200]}") from None


def model_from(raw: bytes, model: type[ModelT]) -> ModelT:
    """`raw` (JSON already checked by `json_document`) as `model`, strictly; every field at fault named."""
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        raise InvalidRequest([_field_error(detail) for detail in error.errors(include_url=False)]) from None


def _field_error(detail: ErrorDetails) -> tuple[str, str]:
    loc = [str(part) if isinstance(part, str) else f"[{part}]" for part in detail["loc"]]
    path = ".".join(loc).replace(".[", "[") or "body"
    raised = detail.get("ctx", {}).get("error")
    if isinstance(raised, InvalidInput):
        # A rule of the model: its own field name, under the path of the object it checks.
        if not loc or loc[-1] != raised.field:
            path = raised.field if path == "body" else f"{path}.{raised.field}"
        return path, raised.reason
    kind = detail["type"]
    if kind == "literal_error":
        return path, f"must be one of {detail.get('ctx', {}).get('expected', '')}"
    return path, _TYPE_MESSAGES.get(kind, detail["msg"])


async def json_model(request: Request, model: type[ModelT], *, limit: int = MAX_JSON_BYTES) -> ModelT:
    """A JSON body as `model`."""
    require_json(request)
    raw = await body(request, limit)
    json_document(raw)
    return model_from(raw, model)


async def customer_request(request: Request, model: type[ModelT], customer: str) -> ModelT:
    """A wallet operation's body, for the path's customer: `customer_id` may be left out (it is
    the path's); given, it must be the path's."""
    require_json(request)
    raw = await body(request, MAX_JSON_BYTES)
    document = json_document(raw)
    if isinstance(document, dict) and "customer_id" not in document:
        raw = json.dumps({**document, "customer_id": customer}).encode()
    parsed = model_from(raw, model)
    given = getattr(parsed, "customer_id", customer)
    if given != customer:
        raise InvalidInput("customer_id", f"{shown(given)} is not the path's customer, {shown(customer)}")
    return parsed
