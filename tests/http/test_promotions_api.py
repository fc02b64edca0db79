"""Promotions over the wire: started from a spec (its audience inline, or a CSV uploaded beside it
that streams into staging), watched until every customer is granted, steered, and cancelled with
its outstanding lots revoked; starts and audiences replayed (200), conflicts (409), unknown ids
(404), and spec errors named by the spec's field (400) with nothing staged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from incentives.adapters.db import Pool
from incentives.app.promotions import Started
from incentives.domain.promotions import ControlOutcome, PromotionStatus
from incentives.http.documents import PromotionReport
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.promotions import customers
from tests.helpers.specs import credit_spec
from tests.http.api_process import ApiProcess
from tests.http.conftest import Keys, bearer, problem


def _spec(promotion_id: str, **changes: Any) -> dict[str, Any]:
    return credit_spec(promotion_id, "HTTP test credit", "1000.00", **changes)


def _csv(ids: list[str]) -> bytes:
    return ("customer_id\n" + "\n".join(ids) + "\n").encode()


async def _status(http: httpx.AsyncClient, key: str, promotion_id: str) -> PromotionStatus:
    response = await http.get(f"/v1/promotions/{promotion_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    return PromotionStatus.model_validate_json(response.content)


async def _granted(http: httpx.AsyncClient, key: str, promotion_id: str, audience: int) -> PromotionStatus:
    async def done() -> PromotionStatus:
        status = await _status(http, key, promotion_id)
        assert (status.state, status.processed) == ("active", audience), status
        return status

    return await eventually(done, timeout=30)


async def test_a_promotion_uploaded_watched_steered_and_cancelled(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    promotion_id, audience = new_id("p"), customers(new_id, 60)
    files: dict[str, tuple[str | None, str | bytes, str]] = {
        "spec": (None, json.dumps(_spec(promotion_id)), "application/json"),
        "audience": ("a.csv", _csv(audience), "text/csv"),
    }
    first = await http.post("/v1/promotions", files=files, headers=bearer(keys.promotions))
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/v1/promotions/{promotion_id}"
    assert Started.model_validate_json(first.content).audience.size == 60
    again = await http.post("/v1/promotions", files=files, headers=bearer(keys.promotions))
    assert (again.status_code, again.headers["idempotent-replayed"], again.json()["started"]) == (200, "true", False)
    status = await _granted(http, keys.read, promotion_id, 60)
    assert (status.granted, status.committed) == (60, 60_000)
    listed = await http.get("/v1/promotions", headers=bearer(keys.read))
    assert promotion_id in [item["promotion_id"] for item in listed.json()]
    paused = await _control(http, keys, promotion_id, "pause")
    assert (paused.effect, paused.state) == ("paused", "paused")
    assert (await _control(http, keys, promotion_id, "pause")).effect == "already paused"
    assert (await _control(http, keys, promotion_id, "resume")).state == "active"
    ends_at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    extended = await _control(http, keys, promotion_id, "extend", {"ends_at": ends_at.isoformat()})
    assert extended.effect.startswith("end moved to")
    assert extended.ends_at == ends_at
    cancelled = await _control(http, keys, promotion_id, "cancel", {"revoke_outstanding": True})
    assert (cancelled.effect, cancelled.state) == ("cancelled; outstanding lots revoked", "cancelled")
    report = await http.get(f"/v1/promotions/{promotion_id}/report", headers=bearer(keys.promotions))
    books = PromotionReport.model_validate_json(report.content)
    assert (books.granted, books.revoked, books.outstanding) == (60_000, 60_000, 0)
    problem(await _post_control(http, keys, promotion_id, "resume"), 409, "PromotionConflict")
    revoked = await pool.fetchval(
        "SELECT count(*) FROM lots WHERE promotion_id = $1 AND status = 'revoked'", promotion_id
    )
    assert revoked == 60


async def _post_control(
    http: httpx.AsyncClient, keys: Keys, promotion_id: str, control: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await http.post(f"/v1/promotions/{promotion_id}/{control}", json=body, headers=bearer(keys.promotions))


async def _control(
    http: httpx.AsyncClient, keys: Keys, promotion_id: str, control: str, body: dict[str, Any] | None = None
) -> ControlOutcome:
    response = await _post_control(http, keys, promotion_id, control, body)
    assert response.status_code == 201, response.text
    return ControlOutcome.model_validate_json(response.content)


async def test_an_inline_start_an_audience_added_and_replayed_and_a_conflicting_spec(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    promotion_id, first, more = new_id("p"), customers(new_id, 3), customers(new_id, 4)
    spec = _spec(promotion_id, audience={"customers": first})
    response = await http.post("/v1/promotions", json=spec, headers=bearer(keys.promotions))
    assert response.status_code == 201, response.text
    other = _spec(promotion_id, audience={"customers": first}, budget={"amount": "2000.00"})
    problem(await http.post("/v1/promotions", json=other, headers=bearer(keys.promotions)), 409, "PromotionConflict")
    await _granted(http, keys.read, promotion_id, 3)
    headers = {"Content-Type": "text/csv", **bearer(keys.promotions)}
    added = await http.post(f"/v1/promotions/{promotion_id}/audience", content=_csv(more), headers=headers)
    assert added.status_code == 201, added.text
    assert ControlOutcome.model_validate_json(added.content).audience == 7
    again = await http.post(f"/v1/promotions/{promotion_id}/audience", content=_csv(more), headers=headers)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    as_json = await _post_control(http, keys, promotion_id, "audience", {"customers": more})
    assert as_json.status_code == 200, as_json.text
    await _granted(http, keys.read, promotion_id, 7)
    loads = await pool.fetchval("SELECT count(*) FROM promotion_audience_loads WHERE promotion_id = $1", promotion_id)
    assert loads == 2


async def test_a_spec_error_is_400_naming_the_spec_field_and_nothing_is_staged(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    promotion_id = new_id("p")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"json": _spec(promotion_id, audience={"customers": ["a"]}, budget={"amount": "0"})}, "budget.amount"),
        ({"json": _spec(promotion_id, audience={"customers": ["a b"]})}, "audience.customers[0]"),
        ({"json": _spec(promotion_id, audience={"file": "/etc/passwd"})}, "audience.file"),
        ({"json": _spec(promotion_id, audience={"customers": ["a"]}, value={"amount": 10})}, "value.amount"),
        ({"json": _spec("a:b", audience={"customers": ["a"]})}, "id"),
        ({"json": {**_spec(promotion_id, audience={"customers": ["a"]}), "colour": "blue"}}, "colour"),
        ({"files": {"spec": (None, json.dumps(_spec(promotion_id)), "application/json"),
                    "audience": ("a.csv", b"customer_id\nok-1\nnot ok\n", "text/csv")}}, "audience"),
        ({"files": {"audience": ("a.csv", b"x\n", "text/csv"),
                    "spec": (None, json.dumps(_spec(promotion_id)), "application/json")}}, "spec"),
        ({"files": {"spec": (None, json.dumps(_spec(promotion_id)), "application/json")}}, "audience"),
    ]  # fmt: skip
    for request, field in cases:
        response = await http.post("/v1/promotions", headers=bearer(keys.promotions), **request)
        body = problem(response, 400, "InvalidInput")
        assert body["errors"][0]["field"] == field, (field, body)
    staged = await pool.fetchval("SELECT count(*) FROM promotion_audience_loads WHERE promotion_id = $1", promotion_id)
    claimed = await pool.fetchval("SELECT count(*) FROM promotion_claims WHERE promotion_id = $1", promotion_id)
    assert (staged, claimed) == (0, 0)


async def test_an_unknown_promotion_is_404_everywhere(http: httpx.AsyncClient, keys: Keys, new_id: NewId) -> None:
    unknown = new_id("p")
    for method, path in (
        ("GET", f"/v1/promotions/{unknown}"),
        ("GET", f"/v1/promotions/{unknown}/report"),
        ("POST", f"/v1/promotions/{unknown}/pause"),
        ("POST", f"/v1/promotions/{unknown}/cancel"),
    ):
        response = await http.request(method, path, headers=bearer(keys.promotions))
        problem(response, 404, "UnknownPromotion")


def _memory(pid: int) -> dict[str, int]:
    """The process's resident set now and at its peak, in KiB (Linux)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: int(line.split()[1]) for line in lines for name in ("VmRSS", "VmHWM") if line.startswith(f"{name}:")}


