"""The `incentives` command: its JSON contract, its refusals (exit 1), unreachable servers (exit 3),
the installed console script and `replay`. Bad input is in `test_bad_input.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from incentives.adapters.db import Pool
from tests.cli.conftest import Cli, grant
from tests.helpers.builders import NewId
from tests.helpers.ledger import counts


class TestJsonContract:
    async def test_grant_redeem_reverse_revoke_and_wallet(self, cli: Cli, new_id: NewId) -> None:
        customer, credit_id, coupon_id, order_id = new_id("c"), new_id("cr"), new_id("cpn"), new_id("o")
        granted = await cli(
            "grant",
            customer,
            "--lot",
            credit_id,
            "--currency",
            "USD",
            "--credit",
            "10.00",
            "--expires-in",
            "14d",
            "--json",
        )
        assert granted.code == 0, granted.err
        assert {k: granted.json()[k] for k in ("lot_id", "kind", "status", "currency", "amount", "remaining")} == {
            "lot_id": credit_id,
            "kind": "credit",
            "status": "active",
            "currency": "USD",
            "amount": 1000,
            "remaining": 1000,
        }
        coupon = await cli(
            "grant", customer, "--lot", coupon_id, "--currency", "USD", "--coupon-percent", "20",
            "--coupon-cap", "5.00", "--min-order", "20", "--uses", "2", "--json",
        )  # fmt: skip
        assert coupon.code == 0, coupon.err
        assert coupon.json()["coupon"] == {
            "amount_off": None,
            "percent_off": 20,
            "cap": 500,
            "min_order": 2000,
            "uses": 2,
        }
        redeemed = await cli(
            "redeem",
            customer,
            "--order",
            order_id,
            "--total",
            "30.00",
            "--currency",
            "USD",
            "--coupon",
            coupon_id,
            "--json",
        )
        assert redeemed.code == 0, redeemed.err
        body = redeemed.json()
        assert {k: body[k] for k in ("order_id", "currency", "total", "discount", "to_pay")} == {
            "order_id": order_id,
            "currency": "USD",
            "total": 3000,
            "discount": 1500,
            "to_pay": 1500,
        }
        assert [(p["lot_id"], p["amount"]) for p in body["applied"]] == [(coupon_id, 500), (credit_id, 1000)]
        reversed_ = await cli(
            "reverse", customer, "--order", order_id, "--reversal", new_id("r"), "--amount", "2.50", "--json"
        )
        assert reversed_.code == 0, reversed_.err
        assert [(p["lot_id"], p["amount"]) for p in reversed_.json()["restored"]] == [(credit_id, 250)]
        revoked = await cli("revoke", customer, "--lot", credit_id, "--reason", "support 12", "--json")
        assert revoked.code == 0, revoked.err
        assert revoked.json()["amount"] == 250
        await _the_wallet_shows_it_all(cli, customer, credit_id, coupon_id, order_id)

    async def test_readable_output_formats_money_by_currency(self, cli: Cli, new_id: NewId) -> None:
        customer = new_id("c")
        assert (await cli("grant", customer, "--lot", new_id("l"), "--currency", "JPY", "--credit", "1500")).code == 0
        assert (await cli("grant", customer, "--lot", new_id("l"), "--currency", "KWD", "--credit", "1.250")).code == 0
        shown = await cli("wallet", customer)
        assert shown.code == 0
        assert "1500 JPY" in shown.out
        assert "1.250 KWD" in shown.out


class TestRejections:
    async def test_unknown_customer_order_lot_and_coupon_exit_1_and_write_nothing(
        self, cli: Cli, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        assert (await cli(*grant(customer, lot_id, "--credit", "10"))).code == 0
        before = await counts(pool, customer)
        cases = [
            (["wallet", new_id("nobody")], "UnknownCustomer"),
            (
                ["redeem", new_id("nobody"), "--order", new_id("o"), "--total", "5", "--currency", "USD"],
                "NothingToRedeem",
            ),
            (
                [
                    "redeem",
                    customer,
                    "--order",
                    new_id("o"),
                    "--total",
                    "5",
                    "--currency",
                    "USD",
                    "--coupon",
                    new_id("x"),
                ],
                "UnknownLot",
            ),
            (["redeem", customer, "--order", new_id("o"), "--total", "5", "--currency", "EUR"], "NothingToRedeem"),
            (["reverse", customer, "--order", new_id("o"), "--reversal", new_id("r")], "UnknownOrder"),
            (["reverse", customer, "--order", new_id("o"), "--reversal", new_id("r"), "--amount", "1"], "UnknownOrder"),
            (["revoke", customer, "--lot", new_id("x"), "--reason", "r"], "UnknownLot"),
            (
                ["redeem", customer, "--order", new_id("o"), "--total", "5", "--currency", "USD", "--coupon", lot_id],
                "CouponNotUsable",
            ),
        ]
        for argv, error_type in cases:
            result = await cli(*argv)
            assert result.code == 1, (argv, result)
            assert f"rejected ({error_type})" in result.err, (argv, result.err)
            assert result.err.count("\n") == 1
        assert await counts(pool, customer) == before

    async def test_duplicate_ids_with_different_payloads_exit_1_and_write_nothing(
        self, cli: Cli, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order_id, reversal_id = new_id("c"), new_id("lot"), new_id("o"), new_id("r")
        assert (await cli(*grant(customer, lot_id, "--credit", "10"))).code == 0
        redeem = ["redeem", customer, "--order", order_id, "--currency", "USD"]
        assert (await cli(*redeem, "--total", "4")).code == 0
        reverse = ["reverse", customer, "--order", order_id, "--reversal", reversal_id]
        assert (await cli(*reverse, "--amount", "1")).code == 0
        before = await counts(pool, customer)
        for argv, error_type in [
            (grant(customer, lot_id, "--credit", "11"), "LotConflict"),
            ([*redeem, "--total", "5"], "OrderConflict"),
            ([*reverse, "--amount", "2"], "ReversalConflict"),
        ]:
            result = await cli(*argv)
            assert (result.code, error_type in result.err) == (1, True), result
        # The same ids with the same payloads are retries: the first results, nothing new written.
        assert (await cli(*grant(customer, lot_id, "--credit", "10"))).code == 0
        assert (await cli(*redeem, "--total", "4")).code == 0
        assert (await cli(*reverse, "--amount", "1")).code == 0
        assert await counts(pool, customer) == before


class TestUnavailable:
    async def test_unreachable_temporal_or_postgres_exits_3_with_a_hint(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        argv = ["redeem", "c", "--order", "o", "--total", "1", "--currency", "USD"]
        temporal = os.environ["TEMPORAL_ADDRESS"]
        monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
        result = await cli(*argv)
        assert result.code == 3
        assert "cannot reach Temporal" in result.err
        assert "incentives dev up" in result.err
        monkeypatch.setenv("TEMPORAL_ADDRESS", temporal)  # Temporal answers; only Postgres does not
        monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
        result = await cli(*argv)
        assert result.code == 3
        assert "cannot connect to Postgres at postgresql://nobody@127.0.0.1:1/nothing: connection refused" in result.err
        assert "incentives dev up" in result.err
        assert "Temporal" not in result.err.split("incentives dev up")[0]


class TestConsoleScript:
    def test_the_installed_command_exits_2_without_a_traceback(self, project_root: Path) -> None:
        command = Path(sys.executable).parent / "incentives"
        result = subprocess.run(
            [str(command), "redeem", "c", "--order", "o", "--total", "10.001", "--currency", "USD"],
            capture_output=True,
            text=True,
            cwd=project_root,
            check=False,
        )
        assert result.returncode == 2
        assert (
            result.stderr
            == "incentives: error: --total: '10.001' has more decimals than USD allows (at most 2 decimal(s))\n"
        )


class TestReplay:
    async def test_replay_accepts_the_recorded_histories_and_refuses_a_diverging_one(
        self, capsys: pytest.CaptureFixture[str], project_root: Path, tmp_path: Path
    ) -> None:
        cli = Cli(capsys)
        histories = sorted(str(p) for p in (project_root / "tests" / "replay" / "histories").rglob("*.json"))
        ok = await cli("replay", *histories)
        assert ok.code == 0, ok.err
        assert ok.out.count("ok ") == len(histories)
        changed = tmp_path / "changed.json"
        timers = project_root / "tests" / "replay" / "histories" / "regular_ledger_calls" / "wallet_timers_0.json"
        changed.write_text(timers.read_text().replace('"expire_lot"', '"expire_lots"'))
        diverged = await cli("replay", str(changed))
        assert diverged.code == 1
        assert "does not match activity type" in diverged.out
        assert "at event 68 (ACTIVITY_TASK_SCHEDULED)" in diverged.out  # the first expire_lot renamed
        garbage = tmp_path / "garbage.json"
        garbage.write_text("{}")
        assert (await cli("replay", str(garbage))).code == 2


async def _the_wallet_shows_it_all(cli: Cli, customer: str, credit_id: str, coupon_id: str, order_id: str) -> None:
    wallet = await cli("wallet", customer, "--json")
    assert wallet.code == 0, wallet.err
    view = wallet.json()
    assert view["customer_id"] == customer
    assert view["balances"] == {}
    assert [(lot["lot_id"], lot["status"], lot["remaining"]) for lot in view["lots"]] == [
        (credit_id, "revoked", 0),
        (coupon_id, "active", 0),
    ]
    assert {"lot_id", "kind", "status", "currency", "amount", "remaining", "expires_at"} <= view["lots"][0].keys()
    assert [(e["entry_type"], e["lot_id"], e["amount"], e["order_id"]) for e in view["ledger"]] == [
        ("grant", credit_id, 1000, None),
        ("grant", coupon_id, 0, None),
        ("redeem", coupon_id, -500, order_id),
        ("redeem", credit_id, -1000, order_id),
        ("reverse", credit_id, 250, order_id),
        ("revoke", credit_id, -250, None),
    ]
    assert all("created_at" in e and e["run_id"] for e in view["ledger"])
    assert view["ledger_total"] == 6
