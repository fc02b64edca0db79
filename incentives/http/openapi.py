"""The OpenAPI 3.1 document, built from the same table of operations the router serves: each
operation's parameters, body, answers and problems, the models' JSON Schemas (pydantic's, with the
id and currency rules the API checks added), who may call it, and every problem type.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from incentives.domain.inputs import REASON_MAX_LENGTH
from incentives.domain.models import GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.http.operations import Operation, Parameter
from incentives.http.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES, RETRY_AFTER_SECONDS, Problem
from incentives.http.schemas import CURRENCY_SCHEMA, ID_FIELDS, ID_SCHEMA

VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
# A model and a mode ("validation" for a body, "serialization" for an answer) -> its schema's $ref.
Refs = dict[tuple[Any, str], Any]
# The wallet operations' bodies may leave `customer_id` out: it is the path's.
_PATH_CUSTOMER = (GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest)

_PROBLEM_MEANINGS = {
    400: "bad input, nothing sent: `errors` names each field and why",
    401: "no API key, or a key unknown or revoked",
    403: "the key's scopes do not allow this operation",
    404: "unknown route, promotion, or customer",
    405: "the route does not take this method",
    409: "the same id with another payload, or a control the promotion's state does not allow",
    422: "refused by the business rules; nothing written",
    503: "Temporal or Postgres unreachable before anything was sent: the same request again is safe",
    504: "no answer within the deadline: the outcome is unknown, and the same request again is safe",
}
_PROBLEM_HEADERS = {
    401: {"WWW-Authenticate": "`Bearer`"},
    405: {"Allow": "the methods the route takes"},
    503: {"Retry-After": f"seconds to wait before trying again ({RETRY_AFTER_SECONDS})"},
}


def _headers(headers: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}


def _components(operations: Sequence[Operation]) -> tuple[dict[str, Any], Refs]:
    """The models' schemas, named as pydantic names them, and each (model, mode)'s reference."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Problem, "serialization"): None}
    for operation in operations:
        for answer in operation.answers:
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
        for model in operation.body_models:
            wanted[(model, "validation")] = None
    refs, top = models_json_schema(list(wanted), ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    for model in _PATH_CUSTOMER:
        schema = schemas.get(model.__name__)
        if schema is not None:
            schema["required"] = [name for name in schema.get("required", []) if name != "customer_id"]
    requests = {model.__name__ for operation in operations for model in operation.body_models}
    for name, schema in schemas.items():
        if name in requests or name.endswith("-Input"):
            _add_rules(schema)
    _problem_schema(schemas[Problem.__name__])
    return schemas, {(model, str(mode)): ref for (model, mode), ref in refs.items()}


def _add_rules(schema: dict[str, Any]) -> None:
    """The id, currency and reason rules the models check, stated in their schemas."""
    for name, prop in schema.get("properties", {}).items():
        if name == "customers":
            prop["items"] = {**prop["items"], **ID_SCHEMA}
            continue
        if name in ID_FIELDS:
            rule: dict[str, Any] = ID_SCHEMA
        elif name == "currency":
            rule = CURRENCY_SCHEMA
        elif name == "reason":
            rule = {"type": "string", "minLength": 1, "maxLength": REASON_MAX_LENGTH}
        else:
            continue
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "string":
                option.update({key: value for key, value in rule.items() if key != "description"})


def _problem_schema(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    kinds = sorted(PROBLEM_TYPES.values(), key=lambda kind: (kind.status, kind.error_type))
    props["type"]["enum"] = [kind.uri for kind in kinds]
    props["error_type"]["enum"] = [kind.error_type for kind in kinds]
    props["status"]["enum"] = sorted({kind.status for kind in kinds})


def _responses(operation: Operation, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for answer in operation.answers:
        response: dict[str, Any] = {"description": answer.description}
        if answer.model is not None:
            schema = refs[(answer.model, "serialization")]
            schema = {"type": "array", "items": schema} if answer.many else schema
            response["content"] = {"application/json": {"schema": schema}}
        if answer.headers:
            response["headers"] = _headers(dict(answer.headers))
        responses[str(answer.status)] = response
    problem = refs[(Problem, "serialization")]
    for status in operation.problems:
        responses[str(status)] = {
            "description": _PROBLEM_MEANINGS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": problem}},
            **({"headers": _headers(_PROBLEM_HEADERS[status])} if status in _PROBLEM_HEADERS else {}),
        }
    return responses


def _parameter(parameter: Parameter) -> dict[str, Any]:
    document = {
        "name": parameter.name,
        "in": parameter.where,
        "required": parameter.required,
        "description": parameter.description,
        "schema": parameter.schema,
    }
    if parameter.example is not None:
        document["example"] = parameter.example
    return document


def _operation(operation: Operation, refs: Refs) -> dict[str, Any]:
    text = operation.description
    if operation.scopes is not None:
        text += f"\n\nScopes that may call it: {', '.join(sorted(operation.scopes))}."
    document: dict[str, Any] = {
        "operationId": operation.handler.__name__,
        "summary": operation.summary,
        "description": text,
        "tags": [operation.path.split("/")[2] if operation.path.startswith("/v1/") else "service"],
        "parameters": [_parameter(parameter) for parameter in operation.parameters],
        "responses": _responses(operation, refs),
        "security": [{"bearer": []}] if operation.scopes is not None else [],
    }
    if operation.scopes is not None:
        document["x-scopes"] = sorted(operation.scopes)
    if operation.body is not None:
        document["requestBody"] = copy.deepcopy(dict(operation.body))
    return document


def openapi_document(operations: Sequence[Operation], description: str) -> dict[str, Any]:
    schemas, refs = _components(operations)
    paths: dict[str, Any] = {}
    for operation in operations:
        if operation.documented:
            paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation, refs)
    kinds = sorted(PROBLEM_TYPES.values(), key=lambda kind: (kind.status, kind.error_type))
    return {
        "openapi": "3.1.0",
        "info": {"title": "incentives", "version": VERSION, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}},
        },
        "x-problem-types": [
            {"type": kind.uri, "title": kind.title, "status": kind.status, "error_type": kind.error_type}
            for kind in kinds
        ],
    }
