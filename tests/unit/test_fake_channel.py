"""Unit tests of the public test kit, ordercore.testing: the fake channel's signing and
verification, its platform (refund idempotency, faults, counters, real HTTP), the builders,
the fixtures, and the hook signatures in docs/plugins.md. (The examples of docs/testing.md run
in tests/docs/test_doc_snippets.py, docs/plugins.md's example plugin in
tests/integration/test_example_plugin.py.)"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ordercore.testing
from ordercore import ConfigurationError, Money, Settings, hookspecs
from ordercore.channels import (
    ChannelConfig,
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    NotificationResult,
    Outcome,
    PaymentChannel,
    PaymentEvent,
    RefundEvent,
)
from ordercore.testing import (
    DEFAULT_SECRET,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    FakeChannel,
    FakeGateway,
    FakeGatewayError,
    SignedNotification,
    TradeStatus,
    assert_channel_contract,
    fake_channel_config,
    fake_signature,
    garbage_notifications,
    make_checkout_request,
    make_fake_channel,
    make_refund_request,
)

ROOT = Path(__file__).resolve().parents[2]
PROPERTY = settings(max_examples=300, deadline=None)
NOW = datetime(2026, 11, 24, 8, 30, 15, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kit(clock: Clock) -> tuple[FakeChannel, FakeGateway]:
    return make_fake_channel(gateway=FakeGateway(clock=clock))


def parse(channel: PaymentChannel, signed: SignedNotification) -> NotificationResult:
    return channel.parse_notification(signed.to_notification())


def code(channel: PaymentChannel, signed: SignedNotification) -> str:
    rejection = parse(channel, signed).rejection
    return rejection.code if rejection is not None else "accepted"


def resign(
    body: bytes, ts: int | str, secret: bytes = DEFAULT_SECRET, **more: str
) -> SignedNotification:
    headers = {SIGNATURE_HEADER: fake_signature(secret, ts, body), TIMESTAMP_HEADER: str(ts)}
    headers.update(more)
    return SignedNotification(headers, body)


def paid(kit: tuple[FakeChannel, FakeGateway], no: str = "T1", amount: str = "30.00") -> None:
    channel, gateway = kit
    channel.create_checkout(make_checkout_request(no, amount, "CNY"))
    gateway.pay(no)


# ------------------------------------------------------------------ signing round trip


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert fake_signature(b"k", 1700000000, b"{}") == expected
    assert fake_signature(b"k", "1700000000", b"{}") == expected


def test_pay_round_trip(kit: tuple[FakeChannel, FakeGateway], clock: Clock) -> None:
    channel, gateway = kit
    checkout = channel.create_checkout(make_checkout_request("T1", "30.00", "CNY"))
    assert checkout == Checkout(
        kind="qr",
        content="fakepay://pay/T1",
        channel_reference=gateway.trade("T1").trade_no,
    )
    signed = gateway.pay("T1")
    headers, body = signed
    assert headers[SIGNATURE_HEADER] == fake_signature(
        DEFAULT_SECRET, headers[TIMESTAMP_HEADER], body
    )
    assert headers[TIMESTAMP_HEADER] == str(int(clock.now.timestamp()))
    payload = signed.payload()
    assert payload["amount"] == "30.00"
    assert payload["currency"] == "CNY"
    result = parse(channel, signed)
    assert result.rejection is None
    assert result.events == (
        PaymentEvent(
            out_trade_no="T1",
            paid=True,
            amount=Money.of("30.00", "CNY"),
            channel_trade_no=gateway.trade("T1").trade_no,
            status="payment.succeeded",
            merchant_id="fake-merchant",
            occurred_at=NOW.replace(microsecond=0),
            event_id=payload["id"],
        ),
    )
    assert gateway.trade("T1").status is TradeStatus.PAID
    assert gateway.sent == [signed]


def test_failed_payment_and_refund_notifications_parse(
    kit: tuple[FakeChannel, FakeGateway],
) -> None:
    channel, gateway = kit
    channel.create_checkout(make_checkout_request("T1", "30.00", "CNY"))
    (failed,) = parse(channel, gateway.fail_payment("T1")).events
    assert isinstance(failed, PaymentEvent)
    assert not failed.paid
    assert failed.status == "payment.failed"
    (refund,) = parse(
        channel,
        gateway.notification_for("T1", "refund.failed", out_refund_no="R1", refund_no="RN1"),
    ).events
    assert refund == RefundEvent(
        out_refund_no="R1",
        outcome=Outcome.FAILED,
        amount=Money.of("30.00", "CNY"),
        channel_refund_no="RN1",
        out_trade_no="T1",
        event_id=refund.event_id,
    )


@pytest.mark.parametrize(
    ("currency", "amount", "text"),
    [("CNY", "30.00", "30.00"), ("JPY", "3000", "3000"), ("BTC", "0.001", "0.00100000")],
)
def test_amounts_travel_as_text_at_the_currency_precision(
    kit: tuple[FakeChannel, FakeGateway], currency: str, amount: str, text: str
) -> None:
    channel, gateway = kit
    channel.create_checkout(make_checkout_request("T1", amount, currency))
    signed = gateway.pay("T1")
    assert signed.payload()["amount"] == text
    (event,) = parse(channel, signed).events
    assert isinstance(event, PaymentEvent)
    assert event.amount is not None
    assert type(event.amount.amount) is Decimal
    assert event.amount == Money.of(amount, currency)


def test_acknowledgements() -> None:
    channel, _ = make_fake_channel()
    assert channel.acknowledge(True) == HttpReply(
        200, b"OK", {"content-type": "text/plain; charset=utf-8"}
    )
    reply = channel.acknowledge(False, "bad signature")
    assert reply.status == 400
    assert json.loads(reply.body) == {"code": "FAIL", "message": "bad signature"}


# ------------------------------------------------------------------ tampering and replay


def test_one_byte_changed_anywhere_in_the_body_is_a_bad_signature(
    kit: tuple[FakeChannel, FakeGateway],
) -> None:
    paid(kit)
    channel, gateway = kit
    headers, body = gateway.sent[-1]
    for index in range(len(body)):
        for flip in (0x01, 0x20, 0x80):
            changed = bytearray(body)
            changed[index] ^= flip
            result = parse(channel, SignedNotification(headers, bytes(changed)))
            assert result.rejection is not None, (index, flip)
            assert result.rejection.code == "bad_signature", (index, flip)
    for cut in (body[:-1], body + b" ", b" " + body):
        assert code(channel, SignedNotification(headers, cut)) == "bad_signature"


def test_tampered_headers_and_foreign_secrets_are_bad_signatures(
    kit: tuple[FakeChannel, FakeGateway],
) -> None:
    paid(kit)
    channel, gateway = kit
    headers, body = gateway.sent[-1]
    later = dict(headers, **{TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)})
    assert code(channel, SignedNotification(later, body)) == "bad_signature"
    signature = headers[SIGNATURE_HEADER]
    flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
    changed = dict(headers, **{SIGNATURE_HEADER: flipped})
    assert code(channel, SignedNotification(changed, body)) == "bad_signature"
    assert code(channel, gateway.pay("T1", force=True, tamper=True)) == "bad_signature"
    assert code(channel, gateway.notification_for("T1", secret=b"other")) == "bad_signature"


def test_stale_and_future_timestamps_are_refused(
    kit: tuple[FakeChannel, FakeGateway], clock: Clock
) -> None:
    paid(kit)
    channel, gateway = kit
    now = int(clock.now.timestamp())
    for offset, expected in [
        (-301, "stale"),
        (-300, "accepted"),
        (0, "accepted"),
        (300, "accepted"),
        (301, "stale"),
        (-now, "stale"),
    ]:
        signed = gateway.notification_for("T1", timestamp=now + offset)
        assert code(channel, signed) == expected, offset
    # the same notification, later: stale for the channel's clock...
    signed = gateway.notification_for("T1")
    clock.now += timedelta(minutes=10)
    assert code(channel, signed) == "stale"
    # ...but judged against its time of receipt when that is recorded (replay of the inbox)
    received = signed.to_notification(received_at=clock.now - timedelta(minutes=10))
    assert channel.parse_notification(received).rejection is None


# ------------------------------------------------------------------ malformed notifications


def test_missing_or_garbled_headers_are_malformed(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    headers, body = gateway.sent[-1]
    signature, ts = headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
    cases: list[dict[Any, Any]] = [
        {},
        {TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: signature},
        {SIGNATURE_HEADER: signature.upper(), TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: signature[:-1], TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: "sha256=" + signature, TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: signature + "\n", TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: "é" * 64, TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: "-" + ts},
        {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: ts + ".0"},
        {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: "1" * 13},
        {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: "١٢٣"},  # non-ASCII digits
        {SIGNATURE_HEADER: b"bytes", TIMESTAMP_HEADER: ts},
        {SIGNATURE_HEADER: signature, "X-Fake-Signature": signature, TIMESTAMP_HEADER: ts},
        {1: 2, None: signature},
    ]
    for case in cases:
        result = channel.parse_notification(Notification("fake", case, body))
        assert result.rejection is not None, case
        assert result.rejection.code == "malformed", case
    odd = [None, "text", 42, [("x-fake-signature", signature)]]
    for headers_value in odd:
        result = channel.parse_notification(Notification("fake", headers_value, body))  # type: ignore[arg-type]
        assert result.rejection is not None
        assert result.rejection.code == "malformed"
    for body_value in (None, "text", 42):
        result = channel.parse_notification(Notification("fake", headers, body_value))  # type: ignore[arg-type]
        assert result.rejection is not None
        assert result.rejection.code == "malformed"


def test_header_names_are_case_insensitive(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    headers, body = gateway.sent[-1]
    upper = {name.title(): value for name, value in headers.items()}
    assert channel.parse_notification(Notification("fake", upper, body)).rejection is None
    loose = Notification("fake", headers, bytearray(body))  # type: ignore[arg-type]
    assert channel.parse_notification(loose).events


GOOD = {
    "id": "evt_1",
    "type": "payment.succeeded",
    "merchant_id": "fake-merchant",
    "out_trade_no": "T1",
    "trade_no": "FAKE1",
    "amount": "30.00",
    "currency": "CNY",
}


def signed_body(body: bytes, clock: Clock) -> SignedNotification:
    return resign(body, int(clock.now.timestamp()))


def signed_json(payload: Any, clock: Clock) -> SignedNotification:
    return signed_body(json.dumps(payload).encode(), clock)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"amount": 30.0}, "malformed"),
        ({"amount": 30}, "malformed"),
        ({"amount": 3000}, "malformed"),
        ({"amount": "30.001"}, "malformed"),
        ({"amount": "30"}, "malformed"),
        ({"amount": "30.0"}, "malformed"),
        ({"amount": "+30.00"}, "malformed"),
        ({"amount": "030.00"}, "malformed"),
        ({"amount": "3e1"}, "malformed"),
        ({"amount": "NaN"}, "malformed"),
        ({"amount": "-30.00"}, "malformed"),
        ({"amount": "0.00"}, "malformed"),
        ({"amount": " 30.00"}, "malformed"),
        ({"amount": None}, "malformed"),
        ({"currency": "XXX"}, "malformed"),
        ({"currency": "cny"}, "malformed"),
        ({"currency": 156}, "malformed"),
        ({"id": ""}, "malformed"),
        ({"out_trade_no": ["T1"]}, "malformed"),
        ({"trade_no": None}, "malformed"),
        ({"fee": 0.5}, "malformed"),  # a float anywhere
        ({"type": "refund.succeeded"}, "malformed"),  # no out_refund_no / refund_no
        ({"type": "payment.refunded"}, "unsupported"),
        ({"type": 1}, "malformed"),
        ({"merchant_id": "someone-else"}, "wrong_merchant"),
        ({"extra": {"nested": [1, "x", None]}}, "accepted"),
        ({}, "accepted"),
    ],
)
def test_body_fields_are_checked(
    kit: tuple[FakeChannel, FakeGateway], clock: Clock, change: dict[str, Any], expected: str
) -> None:
    channel, _ = kit
    assert code(channel, signed_json({**GOOD, **change}, clock)) == expected
    # the gateway's builder produces the same bodies
    if "type" not in change and "merchant_id" not in change:
        _, gateway = kit
        built = gateway.notification_for("T9", amount=Money.of("30.00", "CNY"), extra=change)
        assert code(channel, built) == expected


def test_a_missing_field_is_malformed(clock: Clock) -> None:
    channel, _ = make_fake_channel(clock=clock)
    for name in GOOD:
        payload = {k: v for k, v in GOOD.items() if k != name}
        assert code(channel, signed_json(payload, clock)) == "malformed", name


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        "{}".encode("utf-16"),
        b"[]",
        b'"text"',
        b"null",
        b"1e999",
        b'{"amount": NaN}',
        b'{"amount": Infinity}',
        b'{"id": "a", "id": "b"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"n": ' + b"9" * 5000 + b"}",
        b"{}\x00",
    ],
    ids=lambda body: repr(body[:12]),
)
def test_signed_garbage_bodies_are_malformed(clock: Clock, body: bytes) -> None:
    channel, _ = make_fake_channel(clock=clock)
    assert code(channel, signed_body(body, clock)) == "malformed"


# ------------------------------------------------------------------ fuzz: never raises


@PROPERTY
@given(garbage_notifications("fake"))
def test_random_notifications_are_rejected_never_raised(notification: Notification) -> None:
    channel, _ = make_fake_channel()
    result = channel.parse_notification(notification)
    assert isinstance(result, NotificationResult)
    assert result.rejection is not None
    assert not result.events


@PROPERTY
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_correctly_signed_random_bodies_never_raise(body: bytes) -> None:
    clock = Clock()
    channel, _ = make_fake_channel(clock=clock)
    result = parse(channel, signed_body(body, clock))
    assert isinstance(result, NotificationResult)
    assert (result.rejection is None) == bool(result.events)


_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["30.00", "0.01", "CNY", "JPY", "BTC", "fake-merchant", "refund.succeeded"])
)
_payloads = st.fixed_dictionaries(
    {},
    optional={
        name: _values | st.just(value) | st.lists(_values, max_size=2)
        for name, value in {**GOOD, "out_refund_no": "R1", "refund_no": "RN1"}.items()
    },
) | st.recursive(_values, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@PROPERTY
@given(_payloads)
def test_correctly_signed_random_json_never_raises_and_amounts_are_decimal(
    payload: Any,
) -> None:
    clock = Clock()
    channel, _ = make_fake_channel(clock=clock)
    result = parse(channel, signed_json(payload, clock))
    assert isinstance(result, NotificationResult)
    assert (result.rejection is None) == bool(result.events)
    for event in result.events:
        assert event.amount is not None
        assert type(event.amount.amount) is Decimal
        assert event.amount.is_positive()
        assert isinstance(payload, dict)
        assert payload["amount"] == f"{event.amount.amount:f}"


def test_the_fake_channel_keeps_the_channel_contract() -> None:
    channel, _ = make_fake_channel()
    assert_channel_contract(channel)


def test_the_contract_check_catches_a_channel_that_raises() -> None:
    class Careless(FakeChannel):
        name: ClassVar[str] = "careless"

        def parse_notification(self, notification: Notification) -> NotificationResult:
            json.loads(notification.body)
            return NotificationResult.reject("malformed", "?")

    channel = Careless(fake_channel_config(gateway=FakeGateway()))
    with pytest.raises(AssertionError, match="garbage sample 0 raised JSONDecodeError"):
        assert_channel_contract(channel)


# ------------------------------------------------------------------ the platform


def test_query_follows_the_trade(kit: tuple[FakeChannel, FakeGateway]) -> None:
    channel, gateway = kit
    assert channel.query_payment("T1").outcome is Outcome.PENDING  # not created yet
    channel.create_checkout(make_checkout_request("T1", "30.00", "CNY"))
    assert channel.query_payment("T1").outcome is Outcome.PENDING
    gateway.pay("T1", "29.99", trade_no="PLATFORM-1")
    query = channel.query_payment("T1")
    assert query.outcome is Outcome.SUCCEEDED
    assert query.event is not None
    assert query.event.amount == Money.of("29.99", "CNY")
    assert query.event.channel_trade_no == "PLATFORM-1"
    assert query.event.paid
    assert channel.close("T1") is Outcome.FAILED  # a paid trade cannot be closed
    channel.create_checkout(make_checkout_request("T2", "30.00", "CNY"))
    assert channel.close("T2") is Outcome.SUCCEEDED
    assert channel.close("T2") is Outcome.SUCCEEDED  # idempotent
    assert channel.query_payment("T2").outcome is Outcome.FAILED
    with pytest.raises(FakeGatewayError, match="CLOSED"):
        gateway.pay("T2")
    gateway.pay("T2", force=True)  # a late payment racing the close
    assert channel.query_payment("T2").outcome is Outcome.SUCCEEDED
    with pytest.raises(FakeGatewayError, match="no trade"):
        gateway.pay("T404")


def test_checkout_methods_currencies_and_duplicates(kit: tuple[FakeChannel, FakeGateway]) -> None:
    channel, gateway = kit
    page = channel.create_checkout(make_checkout_request("P/1", method="page"))
    assert page.kind == "redirect"
    assert page.url == "https://fakepay.invalid/pay/P%2F1"
    again = channel.create_checkout(make_checkout_request("P/1", method="page"))
    assert again == page
    assert gateway.calls["create"] == 2
    assert len(gateway.trades()) == 1
    other = channel.create_checkout(make_checkout_request("P/1", "31.00", method="page"))
    assert other.outcome is Outcome.FAILED
    assert channel.create_checkout(make_checkout_request(method="h5")).outcome is Outcome.FAILED
    eur = make_checkout_request(amount="1.00", currency="EUR")
    assert channel.create_checkout(eur).outcome is Outcome.FAILED
    assert gateway.calls["create"] == 3  # refused before the platform was called


def test_notify_url_comes_from_the_request_or_the_config() -> None:
    channel, gateway = make_fake_channel(notify_url="http://host/callbacks/fake")
    channel.create_checkout(make_checkout_request("T1", notify_url=None))
    channel.create_checkout(make_checkout_request("T2", notify_url="http://other/cb"))
    assert gateway.trade("T1").notify_url == "http://host/callbacks/fake"
    assert gateway.trade("T2").notify_url == "http://other/cb"


def test_refunds_are_made_once_per_out_refund_no(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    first = channel.refund(make_refund_request("T1", "10.00", out_refund_no="R1", total="30.00"))
    assert first.outcome is Outcome.SUCCEEDED
    assert first.channel_refund_no
    again = channel.refund(make_refund_request("T1", "10.00", out_refund_no="R1", total="30.00"))
    assert again == first
    assert (gateway.refund_calls, gateway.refunds_made) == (2, 1)
    assert gateway.trade("T1").refunded == Money.of("10.00", "CNY")
    reused = channel.refund(make_refund_request("T1", "5.00", out_refund_no="R1", total="30.00"))
    assert reused.outcome is Outcome.FAILED
    assert reused.code == "REFUND_NO_REUSED"
    second = channel.refund(make_refund_request("T1", "20.00", out_refund_no="R2", total="30.00"))
    assert second.outcome is Outcome.SUCCEEDED
    beyond = channel.refund(make_refund_request("T1", "0.01", out_refund_no="R3", total="30.00"))
    assert beyond.code == "REFUND_AMOUNT_EXCEEDED"
    assert gateway.refunds_made == 2
    assert gateway.trade("T1").refunded == Money.of("30.00", "CNY")
    assert channel.query_refund(make_refund_request("T1", "10.00", out_refund_no="R1")) == first
    missing = channel.query_refund(make_refund_request("T1", out_refund_no="R404"))
    assert missing.code == "REFUND_NOT_EXIST"
    assert missing.retryable


@pytest.mark.parametrize(
    ("request_kwargs", "code_"),
    [
        ({"out_trade_no": "T404"}, "TRADE_NOT_EXIST"),
        ({"out_trade_no": "WAITING"}, "TRADE_NOT_PAID"),
        ({"amount": "30.00", "currency": "USD"}, "CURRENCY_MISMATCH"),
        ({"amount": "0.00"}, "INVALID_AMOUNT"),
        ({"amount": "10.00", "total": "10.00"}, "TOTAL_MISMATCH"),
        ({"amount": "30.01", "total": "30.00"}, "REFUND_AMOUNT_EXCEEDED"),
    ],
)
def test_refusals(
    kit: tuple[FakeChannel, FakeGateway], request_kwargs: dict[str, Any], code_: str
) -> None:
    paid(kit)
    channel, gateway = kit
    channel.create_checkout(make_checkout_request("WAITING"))
    kwargs: dict[str, Any] = {"out_trade_no": "T1", "total": None, **request_kwargs}
    result = channel.refund(make_refund_request(kwargs.pop("out_trade_no"), **kwargs))
    assert (result.outcome, result.code) == (Outcome.FAILED, code_)
    assert gateway.refunds_made == 0


def test_concurrent_retries_refund_once(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    barrier = threading.Barrier(16)
    results = []

    def refund() -> None:
        barrier.wait()
        results.append(channel.refund(make_refund_request("T1", "30.00", out_refund_no="R1")))

    threads = [threading.Thread(target=refund) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16
    assert len(set(results)) == 1
    assert (gateway.refund_calls, gateway.refunds_made) == (16, 1)


def test_async_refunds_complete_by_notification(clock: Clock) -> None:
    gateway = FakeGateway(clock=clock, refund_mode="async")
    channel, _ = make_fake_channel(gateway=gateway)
    paid((channel, gateway))
    request = make_refund_request("T1", "30.00", out_refund_no="R1")
    assert channel.refund(request).outcome is Outcome.PENDING
    assert channel.query_refund(request).outcome is Outcome.PENDING
    signed = gateway.settle_refund("R1")
    (event,) = parse(channel, signed).events
    assert isinstance(event, RefundEvent)
    assert (event.out_refund_no, event.outcome, event.amount) == (
        "R1",
        Outcome.SUCCEEDED,
        Money.of("30.00", "CNY"),
    )
    assert event.channel_refund_no == gateway.refund_record("R1").refund_no
    assert channel.query_refund(request).outcome is Outcome.SUCCEEDED
    with pytest.raises(FakeGatewayError, match="not pending"):
        gateway.settle_refund("R1")
    with pytest.raises(ValueError, match="refund_mode"):
        FakeGateway(refund_mode="later")  # type: ignore[arg-type]


# ------------------------------------------------------------------ faults


def test_a_timeout_after_the_refund_was_made_loses_only_the_answer(
    kit: tuple[FakeChannel, FakeGateway],
) -> None:
    paid(kit)
    channel, gateway = kit
    request = make_refund_request("T1", "30.00", out_refund_no="R1")
    gateway.fail_next("refund")
    lost = channel.refund(request)
    assert lost.outcome is Outcome.UNKNOWN
    assert lost.channel_refund_no is None
    assert gateway.refunds_made == 1  # the platform did it
    assert channel.query_refund(request).outcome is Outcome.SUCCEEDED
    retry = channel.refund(request)
    assert retry.outcome is Outcome.SUCCEEDED
    assert (gateway.refund_calls, gateway.refunds_made) == (2, 1)


def test_a_timeout_before_the_refund_was_made(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    request = make_refund_request("T1", "30.00", out_refund_no="R1")
    gateway.fail_next("refund", lose_answer_after_apply=False)
    assert channel.refund(request).outcome is Outcome.UNKNOWN
    assert gateway.refunds_made == 0
    assert channel.query_refund(request).code == "REFUND_NOT_EXIST"
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    assert (gateway.refund_calls, gateway.refunds_made) == (2, 1)


def test_platform_errors_and_raising_faults(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    request = make_refund_request("T1", "30.00", out_refund_no="R1")
    gateway.fail_next("refund", Outcome.FAILED, code="SYSTEM_ERROR", retryable=True, times=2)
    for _ in range(2):
        failed = channel.refund(request)
        assert (failed.outcome, failed.code, failed.retryable) == (
            Outcome.FAILED,
            "SYSTEM_ERROR",
            True,
        )
    assert gateway.refunds_made == 0
    gateway.fail_next("refund", error=TimeoutError("boom"))
    with pytest.raises(TimeoutError, match="boom"):
        channel.refund(request)
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    assert gateway.refund_calls == 4


def test_faults_on_every_operation(kit: tuple[FakeChannel, FakeGateway]) -> None:
    channel, gateway = kit
    gateway.fail_next("create")
    lost = channel.create_checkout(make_checkout_request("T1"))
    assert lost.outcome is Outcome.UNKNOWN
    assert lost.content is None
    assert gateway.trade("T1").status is TradeStatus.WAIT  # created all the same
    gateway.fail_next("create", Outcome.FAILED, message="no")
    refused = channel.create_checkout(make_checkout_request("T2"))
    assert (refused.outcome, refused.message) == (Outcome.FAILED, "no")
    with pytest.raises(FakeGatewayError):
        gateway.trade("T2")
    gateway.fail_next("query", times=2)
    assert channel.query_payment("T1").outcome is Outcome.UNKNOWN
    assert channel.query_payment("T1").outcome is Outcome.UNKNOWN
    assert channel.query_payment("T1").outcome is Outcome.PENDING
    gateway.fail_next("close")
    assert channel.close("T1") is Outcome.UNKNOWN
    assert gateway.trade("T1").status is TradeStatus.CLOSED
    gateway.fail_next("query_refund")
    assert channel.query_refund(make_refund_request("T1")).outcome is Outcome.UNKNOWN
    gateway.fail_next("close", lose_answer_after_apply=False)
    gateway.reset_faults()
    assert channel.close("T1") is Outcome.SUCCEEDED
    assert gateway.calls == {"create": 2, "query": 3, "close": 2, "query_refund": 1}
    with pytest.raises(ValueError, match="unknown operation"):
        gateway.fail_next("pay")
    with pytest.raises(ValueError, match="outcome"):
        gateway.fail_next("refund", Outcome.SUCCEEDED)
    with pytest.raises(ValueError, match="times"):
        gateway.fail_next("refund", times=0)


# ------------------------------------------------------------------ notification builders


def test_notification_builders(kit: tuple[FakeChannel, FakeGateway]) -> None:
    paid(kit)
    channel, gateway = kit
    first = gateway.sent[-1]
    duplicate = gateway.notification_for("T1", event_id=first.payload()["id"])
    (a,), (b,) = parse(channel, first).events, parse(channel, duplicate).events
    assert a == b
    mismatch = gateway.notification_for("T1", amount="0.01")
    assert parse(channel, mismatch).events[0].amount == Money.of("0.01", "CNY")
    usd = gateway.notification_for("T1", amount=Money.of("30.00", "USD"))
    assert parse(channel, usd).events[0].amount == Money.of("30.00", "USD")
    assert code(channel, gateway.notification_for("T1", merchant_id="other")) == "wrong_merchant"
    refund = gateway.notification_for("T1", "refund.succeeded", out_refund_no="R9")
    assert isinstance(parse(channel, refund).events[0], RefundEvent)
    with pytest.raises(FakeGatewayError, match="pass amount"):
        gateway.notification_for("T404")
    assert code(channel, gateway.notification_for("T404", amount=Money.of(1, "JPY"))) == (
        "accepted"
    )
    assert gateway.calls["notification"] == 7  # the failed call counts too


def test_another_merchant_on_the_same_gateway(clock: Clock) -> None:
    gateway = FakeGateway(clock=clock)
    ours, _ = make_fake_channel(gateway=gateway)
    theirs, _ = make_fake_channel(b"their secret", gateway=gateway, merchant_id="them")
    theirs.create_checkout(make_checkout_request("T1"))
    signed = gateway.pay("T1")
    assert code(theirs, signed) == "accepted"
    assert code(ours, signed) == "bad_signature"  # signed with their secret
    assert ours.query_payment("T1").message == "TRADE_NOT_EXIST"
    assert ours.refund(make_refund_request("T1")).code == "TRADE_NOT_EXIST"


# ------------------------------------------------------------------ over real HTTP


@pytest.fixture
def callback_server(kit: tuple[FakeChannel, FakeGateway]) -> Iterator[str]:
    """A tiny host: POST /callbacks/fake verifies and acknowledges with the fake channel."""
    channel, _ = kit

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {name.lower(): value for name, value in self.headers.items()}
            result = channel.parse_notification(Notification("fake", headers, body))
            reason = result.rejection.code if result.rejection else ""
            reply = channel.acknowledge(result.rejection is None, reason)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callbacks/fake"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_deliver_posts_over_real_http(
    kit: tuple[FakeChannel, FakeGateway], callback_server: str
) -> None:
    paid(kit)
    _, gateway = kit
    assert gateway.deliver(callback_server, *gateway.sent[-1]) == (200, b"OK")
    status, body = gateway.deliver(callback_server, *gateway.pay("T1", force=True, tamper=True))
    assert status == 400
    assert json.loads(body) == {"code": "FAIL", "message": "bad_signature"}
    assert gateway.calls["deliver"] == 2
    with pytest.raises(ValueError, match="http"):
        gateway.deliver("file:///etc/passwd", {}, b"")


# ------------------------------------------------------------------ configuration and fixtures


def test_configuration() -> None:
    with pytest.raises(ConfigurationError, match="webhook_secret"):
        FakeChannel(ChannelConfig("fake", options={"gateway": FakeGateway()}))
    with pytest.raises(ConfigurationError, match="merchant_id"):
        FakeChannel(fake_channel_config(merchant_id="", gateway=FakeGateway()))
    with pytest.raises(ConfigurationError, match="FakeGateway"):
        FakeChannel(fake_channel_config(options={"gateway": "nope"}))
    gateway = FakeGateway()
    channel = FakeChannel(fake_channel_config(gateway=gateway, min_amount=Money.of(1, "CNY")))
    assert channel.gateway is gateway
    assert channel.config.min_amount == Money.of(1, "CNY")
    assert FakeChannel(fake_channel_config()).gateway is FakeGateway.shared()
    secret = b"do-not-print-me"
    config = fake_channel_config(secret=secret, gateway=gateway)
    channel = FakeChannel(config)
    for text in (repr(config), str(config), repr(gateway), repr(config.secrets)):
        assert secret.decode() not in text
    with pytest.raises(ValueError, match="bytes"):
        gateway.register_merchant("m", "text")  # type: ignore[arg-type]


def test_builders() -> None:
    request = make_checkout_request()
    assert isinstance(request, CheckoutRequest)
    assert request.amount == Money.of("30.00", "CNY")
    assert request.method == "qr"
    assert request.expires_at > datetime.now(timezone.utc)
    assert make_checkout_request().out_trade_no != request.out_trade_no
    refund = make_refund_request("T1", Money.of("5", "USD"))
    assert (refund.out_refund_no, refund.amount, refund.total) == (
        "R-T1",
        Money.of("5.00", "USD"),
        Money.of("5.00", "USD"),
    )


def test_the_module_imports_without_pytest_and_hypothesis() -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None\n"
        "sys.modules['hypothesis'] = None\n"
        "import ordercore.testing as t\n"
        "assert not hasattr(t, 'fake_gateway') and not hasattr(t, 'fake_channel')\n"
        "channel, gateway = t.make_fake_channel()\n"
        "channel.create_checkout(t.make_checkout_request('T1'))\n"
        "assert channel.parse_notification(gateway.pay('T1').to_notification()).events\n"
        "t.assert_channel_contract(channel)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_module_registers_the_fake_channel_through_the_hook() -> None:
    pm = pluggy.PluginManager("ordercore")
    pm.add_hookspecs(hookspecs)
    pm.register(ordercore.testing)
    pm.check_pending()
    with_fake = Settings(channels={"fake": {"merchant_id": "m"}})
    assert pm.hook.ordercore_register_channels(settings=with_fake) == [[FakeChannel]]
    assert pm.hook.ordercore_register_channels(settings=Settings()) == [[]]


def test_public_names() -> None:
    assert list(ordercore.testing.__all__) == sorted(
        ordercore.testing.__all__,
        key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n),
    )
    assert all(hasattr(ordercore.testing, name) for name in ordercore.testing.__all__)
    for name, value in vars(ordercore.testing).items():
        if isinstance(value, type) and issubclass(value, PaymentChannel):
            assert name in ordercore.testing.__all__ or name == "PaymentChannel"


# ------------------------------------------------------------------ the docs


def _normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    return text.replace("( ", "(").replace(", )", ")").replace(",)", ")")


def test_every_hook_signature_is_in_docs_plugins() -> None:
    source = (ROOT / "src" / "ordercore" / "hookspecs.py").read_text(encoding="utf-8")
    lines = source.splitlines()
    docs = _normalise((ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"))
    hooks = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("ordercore_")
    ]
    assert hooks
    for node in hooks:
        header = "\n".join(lines[node.lineno - 1 : node.body[0].lineno - 1])
        signature = _normalise(header).strip()
        assert signature.startswith(f"def {node.name}(")
        assert signature.endswith(":")
        assert signature in docs, f"docs/plugins.md lacks the exact signature: {signature}"
