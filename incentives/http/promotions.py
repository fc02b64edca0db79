"""The promotion routes: start one (its audience inline, or uploaded as a CSV that streams into the
same COPY staging `promotion start` uses), read them, and control them.

A start answers the Python client's `Started`: 201 when it started the promotion, 200 with
`Idempotent-Replayed: true` when the same spec (and audience) had started it already. A control
answers the `ControlOutcome` the Python client returns, whose `effect` says what it did: 201
(`already paused` when it found nothing to change); an audience the promotion already had (the
same CSV again) is 200 with `Idempotent-Replayed: true`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from incentives.app.api_keys import Scope
from incentives.app.audience_streams import csv_ids, csv_lines
from incentives.app.promotions import PromotionBooks, PromotionsClient, Started
from incentives.app.replays import audience_replayed, staged_loads
from incentives.app.spec_files import MAX_SPEC_BYTES
from incentives.app.spec_uploads import inline_spec, spec_for_upload
from incentives.domain.errors import InvalidInput
from incentives.domain.promotions import CancelRequest, ControlOutcome, Extend, PromotionStatus, PromotionTerms
from incentives.http.documents import AudienceRequest, PromotionReport
from incentives.http.multipart import MultipartReader, boundary_of
from incentives.http.operations import REPLAYED, Answer, Call, Operation, Parameter, model_response
from incentives.http.reading import MAX_JSON_BYTES, body, chunks, deadline, json_model, media_type, path_promotion_id
from incentives.http.schemas import PROMOTION_ID_SCHEMA, PROMOTION_SPEC, TIMEOUT
from incentives.http.sending import nothing_sent, sent

# An uploaded audience: a million ids of up to 128 characters fit. Memory holds one chunk of it.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
_STATUSES = TypeAdapter(list[PromotionStatus])

Control = Callable[[PromotionsClient, str, timedelta], Awaitable[ControlOutcome]]


# -- start ----------------------------------------------------------------------------------------


async def start(call: Call) -> Response:
    if media_type(call.request) == "multipart/form-data":
        terms, ids = await _uploaded(call.request)
        return await _started(call, terms, ids)
    spec = inline_spec(await body(_json(call.request), MAX_SPEC_BYTES))
    assert spec.audience.customers is not None, "an inline spec has its customers"
    return await _started(call, spec.terms, spec.audience.customers)


def _json(request: Request) -> Request:
    kind = media_type(request)
    if kind is not None and kind != "application/json":
        raise InvalidInput("Content-Type", "send the spec as application/json, or it and a CSV as multipart/form-data")
    return request


async def _uploaded(request: Request) -> tuple[PromotionTerms, AsyncIterator[str]]:
    """The `spec` part (JSON), read whole; then the `audience` part (a CSV), as a stream of ids
    that ends only where the body ends properly: a part after it refuses the audience too."""
    boundary = boundary_of(request.headers.get("content-type", ""))
    reader = MultipartReader(chunks(request, limit=MAX_UPLOAD_BYTES), boundary)
    part = await reader.next_part()
    if part is None or part.name != "spec":
        raise InvalidInput("spec", "the first part must be `spec`: the spec's keys as JSON")
    spec = bytearray()
    async for chunk in reader.body():
        spec += chunk
        if len(spec) > MAX_SPEC_BYTES:
            raise InvalidInput("spec", f"is larger than {MAX_SPEC_BYTES:,} bytes")
    terms = spec_for_upload(bytes(spec))
    part = await reader.next_part()
    if part is None or part.name != "audience":
        raise InvalidInput("audience", "the second part must be `audience`: a CSV of customer ids")

    async def audience() -> AsyncIterator[bytes]:
        async for chunk in reader.body():
            yield chunk
        if await reader.next_part() is not None:
            raise InvalidInput("body", "a part after `audience`: send only `spec` and `audience`")

    return terms, csv_ids(csv_lines(audience(), "audience", max_bytes=MAX_UPLOAD_BYTES), "audience")


async def _started(call: Call, terms: PromotionTerms, ids: Iterable[str] | AsyncIterable[str]) -> Response:
    async with nothing_sent():
        promotions = call.backends.promotions()
    started = await sent(promotions.start(terms, ids))
    location = f"/v1/promotions/{quote(started.promotion_id, safe='')}"
    return model_response(started, 201 if started.started else 200, replayed=not started.started, Location=location)


# -- reading ----------------------------------------------------------------------------------------


async def list_promotions(call: Call) -> Response:
    async with nothing_sent():
        statuses = await PromotionBooks(call.backends.pool()).list()
    return Response(_STATUSES.dump_json(statuses), media_type="application/json")


async def status(call: Call) -> Response:
    promotion_id = path_promotion_id(call.path["id"])
    async with nothing_sent():
        found = await PromotionBooks(call.backends.pool()).status(promotion_id)
    return model_response(found, 200)


async def report(call: Call) -> Response:
    promotion_id = path_promotion_id(call.path["id"])
    async with nothing_sent():
        figures, final = await PromotionBooks(call.backends.pool()).report(promotion_id)
    return model_response(PromotionReport(**figures.model_dump(), final=final), 200)


# -- controls ---------------------------------------------------------------------------------------


async def _control(call: Call, send: Control) -> Response:
    promotion_id = path_promotion_id(call.path["id"])
    wait = deadline(call.request)
    async with nothing_sent():
        await PromotionBooks(call.backends.pool()).status(promotion_id)  # a promotion never started is 404
        promotions = call.backends.promotions()
    return model_response(await sent(send(promotions, promotion_id, wait)), 201)


async def pause(call: Call) -> Response:
    return await _control(call, lambda promotions, pid, wait: promotions.pause(pid, timeout=wait))


async def resume(call: Call) -> Response:
    return await _control(call, lambda promotions, pid, wait: promotions.resume(pid, timeout=wait))


async def cancel(call: Call) -> Response:
    request = CancelRequest()
    if await _has_body(call.request):
        request = await json_model(call.request, CancelRequest)
    revoke = request.revoke_outstanding
    return await _control(
        call, lambda promotions, pid, wait: promotions.cancel(pid, revoke_outstanding=revoke, timeout=wait)
    )


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in request.headers


async def extend(call: Call) -> Response:
    request = await json_model(call.request, Extend, limit=MAX_JSON_BYTES)
    return await _control(call, lambda promotions, pid, wait: promotions.extend(pid, request.ends_at, timeout=wait))


async def add_audience(call: Call) -> Response:
    """A CSV body streams into staging; JSON (`{"customers": [...]}`) is read whole."""
    promotion_id = path_promotion_id(call.path["id"])
    wait = deadline(call.request)
    ids: Iterable[str] | AsyncIterable[str]
    if media_type(call.request) == "text/csv":
        lines = csv_lines(chunks(call.request, limit=MAX_UPLOAD_BYTES), "body", max_bytes=MAX_UPLOAD_BYTES)
        ids = csv_ids(lines, "body")
    else:
        ids = (await json_model(call.request, AudienceRequest, limit=MAX_SPEC_BYTES)).customers
    async with nothing_sent():
        pool = call.backends.pool()
        await PromotionBooks(pool).status(promotion_id)
        before = await staged_loads(pool, promotion_id)
        promotions = call.backends.promotions()
    outcome = await sent(promotions.add_audience(promotion_id, ids, timeout=wait))
    replayed = audience_replayed(before, outcome)
    return model_response(outcome, 200 if replayed else 201, replayed=replayed)


# -- the table ----------------------------------------------------------------------------------------

_STEER: frozenset[Scope] = frozenset({"promotions"})
_READ: frozenset[Scope] = frozenset({"promotions", "read"})
PROMOTION_ID = Parameter(
    "id", "path", PROMOTION_ID_SCHEMA, "the promotion's id (its spec's `id`)", required=True, example="welcome-2027"
)
_SPEC_EXAMPLE = {
    "id": "welcome-2027",
    "name": "Welcome credit",
    "kind": "credit",
    "value": {"amount": "10.00"},
    "currency": "USD",
    "validity": {"expires_after": "14d", "remind_before": "2d"},
    "budget": {"amount": "1000.00"},
    "audience": {"customers": ["alice", "bob"]},
}
CONTROL_PROBLEMS = (400, 401, 403, 404, 409, 422, 503, 504)


def _json_body(schema: dict[str, Any], description: str, example: object, *, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _control_operation(
    name: str, handler: Callable[[Call], Awaitable[Response]], summary: str, body: dict[str, Any] | None = None
) -> Operation:
    return Operation(
        method="POST",
        path=f"/v1/promotions/{{id}}/{name}",
        handler=handler,
        summary=summary,
        description="Answers once the promotion recorded its state: the `ControlOutcome` the Python client "
        "returns, whose `effect` says what this control did (`paused`, `already paused`, ...). A control the "
        "promotion's state does not allow is 409 (PromotionConflict).",
        scopes=_STEER,
        answers=(Answer(201, "the control's outcome", ControlOutcome),),
        problems=CONTROL_PROBLEMS,
        parameters=(PROMOTION_ID, TIMEOUT),
        body=body,
        body_models=(CancelRequest, Extend, AudienceRequest),
    )


_UPLOAD = {
    "schema": {
        "type": "object",
        "required": ["spec", "audience"],
        "properties": {
            "spec": {"type": "string", "description": "the spec's keys as JSON, without `audience`"},
            "audience": {"type": "string", "format": "binary", "description": "a CSV of customer ids, one a line"},
        },
    },
    "encoding": {"spec": {"contentType": "application/json"}, "audience": {"contentType": "text/csv"}},
}
_START = Operation(
    method="POST",
    path="/v1/promotions",
    handler=start,
    summary="Start a promotion",
    description="Stages the audience in Postgres (COPY), then starts workflow `promotion:<id>`. As JSON, the spec "
    f"(at most {MAX_SPEC_BYTES:,} bytes) holds its audience (`audience.customers`); as multipart/form-data, the "
    f"`spec` part comes first, then the `audience` part, a CSV that streams into staging as it arrives (at most "
    f"{MAX_UPLOAD_BYTES >> 20} MiB, lines of at most 1,024 bytes). The same spec again starts nothing (200); "
    "other terms under the same id are 409 (PromotionConflict). Errors name the spec's field.",
    scopes=_STEER,
    answers=(
        Answer(201, "started", Started, headers={"Location": "the promotion's URL"}),
        Answer(
            200,
            "the same spec and audience again: nothing started (`started` is false)",
            Started,
            headers={REPLAYED: "`true`", "Location": "the promotion's URL"},
        ),
    ),
    problems=(400, 401, 403, 409, 422, 503, 504),
    body={
        "required": True,
        "content": {
            "application/json": {"schema": PROMOTION_SPEC, "example": _SPEC_EXAMPLE},
            "multipart/form-data": _UPLOAD,
        },
    },
)
OPERATIONS = (
    _START,
    Operation(
        method="GET",
        path="/v1/promotions",
        handler=list_promotions,
        summary="List promotions",
        description="Every promotion and its state, from Postgres alone.",
        scopes=_READ,
        answers=(Answer(200, "every promotion, oldest first", PromotionStatus, many=True),),
        problems=(400, 401, 403, 503),
    ),
    Operation(
        method="GET",
        path="/v1/promotions/{id}",
        handler=status,
        summary="A promotion's status",
        description="`incentives promotion status --json`: state, progress and books, from Postgres alone.",
        scopes=_READ,
        answers=(Answer(200, "the promotion's status", PromotionStatus),),
        problems=(400, 401, 403, 404, 503),
        parameters=(PROMOTION_ID,),
    ),
    Operation(
        method="GET",
        path="/v1/promotions/{id}/report",
        handler=report,
        summary="A promotion's report",
        description="`incentives promotion report --json`: its books from the ledger, and whether they are final.",
        scopes=_READ,
        answers=(Answer(200, "the promotion's books", PromotionReport),),
        problems=(400, 401, 403, 404, 503),
        parameters=(PROMOTION_ID,),
    ),
    _control_operation("pause", pause, "Pause granting"),
    _control_operation("resume", resume, "Resume granting"),
    _control_operation(
        "cancel",
        cancel,
        "Cancel the promotion",
        _json_body(
            _ref(CancelRequest),
            "`revoke_outstanding`: also revoke every lot that holds value",
            {"revoke_outstanding": True},
            required=False,
        ),
    ),
    _control_operation(
        "extend",
        extend,
        "Move the end of granting",
        _json_body(_ref(Extend), "the new end", {"ends_at": "2027-04-30T23:59:59-04:00"}),
    ),
    _control_operation(
        "audience",
        add_audience,
        "Add customers",
        {
            "required": True,
            "description": 'a CSV of customer ids (streamed into staging), or `{"customers": [...]}`',
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": _ref(AudienceRequest)},
            },
        },
    ),
)
