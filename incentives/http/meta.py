"""The routes about the service rather than the engine: health, readiness, what each problem type
means, the OpenAPI document, and its interactive docs, served offline (Swagger UI's files come
from the `swagger-ui-bundle` package; nothing is fetched from a CDN, at run time or in a browser).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from starlette.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # the package ships no types

from incentives.app.backends import Readiness
from incentives.http.documents import Health, ProblemTypeDocument
from incentives.http.operations import Answer, Call, Handler, Operation, Parameter, model_response
from incentives.http.problems import PROBLEM_TYPES, RETRY_AFTER_SECONDS, HttpProblem, problem_response, slug

# The viewer's files, by the name the page asks for: nothing else under /docs is served. The page
# turns off Swagger UI's validator badge, which it would otherwise fetch from validator.swagger.io.
_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript", "favicon-32x32.png": "image/png"}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>incentives API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="/docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/docs/openapi-3.0.json", dom_id: "#swagger-ui", validatorUrl: null});</script>
</body></html>
"""
_BY_SLUG = {slug(name): kind for name, kind in PROBLEM_TYPES.items()}


async def healthz(call: Call) -> Response:
    return model_response(Health(), 200)


async def readyz(call: Call) -> Response:
    readiness = await call.backends.readiness()
    if readiness.ready:
        return model_response(readiness, 200)
    down = "; ".join(
        f"{name}: {why}" for name, why in (("Temporal", readiness.temporal), ("Postgres", readiness.postgres)) if why
    )
    return problem_response("Unavailable", down, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def problem_type(call: Call) -> Response:
    kind = _BY_SLUG.get(call.path["name"])
    if kind is None:
        raise HttpProblem("NotFound", f"no problem type {call.path['name']!r}: /openapi.json lists them")
    document = ProblemTypeDocument(
        type=kind.uri, title=kind.title, status=kind.status, error_type=kind.error_type, description=kind.description
    )
    return model_response(document, 200)


class Metrics:
    """`GET /metrics`: the API's own series and the Temporal SDK's, in Prometheus' text format
    (gathered off the event loop: the SDK's are fetched from its exporter)."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self._registry.register(collector)

    async def metrics(self, call: Call) -> Response:
        text = await asyncio.to_thread(generate_latest, self._registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


class Documents:
    """The OpenAPI document in its two renderings, serialized once."""

    def __init__(self, document: dict[str, object], rendered_30: dict[str, object]) -> None:
        self._document = json.dumps(document).encode()
        self._rendered_30 = json.dumps(rendered_30).encode()

    async def openapi(self, call: Call) -> Response:
        return Response(self._document, media_type="application/json")

    async def openapi_30(self, call: Call) -> Response:
        return Response(self._rendered_30, media_type="application/json")


async def docs(call: Call) -> Response:
    return HTMLResponse(_PAGE)


async def docs_asset(call: Call) -> Response:
    name = call.path["name"]
    if name not in _ASSETS:
        raise HttpProblem("NotFound", f"no file {name!r} under /docs")
    return FileResponse(Path(swagger_ui_path) / name, media_type=_ASSETS[name])


def _served(path: str, handler: Handler) -> Operation:
    """A route served for people and tools, and not listed in the document it serves."""
    return Operation("GET", path, handler, "", "", scopes=None, answers=(), problems=(), documented=False)


OPERATIONS = (
    Operation(
        method="GET",
        path="/healthz",
        handler=healthz,
        summary="Is the process up",
        description="200 while the process runs (it asks neither Temporal nor Postgres: `/readyz` does).",
        scopes=None,
        answers=(Answer(200, "up", Health),),
        problems=(400,),
    ),
    Operation(
        method="GET",
        path="/readyz",
        handler=readyz,
        summary="Do Temporal and Postgres answer",
        description="Asks both now, within a second each: 200 when both answer, else 503 naming which does not "
        "and why.",
        scopes=None,
        answers=(Answer(200, "both answer", Readiness),),
        problems=(400, 503),
    ),
    Operation(
        method="GET",
        path="/problems/{name}",
        handler=problem_type,
        summary="What a problem type means",
        description="Each problem's `type` is this route: its status, its class name, and what it means.",
        scopes=None,
        answers=(Answer(200, "the problem type", ProblemTypeDocument),),
        problems=(400, 404),
        parameters=(Parameter("name", "path", {"type": "string"}, "the type's name", required=True),),
    ),
)


def served(documents: Documents, metrics: Metrics) -> tuple[Operation, ...]:
    """The document and its viewer, and the metrics; a literal path comes before the templated one
    it also matches."""
    return (
        _served("/metrics", metrics.metrics),
        _served("/openapi.json", documents.openapi),
        _served("/docs/openapi-3.0.json", documents.openapi_30),
        _served("/docs", docs),
        _served("/docs/{name}", docs_asset),
    )
