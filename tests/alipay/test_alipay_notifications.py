"""Notification parsing at the channel (no database): charsets, empty fields, every trade
status, refund notifications, the refusals, garbage, and the channel contract."""

from __future__ import annotations

import urllib.parse

import pytest
from alipay_kit import NOWHERE, keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordercore.channels import (
    Notification,
    NotificationResult,
    Outcome,
    PaymentEvent,
    RefundEvent,
)
from ordercore.testing import assert_channel_contract, garbage_notifications
from ordercore_alipay import AlipayChannel
from ordercore_alipay.sandbox import AlipaySandbox

SUBJECT = "VPN 月卡（30 天）— 优惠"


@pytest.fixture
def trade(sandbox: AlipaySandbox, channel: AlipayChannel) -> str:
    """A scanned, unpaid QR trade of 27.00 CNY with a Chinese subject."""
    from ordercore.testing import make_checkout_request

    request = make_checkout_request(amount="27.00", subject=SUBJECT)
    assert channel.create_checkout(request).outcome is Outcome.PENDING
    sandbox.scan(request.out_trade_no)
    return request.out_trade_no


def parse(channel: AlipayChannel, body: bytes) -> NotificationResult:
    return channel.parse_notification(Notification("alipay", {}, body))


def test_acknowledgements_are_exact(channel: AlipayChannel) -> None:
    accepted = channel.acknowledge(True)
    assert (accepted.status, accepted.body) == (200, b"success")
    assert len(accepted.body) == 7
    refused = channel.acknowledge(False, "bad signature")
    assert refused.body != b"success"
    assert refused.body == b"fail"


@pytest.mark.parametrize("charset", ["utf-8", "gbk", "GBK", "UTF-8"])
def test_a_payment_in_either_charset(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str, charset: str
) -> None:
    sent = sandbox.pay(trade, deliver=False, charset=charset)
    if charset.lower() == "gbk":
        # the subject travels as percent-encoded GBK bytes, and is signed as GBK
        assert urllib.parse.quote_plus(SUBJECT, encoding="gbk").encode() in sent.body
        assert urllib.parse.quote_plus(SUBJECT).encode() not in sent.body

    result = channel.parse_notification(sent.to_notification())

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, PaymentEvent)
    assert (event.paid, event.status, event.out_trade_no) == (True, "TRADE_SUCCESS", trade)
    assert str(event.amount) == "27.00 CNY"
    assert event.event_id == sent.params["notify_id"]
    assert event.channel_trade_no == sandbox.trade(trade).trade_no
    assert event.merchant_id == sandbox.seller_id


def test_gbk_bytes_read_as_utf8_do_not_verify(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str
) -> None:
    sent = sandbox.pay(trade, deliver=False, charset="gbk")
    relabelled = sent.body.replace(b"charset=gbk", b"charset=utf-8")
    result = parse(channel, relabelled)
    assert result.rejection is not None
    assert result.events == ()


def test_empty_fields_are_left_out_of_the_signature(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str
) -> None:
    sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", extra={"body": ""})
    assert sent.params["body"] == ""
    assert b"&body=&" in sent.body

    result = parse(channel, sent.body)

    assert result.rejection is None
    assert result.events[0].paid is True


def test_a_non_empty_field_added_after_signing_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str
) -> None:
    sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", tamper={"body": "x"})
    result = parse(channel, sent.body)
    assert result.rejection.code == "bad_signature"


def test_trade_finished_and_closed_and_waiting(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str
) -> None:
    finished = parse(channel, sandbox.notification(trade, trade_status="TRADE_FINISHED").body)
    (event,) = finished.events
    assert (event.paid, event.status) == (True, "TRADE_FINISHED")

    closed = parse(channel, sandbox.notification(trade, trade_status="TRADE_CLOSED").body)
    (event,) = closed.events
    assert (event.paid, event.status) == (False, "TRADE_CLOSED")

    waiting = parse(channel, sandbox.notification(trade, trade_status="WAIT_BUYER_PAY").body)
    assert waiting.rejection is None
    assert waiting.events == ()


@pytest.mark.parametrize(
    ("amount", "status"), [("10.00", "TRADE_SUCCESS"), ("27.00", "TRADE_CLOSED")]
)
def test_a_refund_notification_is_a_refund_event_never_a_payment(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str, amount: str, status: str
) -> None:
    from ordercore.testing import make_refund_request

    sandbox.pay(trade, deliver=False)
    request = make_refund_request(trade, amount, total="27.00", out_refund_no="R-1")
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    sent = sandbox.notify_refund(trade, "R-1", deliver=False)
    assert sent.params["trade_status"] == status
    assert sent.params["refund_fee"] == amount

    result = channel.parse_notification(sent.to_notification())

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, RefundEvent)
    assert not isinstance(event, PaymentEvent)
    assert (event.out_refund_no, event.out_trade_no) == ("R-1", trade)
    assert event.outcome is Outcome.SUCCEEDED
    assert event.amount is None  # refund_fee is the trade's refunded total, not this refund's


