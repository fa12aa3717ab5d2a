"""The payment engine end to end, in one process: the fake channel (signed notifications),
the balance channel and bank transfers under review, and every notification the engine must
refuse or turn into an anomaly (design.md guarantees 3, 6 and 7).

Happy paths run on every backend; the refusals and anomalies on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from helpers import Backend, FakeClock, snapshot
from ordercore import Actor, InsufficientFunds, InvalidField, Money, OrderStatus, PermissionDenied
from ordercore._state import CancelReason, OrderEvent, PaymentStatus
from ordercore.channels import HttpReply
from ordercore.testing import TradeStatus

from .payment_kit import ADMIN, Shop, cny, make_shop

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
on_sqlite_and_postgresql = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)

OK = (200, b"OK")


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


def reply_of(reply: HttpReply) -> tuple[int, bytes]:
    return reply.status, reply.body


def without_inbox(shop: Shop) -> dict[str, object]:
    rows = snapshot(shop.core)
    rows.pop(shop.core.tables.inbox.name)
    return rows


# ------------------------------------------------------------------------- happy paths
def test_a_fake_payment_is_applied_activated_and_notified(shop: Shop) -> None:
    core, gateway, host = shop.core, shop.gateway, shop.host
    order = shop.order()
    assert order.amounts.payable == cny("27.00")

    started = core.payments.start(order.number, channel="fake", method="qr", actor=ADMIN)
    attempt = started.attempt
    no = attempt.out_trade_no
    assert attempt.status is PaymentStatus.PENDING
    assert attempt.amount == cny("27.00")
    assert started.checkout is not None
    assert started.checkout.kind == "qr"
    assert started.checkout.content == f"fakepay://pay/{no}"
    assert gateway.trade(no).amount == cny("27.00")
    assert gateway.calls["create"] == 1
    (op,) = core.payments.operations(no)
    assert (op["kind"], op["state"]) == ("create", "pending")
    assert shop.coupon_uses(order.number) == [("TEN", "reserved")]

    reply = shop.deliver(gateway.pay(no))

    assert reply_of(reply) == OK
    paid = core.orders.get(order.number)
    assert paid.status is OrderStatus.PAID
    assert paid.amounts.paid == cny("27.00")
    assert shop.events(order.number, OrderEvent.PAY) == 1
    stored = core.payments.attempt(no)
    assert stored.status is PaymentStatus.SUCCEEDED
    assert stored.received == cny("27.00")
    assert stored.channel_trade_no == gateway.trade(no).trade_no
    assert shop.coupon_uses(order.number) == [("TEN", "consumed")]
    (message,) = shop.outbox(order.number)
    assert message["kind"] == "order.paid"
    assert message["payload"]["amount"] == "27.00"
    assert message["payload"]["out_trade_no"] == no
    assert message["delivered_at"] is None
    (entry,) = shop.inbox()
    assert (entry["status"], entry["out_trade_no"], entry["order_number"]) == (
        "applied",
        no,
        order.number,
    )
    assert shop.count("payment_events") == 1
    assert shop.anomaly_kinds() == []
    # Nothing leaves before the job runner runs: the outbox is written, not sent.
    assert host.activation_calls == []
    assert host.notify_calls == []

    report = core.payments.run_due_jobs()

    assert report.activated == (order.number,)
    assert host.activation_calls == [(order.number, f"activate:{order.number}", 1)]
    done = core.orders.get(order.number)
    assert done.status is OrderStatus.COMPLETED
    assert shop.events(order.number, OrderEvent.COMPLETE) == 1
    outbox = shop.outbox(order.number)
    assert [m["kind"] for m in outbox] == ["order.paid", "order.completed"]
    assert all(m["delivered_at"] is not None for m in outbox)
    assert host.notified_ids() == Counter({m["event_id"]: 1 for m in outbox})
    assert host.notified_kinds() == ["order.paid", "order.completed"]
    assert host.notified[0].payload["out_trade_no"] == no

    # Later passes find nothing to do: activated once, each event delivered once.
    assert core.payments.run_due_jobs().total == 0
    shop.clock.advance(3600)
    assert core.payments.run_due_jobs().total == 0
    assert len(host.activation_calls) == 1
    assert len(host.notify_calls) == 2
    assert core.audit.verify().ok


def test_the_balance_channel_pays_in_one_transaction(shop: Shop) -> None:
    core, host = shop.core, shop.host
    core.wallet.credit(shop.customer_id, cny("50.00"), reason="top-up", actor=ADMIN)
    order = shop.order()

    started = core.payments.start(order.number, channel="balance", actor=ADMIN)

    assert started.checkout is None
    assert started.attempt.status is PaymentStatus.SUCCEEDED
    assert started.attempt.method == "balance"
    assert core.orders.get(order.number).status is OrderStatus.PAID
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("23.00")
    assert core.wallet.ledger_sum(shop.customer_id, "CNY") == 2300
    assert shop.coupon_uses(order.number) == [("TEN", "consumed")]
    assert shop.outbox_kinds(order.number) == ["order.paid"]
    assert shop.count("payment_events") == 1
    assert shop.gateway.calls["create"] == 0

    report = core.payments.run_due_jobs()
    assert report.activated == (order.number,)
    assert host.activated == [order.number]
    assert core.orders.get(order.number).status is OrderStatus.COMPLETED

    # Not enough left for a second order: refused, nothing written.
    second = shop.order()
    before = without_inbox(shop)
    with pytest.raises(InsufficientFunds):
        core.payments.start(second.number, channel="balance", actor=ADMIN)
    assert without_inbox(shop) == before
    assert core.payments.attempts(second.number) == []
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("23.00")


def test_bank_transfer_approved_and_rejected(shop: Shop) -> None:
    core, host, clock = shop.core, shop.host, shop.clock
    customer = Actor.customer(shop.customer_id)
    core.wallet.credit(shop.customer_id, cny("10.00"), reason="top-up", actor=ADMIN)
    approved = shop.order()
    rejected = shop.order(qty=2, use_balance=cny("4.00"))
    assert rejected.amounts.payable == cny("50.00")
    assert core.products.get("vpn").stock == 7
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("6.00")

    started = core.payments.start(
        approved.number, channel="bank_transfer", method="transfer", actor=ADMIN
    )
    assert started.checkout is not None
    assert started.checkout.kind == "instructions"
    assert started.checkout.content == started.attempt.out_trade_no
    assert started.attempt.status is PaymentStatus.PENDING
    a = started.attempt.out_trade_no
    b = shop.start(rejected.number, channel="bank_transfer", method="transfer").out_trade_no

    waiting = core.payments.submit_proof(a, reference="ICBC-20261124-1", actor=customer)
    core.payments.submit_proof(b, reference="ICBC-20261124-2", actor=customer)
    assert waiting.status is PaymentStatus.AWAITING_REVIEW
    assert core.payments.attempt(a).proof_reference == "ICBC-20261124-1"
    assert shop.outbox_kinds(approved.number) == ["payment.awaiting_review"]

    # Past the deadline, a transfer waiting for review is not cancelled by the timeout job.
    clock.advance(20 * 60)
    report = core.payments.run_due_jobs()
    assert report.canceled == ()
    assert core.orders.get(approved.number).status is OrderStatus.PENDING
    assert core.orders.get(rejected.number).status is OrderStatus.PENDING

    core.payments.approve(a, actor=ADMIN, note="seen on the statement")
    assert core.payments.attempt(a).status is PaymentStatus.SUCCEEDED
    assert core.orders.get(approved.number).status is OrderStatus.PAID
    assert shop.coupon_uses(approved.number) == [("TEN", "consumed")]
    with pytest.raises(InvalidField):
        core.payments.approve(a, actor=ADMIN)  # approved once only
    assert shop.events(approved.number, OrderEvent.PAY) == 1

    core.payments.reject(b, actor=ADMIN, reason="no such transfer on the statement")
    assert core.payments.attempt(b).status is PaymentStatus.FAILED
    order = core.orders.get(rejected.number)
    assert order.status is OrderStatus.CANCELED
    assert order.cancel_reason is CancelReason.REJECTED
    assert core.products.get("vpn").stock == 9  # the two units came back, one is sold
    assert shop.coupon_uses(rejected.number) == [("TEN", "released")]
    assert core.wallet.balance(shop.customer_id, "CNY") == cny("10.00")
    assert core.wallet.ledger_sum(shop.customer_id, "CNY") == 1000
    with pytest.raises(InvalidField):
        core.payments.approve(b, actor=ADMIN)  # a rejected transfer cannot be approved
    assert core.orders.get(rejected.number).status is OrderStatus.CANCELED
    assert "payment.rejected" in shop.outbox_kinds(rejected.number)

    report = core.payments.run_due_jobs()
    assert report.activated == (approved.number,)
    assert host.activated == [approved.number]
    assert core.orders.get(approved.number).status is OrderStatus.COMPLETED
    assert "order.paid" in host.notified_kinds(approved.number)
    assert "order.paid" not in host.notified_kinds(rejected.number)
    assert core.audit.verify().ok


# --------------------------------------------------------------------------- refusals
REFUSALS = {
    # case: (how to build it, the rejection code stored in the inbox)
    "tampered-amount": (
        lambda shop, no: shop.gateway.notification_for(no, tamper=True),
        "bad_signature",
    ),
    "wrong-secret": (
        lambda shop, no: shop.gateway.notification_for(no, secret=b"guessed"),
        "bad_signature",
    ),
    "stale": (
        lambda shop, no: shop.gateway.notification_for(
            no, timestamp=int(shop.clock().timestamp()) - 600
        ),
        "stale",
    ),
    "from-the-future": (
        lambda shop, no: shop.gateway.notification_for(
            no, timestamp=int(shop.clock().timestamp()) + 600
        ),
        "stale",
    ),
    "wrong-merchant": (
        lambda shop, no: shop.gateway.notification_for(no, merchant_id="someone-else"),
        "wrong_merchant",
    ),
    "float-amount": (
        lambda shop, no: shop.gateway.notification_for(no, extra={"amount": 27.0}),
        "malformed",
    ),
    "garbage": (
        lambda shop, no: ({"content-type": "text/plain"}, b"\x00garbage\xff"),
        "malformed",
    ),
    "no-signature": (
        lambda shop, no: ({}, shop.gateway.notification_for(no).body),
        "malformed",
    ),
}


@on_sqlite_and_postgresql
def test_a_refused_notification_changes_nothing(shop: Shop) -> None:
    cases = []
    for case, (build, code) in sorted(REFUSALS.items()):
        order = shop.order()
        no = shop.start(order.number).out_trade_no
        before = without_inbox(shop)
        headers, body = build(shop, no)

        reply = shop.core.payments.handle_callback("fake", headers, body, "10.0.0.9")

        assert reply.status == 400, case
        assert json.loads(reply.body)["code"] == "FAIL", case
        assert without_inbox(shop) == before, case
        entry = shop.inbox()[-1]
        assert entry["status"] == "rejected", case
        assert entry["reason"].startswith(f"{code}:"), (case, entry["reason"])
        assert entry["body"] == bytes(body), case  # stored exactly as received
        assert entry["remote_addr"] == "10.0.0.9", case
        assert shop.core.payments.attempt(no).status is PaymentStatus.PENDING, case
        cases.append((order.number, no))
    assert len(shop.inbox()) == len(REFUSALS)
    assert shop.count("payment_events") == 0
    assert shop.anomaly_kinds() == []
    # The refusals poisoned nothing: the genuine notifications still apply.
    for number, no in cases:
        assert reply_of(shop.deliver(shop.gateway.pay(no))) == OK
        assert shop.core.orders.get(number).status is OrderStatus.PAID


@on_sqlite_and_postgresql
def test_a_notification_for_no_known_attempt_is_refused_and_recorded(shop: Shop) -> None:
    order = shop.order()
    shop.start(order.number)
    before = without_inbox(shop)
    unknown = "NO-SUCH-ATTEMPT-1"
    headers, body = shop.gateway.notification_for(unknown, amount=cny("27.00"))

    reply = shop.core.payments.handle_callback(
        "fake", {**headers, "Authorization": "Bearer s3cr3t"}, body, "10.0.0.2"
    )

    assert reply.status == 400
    assert without_inbox(shop) == before
    (entry,) = shop.inbox()
    assert entry["status"] == "rejected"
    # Only the headers the channel reads are stored; the others are only named and counted.
    assert "authorization" not in entry["headers"]
    assert "authorization" in entry["header_summary"]["names"]
    assert "s3cr3t" not in json.dumps(entry["header_summary"])
    assert entry["headers"]["x-fake-signature"] == headers["x-fake-signature"]
    assert entry["out_trade_no"] == unknown
    assert "no such payment attempt" in entry["reason"]
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING

    # A signed number longer than the inbox column: still a refusal and a record, not an
    # exception (the endpoint would answer 500 and the platform retry for ever).
    reply = shop.deliver(shop.gateway.notification_for("X" * 100, amount=cny("27.00")))
    assert reply.status == 400
    assert shop.inbox()[-1]["status"] == "rejected"

    # An unknown channel: refused before anything is stored.
    assert shop.core.payments.handle_callback("nope", {}, b"{}").status == 404
    assert len(shop.inbox()) == 2
    assert without_inbox(shop) == before


# -------------------------------------------------------------------------- anomalies
@on_sqlite_and_postgresql
def test_a_wrong_amount_or_currency_is_an_anomaly_and_never_activates(shop: Shop) -> None:
    core = shop.core
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    signed = shop.gateway.pay(no, amount="0.01")

    reply = shop.deliver(signed)

    assert reply_of(reply) == OK  # acknowledged, so the platform stops retrying
    assert core.orders.get(order.number).status is OrderStatus.PENDING
    assert core.payments.attempt(no).status is PaymentStatus.PENDING
    (anomaly,) = core.anomalies.list(order_number=order.number)
    assert anomaly.kind.value == "amount_mismatch"
    assert anomaly.status.value == "open"
    assert anomaly.out_trade_no == no
    assert anomaly.evidence["expected"] == "27.00 CNY"
    assert anomaly.evidence["received"] == "0.01 CNY"
    stored = shop.inbox()[-1]
    assert stored["status"] == "anomaly"
    assert (stored["reason"], stored["out_trade_no"]) == ("amount mismatch", no)
    assert anomaly.evidence["inbox_id"] == stored["id"]  # the row stored when it was needed
    assert shop.count("payment_events") == 0
    assert shop.outbox_kinds(order.number) == ["anomaly.opened"]
    assert shop.coupon_uses(order.number) == [("TEN", "reserved")]
    # The same notification again: no second anomaly.
    assert reply_of(shop.deliver(signed)) == OK
    assert shop.anomaly_kinds(order.number) == ["amount_mismatch"]

    other = shop.order()
    usd = shop.start(other.number).out_trade_no
    reply = shop.deliver(shop.gateway.pay(usd, amount=Money.of("27.00", "USD")))
    assert reply_of(reply) == OK
    assert shop.anomaly_kinds(other.number) == ["currency_mismatch"]
    assert core.orders.get(other.number).status is OrderStatus.PENDING
    assert core.payments.attempt(usd).status is PaymentStatus.PENDING
    assert shop.count("payment_events") == 0

    report = core.payments.run_due_jobs()
    assert report.activated == ()
    assert shop.host.activation_calls == []
    assert shop.host.notified_kinds() == ["anomaly.opened", "anomaly.opened"]
    assert core.orders.get(order.number).status is OrderStatus.PENDING
    assert core.orders.get(other.number).status is OrderStatus.PENDING


@on_sqlite_and_postgresql
def test_a_payment_after_the_timeout_cancel_is_an_anomaly(shop: Shop) -> None:
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    clock.advance(16 * 60)

    report = core.payments.run_due_jobs()

    assert report.canceled == (order.number,)
    canceled = core.orders.get(order.number)
    assert canceled.status is OrderStatus.CANCELED
    assert canceled.cancel_reason is CancelReason.TIMEOUT
    assert core.payments.attempt(no).status is PaymentStatus.EXPIRED
    assert gateway.calls["query"] >= 1  # asked the platform before cancelling
    assert gateway.trade(no).status is TradeStatus.CLOSED
    assert shop.coupon_uses(order.number) == [("TEN", "released")]

    reply = shop.deliver(gateway.pay(no, force=True))  # the payer paid anyway

    assert reply_of(reply) == OK
    assert shop.anomaly_kinds(order.number) == ["payment_after_cancel"]
    assert core.orders.get(order.number).status is OrderStatus.CANCELED
    assert shop.events(order.number, OrderEvent.PAY) == 0
    # The platform's fact is recorded on the attempt, so the money can be found and refunded.
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert reply_of(shop.deliver(gateway.notification_for(no))) == OK  # a retry
    assert shop.anomaly_kinds(order.number) == ["payment_after_cancel"]
    core.payments.run_due_jobs()
    assert shop.host.activation_calls == []
    assert shop.host.notified_kinds(order.number) == ["anomaly.opened"]


@on_sqlite_and_postgresql
def test_a_second_payment_through_another_attempt_is_a_duplicate_payment(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    first = shop.start(order.number).out_trade_no
    second = shop.start(order.number).out_trade_no
    assert first != second

    assert reply_of(shop.deliver(gateway.pay(first))) == OK
    assert core.payments.attempt(second).status is PaymentStatus.CANCELED

    reply = shop.deliver(gateway.pay(second))

    assert reply_of(reply) == OK
    (anomaly,) = core.anomalies.list(order_number=order.number)
    assert anomaly.kind.value == "duplicate_payment"
    assert anomaly.out_trade_no == second
    assert core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.events(order.number, OrderEvent.PAY) == 1
    assert core.orders.get(order.number).amounts.paid == cny("27.00")
    assert core.payments.attempt(second).status is PaymentStatus.SUCCEEDED
    assert shop.outbox_kinds(order.number) == ["order.paid", "anomaly.opened"]
    core.payments.run_due_jobs()
    assert shop.host.activation_calls == [(order.number, f"activate:{order.number}", 1)]


@on_sqlite_and_postgresql
def test_duplicates_and_replays_are_acknowledged_and_change_nothing(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    signed = gateway.pay(no)
    assert reply_of(shop.deliver(signed)) == OK
    (first,) = shop.inbox()
    after_first = without_inbox(shop)

    replies = [shop.deliver(signed) for _ in range(3)]
    # The platform's retry with a fresh event id is the same payment.
    replies.append(shop.deliver(gateway.notification_for(no)))
    # An operator replays the stored notification, long after: it is judged as of its
    # first arrival (not stale), and applies nothing twice.
    shop.clock.advance(3600)
    replies.append(core.payments.replay(first["id"], actor=ADMIN))

    assert [reply_of(r) for r in replies] == [OK] * 5
    assert without_inbox(shop) == after_first
    assert [e["status"] for e in shop.inbox()] == ["applied"] + ["duplicate"] * 5
    replayed = shop.inbox()[-1]
    assert replayed["replay_of"] == first["id"]
    assert replayed["body"] == first["body"]
    assert shop.events(order.number, OrderEvent.PAY) == 1
    with pytest.raises(PermissionDenied):
        core.payments.replay(first["id"], actor=Actor.customer(shop.customer_id))


@on_sqlite_and_postgresql
def test_a_failed_payment_fails_the_attempt_and_a_late_failure_is_ignored(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    failed = shop.start(order.number).out_trade_no
    assert reply_of(shop.deliver(gateway.fail_payment(failed))) == OK
    assert core.payments.attempt(failed).status is PaymentStatus.FAILED
    assert core.orders.get(order.number).status is OrderStatus.PENDING

    paid = shop.start(order.number).out_trade_no
    assert reply_of(shop.deliver(gateway.pay(paid))) == OK
    # A failure arriving after the success (out of order) changes nothing.
    assert reply_of(shop.deliver(gateway.notification_for(paid, "payment.failed"))) == OK
    assert core.payments.attempt(paid).status is PaymentStatus.SUCCEEDED
    assert core.orders.get(order.number).status is OrderStatus.PAID
    assert shop.anomaly_kinds() == []


@on_sqlite_and_postgresql
def test_a_payment_after_a_failed_try_on_the_same_attempt_is_applied(shop: Shop) -> None:
    """The fake platform (like the real ones) lets a payer pay a trade whose first try
    failed; the money must be applied (or at least surfaced), never bounced with a 500."""
    core, gateway = shop.core, shop.gateway
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    assert reply_of(shop.deliver(gateway.fail_payment(no))) == OK

    reply = shop.deliver(gateway.pay(no))

    assert reply_of(reply) == OK
    assert core.orders.get(order.number).status is OrderStatus.PAID
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED


# ------------------------------------------------------------------------------ replay
@on_sqlite_and_postgresql
def test_replaying_a_refused_notification_once_its_attempt_exists(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notification arrived before we knew its attempt (refused, stored); once the
    attempt exists, an operator's replay applies it — once."""
    core = shop.core
    order = shop.order()
    no = f"{order.number}EARLY1"
    early = shop.gateway.notification_for(no, amount=cny("27.00"))
    assert shop.deliver(early).status == 400
    (refused,) = shop.inbox()
    assert refused["status"] == "rejected"

    monkeypatch.setattr("ordercore._payments.payment_service._new_out_trade_no", lambda number: no)
    assert shop.start(order.number).out_trade_no == no
    shop.clock.advance(5 * 60 + 30)  # beyond the signature's window, within the deadline

    reply = core.payments.replay(refused["id"], actor=ADMIN)

    assert reply_of(reply) == OK
    assert core.orders.get(order.number).status is OrderStatus.PAID
    assert core.payments.attempt(no).status is PaymentStatus.SUCCEEDED
    assert shop.inbox()[-1]["status"] == "applied"
    assert reply_of(core.payments.replay(refused["id"], actor=ADMIN)) == OK
    assert shop.inbox()[-1]["status"] == "duplicate"
    assert shop.events(order.number, OrderEvent.PAY) == 1
    assert shop.outbox_kinds(order.number) == ["order.paid"]
