"""``ordercore demo``: the README's first command. It builds a fresh SQLite file, walks sample
orders through their life, prints what happened, and leaves a database the other commands
can explore."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ordercore.cli import cli

from .conftest import OC, run_script, sqlite_url


def demo(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 0, f"{result.stderr!r} {result.exception!r}"
    assert "Traceback" not in result.stderr
    return result


def test_demo_as_installed_in_the_working_directory(tmp_path: Path) -> None:
    """Exactly as the README runs it: no options, the default file in the working directory."""
    result = run_script("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    database = tmp_path / "ordercore-demo.db"
    assert database.is_file()
    assert "audit chain" in result.stdout
    assert "intact" in result.stdout
    assert "to Han Meimei's balance" in result.stdout
    assert "back through the fake platform" in result.stdout
    assert "ordercore --database-url sqlite:///ordercore-demo.db" in result.stdout
    assert not (tmp_path / "ordercore.db").exists()  # the demo leaves the default db alone


def test_demo_json_and_the_database_it_leaves(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    data = json.loads(demo("--database", str(database), "--json").stdout)
    assert data["database"] == str(database)
    steps = data["steps"]
    assert isinstance(steps, list)
    assert len(steps) >= 10
    assert all(isinstance(step["text"], str) and step["text"] for step in steps)
    assert steps[0]["text"].startswith("created")
    assert [step["audit_ok"] for step in steps if "audit_ok" in step] == [True]
    statuses = {step.get("status") for step in steps}
    assert {"completed", "canceled", "refunded", "paid"} <= statuses

    # the file is a normal ordercore database: every command works on it
    oc = OC(database)
    assert oc.json("audit", "verify")["ok"] is True
    orders = oc.json("orders", "list")
    assert orders["next_cursor"] is None
    listed = {o["number"]: o["status"] for o in orders["items"]}
    for step in steps:
        if "order" in step and "status" in step:
            assert step["order"] in listed
    assert {"completed", "canceled", "refunded"} <= set(listed.values())
    for number in listed:
        shown = oc.json("orders", "show", number)
        assert shown["number"] == number
        assert {"original", "payable", "paid", "refunded"} <= set(shown["amounts"])
        assert all(isinstance(v, str) for v in shown["amounts"].values())
    assert len(oc.json("customers", "list")["items"]) >= 2
    assert {"VPN-1M", "VPN-12M"} <= {p["sku"] for p in oc.json("products", "list")["items"]}
    current = oc.json("db", "current")
    assert current["current"] == current["head"]

    # four refunds: one part to the customer's balance, one in full back through the fake
    # channel, one part back through Alipay and one through WeChat Pay (their sandbox gateways,
    # over loopback HTTP; WeChat's answered PROCESSING, then settled by REFUND.SUCCESS)
    told = [step for step in steps if "refund" in step]
    assert [step["refund_status"] for step in told] == ["succeeded"] * 4
    partly, fully, alipay, wechat = told
    assert wechat["refunded"] == "5.00"
    assert wechat["status"] in ("paid", "completed")
    assert alipay["status"] in ("paid", "completed")
    assert alipay["refunded"] == "5.00"
    assert partly["status"] in ("paid", "completed")  # a partial refund keeps the status
    assert partly["refunded"] == "100.00"
    assert fully["status"] == "refunded"
    refunds = {r["id"]: r for r in oc.json("refunds", "list")["items"]}
    assert set(refunds) == {partly["refund"], fully["refund"], alipay["refund"], wechat["refund"]}
    assert refunds[wechat["refund"]]["channel"] == "wechat"
    through_alipay = refunds[alipay["refund"]]
    assert (through_alipay["channel"], through_alipay["destination"]) == ("alipay", "original")
    assert through_alipay["amount"] == "5.00"
    assert all(r["status"] == "succeeded" for r in refunds.values())
    part = refunds[partly["refund"]]
    assert (part["order"], part["destination"], part["amount"]) == (
        partly["order"],
        "balance",
        "100.00",
    )
    assert part["channel"] == "bank_transfer"
    full = refunds[fully["refund"]]
    assert (full["order"], full["destination"], full["channel"]) == (
        fully["order"],
        "original",
        "fake",
    )
    assert full["channel_refund_no"]

    order = oc.json("orders", "show", partly["order"])
    assert order["status"] == partly["status"]
    assert order["amounts"]["refunded"] == "100.00"
    assert Decimal(order["amounts"]["paid"]) > Decimal("100.00")
    assert [r["id"] for r in order["refunds"]] == [partly["refund"]]
    credit = [e for e in order["wallet"] if e["reason"] == "order.refund"]
    assert [e["delta"] for e in credit] == ["100.00"]
    after_sales = oc.json("orders", "after-sales", partly["order"])
    assert Decimal(after_sales["refundable"]) == Decimal(order["amounts"]["paid"]) - 100

    order = oc.json("orders", "show", fully["order"])
    assert order["status"] == "refunded"
    assert order["amounts"]["refunded"] == order["amounts"]["paid"] == full["amount"]
    assert fully["refunded"] == full["amount"]
    shown = oc.json("refunds", "show", fully["refund"])
    assert [h["action"] for h in shown["history"]] == [
        "refund.request",
        "refund.approve",
        "refund.start",
        "refund.succeed",
    ]
    assert shown["history"][0]["actor"].startswith("customer:")
    assert shown["history"][-1]["actor"] == "channel:fake"
    assert [c["kind"] for c in shown["calls"]] == ["refund"]
    inbox = oc.json("callbacks", "list", "--order", fully["order"])["items"]
    assert "applied" in {e["status"] for e in inbox}
    texts = " ".join(step["text"] for step in steps)
    assert "revoke hook took back" in texts


def test_demo_twice_replaces_the_file(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    first = demo("--database", str(database))
    assert "•" in first.stdout
    assert "intact" in first.stdout
    numbers_first = {o["number"] for o in OC(database).json("orders", "list")["items"]}
    customers_first = len(OC(database).json("customers", "list")["items"])

    second = json.loads(demo("--database", str(database), "--json").stdout)
    assert [step["audit_ok"] for step in second["steps"] if "audit_ok" in step] == [True]
    oc = OC(database)
    numbers_second = {o["number"] for o in oc.json("orders", "list")["items"]}
    assert len(numbers_second) == len(numbers_first)  # a fresh database, not twice the orders
    assert numbers_second.isdisjoint(numbers_first)
    assert len(oc.json("customers", "list")["items"]) == customers_first
    assert oc.json("audit", "verify")["ok"] is True


def test_demo_ignores_the_configured_database(tmp_path: Path) -> None:
    """``demo`` builds its own file; the --database-url of the user's real data is untouched."""
    real = tmp_path / "real.db"
    result = CliRunner().invoke(
        cli,
        ["--database-url", sqlite_url(real), "demo", "--database", str(tmp_path / "d.db")],
    )
    assert result.exit_code == 0, result.stderr
    assert not real.exists()
    assert (tmp_path / "d.db").is_file()


