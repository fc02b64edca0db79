"""The OpenAPI document as OpenAPI 3.0.3, for the interactive docs alone.

The document (`/openapi.json`) is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, as pydantic
writes them. The Swagger UI the API serves offline (the `swagger-ui-bundle` package, Swagger UI
4.15) reads OpenAPI 3.0 only, so it is given this rendering of the same document: a null option
becomes `nullable`, a list of types `anyOf`, a numeric `exclusiveMinimum` the 3.0 boolean form,
`const` a one-value `enum`; `examples` and `contentMediaType`, which 3.0 lacks, are left out.
"""

from __future__ import annotations

import copy
from typing import Any

_DROPPED = ("examples", "contentMediaType")


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    rendered = copy.deepcopy(document)
    rendered["openapi"] = "3.0.3"
    return _rendered(rendered)  # type: ignore[no-any-return]


def _rendered(node: Any) -> Any:
    if isinstance(node, list):
        return [_rendered(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _rendered(value) for key, value in node.items() if key not in _DROPPED}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del node["anyOf"]
        single = rest[0] if len(rest) == 1 else {"anyOf": rest}
        node.update({"allOf": [single]} if "$ref" in single else single)
        node["nullable"] = True
    if isinstance(node.get("type"), list):
        node["anyOf"] = [{"type": kind} for kind in node.pop("type")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[inclusive], node[bound] = node[bound], True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node
