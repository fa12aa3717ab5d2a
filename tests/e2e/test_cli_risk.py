"""``ordercore risk`` and the risk options of ``orders create|pay`` and ``customers verify``,
driven as a user drives them: a refusal is one sentence naming the rule with exit 1, lists
with expiry, decisions as JSON, the review queue."""

from __future__ import annotations

from pathlib import Path

from .conftest import OC

RISK_CONFIG = """\
[risk]
max_orders_per_ip_per_hour = 2
review_over = "100.00"
require_verification_over = "200.00"
"""


def risky(tmp_path: Path, oc: OC) -> OC:
    config = tmp_path / "ordercore.toml"
    config.write_text(RISK_CONFIG, encoding="utf-8")
    shop = OC(oc.db_path, config)
    shop.ok("customers", "add", "--name", "Li", "--email", "li@example.com")
    shop.ok("customers", "add", "--name", "Han", "--email", "han@example.com")
    shop.ok(
        "products", "add", "--sku", "VPN", "--name", "VPN", "--price", "30.00", "--currency", "CNY"
    )
    shop.ok("wallet", "credit", "1", "--amount", "500.00", "--reason", "top-up")
    return shop


def test_blocked_creation_is_one_sentence_naming_the_rule(tmp_path: Path, oc: OC) -> None:
    shop = risky(tmp_path, oc)
    for customer in ("1", "2"):
        shop.ok(
            "orders",
            "create",
            "--customer",
            customer,
            "--item",
            "VPN",
            "--ip",
            "203.0.113.7",
            "--device",
            "d1",
        )
    sentence = shop.fail(
        "orders", "create", "--customer", "1", "--item", "VPN", "--ip", "203.0.113.7"
    )
    assert sentence == "blocked: max_orders_per_ip_per_hour (2) reached for 203.0.113.7"
    assert shop.sql("SELECT count(*) FROM orders") == [(2,)]
    decisions = shop.json("risk", "decisions")["items"]
    assert [d["verdict"] for d in decisions] == ["block", "allow", "allow"]
    assert decisions[0]["rules"][0]["values"] == {
        "limit": 2,
        "seen": 2,
        "ip": "203.0.113.7",
        "hours": 1,
    }
    assert decisions[1]["context"]["device_id"] == "d1"
    stats = shop.json("risk", "stats")
    assert stats["decisions"] == {"order": {"allow": 2, "block": 1}}
    bad = shop.fail("orders", "create", "--customer", "1", "--item", "VPN", "--ip", "not-an-ip")
    assert "not an IPv4 or IPv6 address" in bad


def test_lists_from_the_command_line(tmp_path: Path, oc: OC) -> None:
    shop = risky(tmp_path, oc)
    added = shop.json(
        "risk",
        "list",
        "add",
        "--type",
        "cidr",
        "--value",
        "198.51.100.0/24",
        "--reason",
        "botnet",
        "--expires",
        "7d",
    )
    assert added["list"] == "block"
    assert added["expires_at"] is not None
    shop.ok(
        "risk", "list", "add", "--type", "customer", "--value", "2", "--allow", "--reason", "VIP"
    )
    listed = shop.json("risk", "list", "show")["items"]
    assert [(e["type"], e["list"]) for e in listed] == [("cidr", "block"), ("customer", "allow")]
    sentence = shop.fail(
        "orders", "create", "--customer", "1", "--item", "VPN", "--ip", "198.51.100.9"
    )
    assert sentence == "blocked: ip 198.51.100.9 is on the block list (botnet)"
    # the allow-listed customer skips the lists
    shop.ok("orders", "create", "--customer", "2", "--item", "VPN", "--ip", "198.51.100.9")
    shop.ok("risk", "list", "remove", "--type", "cidr", "--value", "198.51.100.0/24")
    shop.ok("orders", "create", "--customer", "1", "--item", "VPN", "--ip", "198.51.100.9")
    assert "--type" in shop.run("risk", "list", "add", "--value", "x").stderr
    denied = shop.fail(
        "risk",
        "list",
        "add",
        "--type",
        "ip",
        "--value",
        "192.0.2.1",
        "--actor",
        "operator:bob:support",
    )
    assert "may not risk.lists" in denied


def test_review_verify_and_pay(tmp_path: Path, oc: OC) -> None:
    shop = risky(tmp_path, oc)
    held = shop.json("orders", "create", "--customer", "1", "--item", "VPN:4")["number"]  # 120
    needs_id = shop.json("orders", "create", "--customer", "1", "--item", "VPN:7")["number"]  # 210
    shown = shop.json("orders", "show", held)
    assert [(d["stage"], d["verdict"]) for d in shown["risk"]] == [("order", "review")]
    assert "held for review" in shop.fail("orders", "pay", held, "--channel", "balance")
    queue = shop.json("risk", "review", "list")["items"]
    assert [d["order"] for d in queue] == [held, needs_id]
    shop.ok("risk", "review", "approve", held, "--note", "ok")
    paid = shop.json("orders", "pay", held, "--channel", "balance", "--client-ip", "203.0.113.9")
    assert paid["status"] == "succeeded"
    decisions = shop.json("risk", "decisions", "--order", held)["items"]
    assert decisions[0]["context"]["ip"] == "203.0.113.9"
    shop.ok("risk", "review", "approve", needs_id)
    assert "identity verification required" in shop.fail(
        "orders", "pay", needs_id, "--channel", "balance"
    )
    assert shop.json("customers", "verify", "1")["identity_verified"] is True
    shop.ok("orders", "pay", needs_id, "--channel", "balance", "--ip", "203.0.113.9")
    third = shop.json("orders", "create", "--customer", "2", "--item", "VPN:4")["number"]
    out = shop.ok("risk", "review", "reject", third, "--reason", "stolen card")
    assert "rejected" in out
    assert shop.json("orders", "show", third)["cancel_reason"] == "rejected"
    text = shop.ok("orders", "show", third)
    assert "risk review block" in text