def test_demo_honours_the_database_url_when_no_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "from-url.db"
    result = CliRunner().invoke(cli, ["--database-url", sqlite_url(target), "demo", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["database"] == sqlite_url(target)
    assert target.is_file()
    assert not (tmp_path / "ordercore-demo.db").exists()
    assert OC(target).json("audit", "verify")["ok"] is True


def test_every_command_works_on_the_demo_database_later(tmp_path: Path) -> None:
    """After the payment deadlines pass, the job runner and reconcile meet attempts of the
    demo's channels (``fake``, ``alipay``), which are not configured outside the demo: they
    are left for later with a reason, and everything else runs."""
    database = tmp_path / "demo.db"
    demo("--database", str(database))
    oc = OC(database)
    oc.sql("UPDATE orders SET payment_deadline = '2020-01-01 00:00:00.000000'")
    oc.sql("UPDATE payment_attempts SET next_check_at = '2020-01-01 00:00:00.000000'")
    report = oc.json("jobs", "run")
    pending = [o["number"] for o in oc.json("orders", "list", "--status", "pending")["items"]]
    assert pending
    assert all(any(line.startswith(n) for line in report["skipped"]) for n in pending)
    assert all("not configured" in line for line in report["skipped"])
    assert oc.json("reconcile")["skipped"] == []  # claimed above: leased, not due again yet
    for command in (["orders", "list"], ["anomalies", "list"], ["audit", "verify"]):
        oc.json(*command)
