"""`incentives promotion ...`: check, start, status, report and the controls through the command,
with the JSON contract the issue spells out; bad spec files exit 2 and start nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from incentives.adapters.db import Pool
from tests.cli.conftest import Cli
from tests.helpers import eventually
from tests.helpers.builders import NewId

EXAMPLES = Path(__file__).parents[2] / "examples" / "promotions"


def write_spec(tmp_path: Path, promotion_id: str, customers: list[str], **changes: object) -> Path:
    now = datetime.now(UTC)
    spec: dict[str, object] = {
        "id": promotion_id,
        "name": "CLI test credit",
        "kind": "credit",
        "value": {"amount": "10.00"},
        "currency": "USD",
        "validity": {"expires_after": "14d", "remind_before": "2d"},
        "budget": {"amount": "35.00"},
        "audience": {"file": "audience.csv"},
        "schedule": {"starts_at": now.isoformat(), "ends_at": (now + timedelta(days=7)).isoformat()},
        **changes,
    }
    (tmp_path / "audience.csv").write_text("customer_id\n" + "\n".join(customers) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class TestCheck:
    async def test_the_examples_check_with_their_figures(self, offline_cli: Cli) -> None:
        credit = await offline_cli("promotion", "check", str(EXAMPLES / "spring-credit.yaml"), "--json")
        assert credit.code == 0, credit.err
        assert credit.json() == {
            "promotion_id": "spring-credit-2027",
            "kind": "credit",
            "currency": "USD",
            "audience": 48,
            "duplicates": 2,
            "grants": 48,
            "worst_case": 48_000,
            "budget": 50_000_000,
            "starts_at": "2027-03-20T13:00:00+00:00",
            "ends_at": "2027-04-21T03:59:59+00:00",
        }
        coupon = await offline_cli("promotion", "check", str(EXAMPLES / "weekend-coupon.yaml"), "--json")
        assert (coupon.json()["audience"], coupon.json()["worst_case"], coupon.json()["budget"]) == (7, 10_500, 150_000)

    async def test_a_bad_spec_exits_2_naming_the_field(self, offline_cli: Cli, tmp_path: Path) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"], budget={"amount": "0"})
        result = await offline_cli("promotion", "check", str(spec))
        assert result.refused_with("budget.amount: '0' must be greater than zero"), result
        missing = write_spec(tmp_path, "p1", ["c1"], audience={"file": "x.csv"})
        assert (await offline_cli("promotion", "check", str(missing))).refused_with(
            "audience.file: no such file: x.csv"
        )
        assert (await offline_cli("promotion", "check", str(tmp_path / "none.yaml"))).refused_with("no such file")


class TestStartAndWatch:
    async def test_start_status_report_and_controls(self, cli: Cli, pool: Pool, new_id: NewId, tmp_path: Path) -> None:
        promotion_id = new_id("p")
        customers = [new_id("c") for _ in range(5)]
        spec = write_spec(tmp_path, promotion_id, customers)
        started = await cli("promotion", "start", str(spec), "--json")
        assert started.code == 0, started.err
        assert started.json()["started"] is True
        assert started.json()["audience"]["size"] == 5

        async def done() -> dict[str, object]:
            status = await cli("promotion", "status", promotion_id, "--json")
            assert status.code == 0, status.err
            assert status.json()["state"] == "active", status.json()
            return dict(status.json())

        status = await eventually(done, timeout=30)
        assert {key: status[key] for key in ("granted", "skipped", "committed", "budget", "redeemed", "expired")} == {
            "granted": 3,
            "skipped": {"budget": 2},
            "committed": 3000,
            "budget": 3500,
            "redeemed": 0,
            "expired": 0,
        }
        again = await cli("promotion", "start", str(spec))
        assert again.code == 0
        assert "already started with this spec: nothing changed" in again.out
        paused = await cli("promotion", "pause", promotion_id, "--json")
        assert paused.json()["state"] == "paused"
        cancelled = await cli("promotion", "cancel", promotion_id, "--revoke-outstanding", "--json")
        assert cancelled.json()["state"] == "cancelled"

        async def closed() -> None:
            report = await cli("promotion", "report", promotion_id, "--json")
            assert report.json()["final"] is True, report.json()
            assert (report.json()["granted"], report.json()["revoked"]) == (3000, 3000)

        await eventually(closed, timeout=30)
        listed = await cli("promotion", "list", "--json")
        assert promotion_id in [row["promotion_id"] for row in listed.json()]
        refused = await cli("promotion", "resume", promotion_id)
        assert refused.code == 1
        assert "PromotionConflict" in refused.err

    async def test_a_bad_audience_line_starts_nothing(
        self, cli: Cli, pool: Pool, new_id: NewId, tmp_path: Path
    ) -> None:
        promotion_id = new_id("p")
        spec = write_spec(tmp_path, promotion_id, ["ok-1", "not ok", "ok-2"])
        result = await cli("promotion", "start", str(spec))
        assert result.refused_with("audience.file: line 3: 'not ok' is not an id"), result
        assert await pool.fetchval("SELECT count(*) FROM promotion_audience WHERE promotion_id = $1", promotion_id) == 0
        unknown = await cli("promotion", "status", promotion_id)
        assert unknown.code == 1


@pytest.mark.parametrize("action", ["status", "report", "pause"])
async def test_a_promotion_id_with_a_colon_is_refused_before_any_server(offline_cli: Cli, action: str) -> None:
    assert (await offline_cli("promotion", action, "a:b")).refused_with("ID: 'a:b' is not a promotion id")
