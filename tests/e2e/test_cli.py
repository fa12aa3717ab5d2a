"""The ``ordercore`` command, end to end: every command of the CLI sections of the foundation
and order-book issues, driven as a user drives it, with the JSON contract checked.

In-process runs (CliRunner, see ``conftest.OC``) do the bulk; ``TestInstalledScript`` runs the
installed console script as a subprocess to prove the entry point, stderr and exit codes.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from ordercore._audit.chain import KEYLESS_LIMITS
from ordercore.cli import cli

from .conftest import (
    HAN,
    LI,
    LI_EMAIL,
    LI_REF,
    OC,
    SHOP_CONFIG,
    WANG,
    WANG_REF,
    assert_one_error,
    copy_database,
    run_script,
    sqlite_url,
)

DECIMAL = re.compile(r"-?\d+(\.\d+)?\Z")
STATUSES = {"pending", "paid", "completed", "canceled", "refunded"}
TIME_KEYS = {
    "at",
    "created_at",
    "paid_at",
    "completed_at",
    "canceled_at",
    "refunded_at",
    "payment_deadline",
    "valid_from",
    "valid_until",
}
AMOUNT_KEYS = {
    "price",
    "unit_price",
    "total",
    "amount",
    "payable",
    "paid",
    "refunded",
    "max_discount",
    "min_amount",
}


# ---------------------------------------------------------------------------- helpers
def no_floats(data: Any, path: str = "$") -> None:
    """JSON that scripts rely on never carries a float, anywhere."""
    assert not isinstance(data, float), f"{path} is a float: {data!r}"
    if isinstance(data, dict):
        for key, value in data.items():
            no_floats(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            no_floats(value, f"{path}[{i}]")


def check_times_and_amounts(data: Any, path: str = "$") -> None:
    """Times are ISO 8601 with an offset; money amounts are decimal strings."""
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}"
            if key in TIME_KEYS and value is not None:
                assert isinstance(value, str), f"{where} is not a string: {value!r}"
                parsed = datetime.fromisoformat(value)
                assert parsed.utcoffset() is not None, f"{where} has no offset: {value}"
            elif key in AMOUNT_KEYS and value is not None:
                assert isinstance(value, str), f"{where} is not a decimal string: {value!r}"
                assert DECIMAL.match(value), f"{where} is not a decimal: {value!r}"
            else:
                check_times_and_amounts(value, where)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_times_and_amounts(value, f"{path}[{i}]")


def check_order_contract(order: dict[str, Any]) -> None:
    """``orders show NUMBER --json``: the object scripts rely on (foundation issue, §8)."""
    for key in (
        "number",
        "status",
        "currency",
        "customer",
        "lines",
        "amounts",
        "created_at",
        "paid_at",
        "payments",
        "refunds",
        "history",
    ):
        assert key in order, f"orders show --json lacks {key!r}"
    assert isinstance(order["number"], str)
    assert order["status"] in STATUSES
    assert isinstance(order["customer"], dict)
    assert isinstance(order["customer"]["id"], int)
    assert isinstance(order["lines"], list)
    assert order["lines"]
    for line in order["lines"]:
        assert {"sku", "name", "unit_price", "quantity", "total"} <= set(line)
        assert isinstance(line["quantity"], int)
    amounts = order["amounts"]
    assert {"original", "payable", "paid", "refunded"} <= set(amounts)
    for key, value in amounts.items():
        assert isinstance(value, str), f"amounts.{key} is {value!r}, not a decimal string"
        assert DECIMAL.match(value), f"amounts.{key} = {value!r}"
    for adjustment in order.get("adjustments", []):  # one key per discount, deduction, fee
        assert adjustment["kind"] in amounts, f"amounts lacks {adjustment['kind']!r}"
    assert isinstance(order["payments"], list)
    assert isinstance(order["refunds"], list)
    assert isinstance(order["history"], list)
    for step in order["history"]:
        assert {"from", "to", "actor", "reason", "at"} <= set(step)
        assert step["from"] in STATUSES
        assert step["to"] in STATUSES
    assert datetime.fromisoformat(order["created_at"]).utcoffset() is not None
    no_floats(order)
    check_times_and_amounts(order)


def numbers(page: dict[str, Any]) -> set[str]:
    return {item["number"] for item in page["items"]}


def set_created_at(oc: OC, number: str, at: datetime) -> None:
    """Move an order in time, directly in the database (orders are created 'now')."""
    utc = at.astimezone(timezone.utc).replace(tzinfo=None)
    done = oc.sql(
        "UPDATE orders SET created_at = ? WHERE number = ? RETURNING id",
        (utc.isoformat(sep=" ", timespec="microseconds"), number),
    )
    assert len(done) == 1


def audit_count(oc: OC) -> int:
    """Audit records, sealed into the chain or pending."""
    sealed = int(oc.sql("SELECT COUNT(*) FROM audit_log")[0][0])
    return sealed + int(oc.sql("SELECT COUNT(*) FROM audit_pending")[0][0])


def create(oc: OC, *args: Any) -> dict[str, Any]:
    order: dict[str, Any] = oc.json("orders", "create", *args)
    return order


def all_pages(oc: OC, *args: Any, limit: int) -> list[dict[str, Any]]:
    """Walk a list command page by page; return the pages."""
    pages = []
    cursor: str | None = None
    for _ in range(100):
        extra = ["--cursor", cursor] if cursor is not None else []
        page = oc.json(*args, "--limit", limit, *extra)
        assert set(page) == {"items", "next_cursor"}
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str)
    pytest.fail("the cursor never ran out")


# ------------------------------------------------------------------ the installed script
class TestInstalledScript:
    """The console script as a real subprocess (each run costs a Python start-up, so few)."""

    def test_default_database_upgrade_and_current(self, tmp_path: Path) -> None:
        upgraded = run_script("db", "upgrade", cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "revision" in upgraded.stdout
        assert upgraded.stderr == ""
        assert (tmp_path / "ordercore.db").is_file()  # the default: ./ordercore.db

        url = sqlite_url(tmp_path / "ordercore.db")
        current = run_script(
            "db", "current", "--json", cwd=tmp_path, env={"ORDERCORE_DATABASE_URL": url}
        )
        assert current.returncode == 0, current.stderr
        data = json.loads(current.stdout)
        assert data["current"] == data["head"]
        assert data["current"]

    def test_command_before_upgrade_is_one_sentence_on_stderr(self, tmp_path: Path) -> None:
        url = sqlite_url(tmp_path / "never-upgraded.db")
        result = run_script("--database-url", url, "customers", "list", cwd=tmp_path)
        sentence = assert_one_error(result, code=1)
        assert "ordercore db upgrade" in sentence

    def test_usage_error_exits_2(self, tmp_path: Path, shop: OC) -> None:
        env = {"ORDERCORE_DATABASE_URL": shop.url}
        bad_actor = run_script("orders", "list", "--actor", "nobody", cwd=tmp_path, env=env)
        assert "--actor" in assert_one_error(bad_actor, code=2)

    def test_config_file_and_order_through_the_script(self, tmp_path: Path, shop: OC) -> None:
        assert shop.config is not None
        created = run_script(
            "--config", shop.config, "orders", "create", "--customer", LI_EMAIL,
            "--item", "VPN-1M:1", "--channel", "fakepay", "--json",
            cwd=tmp_path, env={"ORDERCORE_DATABASE_URL": shop.url},
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        order = json.loads(created.stdout)
        check_order_contract(order)
        assert order["amounts"]["fee"] == "0.18"  # 0.6 % of 30.00, from the config file

    def test_broken_audit_chain_exits_3(self, tmp_path: Path, shop: OC) -> None:
        shop.sql("UPDATE audit_log SET reason = 'edited' WHERE seq = 2")
        broken = run_script(
            "audit", "verify", cwd=tmp_path, env={"ORDERCORE_DATABASE_URL": shop.url}
        )
        assert broken.returncode == 3
        assert broken.stdout == ""
        assert "record 2" in broken.stderr
        assert "Traceback" not in broken.stderr


# ----------------------------------------------------------------------------------- db
class TestDb:
    def test_upgrade_then_current(self, fresh_oc: OC) -> None:
        before = fresh_oc.json("db", "current")
        assert before["current"] is None
        assert before["head"]
        assert "revision" in fresh_oc.ok("db", "upgrade")
        after = fresh_oc.json("db", "current")
        assert after == {"current": before["head"], "head": before["head"]}
        fresh_oc.ok("db", "upgrade")  # twice is harmless
        assert fresh_oc.json("db", "current") == after
        assert "current" in fresh_oc.ok("db", "current")

    @pytest.mark.parametrize(
        "args",
        [
            ["customers", "list"],
            ["customers", "add", "--name", "Early Bird"],
            ["products", "list", "--json"],
            ["orders", "show", "X", "--json"],
            ["orders", "list"],
            ["audit", "verify"],
        ],
    )
    def test_commands_before_upgrade_say_to_upgrade(self, fresh_oc: OC, args: list[str]) -> None:
        sentence = fresh_oc.fail(*args)
        assert "ordercore db upgrade" in sentence
        assert fresh_oc.json("db", "current")["current"] is None  # nothing was created

    def test_database_url_option_and_config_file(self, tmp_path: Path) -> None:
        runner = CliRunner()
        by_option = tmp_path / "by-option.db"
        result = runner.invoke(cli, ["--database-url", sqlite_url(by_option), "db", "upgrade"])
        assert result.exit_code == 0, result.stderr
        assert by_option.is_file()

        by_file = tmp_path / "by-file.db"
        config = tmp_path / "settings.toml"
        config.write_text(
            f'database_url = "{sqlite_url(by_file)}"\n' + SHOP_CONFIG, encoding="utf-8"
        )
        result = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
        assert result.exit_code == 0, result.stderr
        assert by_file.is_file()
        result = runner.invoke(cli, ["--config", str(config), "customers", "list", "--json"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == {"items": [], "next_cursor": None}

    def test_version(self, oc: OC) -> None:
        assert ", version " in oc.ok("--version")

    def test_option_beats_environment(self, tmp_path: Path) -> None:
        chosen = tmp_path / "chosen.db"
        result = CliRunner().invoke(
            cli,
            ["--database-url", sqlite_url(chosen), "db", "upgrade"],
            env={"ORDERCORE_DATABASE_URL": sqlite_url(tmp_path / "ignored.db")},
        )
        assert result.exit_code == 0, result.stderr
        assert chosen.is_file()
        assert not (tmp_path / "ignored.db").exists()


# ---------------------------------------------------------------------------- customers
class TestCustomers:
    def test_add_show_list(self, oc: OC) -> None:
        added = oc.json(
            "customers", "add", "--name", "Li Lei", "--email", "li@example.com",
            "--phone", "+86 138 0000 0000", "--external-ref", "u-1", "--identity-verified",
        )  # fmt: skip
        assert isinstance(added["id"], int)
        assert added["name"] == "Li Lei"
        assert added["email"] == "li@example.com"
        assert added["phone"] == "+86 138 0000 0000"
        assert added["external_ref"] == "u-1"
        assert added["identity_verified"] is True
        check_times_and_amounts(added)

        assert oc.json("customers", "show", added["id"]) == added
        text = oc.ok("customers", "show", added["id"])
        assert "Li Lei" in text
        assert "li@example.com" in text

        plain = oc.ok("customers", "add", "--name", "Han Meimei")
        assert "Han Meimei" in plain
        listed = oc.json("customers", "list")
        assert listed["next_cursor"] is None
        assert [c["name"] for c in listed["items"]] == ["Li Lei", "Han Meimei"]
        assert listed["items"][0] == added
        assert "Han Meimei" in oc.ok("customers", "list")

    @pytest.mark.parametrize(("count", "limit"), [(7, 3), (6, 3), (1, 5)])
    def test_pagination(self, oc: OC, count: int, limit: int) -> None:
        ids = [
            oc.json("customers", "add", "--name", f"C{i}", "--email", f"c{i}@example.com")["id"]
            for i in range(count)
        ]
        pages = all_pages(oc, "customers", "list", limit=limit)
        seen = [c["id"] for page in pages for c in page["items"]]
        assert seen == ids
        assert all(len(page["items"]) == limit for page in pages[:-1])
        assert pages[-1]["items"], "the last page is empty: next_cursor should have been null"
        assert pages[-1]["next_cursor"] is None

    def test_duplicate_and_unknown(self, oc: OC) -> None:
        oc.ok("customers", "add", "--name", "A", "--email", "a@example.com")
        assert "a@example.com" in oc.fail(
            "customers", "add", "--name", "B", "--email", "a@example.com"
        )
        assert "999" in oc.fail("customers", "show", "999")


# ----------------------------------------------------------------------------- products
class TestProducts:
    def test_add_show_list_update(self, oc: OC) -> None:
        added = oc.json(
            "products", "add", "--sku", "VPN-1M", "--name", "VPN, 1 month", "--price", "30",
            "--currency", "cny", "--spec", "duration=30d", "--spec", "traffic=200GB",
            "--tier", "3:10", "--tier", "12:20", "--stock", "10", "--low-stock", "2",
        )  # fmt: skip
        assert added["sku"] == "VPN-1M"
        assert added["price"] == "30.00"
        assert added["currency"] == "CNY"
        assert added["specs"] == {"duration": "30d", "traffic": "200GB"}
        assert added["stock"] == 10
        assert added["low_stock_threshold"] == 2
        assert added["active"] is True
        assert added["tiers"] == [
            {"min_quantity": 3, "percent_off": "10"},
            {"min_quantity": 12, "percent_off": "20"},
        ]
        no_floats(added)
        check_times_and_amounts(added)
        assert oc.json("products", "show", "VPN-1M") == added
        assert "VPN, 1 month" in oc.ok("products", "show", "VPN-1M")

        retired = oc.json(
            "products", "add", "--sku", "OLD", "--name", "Old", "--price", "0.5",
            "--currency", "USD", "--inactive",
        )  # fmt: skip
        assert retired["active"] is False
        assert retired["price"] == "0.50"
        assert retired["stock"] is None
        yen = oc.json("products", "add", "--sku", "JP", "--name", "Yen", "--price", "1000",
                      "--currency", "JPY")  # fmt: skip
        assert yen["price"] == "1000"

        listed = oc.json("products", "list")
        assert [p["sku"] for p in listed["items"]] == ["JP", "OLD", "VPN-1M"]
        assert listed["next_cursor"] is None
        assert "VPN-1M" in oc.ok("products", "list")

        updated = oc.json(
            "products", "update", "VPN-1M", "--name", "VPN monthly", "--price", "35.50",
            "--stock", "3", "--spec", "duration=31d", "--inactive", "--reason", "repricing",
        )  # fmt: skip
        assert updated["name"] == "VPN monthly"
        assert updated["price"] == "35.50"
        assert updated["currency"] == "CNY"
        assert updated["stock"] == 3
        assert updated["low_on_stock"] is False  # 3 left, threshold 2
        assert updated["specs"] == {"duration": "31d"}  # --spec replaces all specs
        assert updated["active"] is False
        assert updated["tiers"] == added["tiers"]  # untouched
        again = oc.json("products", "update", "VPN-1M", "--active", "--no-tiers",
                        "--unlimited-stock")  # fmt: skip
        assert again["active"] is True
        assert again["tiers"] == []
        assert again["stock"] is None
        assert oc.json("products", "show", "VPN-1M") == again
        log = oc.json("audit", "log", "product", "VPN-1M")
        assert [r["action"] for r in log["items"]] == [
            "product.add",
            "product.update",
            "product.update",
        ]
        assert log["items"][1]["reason"] == "repricing"

    @pytest.mark.parametrize(("count", "limit"), [(5, 2), (4, 2)])
    def test_pagination(self, oc: OC, count: int, limit: int) -> None:
        skus = [f"SKU-{i}" for i in range(count)]
        for sku in skus:
            oc.ok("products", "add", "--sku", sku, "--name", sku, "--price", "1.00",
                  "--currency", "CNY")  # fmt: skip
        pages = all_pages(oc, "products", "list", limit=limit)
        assert [p["sku"] for page in pages for p in page["items"]] == skus
        assert pages[-1]["items"]
        assert pages[-1]["next_cursor"] is None

    def test_update_price_keeps_the_currency_and_orders_keep_their_snapshot(self, shop: OC) -> None:
        order = create(shop, "--customer", HAN, "--item", "VPN-1M:1")
        shop.ok("products", "update", "VPN-1M", "--price", "40.00")
        assert shop.json("products", "show", "VPN-1M")["price"] == "40.00"
        shown = shop.json("orders", "show", order["number"])
        assert shown["lines"][0]["unit_price"] == "30.00"
        assert shop.fail("products", "update", "VPN-1M", "--price", "40.001")


# ------------------------------------------------------------------------------ coupons
class TestCoupons:
    def test_add_list_show_disable(self, shop: OC) -> None:
        percent = shop.json(
            "coupons", "add", "--code", "SPRING", "--percent", "15", "--max-discount", "30",
            "--min-amount", "100", "--valid-from", "2020-01-01", "--valid-until", "2099-12-31",
            "--limit-total", "10", "--limit-per-customer", "2", "--product", "VPN-12M",
        )  # fmt: skip
        assert percent["code"] == "SPRING"
        assert percent["kind"] == "percent"
        assert percent["percent"] == "15"
        assert percent["max_discount"] == "30.00"
        assert percent["min_amount"] == "100.00"
        assert percent["limit_total"] == 10
        assert percent["limit_per_customer"] == 2
        assert percent["products"] == ["VPN-12M"]
        assert percent["active"] is True
        assert percent["uses"] == 0
        # dates are local days in the configured zone (Asia/Shanghai, UTC+8)
        assert datetime.fromisoformat(percent["valid_from"]) == datetime(
            2019, 12, 31, 16, tzinfo=timezone.utc
        )
        assert datetime.fromisoformat(percent["valid_until"]) == datetime(
            2099, 12, 31, 16, tzinfo=timezone.utc
        )  # the end of the last valid day, exclusive
        no_floats(percent)
        check_times_and_amounts(percent)
        fixed = shop.json("coupons", "show", "FIVE")
        assert fixed["kind"] == "fixed"
        assert fixed["amount"] == "5.00"
        assert fixed["percent"] is None

        listed = shop.json("coupons", "list")
        assert [c["code"] for c in listed["items"]] == ["FIVE", "SPRING", "WELCOME20"]
        assert listed["next_cursor"] is None
        pages = all_pages(shop, "coupons", "list", limit=2)
        assert [c["code"] for p in pages for c in p["items"]] == ["FIVE", "SPRING", "WELCOME20"]
        assert "SPRING" in shop.ok("coupons", "list")
        assert "SPRING" in shop.ok("coupons", "show", "SPRING")

        order = create(shop, "--customer", LI, "--item", "VPN-12M:1", "--coupon", "SPRING")
        assert order["amounts"]["coupon"] == "30.00"  # 15 % of 288.00 is 43.20, capped at 30
        assert shop.json("coupons", "show", "SPRING")["uses"] == 1

        disabled = shop.json("coupons", "disable", "SPRING", "--reason", "season over")
        assert disabled["active"] is False
        assert disabled["uses"] == 1
        assert "SPRING" in shop.fail(
            "orders", "create", "--customer", HAN, "--item", "VPN-12M:1", "--coupon", "SPRING"
        )

    def test_coupon_rules_are_enforced(self, shop: OC) -> None:
        # FIVE: 5.00 off, minimum 20.00, VPN-1M only
        assert shop.fail("orders", "create", "--customer", LI, "--item", "VPN-12M:1",
                         "--coupon", "FIVE")  # fmt: skip
        ok = create(shop, "--customer", LI, "--item", "VPN-1M:1", "--coupon", "FIVE")
        assert ok["amounts"]["coupon"] == "5.00"
        # WELCOME20: once per customer
        create(shop, "--customer", HAN, "--item", "VPN-1M:1", "--coupon", "WELCOME20")
        assert shop.fail("orders", "create", "--customer", HAN, "--item", "VPN-1M:1",
                         "--coupon", "WELCOME20")  # fmt: skip
        assert shop.fail("orders", "create", "--customer", HAN, "--item", "VPN-1M:1",
                         "--coupon", "NO-SUCH-CODE")  # fmt: skip
        assert shop.fail("coupons", "add", "--code", "BOTH", "--percent", "5", "--amount", "1")
        assert shop.fail("coupons", "add", "--code", "DUP", "--percent", "abc")
        assert shop.fail("coupons", "add", "--code", "FIVE", "--amount", "1.00")


# ------------------------------------------------------------------------------- wallet
class TestWallet:
    def test_credit_debit_show(self, shop: OC) -> None:
        credit = shop.json("wallet", "credit", HAN, "--amount", "10.50", "--reason", "refund",
                           "--note", "ticket 7")  # fmt: skip
        assert credit["customer_id"] == HAN
        assert credit["asset"] == "CNY"
        assert credit["delta"] == "10.50"
        assert credit["balance_after"] == "10.50"
        assert credit["reason"] == "refund"
        assert credit["note"] == "ticket 7"
        assert credit["actor"] == "operator:cli:admin"
        check_times_and_amounts(credit)
        debit = shop.json("wallet", "debit", "han@example.com", "--amount", "0.50",
                          "--reason", "fix")  # fmt: skip
        assert debit["delta"] == "-0.50"
        assert debit["balance_after"] == "10.00"
        points = shop.json("wallet", "credit", HAN, "--points", "250", "--reason", "promo")
        assert points["asset"] == "POINTS"
        assert points["delta"] == 250
        assert (
            shop.json("wallet", "debit", HAN, "--points", "50", "--reason", "x")["balance_after"]
            == 200
        )

        shown = shop.json("wallet", "show", HAN)
        assert shown["customer_id"] == HAN
        assert shown["balances"] == {"CNY": "10.00"}
        assert shown["points"] == 200
        assert len(shown["entries"]) == 4
        no_floats(shown)
        text = shop.ok("wallet", "show", HAN)
        assert "10.00" in text
        assert "200 points" in text
        assert "10.50" in shop.ok("wallet", "credit", HAN, "--amount", "0.50", "--reason", "y")

        li = shop.json("wallet", "show", LI_REF)  # by external reference
        assert li["balances"] == {"CNY": "100.00"}
        assert li["points"] == 1000

    def test_insufficient_funds_refused_and_nothing_written(self, shop: OC) -> None:
        before = shop.json("wallet", "show", LI)
        sentence = shop.fail("wallet", "debit", LI, "--amount", "100.01", "--reason", "x")
        assert "customer 1" in sentence
        assert shop.fail("wallet", "debit", LI, "--points", "1001", "--reason", "x")
        assert shop.fail("wallet", "debit", HAN, "--amount", "0.01", "--reason", "x")
        assert shop.json("wallet", "show", LI) == before

    def test_idempotency_and_bad_input(self, shop: OC) -> None:
        first = shop.json("wallet", "credit", HAN, "--amount", "5", "--reason", "r",
                          "--idempotency-key", "w-1")  # fmt: skip
        again = shop.json("wallet", "credit", HAN, "--amount", "5", "--reason", "r",
                          "--idempotency-key", "w-1")  # fmt: skip
        assert again["id"] == first["id"]
        assert shop.json("wallet", "show", HAN)["balances"] == {"CNY": "5.00"}
        assert "w-1" in shop.fail("wallet", "credit", HAN, "--amount", "6", "--reason", "r",
                                  "--idempotency-key", "w-1")  # fmt: skip
        assert "1.234" in shop.fail("wallet", "credit", HAN, "--amount", "1.234", "--reason", "r")
        assert shop.fail("wallet", "credit", HAN, "--amount", "-5", "--reason", "r")
        assert shop.fail("wallet", "credit", HAN, "--amount", "5", "--points", "5", "--reason", "r")
        assert shop.fail("wallet", "credit", HAN, "--reason", "r")
        assert shop.fail("wallet", "credit", "nobody@example.com", "--amount", "5", "--reason", "r")
        assert shop.json("wallet", "show", HAN)["balances"] == {"CNY": "5.00"}


# ------------------------------------------------------------------------ orders create
class TestOrdersCreate:
    FULL = (
        "--customer", LI_REF, "--item", "VPN-1M:3", "--item", "VPN-12M:1",
        "--coupon", "WELCOME20", "--manual-discount", "5.00", "--reason", "goodwill",
        "--use-balance", "20.00", "--use-points", "500", "--channel", "fakepay",
        "--note", "call before activating", "--tag", "promo", "--idempotency-key", "checkout-1",
    )  # fmt: skip

    def test_full_breakdown(self, shop: OC) -> None:
        order = create(shop, *self.FULL)
        check_order_contract(order)
        assert order["status"] == "pending"
        assert order["currency"] == "CNY"
        assert order["customer"]["id"] == LI
        assert order["customer"]["email"] == LI_EMAIL
        # 3 × 30.00 + 288.00 = 378.00; tier 10 % of 90.00 = 9.00; coupon 20 % of 369.00 =
        # 73.80 capped at 50.00; manual 5.00; balance 20.00; 500 points × 0.01 = 5.00; that
        # leaves 289.00, plus the customer-borne 0.6 % fee 1.734 → 1.73: 290.73 payable.
        assert order["amounts"] == {
            "original": "378.00",
            "tier_discount": "9.00",
            "coupon": "50.00",
            "manual_discount": "5.00",
            "balance": "20.00",
            "points": "5.00",
            "fee": "1.73",
            "payable": "290.73",
            "paid": "0.00",
            "refunded": "0.00",
        }
        amounts = {k: Decimal(v) for k, v in order["amounts"].items()}
        deductions = sum(
            amounts[k] for k in ("tier_discount", "coupon", "manual_discount", "balance", "points")
        )
        assert amounts["original"] - deductions + amounts["fee"] == amounts["payable"]
        assert [(ln["sku"], ln["quantity"], ln["unit_price"], ln["total"]) for ln in
                order["lines"]] == [("VPN-1M", 3, "30.00", "90.00"),
                                    ("VPN-12M", 1, "288.00", "288.00")]  # fmt: skip
        assert order["lines"][0]["specs"] == {"duration": "30d", "traffic": "200GB"}
        assert order["flags"] == ["promo"]
        assert [n["text"] for n in order["notes"]] == ["call before activating"]
        assert order["paid_at"] is None
        assert order["history"] == []
        created = datetime.fromisoformat(order["created_at"])
        deadline = datetime.fromisoformat(order["payment_deadline"])
        assert deadline - created == timedelta(minutes=30)  # payment_timeout_minutes

        # the side effects: stock reserved, wallet debited, coupon reserved
        assert shop.json("products", "show", "VPN-12M")["stock"] == 4
        wallet = shop.json("wallet", "show", LI)
        assert wallet["balances"] == {"CNY": "80.00"}
        assert wallet["points"] == 500
        assert shop.json("coupons", "show", "WELCOME20")["uses"] == 1
        assert shop.json("orders", "show", order["number"]) == order

        text = shop.ok("orders", "show", order["number"])
        assert order["number"] in text
        assert "290.73" in text
        assert "pending" in text

    def test_idempotency_key(self, shop: OC) -> None:
        first = create(shop, *self.FULL)
        again = create(shop, *self.FULL)
        assert again["number"] == first["number"]
        assert len(shop.json("orders", "list")["items"]) == 1
        assert shop.json("products", "show", "VPN-12M")["stock"] == 4  # reserved once
        assert shop.json("wallet", "show", LI)["balances"] == {"CNY": "80.00"}  # debited once
        sentence = shop.fail(
            "orders", "create", "--customer", LI_REF, "--item", "VPN-1M:1",
            "--idempotency-key", "checkout-1",
        )  # fmt: skip
        assert "checkout-1" in sentence
        assert first["number"] in sentence
        assert len(shop.json("orders", "list")["items"]) == 1

    def test_balance_all_pays_at_once(self, shop: OC) -> None:
        order = create(shop, "--customer", LI_EMAIL, "--item", "VPN-1M:1", "--use-balance",
                       "all")  # fmt: skip
        check_order_contract(order)
        assert order["amounts"]["balance"] == "30.00"
        assert order["amounts"]["payable"] == "0.00"
        assert order["status"] == "paid"
        assert order["paid_at"] is not None
        assert [(h["from"], h["to"]) for h in order["history"]] == [("pending", "paid")]
        assert shop.json("wallet", "show", LI)["balances"] == {"CNY": "70.00"}
        # all of a balance smaller than the order
        partial = create(shop, "--customer", LI, "--item", "VPN-12M:1", "--use-balance", "all")
        assert partial["amounts"]["balance"] == "70.00"
        assert partial["amounts"]["payable"] == "218.00"
        assert partial["status"] == "pending"

    def test_new_customer_and_other_currency(self, shop: OC) -> None:
        order = create(shop, "--new-customer-name", "Zhao Liu", "--new-customer-email",
                       "zhao@example.com", "--item", "JP-1M:2")  # fmt: skip
        check_order_contract(order)
        assert order["customer"]["name"] == "Zhao Liu"
        assert order["currency"] == "JPY"
        assert order["amounts"]["original"] == "2000"
        assert order["amounts"]["payable"] == "2000"
        again = create(shop, "--new-customer-email", "zhao@example.com", "--item", "JP-1M:1")
        assert again["customer"]["id"] == order["customer"]["id"]  # found, not duplicated

    def test_refusals_write_nothing(self, shop: OC) -> None:
        records = audit_count(shop)
        for args, needle in [
            (["--item", "VPN-1M:1", "--item", "JP-1M:1"], "currency"),
            (["--item", "OLD-1M:1"], "OLD-1M"),
            (["--item", "VPN-12M:6"], "VPN-12M"),
            (["--item", "NOPE:1"], "NOPE"),
            (["--item", "VPN-1M:0"], "quantity"),
            (["--item", "VPN-1M:1", "--use-balance", "100.01"], ""),
            (["--item", "VPN-1M:1", "--use-points", "1001"], ""),
            (["--item", "VPN-1M:1", "--manual-discount", "5.00"], "--reason"),
            (["--item", "VPN-1M:1", "--manual-discount", "30.01", "--reason", "r"], ""),
            (["--item", "VPN-1M:1", "--channel", "nopay"], "nopay"),
        ]:
            sentence = shop.fail("orders", "create", "--customer", LI, *args)
            assert needle in sentence
        assert shop.json("orders", "list")["items"] == []
        assert shop.json("products", "show", "VPN-12M")["stock"] == 5
        wallet = shop.json("wallet", "show", LI)
        assert wallet["balances"] == {"CNY": "100.00"}
        assert wallet["points"] == 1000
        assert audit_count(shop) == records

    def test_support_may_not_give_a_manual_discount(self, shop: OC) -> None:
        records = audit_count(shop)
        sentence = shop.fail(
            "orders", "create", "--customer", LI, "--item", "VPN-1M:1",
            "--manual-discount", "5.00", "--reason", "goodwill",
            "--actor", "operator:x:support",
        )  # fmt: skip
        assert "permission" in sentence
        assert "operator:x:support" in sentence
        assert shop.json("orders", "list")["items"] == []
        assert audit_count(shop) == records + 1  # only the record of the refusal
        assert shop.json("audit", "verify")["ok"] is True
        # the same operator without the discount may create the order
        order = create(shop, "--customer", LI, "--item", "VPN-1M:1",
                       "--actor", "operator:x:support")  # fmt: skip
        assert order["status"] == "pending"


# --------------------------------------------------------------------- the JSON contract
class TestOrderJsonContract:
    def test_show_every_kind_of_order(self, shop: OC) -> None:
        full = create(shop, *TestOrdersCreate.FULL)
        paid = create(shop, "--customer", LI, "--item", "VPN-1M:1", "--use-balance", "all")
        canceled = create(shop, "--customer", HAN, "--item", "VPN-12M:1")
        shop.ok("orders", "cancel", canceled["number"], "--actor", f"customer:{HAN}")
        for number in (full["number"], paid["number"], canceled["number"]):
            shown = shop.json("orders", "show", number)
            check_order_contract(shown)
            assert shown["number"] == number
        shown = shop.json("orders", "show", canceled["number"])
        assert shown["status"] == "canceled"
        assert shown["canceled_at"] is not None
        (step,) = shown["history"]
        assert step["from"] == "pending"
        assert step["to"] == "canceled"
        assert step["actor"] == f"customer:{HAN}"
        assert step["reason"] == "user"
        assert datetime.fromisoformat(step["at"]).utcoffset() == timedelta(0)
        paid_view = shop.json("orders", "show", paid["number"])
        assert paid_view["status"] == "paid"
        assert datetime.fromisoformat(paid_view["paid_at"]).utcoffset() is not None

    def test_every_json_output_parses_and_has_no_float(self, shop: OC) -> None:
        order = create(shop, *TestOrdersCreate.FULL)
        for args in [
            ["customers", "list"],
            ["customers", "show", LI],
            ["products", "list"],
            ["products", "show", "VPN-1M"],
            ["coupons", "list"],
            ["coupons", "show", "WELCOME20"],
            ["wallet", "show", LI],
            ["orders", "list"],
            ["orders", "show", order["number"]],
            ["audit", "log", "order", order["number"]],
            ["audit", "verify"],
            ["db", "current"],
        ]:
            data = shop.json(*args)
            no_floats(data)
            check_times_and_amounts(data)


# -------------------------------------------------------------------------- orders list
@pytest.fixture(scope="session")
def _book_template(
    tmp_path_factory: pytest.TempPathFactory, _shop_template: Path
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The shop with six orders, built once per session (see ``book``)."""
    path = tmp_path_factory.mktemp("book") / "book.db"
    copy_database(_shop_template / "shop.db", path)
    shop = OC(path, _shop_template / "ordercore.toml")
    orders = {
        # Li, channel fakepay, vip: 30.00 + 0.18 fee
        "A": create(shop, "--customer", LI, "--item", "VPN-1M:1", "--channel", "fakepay",
                    "--flag", "vip"),
        # Han, 288.00
        "B": create(shop, "--customer", HAN, "--item", "VPN-12M:1"),
        # Wang, 81.00, canceled below
        "C": create(shop, "--customer", WANG_REF, "--item", "VPN-1M:3"),
        # Li, paid from the balance: 0.00 payable
        "D": create(shop, "--customer", LI, "--item", "VPN-1M:1", "--use-balance", "all"),
        # Han, 60.00, vip
        "E": create(shop, "--customer", HAN, "--item", "VPN-1M:2", "--flag", "vip"),
        # Wang, 318.00
        "F": create(shop, "--customer", WANG, "--item", "VPN-12M:1", "--item", "VPN-1M:1"),
    }  # fmt: skip
    shop.ok("orders", "cancel", orders["C"]["number"], "--note", "duplicate")
    # A at 23:30 on 1 March in Shanghai (15:30 UTC), B at 00:30 on 2 March (16:30 UTC on the
    # 1st), C in February; D, E, F stay at "now".
    set_created_at(shop, orders["A"]["number"], datetime(2026, 3, 1, 15, 30, tzinfo=timezone.utc))
    set_created_at(shop, orders["B"]["number"], datetime(2026, 3, 1, 16, 30, tzinfo=timezone.utc))
    set_created_at(shop, orders["C"]["number"], datetime(2026, 2, 15, 12, 0, tzinfo=timezone.utc))
    return path, orders


