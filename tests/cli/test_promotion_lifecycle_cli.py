"""`incentives promotion` where a product team could break it: terms a constraint would refuse,
terms that grant nothing, controls that say what they did, and reading a promotion while Temporal
is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import CLOSED_TEMPORAL, Cli
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.specs import write_spec


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


class TestCheckRefuses:
    async def test_lots_that_would_become_usable_after_their_fixed_expiry(
        self, offline_cli: Cli, tmp_path: Path
    ) -> None:
        """The spec that wedged a promotion: every batch failed Postgres' expiry_after_effective."""
        now = datetime.now(UTC)
        expires_at = now + timedelta(days=2)
        spec = write_spec(
            tmp_path,
            "wedge",
            ["c1"],
            validity={"expires_at": _iso(expires_at), "effective_after": "10m"},
            schedule={"starts_at": _iso(now), "ends_at": _iso(expires_at - timedelta(minutes=5))},
        )
        for action in ("check", "start"):
            result = await offline_cli("promotion", action, str(spec))
            assert result.refused_with("validity.effective_after: a lot granted at schedule.ends_at would become"), (
                result
            )

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            (
                {"budget": {"amount": "5.00"}},
                "budget.amount: 500 is less than one grant (1000): nothing could be granted",
            ),
            (
                {"budget": {"amount": "50.00", "pool": {"id": "tiny", "amount": "5.00"}}},
                "budget.pool.amount: 500 is less than one grant (1000)",
            ),
            (
                {"schedule": {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-02-01T00:00:00Z"}},
                "schedule.ends_at: granting would end at 2020-02-01T00:00:00Z, before it can begin",
            ),
        ],
        ids=["budget", "pool", "past"],
    )
    async def test_terms_under_which_nothing_could_be_granted(
        self, offline_cli: Cli, tmp_path: Path, changes: dict[str, object], message: str
    ) -> None:
        spec = write_spec(tmp_path, "nothing", ["c1"], **changes)
        for action in ("check", "start"):
            assert (await offline_cli("promotion", action, str(spec))).refused_with(message)

    async def test_a_spec_without_a_schedule_checks_as_starting_now_with_no_end(
        self, offline_cli: Cli, tmp_path: Path
    ) -> None:
        spec = write_spec(tmp_path, "no-schedule", ["c1", "c2"])
        document = yaml.safe_load(spec.read_text())
        del document["schedule"]
        spec.write_text(yaml.safe_dump(document))
        result = await offline_cli("promotion", "check", str(spec), "--json")
        assert result.code == 0, result.err
        assert (result.json()["starts_at"], result.json()["ends_at"], result.json()["grants"]) == (None, None, 2)


class TestControlsAndReads:
    async def test_controls_say_what_they_did_and_reads_work_while_temporal_is_down(
        self, cli: Cli, new_id: NewId, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        promotion_id = new_id("p")
        spec = write_spec(tmp_path, promotion_id, [new_id("c") for _ in range(2)])
        assert (await cli("promotion", "start", str(spec))).code == 0

        async def active() -> None:
            status = await cli("promotion", "status", promotion_id, "--json")
            assert status.code == 0, status
            assert status.json()["state"] == "active", status

        await eventually(active, timeout=30)
        said = [(await cli("promotion", "pause", promotion_id)).out.strip() for _ in range(2)]
        assert said == [
            f"promotion {promotion_id}: paused; it is paused",
            f"promotion {promotion_id}: already paused; it is paused",
        ]
        answer = await cli("promotion", "resume", promotion_id, "--json")
        assert (answer.json()["effect"], answer.json()["state"]) == ("resumed", "active")
        monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED_TEMPORAL)
        for command in (("status", promotion_id), ("report", promotion_id), ("list",)):
            result = await cli("promotion", *command, "--json")
            assert result.code == 0, (command, result.err)
        assert (await cli("promotion", "pause", promotion_id)).code == 3  # a control needs Temporal
