"""Notification parsing at the channel (no database): every header, the 5-minute window, the
SIGNTEST probe, the AES-256-GCM envelope, every trade and refund state, every refusal, garbage,
and the channel contract."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from wechat_kit import APIV3_KEY, NOWHERE, make_sandbox

from ordercore.channels import Notification, NotificationResult, Outcome, PaymentEvent, RefundEvent
from ordercore.testing import assert_channel_contract, garbage_notifications, make_refund_request
from ordercore_wechat import WechatChannel, _crypto
from ordercore_wechat.sandbox import SandboxNotification, WechatSandbox

TRADE = "T20261124000001"  # the trade of hand-made resources


@pytest.fixture(scope="module")
def sandbox() -> Iterator[WechatSandbox]:
    """One sandbox for the module (each test works on trades of its own)."""
    with make_sandbox() as running:
        yield running


@pytest.fixture(scope="module")
def channel(sandbox: WechatSandbox) -> WechatChannel:
    return WechatChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=10))


@pytest.fixture(autouse=True)
def _plain_sandbox(sandbox: WechatSandbox) -> Iterator[None]:
    yield
    sandbox.refund_processing = False


@pytest.fixture
def paid(sandbox: WechatSandbox, channel: WechatChannel) -> SandboxNotification:
    """A 27.00 CNY native trade, paid; its notification, not delivered."""
    return sandbox.notification(_paid(sandbox, channel))


def parse(channel: WechatChannel, sent: SandboxNotification, **changes: Any) -> NotificationResult:
    headers = {k.lower(): v for k, v in sent.headers.items()}
    for name, value in changes.items():
        key = "wechatpay-" + name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return channel.parse_notification(Notification("wechat", headers, sent.body))


def envelope(
    sandbox: WechatSandbox,
    plaintext: bytes,
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    associated_data: str = "transaction",
    nonce: str = "0123456789ab",
    resource: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    key: bytes = APIV3_KEY,
) -> Notification:
    """A notification with this plaintext (or these fields), signed by the sandbox."""
    sealed = {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": _crypto.encrypt(key, nonce, associated_data, plaintext),
        "associated_data": associated_data,
        "nonce": nonce,
        **(resource or {}),
    }
    data = {
        "id": "EV-2026112400000001",
        "create_time": "2026-11-24T16:30:20+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": sealed,
        **(body or {}),
    }
    raw = json.dumps(data, ensure_ascii=False).encode()
    headers = {k.lower(): v for k, v in sandbox.signature_headers(raw).items()}
    return Notification("wechat", headers, raw)


def transaction(**changes: Any) -> bytes:
    data: dict[str, Any] = {
        "appid": "wxd678efh567hg6787",
        "mchid": "1900000109",
        "out_trade_no": TRADE,
        "transaction_id": "4200000000202611240000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-11-24T16:30:20+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 2700, "payer_total": 2700, "currency": "CNY", "payer_currency": "CNY"},
    }
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data, ensure_ascii=False).encode()


def rejected(result: NotificationResult, code: str) -> str:
    assert result.events == ()
    assert result.rejection is not None
    assert result.rejection.code == code, result.rejection
    return result.rejection.message


# -- acknowledgements and the happy path -----------------------------------------------------------
def test_acknowledgements_are_exact(channel: WechatChannel) -> None:
    accepted = channel.acknowledge(True)
    assert (accepted.status, accepted.body) == (204, b"")
    refused = channel.acknowledge(False, "签名错误")
    assert refused.status == 400
    assert json.loads(refused.body) == {"code": "FAIL", "message": "签名错误"}
    assert refused.headers["Content-Type"].startswith("application/json")


def test_a_paid_notification(channel: WechatChannel, paid: SandboxNotification) -> None:
    result = channel.parse_notification(paid.to_notification())

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, PaymentEvent)
    assert (event.paid, event.status) == (True, "SUCCESS")
    assert event.out_trade_no == paid.resource["out_trade_no"]
    assert str(event.amount) == "27.00 CNY"
    assert event.channel_trade_no == paid.resource["transaction_id"]
    assert event.merchant_id == "1900000109"
    assert event.event_id == json.loads(paid.body)["id"]
    assert event.occurred_at is not None
    assert event.occurred_at.utcoffset() == dt.timedelta(hours=8)


def test_the_ciphertext_is_not_the_plaintext(paid: SandboxNotification) -> None:
    body = json.loads(paid.body)
    assert body["resource_type"] == "encrypt-resource"
    assert paid.resource["out_trade_no"].encode() not in paid.body
    sealed = base64.b64decode(body["resource"]["ciphertext"])
    assert (
        len(sealed)
        == len(json.dumps(paid.resource, ensure_ascii=False, separators=(",", ":")).encode()) + 16
    )


# -- headers and the signature ---------------------------------------------------------------------
@pytest.mark.parametrize("header", ["timestamp", "nonce", "signature", "serial"])
def test_a_missing_header_is_refused(
    channel: WechatChannel, paid: SandboxNotification, header: str
) -> None:
    message = rejected(parse(channel, paid, **{header: None}), "malformed")
    assert f"wechatpay-{header}" in message


@pytest.mark.parametrize("value", [None, "", "WECHATPAY2-SHA256-RSA4096", "SM2-WITH-SM3"])
def test_another_signature_type_is_refused(
    channel: WechatChannel, paid: SandboxNotification, value: str | None
) -> None:
    rejected(parse(channel, paid, signature_type=value), "bad_signature")


def _received(sent: SandboxNotification, seconds_later: int) -> Notification:
    signed = int(sent.headers["Wechatpay-Timestamp"])
    moment = dt.datetime.fromtimestamp(signed + seconds_later, dt.timezone.utc)
    return sent.to_notification(received_at=moment)


@pytest.mark.parametrize("seconds_later", [-299, 0, 299])
def test_within_five_minutes_is_fresh(
    channel: WechatChannel, paid: SandboxNotification, seconds_later: int
) -> None:
    assert channel.parse_notification(_received(paid, seconds_later)).rejection is None


@pytest.mark.parametrize("seconds_later", [-300, 300, -86400, 86400])
def test_five_minutes_or_more_away_is_stale(
    channel: WechatChannel, paid: SandboxNotification, seconds_later: int
) -> None:
    rejected(channel.parse_notification(_received(paid, seconds_later)), "stale")


def test_the_sandboxs_stale_fault_is_refused(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    sent = sandbox.notification(_paid(sandbox, channel), fault="stale")
    rejected(channel.parse_notification(sent.to_notification()), "stale")


def test_a_replay_is_judged_by_its_time_of_receipt(
    channel: WechatChannel, paid: SandboxNotification
) -> None:
    first = dt.datetime.now(dt.timezone.utc)
    assert channel.parse_notification(paid.to_notification(received_at=first)).rejection is None
    later = first + dt.timedelta(minutes=10)
    rejected(channel.parse_notification(paid.to_notification(received_at=later)), "stale")


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "١٢٣", "9" * 13])
def test_a_garbled_timestamp_is_refused(
    channel: WechatChannel, paid: SandboxNotification, value: str
) -> None:
    rejected(parse(channel, paid, timestamp=value), "malformed")


def test_a_signtest_signature_is_refused(sandbox: WechatSandbox, channel: WechatChannel) -> None:
    sent = sandbox.notification(_paid(sandbox, channel), fault="signtest")
    assert sent.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    message = rejected(channel.parse_notification(sent.to_notification()), "bad_signature")
    assert "SIGNTEST" in message


@pytest.mark.parametrize(
    ("fault", "code"),
    [("unknown_serial", "bad_signature"), ("tampered", "bad_signature"), ("unsigned", "malformed")],
)
def test_forged_signatures_are_refused(
    sandbox: WechatSandbox, channel: WechatChannel, fault: str, code: str
) -> None:
    sent = sandbox.notification(_paid(sandbox, channel), fault=fault)
    rejected(channel.parse_notification(sent.to_notification()), code)


def test_the_platforms_key_under_another_serial_is_refused(
    channel: WechatChannel, paid: SandboxNotification
) -> None:
    rejected(
        parse(channel, paid, serial="PUB_KEY_ID_0000000000000000000000000000"), "bad_signature"
    )


def test_the_merchants_own_key_is_not_the_platforms(
    sandbox: WechatSandbox, channel: WechatChannel, paid: SandboxNotification
) -> None:
    headers = dict(paid.headers)
    message = _crypto.answer_message(
        headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], paid.body
    )
    signature = _crypto.sign(message, sandbox.merchant_key)
    rejected(parse(channel, paid, signature=signature), "bad_signature")


# -- the envelope ----------------------------------------------------------------------------------
def test_a_broken_gcm_tag_is_refused(sandbox: WechatSandbox, channel: WechatChannel) -> None:
    sent = sandbox.notification(_paid(sandbox, channel), fault="bad_tag")
    message = rejected(channel.parse_notification(sent.to_notification()), "bad_encryption")
    assert "tag" in message


@pytest.mark.parametrize(
    "options",
    [
        {"key": b"B" * 32},  # another APIv3 key
        {"resource": {"associated_data": "refund"}},  # other associated data than sealed
        {"resource": {"nonce": "0123456789ac"}},  # another nonce than sealed
        {"resource": {"nonce": "short"}},
        {"resource": {"ciphertext": "not base64!"}},
        {"resource": {"ciphertext": "AAAA"}},  # shorter than a tag
    ],
)
def test_an_envelope_that_does_not_open_is_refused(
    sandbox: WechatSandbox, channel: WechatChannel, options: dict[str, Any]
) -> None:
    rejected(
        channel.parse_notification(envelope(sandbox, transaction(), **options)), "bad_encryption"
    )


def test_empty_associated_data_opens(sandbox: WechatSandbox, channel: WechatChannel) -> None:
    result = channel.parse_notification(envelope(sandbox, transaction(), associated_data=""))
    assert result.rejection is None
    assert result.events[0].paid is True


@pytest.mark.parametrize(
    "options",
    [
        {"body": {"resource_type": "plain"}},
        {"body": {"id": None}},
        {"body": {"event_type": 7}},
        {"resource": {"algorithm": "AEAD_AES_128_GCM"}},
        {"resource": {"associated_data": 1}},
    ],
)
def test_an_envelope_of_another_shape_is_malformed(
    sandbox: WechatSandbox, channel: WechatChannel, options: dict[str, Any]
) -> None:
    rejected(channel.parse_notification(envelope(sandbox, transaction(), **options)), "malformed")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":"a","id":"b"}',
        b'{"id":"a","amount":27.0}',
        b'{"id":NaN}',
        b"[]",
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
def test_a_signed_body_that_is_not_strict_json_is_malformed(
    sandbox: WechatSandbox, channel: WechatChannel, raw: bytes
) -> None:
    headers = {k.lower(): v for k, v in sandbox.signature_headers(raw).items()}
    rejected(channel.parse_notification(Notification("wechat", headers, raw)), "malformed")


# -- the resource ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"mchid": "1900000999"}, "wrong_merchant"),
        ({"mchid": None}, "wrong_merchant"),
        ({"appid": "wx0000000000000999"}, "wrong_merchant"),
        ({"out_trade_no": None}, "malformed"),
        ({"trade_state": None}, "malformed"),
        ({"trade_state": "PAID"}, "malformed"),
        ({"amount": {"total": "2700", "currency": "CNY"}}, "malformed"),
        ({"amount": {"total": True, "currency": "CNY"}}, "malformed"),
        ({"amount": {"total": 0, "currency": "CNY"}}, "malformed"),
        ({"amount": {"total": -1, "currency": "CNY"}}, "malformed"),
        ({"amount": {"total": 2700}}, "malformed"),
        ({"amount": {"total": 2700, "currency": "XXQ"}}, "malformed"),
        ({"amount": None}, "malformed"),
    ],
)
def test_a_resource_we_cannot_take_is_refused(
    sandbox: WechatSandbox, channel: WechatChannel, changes: dict[str, Any], code: str
) -> None:
    rejected(channel.parse_notification(envelope(sandbox, transaction(**changes))), code)


def test_a_float_amount_in_the_resource_is_refused(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    plaintext = transaction().replace(b'"total": 2700', b'"total": 2700.0')
    assert b"2700.0" in plaintext
    rejected(channel.parse_notification(envelope(sandbox, plaintext)), "malformed")


def test_another_currency_is_passed_on_for_the_engine_to_refuse(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    plaintext = transaction(amount={"total": 2700, "currency": "USD"})
    (event,) = channel.parse_notification(envelope(sandbox, plaintext)).events
    assert str(event.amount) == "27.00 USD"  # the engine records a currency mismatch


def test_the_amount_is_total_not_payer_total(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    plaintext = transaction(amount={"total": 2700, "payer_total": 1, "currency": "CNY"})
    (event,) = channel.parse_notification(envelope(sandbox, plaintext)).events
    assert str(event.amount) == "27.00 CNY"


@pytest.mark.parametrize("state", ["NOTPAY", "USERPAYING", "REFUND"])
def test_not_paid_yet_gives_no_event(
    sandbox: WechatSandbox, channel: WechatChannel, state: str
) -> None:
    result = channel.parse_notification(envelope(sandbox, transaction(trade_state=state)))
    assert (result.rejection, result.events) == (None, ())


@pytest.mark.parametrize("state", ["CLOSED", "REVOKED", "PAYERROR"])
def test_a_closed_trade_is_an_unpaid_event(
    sandbox: WechatSandbox, channel: WechatChannel, state: str
) -> None:
    (event,) = channel.parse_notification(envelope(sandbox, transaction(trade_state=state))).events
    assert isinstance(event, PaymentEvent)
    assert (event.paid, event.status, event.amount) == (False, state, None)


def test_an_event_type_we_do_not_use_gives_no_event(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    result = channel.parse_notification(
        envelope(sandbox, transaction(), event_type="MCHTRANSFER.BILL.FINISHED")
    )
    assert (result.rejection, result.events) == (None, ())


# -- refunds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["SUCCESS", "ABNORMAL", "CLOSED"])
def test_refund_notifications(
    sandbox: WechatSandbox, channel: WechatChannel, paid: SandboxNotification, status: str
) -> None:
    sandbox.refund_processing = True
    no = paid.resource["out_trade_no"]
    out_refund_no = f"R-{no}"
    request = make_refund_request(no, "10.00", total="27.00", out_refund_no=out_refund_no)
    assert channel.refund(request).outcome is Outcome.PENDING
    sent = sandbox.settle_refund(out_refund_no, status, deliver=False)
    assert sent.event_type == f"REFUND.{status}"

    result = channel.parse_notification(sent.to_notification())

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, RefundEvent)
    assert (event.out_refund_no, event.out_trade_no) == (out_refund_no, no)
    assert str(event.amount) == "10.00 CNY"
    assert event.channel_refund_no == sent.resource["refund_id"]
    if status == "SUCCESS":
        assert (event.outcome, event.code) == (Outcome.SUCCEEDED, None)
    else:
        assert (event.outcome, event.code) == (Outcome.FAILED, status)


@pytest.mark.parametrize(
    ("changes", "event_type", "code"),
    [
        ({"refund_status": "CLOSED"}, "REFUND.SUCCESS", "malformed"),
        ({"refund_status": "PROCESSING"}, "REFUND.SUCCESS", "malformed"),
        ({"out_refund_no": None}, None, "malformed"),
        ({"amount": {"total": 2700, "refund": 10.5}}, None, "malformed"),
        ({"amount": {"total": 2700}}, None, "malformed"),
        ({"mchid": "1900000999"}, None, "wrong_merchant"),
    ],
)
def test_a_refund_notification_we_cannot_take_is_refused(
    sandbox: WechatSandbox,
    channel: WechatChannel,
    paid: SandboxNotification,
    changes: dict[str, Any],
    event_type: str | None,
    code: str,
) -> None:
    no = paid.resource["out_trade_no"]
    request = make_refund_request(no, "10.00", total="27.00", out_refund_no=f"R-{no}")
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    sent = sandbox.refund_notification(f"R-{no}", changes=changes, event_type=event_type)
    rejected(channel.parse_notification(sent.to_notification()), code)


# -- garbage and the contract ----------------------------------------------------------------------
def test_the_channel_contract(channel: WechatChannel) -> None:
    assert_channel_contract(channel)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notification=garbage_notifications("wechat"))
def test_garbage_notifications_are_rejected(notification: Notification) -> None:
    result = _CHANNEL.parse_notification(notification)
    assert result.rejection is not None
    assert result.events == ()


def _paid(sandbox: WechatSandbox, channel: WechatChannel) -> str:
    from ordercore.testing import make_checkout_request

    request = make_checkout_request(amount="27.00", method="native", notify_url=None)
    assert channel.create_checkout(request).outcome is Outcome.PENDING
    sandbox.pay(request.out_trade_no, deliver=False)
    return request.out_trade_no


def _offline_channel() -> WechatChannel:
    config = make_sandbox().channel_config(notify_url=NOWHERE, gateway_url="http://127.0.0.1:9")
    return WechatChannel(config)


_CHANNEL = _offline_channel()
