"""The API as an ASGI application: a router over the table of operations, the key and its scopes
checked before anything else is decided (a 401 or 403 comes before any other answer), every error
turned into its problem, one log line a request.

Routing reads the raw path, split on its literal slashes, each segment then percent-decoded: an
id holding a `/` (ids may) travels as `%2F` and stays one segment, whatever a proxy or a framework
would have decoded first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from incentives.adapters.logs import get_logger
from incentives.adapters.metrics import API_REGISTRY, HTTP_DURATION, HTTP_REQUESTS
from incentives.adapters.settings import Settings
from incentives.adapters.tracing import name_request_span
from incentives.app.backends import Backends
from incentives.domain.errors import InvalidInput, OutcomeUnknown, Rejected, Unavailable
from incentives.domain.inputs import shown
from incentives.http import meta, promotions, wallets
from incentives.http.keys import authorize
from incentives.http.openapi import openapi_document
from incentives.http.openapi30 import openapi_30
from incentives.http.operations import Call, Operation
from incentives.http.problems import RETRY_AFTER_SECONDS, HttpProblem, invalid, problem_response, rejected

# Path values logged under the names the worker's log lines give them, and cut to an id's length.
_LOGGED = {"customer": "customer_id", "id": "promotion_id"}
_LOGGED_LENGTH = 130
_AGAIN = "Sending the same request again is safe: it returns the first result, or applies it once."
DESCRIPTION = """Credits and coupons over HTTP: the same operations, models and rules as the Python client.

Send `Authorization: Bearer KEY` (`incentives api-key create`). Amounts are integer minor units beside a
`currency`. Status codes, one meaning each: 201 applied now; 200 the same request again (the first result,
with `Idempotent-Replayed: true`), or a read; 400 bad input, nothing sent (`errors` names each field);
401 no key or an unknown one; 403 a key outside its scopes; 404 unknown route, promotion or customer;
405 a method the route does not take; 409 the same id with another payload; 422 refused by the business
rules; 503 Temporal or Postgres unreachable before anything was sent (`Retry-After`); 504 no answer within
the deadline: the outcome is unknown, and the same request again is safe. Every error is
`application/problem+json` (RFC 9457), with `error_type`, the refusal's class name."""


class Api:
    """The ASGI application: `Backends` started and closed with the server (its lifespan)."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends
        documented = (*meta.OPERATIONS, *wallets.OPERATIONS, *promotions.OPERATIONS)
        self.document = openapi_document(documented, DESCRIPTION)
        self._operations: Sequence[Operation] = (
            *documented,
            *meta.served(
                meta.Documents(self.document, openapi_30(self.document)),
                meta.Metrics([API_REGISTRY, backends.sdk_metrics]),
            ),
        )
        self._log = get_logger("incentives.api")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            response = await self._respond(Request(scope, receive))
            await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._backends.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._backends.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, request: Request) -> Response:
        started, request_id = time.perf_counter(), uuid.uuid4().hex[:16]
        operation: Operation | None = None
        call: Call | None = None
        refusal: str | None = None
        try:
            operation, path = self._route(request)
            name_request_span(request.method, operation.path)
            call = Call(request, path, operation, self._backends)
            if operation.scopes is not None and not operation.key_with_body:
                await authorize(call)
            _refuse_unknown_query(request, operation)
            response = await operation.handler(call)
        except Exception as error:
            response = self._problem(error, request_id)
            refusal = error.error_type if isinstance(error, HttpProblem) else type(error).__name__
        response.headers["X-Request-Id"] = request_id
        self._log_request(request, response, operation, call, started, request_id, refusal)
        route = f"{operation.method} {operation.path}" if operation else "unrouted"
        HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
        HTTP_DURATION.labels(route).observe(time.perf_counter() - started)
        return response

    def _route(self, request: Request) -> tuple[Operation, dict[str, str]]:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        segments = raw.decode("latin-1").strip("/").split("/")
        allowed: list[str] = []
        for operation in self._operations:
            path = _match(operation.segments, segments)
            if path is None:
                continue
            if operation.method == request.method:
                return operation, path
            allowed.append(operation.method)
        if allowed:
            raise HttpProblem(
                "MethodNotAllowed",
                f"{shown(request.method)} is not a method of this route: use {', '.join(sorted(set(allowed)))}",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise HttpProblem("NotFound", f"no route {shown(request.url.path)}: /openapi.json lists them")

    def _problem(self, error: Exception, request_id: str) -> Response:
        if isinstance(error, InvalidInput):
            return invalid(error)
        if isinstance(error, HttpProblem):
            return problem_response(error.error_type, error.detail, headers=error.headers)
        if isinstance(error, Rejected):
            return rejected(error)
        if isinstance(error, Unavailable):
            detail = f"{error}: nothing was sent; the same request again is safe once it answers"
            return problem_response("Unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if isinstance(error, OutcomeUnknown):
            return problem_response("OutcomeUnknown", f"{error}. {_AGAIN}")
        self._log.error("internal error", request_id=request_id, exc_info=error)
        return problem_response(
            "InternalError", f"internal error ({type(error).__name__}); request {request_id} in the server's log"
        )

    def _log_request(
        self,
        request: Request,
        response: Response,
        operation: Operation | None,
        call: Call | None,
        started: float,
        request_id: str,
        refusal: str | None,
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": request.method,
            "route": operation.path if operation else request.url.path[:200],
            "status": response.status_code,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if call is not None:
            fields.update({_LOGGED.get(name, name): value[:_LOGGED_LENGTH] for name, value in call.path.items()})
            fields.update(call.ids)
            if call.caller is not None:
                fields["key"] = call.caller.name
        if refusal is not None:
            fields["error_type"] = refusal
        self._log.info("request", **fields)


def _match(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    values: dict[str, str] = {}
    for expected, segment in zip(template, segments, strict=True):
        if expected.startswith("{"):
            values[expected[1:-1]] = unquote(segment, errors="replace")
        elif expected != segment:
            return None
    return values


def _refuse_unknown_query(request: Request, operation: Operation) -> None:
    for name in request.query_params:
        if name not in operation.query:
            known = ", ".join(sorted(operation.query)) or "none"
            raise InvalidInput(shown(name) if not name.isidentifier() else name, f"is not a parameter here ({known})")


def build_api(settings: Settings) -> Api:
    return Api(Backends(settings))
