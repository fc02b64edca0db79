"""The OpenAPI document and the interactive docs, as served: every operation documents its
problems as problem+json, every problem type is listed and served, the docs page loads its
Swagger UI from the API itself (no CDN, nothing from another host), in an OpenAPI 3.0 rendering
Swagger UI 4 reads."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from incentives.domain.errors import REJECTIONS
from incentives.http.problems import PROBLEM_TYPES


def _walk(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [node, *(item for value in node.values() for item in _walk(value))]
    if isinstance(node, list):
        return [item for value in node for item in _walk(value)]
    return []


async def test_every_operation_documents_its_answers_and_every_problem_type_is_listed(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    operations = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]
    assert len(operations) == 17
    for path, method, operation in operations:
        statuses = set(operation["responses"])
        assert statuses & {"200", "201"}, (path, method)
        for status in statuses - {"200", "201"}:
            content = operation["responses"][status]["content"]
            assert list(content) == ["application/problem+json"], (path, method, status)
        if path.startswith("/v1/"):
            assert {"400", "401", "403", "503"} <= statuses, path
            assert operation["security"] == [{"bearer": []}], path
            assert operation["x-scopes"], path
    listed = {kind["error_type"]: kind for kind in document["x-problem-types"]}
    assert set(REJECTIONS) <= set(listed)
    assert {"InvalidInput", "Unauthenticated", "Forbidden", "Unavailable", "OutcomeUnknown"} <= set(listed)
    assert {listed[name]["status"] for name in ("LotConflict", "OrderConflict")} == {409}
    assert (listed["NothingToRedeem"]["status"], listed["MinimumNotMet"]["status"]) == (422, 422)
    problem_type = document["components"]["schemas"]["Problem"]["properties"]["type"]
    assert sorted(problem_type["enum"]) == sorted(kind.uri for kind in PROBLEM_TYPES.values())
    for kind in PROBLEM_TYPES.values():
        served = await http.get(kind.uri)
        assert (served.status_code, served.json()["error_type"]) == (200, kind.error_type), kind


async def test_the_docs_are_served_offline(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href|url)[=:]\s*"([^"]+)"', page.text)
    assert "validatorUrl: null" in page.text  # Swagger UI would fetch its validator badge from swagger.io
    assert sources, page.text
    assert all(source.startswith("/") for source in sources), sources
    for source in sources:
        asset = await http.get(source)
        assert (asset.status_code, len(asset.content) > 100) == (200, True), source
    bundle = await http.get("/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert (await http.get("/docs/../../etc/passwd")).status_code == 404
    assert (await http.get("/docs/index.j2")).status_code == 404


async def test_the_docs_read_an_openapi_30_rendering_of_the_same_document(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    rendered = (await http.get("/docs/openapi-3.0.json")).json()
    assert rendered["openapi"] == "3.0.3"
    assert rendered["paths"].keys() == document["paths"].keys()
    nodes = _walk(rendered["components"]) + _walk(rendered["paths"])
    assert not [node for node in nodes if node.get("type") == "null" or isinstance(node.get("type"), list)]
    assert not [node for node in nodes if isinstance(node.get("exclusiveMinimum"), int | float)
                and not isinstance(node.get("exclusiveMinimum"), bool)]  # fmt: skip
    lot = rendered["components"]["schemas"]["Lot"]["properties"]
    assert lot["effective_at"] == {**lot["effective_at"], "nullable": True}, json.dumps(lot["effective_at"])