UPLOADED = 500_000


async def test_an_uploaded_audience_streams_into_staging_without_being_held(
    api: ApiProcess, http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    """Half a million ids (about 12 MB of CSV; held as Python strings they would take some 40 MB)
    staged while the server's peak memory grows by a small fraction of that."""
    promotion_id, prefix = new_id("p"), new_id("m")
    spec = _spec(promotion_id, budget={"amount": "100000000.00"}, schedule={"starts_at": "2030-01-01T00:00:00Z"})
    boundary = "incentives-upload-boundary"

    async def multipart() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\nContent-Type: application/json\r\n\r\n'
            f'{json.dumps(spec)}\r\n--{boundary}\r\nContent-Disposition: form-data; name="audience"; '
            f'filename="a.csv"\r\nContent-Type: text/csv\r\n\r\ncustomer_id\n'
        ).encode()
        for start in range(0, UPLOADED, 10_000):
            yield "".join(f"{prefix}-{i:07d}\n" for i in range(start, start + 10_000)).encode()
        yield f"\r\n--{boundary}--\r\n".encode()

    Path(f"/proc/{api.process.pid}/clear_refs").write_text("5")  # the peak starts again from here
    before = _memory(api.process.pid)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **bearer(keys.promotions)}
    response = await http.post("/v1/promotions", content=multipart(), headers=headers)
    assert response.status_code == 201, response.text
    grown = _memory(api.process.pid)["VmHWM"] - before["VmRSS"]
    assert Started.model_validate_json(response.content).audience.size == UPLOADED
    assert grown < 16 * 1024, f"the peak grew by {grown} KiB"
    staged = await pool.fetchval("SELECT count(*) FROM promotion_audience WHERE promotion_id = $1", promotion_id)
    assert staged == UPLOADED
    assert (await _post_control(http, keys, promotion_id, "cancel")).status_code == 201
