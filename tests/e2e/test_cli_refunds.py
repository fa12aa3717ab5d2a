"""The refund, after-sales and anomaly commands of the ``ordercore`` CLI (issue 5), end to
end: ``refunds request|list|show|approve|reject|retry|check``, ``orders after-sales``,
``orders issue-open|issue-move|issue-show`` and ``anomalies open|investigate|contact|resolve``,
driven as an operator drives them, with their JSON shapes, the state they leave in the
database and their one-sentence refusals.

Refunds through a channel need one that can refund: the fake channel of ``ordercore.testing``.
The CLI builds its core from the settings file; here that core is also given the test kit as
a plugin (as a host would register its own channel plugin), and ``[channels.fake]`` in the
shop's settings file makes the channel talk to this test's :class:`FakeGateway`. A payment
notification is delivered the way the callback endpoint does it (``handle_callback``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import ordercore.testing
from ordercore import OrderCore, Settings
from ordercore.channels import Outcome
from ordercore.testing import DEFAULT_SECRET, FakeGateway

from .conftest import HAN, LI, OC

DECIMAL = re.compile(r"\d+\.\d{2}\Z")
REFUND_KEYS = {
    "id",
    "order",
    "payment",
    "channel",
    "amount",
    "currency",
    "destination",
    "status",
    "reason",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
    "decision_note",
    "failure",
    "failure_message",
    "retryable",
    "channel_code",
    "channel_refund_no",
    "completed_at",
    "counts_toward_order",
}
ISSUE_KEYS = {"id", "order", "subject", "status", "opened_by", "opened_at", "resolved_at", "steps"}
AFTER_SALES_KEYS = {
    "order",
    "currency",
    "paid",
    "refunded",
    "refundable",
    "refunds",
    "communications",
    "issues",
}
SUPPORT = "operator:bob:support"
FINANCE = "operator:frank:finance"
REFUND_DEADLINE_DAYS = 180


def no_floats(data: Any, path: str = "$") -> None:
    assert not isinstance(data, float), f"{path} is a float: {data!r}"
    if isinstance(data, dict):
        for key, value in data.items():
            no_floats(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            no_floats(value, f"{path}[{i}]")


def check_refund(view: dict[str, Any]) -> None:
    """The JSON of one refund: its keys, money as decimal strings, times with an offset."""
    assert set(view) >= REFUND_KEYS, REFUND_KEYS - set(view)
    no_floats(view)
    assert isinstance(view["amount"], str)
    assert DECIMAL.match(view["amount"]), view["amount"]
    assert view["id"].startswith(view["order"] + "R")
    assert view["destination"] in ("balance", "original")
    assert isinstance(view["retryable"], bool)
    assert isinstance(view["counts_toward_order"], bool)
    for key in ("requested_at", "decided_at", "completed_at"):
        if view[key] is not None:
            assert datetime.fromisoformat(view[key]).utcoffset() is not None


class Kit:
    """The shop (``OC``) with the fake channel configured, its gateway, and helpers that pay
    orders as a customer would."""

    def __init__(self, oc: OC, gateway: FakeGateway) -> None:
        self.oc = oc
        self.gateway = gateway

    def core(self) -> OrderCore:
        return OrderCore.from_settings(Settings.load(self.oc.config, database_url=self.oc.url))

    def order(self, customer: int = HAN, items: str = "VPN-1M:1") -> str:
        created = self.oc.json("orders", "create", "--customer", customer, "--item", items)
        number: str = created["number"]
        return number

    def pay_fake(self, number: str) -> str:
        """Pay through the fake platform: the checkout, then its signed notification."""
        attempt = self.oc.json("orders", "pay", number, "--channel", "fake", "--method", "qr")
        no: str = attempt["out_trade_no"]
        self.deliver(self.gateway.pay(no))
        return no

    def deliver(self, signed: ordercore.testing.SignedNotification) -> None:
        core = self.core()
        try:
            reply = core.payments.handle_callback("fake", signed.headers, signed.body)
        finally:
            core.close()
        assert reply.status == 200, reply

    def pay_balance(self, number: str) -> str:
        attempt = self.oc.json("orders", "pay", number, "--channel", "balance")
        assert attempt["status"] == "succeeded", attempt
        no: str = attempt["out_trade_no"]
        return no

    def paid(self, channel: str = "fake", customer: int = HAN, items: str = "VPN-1M:1") -> str:
        number = self.order(customer, items)
        if channel == "fake":
            self.pay_fake(number)
        else:
            self.pay_balance(number)
        assert self.oc.json("orders", "show", number)["status"] == "paid"
        return number

    def refund_rows(self) -> list[tuple[Any, ...]]:
        return self.oc.sql("SELECT refund_no, status, amount_minor FROM refunds ORDER BY id")

    def audit_actions(self, number: str) -> list[str]:
        return [r["action"] for r in self.oc.json("audit", "log", "order", number)["items"]]


@pytest.fixture
def kit(shop: OC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kit:
    gateway = FakeGateway()
    monkeypatch.setattr(FakeGateway, "_shared", gateway)
    secret = tmp_path / "fake-webhook-secret"
    secret.write_bytes(DEFAULT_SECRET)
    assert shop.config is not None
    with shop.config.open("a", encoding="utf-8") as fh:
        fh.write(
            f"\n[channels.fake]\nwebhook_secret_file = {json.dumps(str(secret))}\n"
            f"refund_deadline_days = {REFUND_DEADLINE_DAYS}\n"
        )
    plain = OrderCore.from_settings.__func__  # type: ignore[attr-defined]

    def with_test_kit(cls: type[OrderCore], settings: Settings, **kwargs: Any) -> OrderCore:
        kwargs.setdefault("plugins", [ordercore.testing])
        core: OrderCore = plain(cls, settings, **kwargs)
        return core

    monkeypatch.setattr(OrderCore, "from_settings", classmethod(with_test_kit))
    return Kit(shop, gateway)


# ------------------------------------------------------------------------------ refunds
class TestRefundRequest:
    def test_partial_to_balance_waits_for_review_then_is_credited(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid("balance", customer=LI)  # Li had 100.00, paid 30.00
        attempt = oc.json("orders", "show", number)["payments"][0]["out_trade_no"]
        refund = oc.json(
            "refunds", "request", number, "--amount", "10.00", "--destination", "balance",
            "--reason", "ten days unused", "--actor", SUPPORT,
        )  # fmt: skip
        check_refund(refund)
        assert refund["id"] == f"{number}R01"
        assert refund["order"] == number
        assert refund["payment"] == attempt
        assert refund["channel"] == "balance"
        assert (refund["amount"], refund["currency"]) == ("10.00", "CNY")
        assert (refund["destination"], refund["status"]) == ("balance", "requested")
        assert refund["reason"] == "ten days unused"
        assert refund["requested_by"] == SUPPORT
        assert refund["decided_by"] is None
        assert refund["completed_at"] is None
        assert refund["retryable"] is False
        assert refund["counts_toward_order"] is True
        # nothing paid out while it waits
        assert oc.json("wallet", "show", LI)["balances"]["CNY"] == "70.00"

        approved = oc.json(
            "refunds", "approve", refund["id"], "--note", "as agreed", "--actor", FINANCE
        )
        check_refund(approved)
        assert approved["status"] == "succeeded"
        assert (approved["decided_by"], approved["decision_note"]) == (FINANCE, "as agreed")
        assert approved["completed_at"] is not None

        wallet = oc.json("wallet", "show", LI)
        assert wallet["balances"]["CNY"] == "80.00"
        credit = wallet["entries"][0]
        assert (credit["delta"], credit["reason"], credit["order"]) == (
            "10.00",
            "order.refund",
            number,
        )
        order = oc.json("orders", "show", number)
        assert order["status"] == "paid"  # a partial refund keeps the status
        assert order["amounts"]["refunded"] == "10.00"
        assert [r["id"] for r in order["refunds"]] == [refund["id"]]
        assert order["refunds"][0]["status"] == "succeeded"
        assert kit.refund_rows() == [(refund["id"], "succeeded", 1000)]
        assert oc.json("audit", "verify")["ok"] is True

    def test_everything_through_the_channel_makes_the_order_refunded(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        out = oc.ok(
            "refunds", "request", number, "--destination", "original", "--reason", "not working"
        )
        assert f"refund {number}R01 of 30.00 CNY to original" in out
        assert "requested" in out
        assert f"ordercore refunds approve {number}R01" in out  # says what comes next
        out = oc.ok("refunds", "approve", f"{number}R01", "--actor", FINANCE)
        assert f"refund {number}R01" in out
        assert "succeeded" in out
        assert kit.gateway.refunds_made == 1
        (made,) = kit.gateway.refunds()
        assert made.out_refund_no == f"{number}R01"
        assert made.amount.amount == Decimal("30.00")

        refund = oc.json("refunds", "show", f"{number}R01")
        check_refund(refund)
        assert refund["channel"] == "fake"
        assert refund["channel_refund_no"] == made.refund_no
        order = oc.json("orders", "show", number)
        assert order["status"] == "refunded"
        assert order["amounts"]["refunded"] == "30.00"
        assert order["refunded_at"] is not None
        assert oc.json("orders", "after-sales", number)["refundable"] == "0.00"
        # nothing left: asking again is refused
        sentence = oc.fail(
            "refunds", "request", number, "--destination", "original", "--reason", "again"
        )
        assert "nothing left to refund" in sentence

    def test_payment_option_picks_the_attempt(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        attempt = oc.json("orders", "show", number)["payments"][0]["out_trade_no"]
        refund = oc.json(
            "refunds", "request", number, "--payment", attempt, "--destination", "original",
            "--reason", "r", "--amount", "5",
        )  # fmt: skip
        assert refund["payment"] == attempt
        assert refund["amount"] == "5.00"
        sentence = oc.fail(
            "refunds",
            "request",
            number,
            "--payment",
            "NOPE",
            "--destination",
            "original",
            "--reason",
            "r",
        )
        assert sentence == f"order {number} has no payment 'NOPE'"
        assert len(kit.refund_rows()) == 1

    def test_automatic_approval_rules_let_a_small_refund_through(self, kit: Kit) -> None:
        assert kit.oc.config is not None
        with kit.oc.config.open("a", encoding="utf-8") as fh:
            fh.write('\n[refunds.auto_approve]\nmax_amount = "15.00"\ndestinations = ["balance"]\n')
        number = kit.paid(items="VPN-1M:2")
        out = kit.oc.ok(
            "refunds",
            "request",
            number,
            "--amount",
            "15.00",
            "--destination",
            "balance",
            "--reason",
            "r",
        )
        assert f"refund {number}R01 of 15.00 CNY to balance" in out
        assert "succeeded" in out
        assert "approve it" not in out
        refund = kit.oc.json("refunds", "show", f"{number}R01")
        assert refund["decided_by"] == "system:auto-approval"
        big = kit.oc.json(
            "refunds",
            "request",
            number,
            "--amount",
            "15.01",
            "--destination",
            "balance",
            "--reason",
            "r",
        )
        assert big["status"] == "requested"
        assert kit.oc.json("wallet", "show", HAN)["balances"]["CNY"] == "15.00"

    def test_more_than_refundable_is_refused_and_nothing_written(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        oc.ok(
            "refunds",
            "request",
            number,
            "--amount",
            "20.00",
            "--destination",
            "balance",
            "--reason",
            "r",
        )
        before = kit.audit_actions(number)
        sentence = oc.fail(
            "refunds",
            "request",
            number,
            "--amount",
            "10.01",
            "--destination",
            "balance",
            "--reason",
            "r",
        )
        assert (
            sentence == f"order {number}: at most 10.00 CNY can still be refunded (asked 10.01 CNY)"
        )
        for bad, why in (("-1", "positive"), ("0", "positive"), ("1.001", "decimal"), ("abc", "")):
            sentence = oc.fail(
                "refunds",
                "request",
                number,
                "--amount",
                bad,
                "--destination",
                "balance",
                "--reason",
                "r",
            )
            assert why in sentence
        assert len(kit.refund_rows()) == 1
        assert kit.audit_actions(number) == before

    def test_deadline_passed_says_to_refund_to_balance(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        attempt = oc.json("orders", "show", number)["payments"][0]["out_trade_no"]
        long_ago = datetime.now(timezone.utc) - timedelta(days=REFUND_DEADLINE_DAYS + 20)
        oc.sql(
            "UPDATE payment_attempts SET paid_at = ? WHERE out_trade_no = ?",
            (long_ago.replace(tzinfo=None).isoformat(sep=" "), attempt),
        )
        sentence = oc.fail(
            "refunds", "request", number, "--destination", "original", "--reason", "late"
        )
        assert f"payment {attempt} was made on {long_ago:%Y-%m-%d}" in sentence
        assert f"refunds for {REFUND_DEADLINE_DAYS} days" in sentence
        assert sentence.endswith("refund to balance instead (use --destination balance)")
        assert kit.refund_rows() == []
        assert kit.gateway.refund_calls == 0
        refund = oc.json(
            "refunds", "request", number, "--destination", "balance", "--reason", "late"
        )
        assert (refund["destination"], refund["amount"]) == ("balance", "30.00")

    def test_deadline_passed_before_approval(self, kit: Kit) -> None:
        """Requested in time, approved too late: the approval is refused, the request stays
        as it was, and the operator rejects it and refunds to balance."""
        oc = kit.oc
        number = kit.paid()
        refund = oc.json("refunds", "request", number, "--destination", "original", "--reason", "r")
        attempt = refund["payment"]
        long_ago = datetime.now(timezone.utc) - timedelta(days=REFUND_DEADLINE_DAYS + 1)
        oc.sql(
            "UPDATE payment_attempts SET paid_at = ? WHERE out_trade_no = ?",
            (long_ago.replace(tzinfo=None).isoformat(sep=" "), attempt),
        )
        sentence = oc.fail("refunds", "approve", refund["id"], "--actor", FINANCE)
        assert sentence.endswith("refund to balance instead")
        assert f"payment {attempt}" in sentence
        assert oc.json("refunds", "show", refund["id"])["status"] == "requested"
        assert kit.gateway.refund_calls == 0
        oc.ok("refunds", "reject", refund["id"], "--reason", "too late for the channel")
        again = oc.json("refunds", "request", number, "--destination", "balance", "--reason", "r")
        assert again["id"] == f"{number}R02"
        assert oc.json("refunds", "approve", again["id"])["status"] == "succeeded"
        assert oc.json("orders", "show", number)["status"] == "refunded"
        assert oc.json("wallet", "show", HAN)["balances"]["CNY"] == "30.00"

    def test_permissions(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()  # Han's
        own = oc.json(
            "refunds", "request", number, "--amount", "1", "--destination", "balance",
            "--reason", "r", "--actor", f"customer:{HAN}",
        )  # fmt: skip
        assert own["requested_by"] == f"customer:{HAN}"
        sentence = oc.fail(
            "refunds", "request", number, "--destination", "balance", "--reason", "r",
            "--actor", f"customer:{LI}",
        )  # fmt: skip
        assert "may not refunds.request" in sentence
        for actor in (SUPPORT, f"customer:{HAN}"):
            sentence = oc.fail("refunds", "approve", own["id"], "--actor", actor)
            assert f"{actor} may not refunds.approve" in sentence
            assert "insufficient permissions" in sentence
            sentence = oc.fail("refunds", "reject", own["id"], "--reason", "no", "--actor", actor)
            assert "may not refunds.approve" in sentence
        assert kit.refund_rows() == [(own["id"], "requested", 100)]
        assert oc.json("refunds", "show", own["id"])["decided_by"] is None

    def test_usage_errors_exit_2(self, kit: Kit) -> None:
        number = kit.paid()
        for args in (
            ("refunds", "request", number, "--reason", "r"),  # no --destination
            ("refunds", "request", number, "--destination", "wallet", "--reason", "r"),
            ("refunds", "request", number, "--destination", "balance"),  # no --reason
            ("refunds", "request", "--destination", "balance", "--reason", "r"),  # no NUMBER
            ("refunds", "list", "--status", "done"),
        ):
            sentence = kit.oc.fail(*args, code=2)
            assert sentence
        assert kit.refund_rows() == []

    def test_unknown_order(self, kit: Kit) -> None:
        sentence = kit.oc.fail(
            "refunds", "request", "NOPE", "--destination", "balance", "--reason", "r"
        )
        assert "NOPE" in sentence


class TestRefundReview:
    def test_reject_needs_a_reason_and_frees_the_amount(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        refund = oc.json("refunds", "request", number, "--destination", "original", "--reason", "r")
        sentence = oc.fail("refunds", "reject", refund["id"], code=2)
        assert "--reason" in sentence
        assert oc.json("orders", "after-sales", number)["refundable"] == "0.00"
        rejected = oc.json(
            "refunds", "reject", refund["id"], "--reason", "used all month", "--actor", FINANCE
        )
        check_refund(rejected)
        assert rejected["status"] == "rejected"
        assert (rejected["decided_by"], rejected["decision_note"]) == (FINANCE, "used all month")
        out = oc.ok("refunds", "show", refund["id"])
        assert "rejected" in out
        assert "used all month" in out
        assert oc.json("orders", "after-sales", number)["refundable"] == "30.00"
        assert kit.gateway.refund_calls == 0
        # a rejected refund is decided: neither approved nor rejected again
        sentence = oc.fail("refunds", "approve", refund["id"])
        assert "rejected" in sentence
        sentence = oc.fail("refunds", "reject", refund["id"], "--reason", "again")
        assert "rejected" in sentence
        sentence = oc.fail("refunds", "reject", refund["id"], "--reason", " ")
        assert "reason" in sentence
        assert kit.refund_rows() == [(refund["id"], "rejected", 3000)]

    def test_approve_twice_is_refused(self, kit: Kit) -> None:
        number = kit.paid()
        refund = kit.oc.json(
            "refunds", "request", number, "--destination", "original", "--reason", "r"
        )
        kit.oc.ok("refunds", "approve", refund["id"])
        sentence = kit.oc.fail("refunds", "approve", refund["id"])
        assert "succeeded" in sentence
        assert kit.gateway.refunds_made == 1

    @pytest.mark.parametrize(
        "args",
        [
            ("show",),
            ("approve",),
            ("reject", "--reason", "r"),
            ("retry",),
            ("check",),
        ],
    )
    def test_unknown_refund_id(self, kit: Kit, args: tuple[str, ...]) -> None:
        command, *rest = args
        sentence = kit.oc.fail("refunds", command, "2026X0R01", *rest)
        assert sentence == "no refund '2026X0R01'"


class TestRefundFailures:
    def test_failed_refund_shows_why_and_a_retry_pays_once(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        refund = oc.json("refunds", "request", number, "--destination", "original", "--reason", "r")
        kit.gateway.fail_next(
            "refund", Outcome.FAILED, code="NOT_ENOUGH_BALANCE", message="merchant balance low"
        )
        out = oc.ok("refunds", "approve", refund["id"])
        assert "failed" in out
        assert "merchant_balance_insufficient: merchant balance low" in out
        assert f"ordercore refunds retry {refund['id']}" in out
        shown = oc.json("refunds", "show", refund["id"])
        check_refund(shown)
        assert shown["status"] == "failed"
        assert shown["failure"] == "merchant_balance_insufficient"
        assert shown["failure_message"] == "merchant balance low"
        assert shown["channel_code"] == "NOT_ENOUGH_BALANCE"
        assert shown["retryable"] is True
        assert [h["action"] for h in shown["history"]] == [
            "refund.request",
            "refund.approve",
            "refund.start",
            "refund.fail",
        ]
        assert [(h["from"], h["to"]) for h in shown["history"]] == [
            (None, "requested"),
            ("requested", "approved"),
            ("approved", "processing"),
            ("processing", "failed"),
        ]
        assert shown["history"][-1]["actor"] == "channel:fake"
        assert [(c["kind"], c["state"]) for c in shown["calls"]] == [("refund", "failed")]
        assert shown["calls"][0]["response"]["code"] == "NOT_ENOUGH_BALANCE"
        assert oc.json("orders", "show", number)["status"] == "paid"
        listed = oc.json("refunds", "list", "--status", "failed")["items"]
        assert [r["id"] for r in listed] == [refund["id"]]

        sentence = oc.fail("refunds", "retry", refund["id"], "--actor", SUPPORT)
        assert "may not refunds.approve" in sentence
        retried = oc.json("refunds", "retry", refund["id"], "--actor", FINANCE)
        check_refund(retried)
        assert retried["status"] == "succeeded"
        assert (retried["failure"], retried["retryable"]) == (None, False)
        assert kit.gateway.refunds_made == 1
        shown = oc.json("refunds", "show", refund["id"])
        assert [h["action"] for h in shown["history"]][-2:] == ["refund.retry", "refund.succeed"]
        assert [(c["kind"], c["state"]) for c in shown["calls"]] == [
            ("refund", "failed"),
            ("refund", "succeeded"),
        ]
        assert oc.json("orders", "show", number)["status"] == "refunded"
        sentence = oc.fail("refunds", "retry", refund["id"])
        assert "cannot retry" in sentence
        assert "succeeded" in sentence
        text = oc.ok("refunds", "show", refund["id"])
        assert "history" in text
        assert "refund.retry" in text
        assert "channel calls" in text

    def test_lost_answer_is_unknown_until_checked(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        refund = oc.json("refunds", "request", number, "--destination", "original", "--reason", "r")
        kit.gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)
        out = oc.ok("refunds", "approve", refund["id"])
        assert "unknown" in out
        assert f"ordercore refunds check {refund['id']}" in out
        shown = oc.json("refunds", "show", refund["id"])
        assert (shown["status"], shown["retryable"]) == ("unknown", True)
        assert oc.json("orders", "show", number)["status"] == "paid"  # not yet

        checked = oc.json("refunds", "check", refund["id"])
        check_refund(checked)
        assert checked["status"] == "succeeded"
        assert kit.gateway.refunds_made == 1
        assert oc.json("orders", "show", number)["status"] == "refunded"
        calls = oc.json("refunds", "show", refund["id"])["calls"]
        assert [c["kind"] for c in calls] == ["refund", "refund_query"]
        out = oc.ok("refunds", "check", refund["id"])
        assert "succeeded" in out
        assert "nothing to ask the channel" in out
        assert kit.gateway.calls["query_refund"] == 1

    def test_check_of_a_refund_the_platform_is_still_paying(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        kit.gateway.refund_mode = "async"
        refund = oc.json("refunds", "request", number, "--destination", "original", "--reason", "r")
        approved = oc.json("refunds", "approve", refund["id"])
        assert approved["status"] == "processing"
        out = oc.ok("refunds", "check", refund["id"])
        assert "processing" in out
        assert "(was processing)" in out
        kit.deliver(kit.gateway.settle_refund(refund["id"]))
        assert oc.json("refunds", "show", refund["id"])["status"] == "succeeded"
        assert oc.json("orders", "show", number)["status"] == "refunded"


class TestRefundList:
    def test_filters_pages_and_text(self, kit: Kit) -> None:
        oc = kit.oc
        first, second = kit.paid(), kit.paid(customer=LI)
        ids = []
        for number in (first, first, second):
            refund = oc.json(
                "refunds",
                "request",
                number,
                "--amount",
                "3",
                "--destination",
                "balance",
                "--reason",
                "r",
            )
            ids.append(refund["id"])
        assert ids == [f"{first}R01", f"{first}R02", f"{second}R01"]
        oc.ok("refunds", "approve", ids[1])

        everything = oc.json("refunds", "list")
        assert [r["id"] for r in everything["items"]] == ids[::-1]  # newest first
        assert everything["next_cursor"] is None
        for item in everything["items"]:
            check_refund(item)
        seen, cursor = [], None
        while True:
            page = oc.json(
                "refunds", "list", "--limit", 2, *(["--cursor", cursor] if cursor else [])
            )
            assert len(page["items"]) <= 2
            seen += [r["id"] for r in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert [r["id"] for r in oc.json("refunds", "list", "--order", first)["items"]] == [
            ids[1],
            ids[0],
        ]
        assert [r["id"] for r in oc.json("refunds", "list", "--status", "requested")["items"]] == [
            ids[2],
            ids[0],
        ]
        only = oc.json("refunds", "list", "--status", "succeeded", "--order", first)["items"]
        assert [r["id"] for r in only] == [ids[1]]
        text = oc.ok("refunds", "list", "--limit", 1)
        assert ids[2] in text
        assert ids[0] not in text
        assert "more: --cursor" in text
        assert "bad" in oc.fail("refunds", "list", "--cursor", "bad")
        assert "NOPE" in oc.fail("refunds", "list", "--order", "NOPE")


# -------------------------------------------------------------------------- after-sales
class TestAfterSales:
    def test_after_sales_record_and_order_show(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid(items="VPN-1M:2")
        empty = oc.json("orders", "after-sales", number)
        assert set(empty) == AFTER_SALES_KEYS
        assert (empty["paid"], empty["refunded"], empty["refundable"]) == ("60.00", "0.00", "60.00")
        assert "no refunds, communications or issues" in oc.ok("orders", "after-sales", number)

        issue = oc.json(
            "orders", "issue-open", number, "--subject", "cannot connect",
            "--note", "customer wrote on chat", "--actor", SUPPORT,
        )  # fmt: skip
        assert set(issue) == ISSUE_KEYS
        assert (issue["order"], issue["status"], issue["opened_by"]) == (number, "open", SUPPORT)
        assert issue["resolved_at"] is None
        assert [(s["status"], s["note"]) for s in issue["steps"]] == [
            ("open", "customer wrote on chat")
        ]
        moved = oc.json(
            "orders", "issue-move", issue["id"], "--step", "ask_customer",
            "--note", "asked for the device", "--actor", SUPPORT,
        )  # fmt: skip
        assert moved["status"] == "waiting_for_customer"
        oc.ok("orders", "issue-move", issue["id"], "--step", "investigate", "--note", "answered")
        refund = oc.json(
            "refunds", "request", number, "--amount", "30.00", "--destination", "original",
            "--reason", "one month unusable",
        )  # fmt: skip
        oc.ok("refunds", "approve", refund["id"])
        resolved = oc.json(
            "orders", "issue-move", issue["id"], "--step", "resolve", "--note", "refunded a month"
        )
        assert resolved["status"] == "resolved"
        assert resolved["resolved_at"] is not None
        assert [s["status"] for s in resolved["steps"]] == [
            "open",
            "waiting_for_customer",
            "investigating",
            "resolved",
        ]
        assert oc.json("orders", "issue-show", issue["id"]) == resolved

        record = oc.json("orders", "after-sales", number)
        no_floats(record)
        assert (record["paid"], record["refunded"], record["refundable"]) == (
            "60.00",
            "30.00",
            "30.00",
        )
        assert [r["id"] for r in record["refunds"]] == [refund["id"]]
        assert record["refunds"][0]["status"] == "succeeded"
        assert [i["id"] for i in record["issues"]] == [issue["id"]]
        assert record["issues"][0]["status"] == "resolved"

        order = oc.json("orders", "show", number)
        assert order["status"] == "paid"
        assert order["amounts"]["refunded"] == "30.00"
        assert [r["id"] for r in order["refunds"]] == [refund["id"]]
        assert [i["id"] for i in order["issues"]] == [issue["id"]]
        text = oc.ok("orders", "show", number)
        assert refund["id"] in text
        assert "refunds" in text
        assert f"issue #{issue['id']} [resolved] cannot connect" in text
        text = oc.ok("orders", "after-sales", number)
        assert "paid 60.00 CNY, refunded 30.00 CNY, refundable 30.00 CNY" in text
        assert "refunded a month" in text
        actions = kit.audit_actions(number)
        assert actions.count("issue.open") == 1
        assert {"issue.ask_customer", "issue.investigate", "issue.resolve"} <= set(actions)

    def test_issue_refusals(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        issue = oc.json("orders", "issue-open", number, "--subject", "slow")
        assert issue["steps"][0]["note"] == "slow"  # the note defaults to the subject
        assert "reopen" in oc.fail(
            "orders", "issue-move", issue["id"], "--step", "reopen", "--note", "n"
        )
        assert oc.fail(
            "orders", "issue-move", issue["id"], "--step", "close", "--note", "n", code=2
        )
        assert oc.fail("orders", "issue-move", issue["id"], "--step", "resolve", code=2)
        assert "note" in oc.fail(
            "orders", "issue-move", issue["id"], "--step", "resolve", "--note", " "
        )
        assert oc.fail("orders", "issue-open", number, code=2)  # no --subject
        assert "subject" in oc.fail("orders", "issue-open", number, "--subject", " ")
        sentence = oc.fail("orders", "issue-move", 999, "--step", "resolve", "--note", "n")
        assert sentence == "no after-sales issue #999"
        assert oc.fail("orders", "issue-show", 999) == "no after-sales issue #999"
        sentence = oc.fail(
            "orders", "issue-open", number, "--subject", "s", "--actor", f"customer:{HAN}"
        )
        assert "may not orders.edit" in sentence
        sentence = oc.fail("orders", "after-sales", number, "--actor", f"customer:{LI}")
        assert "may not orders.view" in sentence
        assert (
            oc.json("orders", "after-sales", number, "--actor", f"customer:{HAN}")["order"]
            == number
        )
        assert oc.json("orders", "issue-show", issue["id"])["status"] == "open"
        assert len(oc.json("orders", "show", number)["issues"]) == 1


# ---------------------------------------------------------------------------- anomalies
class TestAnomalyWorkflow:
    def test_open_investigate_contact_resolve_as_fraud(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        opened = oc.json(
            "anomalies", "open", number, "--kind", "fraud", "--note", "stolen card reported",
            "--actor", FINANCE,
        )  # fmt: skip
        assert (opened["kind"], opened["status"], opened["order"]) == ("fraud", "open", number)
        aid = opened["id"]
        moved = oc.json("anomalies", "investigate", aid, "--note", "same card on 3 accounts")
        assert moved["status"] == "investigating"
        out = oc.ok(
            "anomalies", "contact", aid, "--note", "called the customer", "--channel", "phone"
        )
        assert f"anomaly #{aid}: contacting (by phone)" in out
        resolved = oc.json(
            "anomalies", "resolve", aid, "--action", "fraud", "--note", "confirmed by the bank"
        )
        assert resolved["status"] == "resolved"
        assert resolved["resolution"] == "fraud: confirmed by the bank"
        order = oc.json("orders", "show", number)
        assert "fraud" in order["flags"]
        assert [(c["channel"], c["text"]) for c in order["communications"]] == [
            ("phone", "called the customer")
        ]
        after_sales = oc.json("orders", "after-sales", number)
        assert [c["text"] for c in after_sales["communications"]] == ["called the customer"]
        actions = kit.audit_actions(number)
        for action in ("anomaly.open", "anomaly.investigate", "anomaly.contact", "anomaly.resolve"):
            assert action in actions
        sentence = oc.fail("anomalies", "investigate", aid, "--note", "more")
        assert sentence

    def test_resolve_keeps_the_resolution_option(self, kit: Kit) -> None:
        number = kit.paid()
        aid = kit.oc.json(
            "anomalies", "open", number, "--kind", "payment_not_received", "--note", "n"
        )["id"]
        out = kit.oc.ok("anomalies", "resolve", aid, "--resolution", "paid after all")
        assert out.strip() == f"anomaly #{aid} resolved: paid after all"
        shown = kit.oc.json("anomalies", "show", aid)
        assert (shown["status"], shown["resolution"]) == ("resolved", "paid after all")

    def test_resolve_by_refunding_a_payment_after_cancel(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.order()
        attempt = oc.json("orders", "pay", number, "--channel", "fake", "--method", "qr")
        oc.ok("orders", "cancel", number, "--note", "customer changed their mind")
        kit.deliver(kit.gateway.pay(attempt["out_trade_no"], force=True))  # paid anyway
        (anomaly,) = oc.json("anomalies", "list", "--order", number)["items"]
        assert anomaly["kind"] == "payment_after_cancel"
        sentence = oc.fail(
            "anomalies", "resolve", anomaly["id"], "--action", "accept", "--note", "n"
        )
        assert "accept resolves amount_mismatch, late_payment, underpayment only" in sentence
        sentence = oc.fail(
            "anomalies", "resolve", anomaly["id"], "--action", "refund", "--note", "n",
            "--actor", SUPPORT,
        )  # fmt: skip
        assert "may not payments.review" in sentence
        assert kit.refund_rows() == []

        resolved = oc.json(
            "anomalies", "resolve", anomaly["id"], "--action", "refund", "--destination", "balance",
            "--note", "gave the money back",
        )  # fmt: skip
        assert resolved["status"] == "resolved"
        assert resolved["resolution"] == f"refund {number}R01: gave the money back"
        refund = oc.json("refunds", "show", f"{number}R01")
        assert (refund["status"], refund["destination"]) == ("succeeded", "balance")
        assert refund["payment"] == attempt["out_trade_no"]
        assert refund["counts_toward_order"] is False
        order = oc.json("orders", "show", number)
        assert order["status"] == "canceled"
        assert order["amounts"]["refunded"] == "0.00"
        assert oc.json("wallet", "show", HAN)["balances"]["CNY"] == "30.00"
        assert kit.gateway.refund_calls == 0

    def test_refusals(self, kit: Kit) -> None:
        oc = kit.oc
        number = kit.paid()
        assert oc.fail("anomalies", "open", number, "--kind", "weird", "--note", "n", code=2)
        assert oc.fail("anomalies", "open", number, "--kind", "fraud", code=2)
        assert "note" in oc.fail("anomalies", "open", number, "--kind", "fraud", "--note", " ")
        sentence = oc.fail(
            "anomalies", "open", number, "--kind", "fraud", "--note", "n", "--payment", "NOPE"
        )
        assert "NOPE" in sentence
        sentence = oc.fail(
            "anomalies", "open", number, "--kind", "fraud", "--note", "n", "--actor", SUPPORT
        )
        assert "may not payments.review" in sentence
        assert oc.json("anomalies", "list")["items"] == []
        for command in ("investigate", "contact"):
            assert oc.fail("anomalies", command, 999, "--note", "n") == "no anomaly #999"
        assert oc.fail("anomalies", "resolve", 999, "--note", "n") == "no anomaly #999"
        assert oc.fail("anomalies", "resolve", 1, code=2)  # no --note
        aid = oc.json("anomalies", "open", number, "--kind", "fraud", "--note", "n")["id"]
        assert oc.fail("anomalies", "resolve", aid, "--action", "nothing", "--note", "n", code=2)
        oc.ok("anomalies", "resolve", aid, "--note", "false alarm")
        assert "resolved already" in oc.fail("anomalies", "resolve", aid, "--note", "again")


# ------------------------------------------------------------------------ JSON contract
def test_every_new_json_output_parses_without_floats(kit: Kit) -> None:
    oc = kit.oc
    number = kit.paid()
    refund = oc.json(
        "refunds",
        "request",
        number,
        "--amount",
        "1.50",
        "--destination",
        "balance",
        "--reason",
        "r",
    )
    issue = oc.json("orders", "issue-open", number, "--subject", "s")
    aid = oc.json("anomalies", "open", number, "--kind", "fraud", "--note", "n")["id"]
    for args in (
        ("refunds", "list"),
        ("refunds", "show", refund["id"]),
        ("refunds", "approve", refund["id"]),
        ("refunds", "check", refund["id"]),
        ("orders", "after-sales", number),
        ("orders", "show", number),
        ("orders", "issue-show", issue["id"]),
        ("orders", "issue-move", issue["id"], "--step", "investigate", "--note", "n"),
        ("anomalies", "investigate", aid, "--note", "n"),
        ("anomalies", "contact", aid, "--note", "n"),
        ("anomalies", "resolve", aid, "--note", "n"),
    ):
        data = oc.json(*args)
        no_floats(data)
    shown = oc.json("refunds", "show", refund["id"])
    assert set(shown) == REFUND_KEYS | {"history", "calls"}
    assert shown["calls"] == []  # a balance refund calls no channel
