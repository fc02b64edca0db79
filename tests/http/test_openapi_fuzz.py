"""The OpenAPI document, fuzzed against the real server with schemathesis: every documented
operation, first with its documented examples (a story: a grant, the order it pays for, its refund,
its revocation, a promotion and its controls), then with generated bodies, query values and path
ids that fit the schema (positive) and that break it (negative: wrong types, hostile strings,
missing and unknown fields), sent with a key that may call everything. Every answer must be no 5xx,
a status the operation documents, the documented content type, a body valid against the documented
schema, the documented headers; every request the schema refuses must be refused (4xx); and an
operation that needs a key must refuse the same request without one (schemathesis probes that on
each success).

Bounded: `EXAMPLES` generated requests per operation and mode (17 operations, two modes: at most
680), one per documented example, a probe or two per success; no shrinking, no example database;
10 s here. Only generation, not schemathesis' coverage or stateful phases.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.http.api_process import ApiProcess
from tests.http.conftest import Keys, bearer

EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
]


def _run(strategy: SearchStrategy[Case[Any]], examples: int, base_url: str, key: str, statuses: Counter[str]) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case[Any]) -> None:
        response = case.call_and_validate(base_url=base_url, headers=bearer(key), checks=CHECKS, timeout=60)
        statuses[f"{response.status_code}"] += 1

    run()


def _fuzz(
    document: dict[str, object], base_url: str, key: str, statuses: Counter[str], *, only: str | None = None
) -> list[str]:
    """Every operation, in the document's order: its documented examples (a story: a grant, the
    order it pays for, its refund, ...), then generated requests, positive and negative. Returns
    the operations that failed, each with its first failure."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        operations.append(result.ok())
    assert len(operations) == 17, [operation.label for operation in operations]
    for operation in operations:
        if only is not None and operation.label != only:
            continue
        runs = [("example", strategy, 1) for strategy in operation.get_strategies_from_examples()]
        runs += [(mode.value, operation.as_strategy(generation_mode=mode), EXAMPLES) for mode in GenerationMode]
        for name, strategy, examples in runs:
            try:
                _run(strategy, examples, base_url, key, statuses)
            except Unsatisfiable:
                assert name == GenerationMode.NEGATIVE.value, operation.label  # nothing of it can be broken
            except (Exception, BaseExceptionGroup) as error:  # schemathesis reports a group of failures
                failures.append(f"{operation.label} ({name}): {str(error)[:2000]}")
    return failures


async def test_every_operation_answers_within_its_documented_contract(
    api: ApiProcess, http: httpx.AsyncClient, keys: Keys
) -> None:
    document = (await http.get("/openapi.json")).json()
    # In a thread: the worker answering the generated calls runs on this test's event loop.
    statuses: Counter[str] = Counter()
    failures = await asyncio.to_thread(_fuzz, document, api.base_url, keys.every, statuses)
    assert failures == [], "\n\n".join(failures)
    print(sorted(statuses.items()))
    # Generated requests got past the input checks too, into the engine, and were answered by it.
    assert min(statuses["400"], statuses["404"], statuses["201"] + statuses["200"]) > 0, statuses


async def test_the_fuzz_fails_on_an_answer_the_document_does_not_allow(
    api: ApiProcess, http: httpx.AsyncClient, keys: Keys
) -> None:
    """The same run against a document doctored to claim a redemption is never refused by the
    rules (no 422): the server's true answer must be reported."""
    document = (await http.get("/openapi.json")).json()
    del document["paths"]["/v1/customers/{customer}/redemptions"]["post"]["responses"]["422"]
    failures = await asyncio.to_thread(
        _fuzz, document, api.base_url, keys.every, Counter(), only="POST /v1/customers/{customer}/redemptions"
    )
    assert failures
    assert all("Undocumented status code" in failure and "422" in failure for failure in failures)
