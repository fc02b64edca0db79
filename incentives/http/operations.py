"""What an operation of the API is: its route, who may call it, its handler, and what it answers.

One table of these (`incentives.http.routes`) drives both the routing and the OpenAPI document,
so that what is served and what is documented cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from incentives.app.api_keys import Caller, Scope
from incentives.app.backends import Backends

REPLAYED = "Idempotent-Replayed"


@dataclass
class Call:
    """One request, as a handler sees it: the path's values (decoded), the operation, the engine,
    and the caller once its key is checked."""

    request: Request
    path: Mapping[str, str]
    operation: Operation
    backends: Backends
    caller: Caller | None = None
    ids: dict[str, str] = field(default_factory=dict)  # the body's ids, for the request's log line


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Answer:
    """A success response: its status, what it means, its body's model (None: no JSON model)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    many: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str  # path or query
    schema: Mapping[str, Any]
    description: str
    required: bool = False
    example: str | None = None  # shown in the docs, and sent by the fuzz test


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    description: str
    scopes: frozenset[Scope] | None  # None: no key needed
    answers: tuple[Answer, ...]
    problems: tuple[int, ...]
    parameters: tuple[Parameter, ...] = ()
    body: Mapping[str, Any] | None = None  # the OpenAPI requestBody
    body_models: tuple[type[BaseModel], ...] = ()  # models the requestBody's schemas refer to
    documented: bool = True  # the OpenAPI document and its viewer are served, not listed
    # The handler checks the key itself, in one statement with its replay check (the checkout path);
    # it still answers 401 or 403 before any other problem.
    key_with_body: bool = False

    @cached_property
    def query(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters if p.where == "query")

    @cached_property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))


def model_response(model: BaseModel, status: int, *, replayed: bool = False, **headers: str) -> Response:
    """`model` as JSON, exactly as the Python client's model serializes it."""
    out = {name.replace("_", "-"): value for name, value in headers.items()}
    if replayed:
        out[REPLAYED] = "true"
    return Response(model.model_dump_json(), status_code=status, media_type="application/json", headers=out)