def test_sign_type_rsa_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str
) -> None:
    sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", sign_type="RSA")
    result = parse(channel, sent.body)
    assert result.rejection.code == "bad_signature"
    assert "RSA2" in result.rejection.message


def test_another_key_is_refused(sandbox: AlipaySandbox, channel: AlipayChannel, trade: str) -> None:
    for key in (keys().stranger, keys().app):  # the app's own key is not Alipay's
        sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", signing_key=key)
        result = parse(channel, sent.body)
        assert result.rejection.code == "bad_signature"
        assert result.events == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [("app_id", "2021000000000999"), ("seller_id", "2088000000000999"), ("seller_id", None)],
)
def test_another_merchant_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel, trade: str, field: str, value: str | None
) -> None:
    # correctly signed by Alipay, but for another application or merchant
    sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", extra={field: value})
    result = parse(channel, sent.body)
    assert result.rejection.code == "wrong_merchant"
    assert result.events == ()


def test_without_a_configured_seller_id_any_seller_passes(sandbox: AlipaySandbox) -> None:
    config = sandbox.channel_config(notify_url=NOWHERE)
    options = {k: v for k, v in config.options.items() if k != "seller_id"}
    import attrs

    channel = AlipayChannel(attrs.evolve(config, options=options))
    from ordercore.testing import make_checkout_request

    request = make_checkout_request()
    channel.create_checkout(request)
    sent = sandbox.notification(
        request.out_trade_no, trade_status="TRADE_SUCCESS", extra={"seller_id": "2088999999999999"}
    )
    assert parse(channel, sent.body).rejection is None


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"out_trade_no": None}, "malformed"),
        ({"total_amount": "27.001"}, "malformed"),
        ({"total_amount": "27,00"}, "malformed"),
        ({"total_amount": None}, "malformed"),
        ({"charset": "latin-1"}, "malformed"),
    ],
)
def test_signed_but_unusable_is_refused(
    sandbox: AlipaySandbox,
    channel: AlipayChannel,
    trade: str,
    extra: dict[str, str | None],
    code: str,
) -> None:
    sent = sandbox.notification(trade, trade_status="TRADE_SUCCESS", extra=extra)
    result = parse(channel, sent.body)
    assert result.rejection.code == code


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"sign=abc",
        b"a=1&a=2&sign=x",
        b"charset=shift_jis&sign=x",
        b"charset=utf-8&subject=%FF%FE&sign=x",
        b"novalue&sign=x",
        b"%%%&&&===",
        b"\x00\x01\x02",
        b"sign=" + b"A" * 5000,
        b'{"trade_status":"TRADE_SUCCESS"}',
    ],
)
def test_garbage_forms_are_refused(channel: AlipayChannel, body: bytes) -> None:
    result = parse(channel, body)
    assert result.rejection is not None
    assert result.events == ()


def test_the_channel_contract(channel: AlipayChannel) -> None:
    assert_channel_contract(channel)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notification=garbage_notifications("alipay"))
def test_garbage_notifications_are_rejected(notification: Notification) -> None:
    result = _CHANNEL.parse_notification(notification)
    assert result.rejection is not None
    assert result.events == ()


_FORM_KEYS = st.sampled_from(
    ["sign", "sign_type", "charset", "app_id", "out_trade_no", "total_amount", "trade_status"]
) | st.text(max_size=10)
_FORM_VALUES = st.sampled_from(["", "RSA2", "utf-8", "gbk", "TRADE_SUCCESS", "27.00"]) | st.text(
    max_size=40
)


@settings(max_examples=150, deadline=None)
@given(fields=st.lists(st.tuples(_FORM_KEYS, _FORM_VALUES), max_size=12))
def test_random_forms_are_rejected(fields: list[tuple[str, str]]) -> None:
    body = urllib.parse.urlencode(fields).encode("ascii")
    result = _CHANNEL.parse_notification(Notification("alipay", {}, body))
    assert result.rejection is not None
    assert result.events == ()


def _offline_channel() -> AlipayChannel:
    from alipay_kit import make_sandbox

    config = make_sandbox().channel_config(
        notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/gateway.do"
    )
    return AlipayChannel(config)


_CHANNEL = _offline_channel()
