"""`incentives promotion ...`: check, start, status, report and the controls through the command,
with the JSON contract the issue spells out; bad spec files exit 2 and start nothing."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import yaml

from incentives.adapters.db import Pool
from tests.cli.conftest import Cli
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.specs import write_spec

EXAMPLES = Path(__file__).parents[2] / "examples" / "promotions"


@contextmanager
def released_after(fifo: Path, seconds: float = 5.0) -> Iterator[None]:
    """A reader stuck opening `fifo` (a regression: a FIFO must be refused unopened) gets an
    end-of-file after `seconds`, so that the test fails instead of hanging."""

    def release() -> None:
        with suppress(OSError):  # ENXIO: no reader, as it should be
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


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
        welcome = await offline_cli("promotion", "check", str(EXAMPLES / "welcome-credit.yaml"), "--json")
        figures = welcome.json()
        assert (figures["audience"], figures["grants"], figures["starts_at"], figures["ends_at"]) == (3, 3, None, None)

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


class TestHostileSpecFiles:
    """Files a stranger could hand over: each is refused with exit 2, naming the field and why."""

    async def test_deep_nesting_exits_2_not_4(self, offline_cli: Cli, tmp_path: Path) -> None:
        for name, text in (
            ("deep.yaml", "[" * 100_000),
            ("deep.json", '{"a": ' * 100_000),
            ("map.yaml", "{a: " * 50_000),
        ):
            (tmp_path / name).write_text(text)
            result = await offline_cli("promotion", "check", str(tmp_path / name))
            assert result.refused_with("spec: is nested deeper than 20 levels"), result

    @pytest.mark.parametrize("suffix", ["yaml", "json"])
    async def test_a_key_given_twice_exits_2_naming_it_and_both_lines(
        self, offline_cli: Cli, tmp_path: Path, suffix: str
    ) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"])
        lines = spec.read_text().splitlines()
        if suffix == "json":
            text = json.dumps(yaml.safe_load(spec.read_text()), indent=0)
            lines = text.splitlines()
            first = lines.index('"value": {') + 1
            lines.insert(len(lines) - 1, ', "value": {"amount": "1000.00"}')
            second = len(lines) - 1
        else:
            first = lines.index("value:") + 1
            lines += ["value:", "  amount: '1000.00'"]
            second = len(lines) - 1
        path = tmp_path / f"twice.{suffix}"
        path.write_text("\n".join(lines) + "\n")
        result = await offline_cli("promotion", "check", str(path))
        assert result.refused_with(f"value: given twice, at lines {first} and {second}"), result

    async def test_a_spec_that_is_not_a_regular_file_is_refused_without_waiting(
        self, offline_cli: Cli, tmp_path: Path
    ) -> None:
        fifo = tmp_path / "spec.yaml"
        os.mkfifo(fifo)
        with released_after(fifo):
            assert (await offline_cli("promotion", "check", str(fifo))).refused_with("is not a regular file (a FIFO)")
        # /dev/null, not /dev/zero: a regression must not read without end in the test's own process.
        assert (await offline_cli("promotion", "check", "/dev/null")).refused_with("is not a regular file (a device)")
        assert (await offline_cli("promotion", "check", str(tmp_path))).refused_with("(a directory)")
        big = tmp_path / "big.yaml"
        with big.open("wb") as handle:
            handle.truncate(2 * 1024**3)  # sparse: its size alone must refuse it, without reading 2 GB
        assert (await offline_cli("promotion", "check", str(big))).refused_with("is larger than 1,000,000 bytes")

    async def test_an_audience_file_that_is_not_a_regular_file_is_refused(
        self, offline_cli: Cli, tmp_path: Path
    ) -> None:
        os.mkfifo(tmp_path / "fifo.csv")
        (tmp_path / "null.csv").symlink_to("/dev/null")  # /dev/zero is the child process test's
        fifo = write_spec(tmp_path, "p1", ["c1"], audience={"file": "fifo.csv"})
        with released_after(tmp_path / "fifo.csv"):
            assert (await offline_cli("promotion", "check", str(fifo))).refused_with(
                "audience.file: fifo.csv is not a regular file (a FIFO)"
            )
        null = write_spec(tmp_path, "p1", ["c1"], audience={"file": "null.csv"})
        assert (await offline_cli("promotion", "check", str(null))).refused_with(
            "audience.file: null.csv is outside the spec's directory"
        )
        assert (await offline_cli("promotion", "check", str(null), "--audience-root", "/dev")).refused_with(
            "audience.file: null.csv is not a regular file (a device)"
        )
        with released_after(tmp_path / "fifo.csv"):
            assert (await offline_cli("promotion", "add-audience", "p1", str(tmp_path / "fifo.csv"))).refused_with(
                "FILE: " + str(tmp_path / "fifo.csv") + " is not a regular file (a FIFO)"
            )
        assert (await offline_cli("promotion", "add-audience", "p1", "/dev/null")).refused_with("(a device)")

    async def test_an_audience_line_too_long_is_refused_at_once_naming_it(
        self, offline_cli: Cli, tmp_path: Path
    ) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"])
        with (tmp_path / "audience.csv").open("wb") as handle:
            # 64 MiB of NUL bytes and no newline, sparse (2 GB is the child process test's: a regression
            # reading it whole must not do so in the test's own process).
            handle.truncate(64 * 1024**2)
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 1 is longer than 1,024 bytes"
        )
        padded = "c2," + "x" * 1021  # 1,024 bytes: the limit, other columns ignored
        (tmp_path / "audience.csv").write_text(f"customer_id\nc1\r\n{padded}\r\n{padded}x\nc3\n")
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 4 is longer than 1,024 bytes"
        )
        (tmp_path / "audience.csv").write_bytes(b"customer_id\nc1\n\xff\xfe\n")
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 3: is not UTF-8 text"
        )
        (tmp_path / "audience.csv").write_text(f"\ufeffcustomer_id\nc1\r\n{padded}\r\n\nc1\n")
        result = await offline_cli("promotion", "check", str(spec), "--json")
        assert (result.code, result.json()["audience"], result.json()["duplicates"]) == (0, 2, 1), result

    async def test_a_quoted_first_field_is_one_id(self, offline_cli: Cli, tmp_path: Path) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"])
        (tmp_path / "audience.csv").write_text('customer_id,tier\n"c1",gold\n"q,2",silver\n')
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 3: 'q,2' is not an id"
        )
        (tmp_path / "audience.csv").write_text('customer_id\nc1\n"c2\nc3"\n')
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 3: a quote that does not close on its line"
        )
        (tmp_path / "audience.csv").write_text('c1\nc"2\n')
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "audience.file: line 2: a quote inside an unquoted field"
        )


class TestAudienceConfinement:
    @pytest.mark.parametrize("written", ["../../../../../../etc/passwd", "/etc/hostname", "/etc/passwd", "out.csv"])
    async def test_an_audience_file_outside_the_spec_directory_is_refused_without_echoing_it(
        self, offline_cli: Cli, tmp_path: Path, written: str
    ) -> None:
        secret = tmp_path / "secret.csv"
        secret.write_text("root-password-1\n")
        spec_dir = tmp_path / "specs"
        spec_dir.mkdir()
        (spec_dir / "out.csv").symlink_to(secret)
        spec = write_spec(spec_dir, "p1", ["c1"], audience={"file": written})
        result = await offline_cli("promotion", "check", str(spec))
        assert result.refused_with(f"audience.file: {written} is outside the spec's directory"), result
        assert "root" not in result.err.replace("--audience-root", "")

    async def test_audience_root_allows_another_directory(self, offline_cli: Cli, tmp_path: Path) -> None:
        campaigns = tmp_path / "campaigns"
        campaigns.mkdir()
        (campaigns / "everyone.csv").write_text("customer_id\nc1\nc2\n")
        spec_dir = tmp_path / "specs"
        spec_dir.mkdir()
        (spec_dir / "linked.csv").symlink_to(campaigns / "everyone.csv")
        for written in ("../campaigns/everyone.csv", str(campaigns / "everyone.csv"), "linked.csv"):
            spec = write_spec(spec_dir, "p1", ["c1"], audience={"file": written})
            assert (await offline_cli("promotion", "check", str(spec))).refused_with("is outside the spec's directory")
            result = await offline_cli("promotion", "check", str(spec), "--audience-root", str(campaigns), "--json")
            assert (result.code, result.json()["audience"]) == (0, 2), result
        inside = write_spec(spec_dir, "p1", ["c1", "c2", "c3"])
        result = await offline_cli("promotion", "check", str(inside), "--audience-root", str(campaigns), "--json")
        assert (result.code, result.json()["audience"]) == (0, 3), result
        missing = await offline_cli("promotion", "check", str(inside), "--audience-root", str(tmp_path / "none"))
        assert missing.refused_with("--audience-root: is not a directory"), missing


class TestSpecErrorsNameTheSpecField:
    async def test_a_currency_error_names_currency_not_the_flag(self, offline_cli: Cli, tmp_path: Path) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"], currency="usd")
        result = await offline_cli("promotion", "check", str(spec))
        assert result.refused_with("error: currency: 'usd' is not an ISO 4217 currency code"), result
        credit = write_spec(tmp_path, "p1", ["c1"], value={"amount": "1.00", "uses": "2"})
        result = await offline_cli("promotion", "check", str(credit))
        assert result.refused_with("error: value: a credit gives an `amount` and nothing else"), result

    @pytest.mark.parametrize("value", ["a b", "x" * 65, ""])
    async def test_a_promotion_id_error_states_only_its_own_rule(
        self, offline_cli: Cli, tmp_path: Path, value: str
    ) -> None:
        in_spec = await offline_cli("promotion", "check", str(write_spec(tmp_path, value, ["c1"])))
        on_line = await offline_cli("promotion", "status", value)
        for result, field in ((in_spec, "id"), (on_line, "ID")):
            assert result.refused_with(f"error: {field}: "), result
            assert ": @" not in result.err, result.err
            assert "64" in result.err

    async def test_a_blank_name_is_told_to_name_the_promotion(self, offline_cli: Cli, tmp_path: Path) -> None:
        spec = write_spec(tmp_path, "p1", ["c1"], name="  ")
        assert (await offline_cli("promotion", "check", str(spec))).refused_with(
            "name: is blank: give the promotion a name people will recognise"
        )