@pytest.fixture
def book(shop: OC, _book_template: tuple[Path, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The shop's database, now with six orders A..F (see the comments in
    ``_book_template``): A and B straddle a Shanghai midnight, C is older and canceled, D paid,
    D, E, F were created "now"."""
    path, orders = _book_template
    copy_database(path, shop.db_path)
    return orders


class TestOrdersList:
    @staticmethod
    def found(shop: OC, book: dict[str, dict[str, Any]], *args: Any) -> set[str]:
        page = shop.json("orders", "list", *args)
        assert page["next_cursor"] is None
        by_number = {o["number"]: key for key, o in book.items()}
        return {by_number[n] for n in numbers(page)}

    def test_all_newest_first_with_summaries(self, shop: OC, book: dict[str, Any]) -> None:
        page = shop.json("orders", "list")
        assert numbers(page) == {o["number"] for o in book.values()}
        created = [datetime.fromisoformat(o["created_at"]) for o in page["items"]]
        assert created == sorted(created, reverse=True)
        assert [o["number"] for o in page["items"]][-3:] == [
            book["B"]["number"],
            book["A"]["number"],
            book["C"]["number"],
        ]
        for item in page["items"]:
            assert item["status"] in STATUSES
            assert DECIMAL.match(item["payable"])
            no_floats(item)
            check_times_and_amounts(item)
        a = next(o for o in page["items"] if o["number"] == book["A"]["number"])
        assert a["payable"] == "30.18"
        assert a["channel"] == "fakepay"
        assert a["customer_id"] == LI
        assert a["flags"] == ["vip"]
        text = shop.ok("orders", "list")
        assert all(o["number"] in text for o in book.values())

    def test_status(self, shop: OC, book: dict[str, Any]) -> None:
        assert self.found(shop, book, "--status", "pending") == {"A", "B", "E", "F"}
        assert self.found(shop, book, "--status", "canceled") == {"C"}
        assert self.found(shop, book, "--status", "paid") == {"D"}
        assert self.found(shop, book, "--status", "paid", "--status", "canceled") == {"C", "D"}
        assert self.found(shop, book, "--status", "refunded") == set()
        assert shop.fail("orders", "list", "--status", "PAID", code=2)

    def test_date_range_in_a_time_zone(self, shop: OC, book: dict[str, Any]) -> None:
        day = ("--from", "2026-03-01", "--to", "2026-03-01")
        assert self.found(shop, book, *day, "--tz", "Asia/Shanghai") == {"A"}
        assert self.found(shop, book, *day, "--tz", "UTC") == {"A", "B"}
        assert self.found(shop, book, *day) == {"A"}  # the configured zone: Asia/Shanghai
        no_config = shop.run("orders", "list", *day, "--json", env={"ORDERCORE_CONFIG": None})
        assert no_config.exit_code == 0, no_config.stderr
        assert len(json.loads(no_config.stdout)["items"]) == 2  # default zone: UTC
        assert self.found(shop, book, "--from", "2026-03-02", "--tz", "Asia/Shanghai") == {
            "B",
            "D",
            "E",
            "F",
        }
        assert self.found(shop, book, "--to", "2026-02-28") == {"C"}
        # ISO times: local to --tz unless they carry an offset; the end is exclusive
        assert self.found(
            shop, book, "--from", "2026-03-01T23:30:00", "--to", "2026-03-02T00:30:00",
            "--tz", "Asia/Shanghai",
        ) == {"A"}  # fmt: skip
        assert self.found(
            shop, book, "--from", "2026-03-01T16:00:00Z", "--to", "2026-03-01T17:00:00+00:00",
        ) == {"B"}  # fmt: skip

    def test_periods(self, shop: OC, book: dict[str, Any]) -> None:
        zone = ZoneInfo("Asia/Shanghai")
        now = datetime.now(zone)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        week = today - timedelta(days=today.weekday())
        month = today.replace(day=1)
        one = timedelta(microseconds=1)
        # put the orders on the period boundaries (D, E, F stay at "now")
        moved = {"A": today, "B": week - one, "C": month - one}
        if week != today:
            moved["A"] = today - one
            moved["B"] = week
        for key, at in moved.items():
            set_created_at(shop, book[key]["number"], at)
        times = {key: moved.get(key, now) for key in book}
        for period, start in (("today", today), ("this-week", week), ("this-month", month)):
            expected = {key for key, at in times.items() if at >= start}
            assert self.found(shop, book, "--period", period, "--tz", "Asia/Shanghai") == expected
            assert self.found(shop, book, "--period", period) == expected  # configured zone
        assert {"D", "E", "F"} <= self.found(shop, book, "--period", "today", "--tz", "UTC")
        assert shop.fail("orders", "list", "--period", "yesterday", code=2)
        assert "not both" in shop.fail("orders", "list", "--period", "today", "--from",
                                       "2026-03-01")  # fmt: skip

    def test_channel_customer_product(self, shop: OC, book: dict[str, Any]) -> None:
        assert self.found(shop, book, "--channel", "fakepay") == {"A"}
        assert self.found(shop, book, "--channel", "alipay") == set()
        assert self.found(shop, book, "--customer", LI) == {"A", "D"}
        assert self.found(shop, book, "--customer", LI_EMAIL) == {"A", "D"}
        assert self.found(shop, book, "--customer", LI_REF) == {"A", "D"}
        assert self.found(shop, book, "--customer", WANG_REF) == {"C", "F"}
        assert self.found(shop, book, "--customer", "han@example.com") == {"B", "E"}
        assert shop.fail("orders", "list", "--customer", "nobody@example.com")
        assert self.found(shop, book, "--product", "VPN-12M") == {"B", "F"}
        assert self.found(shop, book, "--product", "JP-1M") == set()

    def test_amount_range_flag_number(self, shop: OC, book: dict[str, Any]) -> None:
        # payables: A 30.18, B 288.00, C 81.00, D 0.00, E 60.00, F 318.00 (bounds inclusive)
        assert self.found(shop, book, "--min-amount", "60", "--max-amount", "288.00") == {
            "B",
            "C",
            "E",
        }
        assert self.found(shop, book, "--min-amount", "288.01") == {"F"}
        assert self.found(shop, book, "--max-amount", "30.18") == {"A", "D"}
        assert self.found(shop, book, "--max-amount", "1000", "--currency", "JPY") == set()
        assert shop.fail("orders", "list", "--min-amount", "1.234")
        assert self.found(shop, book, "--flag", "vip") == {"A", "E"}
        assert self.found(shop, book, "--flag", "vip", "--status", "pending",
                          "--customer", HAN) == {"E"}  # fmt: skip
        a = book["A"]["number"]
        assert self.found(shop, book, "--number", a) == {"A"}
        assert self.found(shop, book, "--number", a.lower()) == {"A"}
        assert self.found(shop, book, "--number", a[:4]) == set(book)
        assert shop.fail("orders", "list", "--number", "no-such-$")

    @pytest.mark.parametrize("limit", [1, 2, 3, 4])
    def test_keyset_pages(self, shop: OC, book: dict[str, Any], limit: int) -> None:
        everything = [o["number"] for o in shop.json("orders", "list")["items"]]
        pages = all_pages(shop, "orders", "list", limit=limit)
        assert [o["number"] for p in pages for o in p["items"]] == everything
        assert all(len(p["items"]) == limit for p in pages[:-1])
        assert pages[-1]["items"]
        assert pages[-1]["next_cursor"] is None
        # a cursor works with the filter it was made for
        first = shop.json("orders", "list", "--status", "pending", "--limit", 1)
        rest = shop.json("orders", "list", "--status", "pending", "--limit", 10,
                         "--cursor", first["next_cursor"])  # fmt: skip
        assert len(rest["items"]) == 3
        assert numbers(first) | numbers(rest) == {book[k]["number"] for k in "ABEF"}

    def test_customer_actor_sees_own_orders_only(self, shop: OC, book: dict[str, Any]) -> None:
        own = shop.json("orders", "list", "--customer", LI, "--actor", f"customer:{LI}")
        assert numbers(own) == {book["A"]["number"], book["D"]["number"]}
        assert "permission" in shop.fail("orders", "list", "--actor", f"customer:{LI}")


# ---------------------------------------------------------- cancel, note, flag
class TestOrderActions:
    def test_customer_cancels_own_order_and_everything_comes_back(self, shop: OC) -> None:
        order = create(shop, *TestOrdersCreate.FULL)
        number = order["number"]
        refused = shop.fail("orders", "cancel", number, "--actor", f"customer:{HAN}")
        assert "permission" in refused
        assert shop.json("orders", "show", number)["status"] == "pending"

        canceled = shop.json("orders", "cancel", number, "--actor", f"customer:{LI}")
        check_order_contract(canceled)
        assert canceled["status"] == "canceled"
        assert canceled["cancel_reason"] == "user"
        assert [(h["from"], h["to"], h["actor"], h["reason"]) for h in canceled["history"]] == [
            ("pending", "canceled", f"customer:{LI}", "user")
        ]
        assert canceled["coupons"] == [{"code": "WELCOME20", "status": "released"}]
        assert shop.json("products", "show", "VPN-12M")["stock"] == 5
        wallet = shop.json("wallet", "show", LI)
        assert wallet["balances"] == {"CNY": "100.00"}
        assert wallet["points"] == 1000
        assert shop.json("coupons", "show", "WELCOME20")["uses"] == 0
        again = shop.fail("orders", "cancel", number, "--actor", f"customer:{LI}")
        assert "canceled" in again

    def test_admin_cancel_needs_a_note(self, shop: OC) -> None:
        number = create(shop, "--customer", HAN, "--item", "VPN-12M:2")["number"]
        assert "reason" in shop.fail("orders", "cancel", number)
        assert shop.json("orders", "show", number)["status"] == "pending"
        assert "canceled" in shop.ok("orders", "cancel", number, "--note", "duplicate order")
        shown = shop.json("orders", "show", number)
        assert shown["status"] == "canceled"
        assert shown["cancel_reason"] == "admin"
        (step,) = shown["history"]
        assert step["actor"] == "operator:cli:admin"
        assert step["reason"].startswith("admin")
        assert "duplicate order" in step["reason"]
        assert shop.json("products", "show", "VPN-12M")["stock"] == 5

    def test_paid_order_says_refund_instead(self, shop: OC) -> None:
        paid = create(shop, "--customer", LI, "--item", "VPN-1M:1", "--use-balance", "all")
        sentence = shop.fail("orders", "cancel", paid["number"], "--note", "oops")
        assert "refund" in sentence
        assert shop.json("orders", "show", paid["number"])["status"] == "paid"
        assert shop.fail("orders", "cancel", "NO-SUCH-ORDER", "--note", "x")

    def test_note_and_flags(self, shop: OC) -> None:
        number = create(shop, "--customer", HAN, "--item", "VPN-1M:1")["number"]
        noted = shop.json("orders", "note", number, "customer asked for an invoice",
                          "--actor", "operator:bob:support")  # fmt: skip
        assert noted["notes"][-1]["text"] == "customer asked for an invoice"
        assert noted["notes"][-1]["author"] == "operator:bob:support"
        assert "note added" in shop.ok("orders", "note", number, "second note")

        assert shop.json("orders", "flag", number, "vip")["flags"] == ["vip"]
        assert "set" in shop.ok("orders", "flag", number, "urgent")
        special = shop.json("orders", "flag", number, "special")
        assert special["special"] is True
        assert special["flags"] == ["urgent", "vip"]
        assert numbers(shop.json("orders", "list", "--flag", "urgent")) == {number}
        removed = shop.json("orders", "flag", number, "vip", "--remove")
        assert removed["flags"] == ["urgent"]
        assert shop.json("orders", "flag", number, "special", "--remove")["special"] is False
        assert shop.json("orders", "list", "--flag", "vip")["items"] == []

        log = shop.json("audit", "log", "order", number)
        assert log["next_cursor"] is None
        actions = [r["action"] for r in log["items"]]
        assert actions[0] == "order.create"
        assert actions.count("order.note") == 2
        assert {"order.flag", "order.special", "order.unflag"} <= set(actions)
        # written since the last seal: pending, in the order they were written
        assert all(r["seq"] is None and r["sealed"] is False for r in log["items"])
        shop.ok("audit", "seal")
        sealed = shop.json("audit", "log", "order", number)["items"]
        assert [r["action"] for r in sealed] == actions
        assert [r["seq"] for r in sealed] == sorted(r["seq"] for r in sealed)
        assert log["items"][1]["actor"] == {"kind": "operator", "id": "bob", "role": "support"}
        assert "order." in shop.ok("audit", "log", "order", number)

    def test_text_output_prints_user_text_literally(self, oc: OC) -> None:
        """Names and notes are user text, never console markup: "[/bold]" must not crash."""
        name, product, note = "Li [/bold] [red]Lei", "Plan [/]", "[bold]call back[/bold]"
        customer = oc.json("customers", "add", "--name", name)["id"]
        oc.ok("products", "add", "--sku", "P1", "--name", product, "--price", "1.00",
              "--currency", "CNY")  # fmt: skip
        number = create(oc, "--customer", customer, "--item", "P1:1", "--note", note)["number"]
        shown = oc.ok("orders", "show", number)
        for text in (name, product, note):
            assert text in shown
        assert name in oc.ok("customers", "list")
        assert name in oc.ok("customers", "show", customer)
        assert product in oc.ok("products", "list")
        assert number in oc.ok("orders", "list")
        assert oc.ok("audit", "log", "order", number)

    def test_customer_may_not_note(self, shop: OC) -> None:
        number = create(shop, "--customer", HAN, "--item", "VPN-1M:1")["number"]
        assert "permission" in shop.fail("orders", "note", number, "hi",
                                         "--actor", f"customer:{HAN}")  # fmt: skip
        assert shop.json("orders", "show", number)["notes"] == []


# ----------------------------------------------------------------------- malformed input
#: (command line, exit code, a word the error sentence must contain)
MALFORMED: list[tuple[str, int, str]] = [
    ("orders list --actor nobody", 2, "--actor"),
    ("orders list --actor robot:x", 2, "actor kind"),
    ("orders create --customer 1 --item VPN-1M:x", 1, "SKU:QUANTITY"),
    ("orders create --customer 1 --item VPN-1M:-1", 1, "quantity"),
    ("products add --sku X --name X --price 1.234 --currency CNY", 1, "1.234"),
    ("products add --sku X --name X --price 1 --currency XYZ", 1, "XYZ"),
    ("products add --sku X --name X --price -1 --currency CNY", 1, "negative"),
    ("products add --sku X --name X --price abc --currency CNY", 1, "abc"),
    ("products add --sku X --name X --price 10 --currency CNY --spec novalue", 1, "key=value"),
    ("products add --sku X --name X --price 10 --currency CNY --tier three:10", 1, "MIN_QTY"),
    ("products add --sku VPN-1M --name X --price 1 --currency CNY", 1, "VPN-1M"),
    ("customers add --name N --email not-an-email", 1, "not-an-email"),
    (f"customers add --name N --email {LI_EMAIL}", 1, LI_EMAIL),
    ("orders list --period today --tz Mars/Olympus", 1, "Mars/Olympus"),
    ("orders list --from 2026-03-01 --tz Asia/Shanghia", 1, "Asia/Shanghai"),
    ("orders list --tz Mars/Olympus", 1, "Mars/Olympus"),
    ("orders list --cursor not-a-cursor", 1, "cursor"),
    ("customers list --cursor abc", 1, "cursor"),
    ("orders list --from 2026-02-30", 1, "2026-02-30"),
    ("orders list --from 2026-03-02 --to 2026-03-01", 1, "after"),
    ("orders list --limit 0", 1, "limit"),
    ("orders show NO-SUCH-ORDER", 1, "NO-SUCH-ORDER"),
    ("customers show 999", 1, "999"),
    ("customers show abc", 2, "abc"),
    ("products show NOPE", 1, "NOPE"),
    ("coupons show NOPE", 1, "NOPE"),
    ("wallet credit 1 --amount 1.234 --reason r", 1, "1.234"),
    ("orders create --customer 1 --item VPN-1M:1 --manual-discount 1.234 --reason r", 1, "1.234"),
    ("--config missing.toml customers list", 1, "missing.toml"),
    ("--database-url nonsense:// customers list", 1, "nonsense"),
    ("orders frobnicate", 2, "frobnicate"),
]


@pytest.mark.parametrize(("line", "code", "needle"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_one_sentence_and_writes_nothing(
    shop: OC, line: str, code: int, needle: str
) -> None:
    records = audit_count(shop)
    sentence = shop.fail(*shlex.split(line), code=code)
    assert needle in sentence
    assert audit_count(shop) == records


# -------------------------------------------------------------------------------- audit
class TestAudit:
    def test_verify_ok_then_edited_then_deleted(self, shop: OC) -> None:
        create(shop, *TestOrdersCreate.FULL)
        records = audit_count(shop)
        pending = int(shop.sql("SELECT COUNT(*) FROM audit_pending")[0][0])
        assert pending > 0  # what the order wrote waits for the next seal
        assert f"{pending} entries waiting" in shop.ok("audit", "verify")
        assert shop.json("audit", "seal") == {"sealed": pending, "problem": None}
        assert f"{records} records" in shop.ok("audit", "verify")
        assert shop.json("audit", "verify") == {
            "ok": True,
            "checked": records,
            "pending": 0,
            "keyed": False,
            "broken_seq": None,
            "problem": None,
            "problems": [],
            "limits": KEYLESS_LIMITS,
        }

        shop.sql("UPDATE audit_log SET reason = coalesce(reason, '') || '!' WHERE seq = 10")
        text = shop.run("audit", "verify")
        assert text.exit_code == 3
        assert "record 10" in text.stderr
        assert "Traceback" not in text.stderr
        as_json = shop.run("audit", "verify", "--json")
        assert as_json.exit_code == 3
        verdict = json.loads(as_json.stdout)
        assert verdict["ok"] is False
        assert verdict["broken_seq"] == 10
        assert verdict["checked"] == records
        assert verdict["problems"] == ["record 10: content does not match its hash"]
        assert verdict["problem"]

    def test_deleted_record_is_detected(self, shop: OC) -> None:
        shop.sql("DELETE FROM audit_log WHERE seq = 4")
        result = shop.run("audit", "verify", "--json")
        assert result.exit_code == 3
        verdict = json.loads(result.stdout)
        assert verdict["ok"] is False
        assert verdict["broken_seq"] in (4, 5)

    def test_deleted_last_record_is_detected(self, shop: OC) -> None:
        last = shop.sql("SELECT MAX(seq) FROM audit_log")[0][0]
        shop.sql("DELETE FROM audit_log WHERE seq = ?", (last,))
        result = shop.run("audit", "verify")
        assert result.exit_code == 3
        assert "Traceback" not in result.stderr

    def test_log_of_an_order(self, shop: OC) -> None:
        number = create(shop, *TestOrdersCreate.FULL)["number"]
        shop.ok("orders", "cancel", number, "--note", "customer called")
        log = shop.json("audit", "log", "order", number)
        assert log["next_cursor"] is None
        assert [r["action"] for r in log["items"]] == [
            "order.create",
            "order.note",  # --note of orders create
            "order.cancel",
        ]
        cancel = log["items"][-1]
        assert cancel["entity"] == {"kind": "order", "id": number}
        assert cancel["actor"] == {"kind": "operator", "id": "cli", "role": "admin"}
        assert cancel["reason"]
        assert cancel["sealed"] is False
        assert cancel["hash"] is None  # linked into the chain by the next seal
        shop.ok("audit", "seal")
        cancel = shop.json("audit", "log", "order", number)["items"][-1]
        assert cancel["sealed"] is True
        assert re.fullmatch(r"[0-9a-f]{64}", cancel["hash"])
        check_times_and_amounts(cancel)
        assert "order.cancel" in shop.ok("audit", "log", "order", number)
        assert shop.json("audit", "log", "order", "NO-SUCH")["items"] == []
        customer = shop.json("audit", "log", "customer", LI)
        assert customer["items"][0]["action"] == "customer.add"
