"""Notifications (and the signature check every answer shares).

A notification is refused — answered 400 ``{"code":"FAIL",…}`` so that WeChat Pay delivers it
again, and kept in the inbox — when:

* ``malformed``: a ``Wechatpay-*`` header is missing or garbled, the body is not strict JSON
  (floats, repeated keys), not an ``encrypt-resource``, or the decrypted resource lacks what
  the event needs;
* ``bad_signature``: the signature type is not ``WECHATPAY2-SHA256-RSA2048``, the signature is
  WeChat's ``WECHATPAY/SIGNTEST/`` probe, ``Wechatpay-Serial`` names no trusted key, or the
  signature does not verify over the raw body;
* ``stale``: ``Wechatpay-Timestamp`` is 5 minutes or more away from the time of receipt;
* ``bad_encryption``: the AES-256-GCM resource does not open with the APIv3 key;
* ``wrong_merchant``: ``mchid`` or ``appid`` is not ours.

Accepted: ``TRANSACTION.SUCCESS`` with ``trade_state`` ``SUCCESS`` is a paid
:class:`~ordercore.channels.PaymentEvent` carrying ``amount.total`` (never ``payer_total``,
which coupons lower); ``NOTPAY``/``USERPAYING`` give no event (not yet: the payer may still
pay); ``CLOSED``/``REVOKED``/``PAYERROR`` an unpaid one. ``REFUND.SUCCESS``/``ABNORMAL``/
``CLOSED`` are :class:`~ordercore.channels.RefundEvent` s with ``amount.refund``. Other
verified event types give no event.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from ordercore import Money, MoneyError
from ordercore.channels import (
    Notification,
    NotificationResult,
    Outcome,
    PaymentEvent,
    RefundEvent,
)

from . import _crypto, _wire
from ._keys import PlatformKeys

if TYPE_CHECKING:
    from ._channel import WechatChannel

__all__ = ["TOLERANCE_SECONDS", "check_signature", "parse", "payment_event"]

#: A signature made this many seconds or more from now is refused.
TOLERANCE_SECONDS: Final = 300
_REFUND_EVENTS: Final = {
    "REFUND.SUCCESS": "SUCCESS",
    "REFUND.ABNORMAL": "ABNORMAL",
    "REFUND.CLOSED": "CLOSED",
}
_UNPAID_STATES: Final = frozenset({"CLOSED", "REVOKED", "PAYERROR"})
_WAITING_STATES: Final = frozenset({"NOTPAY", "USERPAYING"})
_HEADERS: Final = (
    "wechatpay-timestamp",
    "wechatpay-nonce",
    "wechatpay-signature",
    "wechatpay-serial",
)
#: Every header a notification's check reads (the channel's ``notification_headers``).
NOTIFICATION_HEADERS: Final = frozenset({*_HEADERS, "wechatpay-signature-type", "content-type"})


def check_signature(
    keys: PlatformKeys, headers: dict[str, str], body: bytes, now: datetime
) -> tuple[str, str] | None:
    """``(code, message)`` when the ``Wechatpay-*`` headers do not prove that WeChat Pay
    signed ``body`` within 5 minutes of ``now``; None when they do. ``headers`` have
    lower-case names."""
    values = {name: headers.get(name) for name in _HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        return "malformed", f"missing header(s): {', '.join(missing)}"
    timestamp = str(values["wechatpay-timestamp"])
    nonce = str(values["wechatpay-nonce"])
    signature = str(values["wechatpay-signature"])
    serial = str(values["wechatpay-serial"])
    signature_type = headers.get("wechatpay-signature-type")
    if signature_type != _crypto.SIGNATURE_TYPE:
        return "bad_signature", f"Wechatpay-Signature-Type {str(signature_type)[:40]!r} is refused"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "malformed", f"Wechatpay-Timestamp {timestamp[:20]!r} is not unix seconds"
    if len(nonce) > 64 or "\n" in nonce or len(serial) > 80 or len(signature) > 1024:
        return "malformed", "a Wechatpay-* header is too long or garbled"
    drift = abs(now.timestamp() - int(timestamp))
    if drift >= TOLERANCE_SECONDS:
        return "stale", f"signed at {timestamp}, {int(drift)} s from now (5 minutes at most)"
    if signature.startswith(_crypto.SIGNTEST_PREFIX):
        return "bad_signature", "a WECHATPAY/SIGNTEST/ signature (WeChat's verification probe)"
    key = keys.key_for(serial, now)
    if key is None:
        return "bad_signature", f"Wechatpay-Serial {serial[:80]!r} names no trusted platform key"
    if not _crypto.verify(_crypto.answer_message(timestamp, nonce, body), signature, key):
        return "bad_signature", f"the signature does not verify with platform key {serial[:80]}"
    return None


def _money(amount: Any, name: str, currency: str | None) -> Money | str:
    value = _wire.integer(amount, name)
    if value is None or value == 0:
        return f"amount.{name} is not a positive integer of fen"
    try:
        return Money.from_minor(value, currency or "CNY")
    except MoneyError:
        return f"amount.currency {str(currency)[:10]!r} is not a currency"


def payment_event(data: dict[str, Any], event_id: str | None) -> PaymentEvent | str:
    """The paid event of a transaction resource (a notification's or a query's answer), or
    what is wrong with it. The amount is ``amount.total`` in ``amount.currency``."""
    out_trade_no = _wire.text(data, "out_trade_no")
    if out_trade_no is None:
        return "out_trade_no is missing"
    amount = data.get("amount")
    currency = _wire.text(amount, "currency")
    if currency is None:
        return "amount.currency is missing"
    money = _money(amount, "total", currency)
    if isinstance(money, str):
        return money
    return PaymentEvent(
        out_trade_no=out_trade_no,
        paid=True,
        amount=money,
        channel_trade_no=_wire.text(data, "transaction_id"),
        status=_wire.text(data, "trade_state") or "SUCCESS",
        merchant_id=_wire.text(data, "mchid"),
        occurred_at=_wire.parse_time(data.get("success_time")),
        event_id=event_id,
    )


def parse(channel: WechatChannel, notification: Notification) -> NotificationResult:
    """Verify, decrypt and read one notification (see the module docstring)."""
    reject = NotificationResult.reject
    body: object = notification.body
    if isinstance(body, (bytearray, memoryview)):
        body = bytes(body)
    if not isinstance(body, bytes):
        return reject("malformed", "the body is not bytes")
    headers = {str(k).lower(): str(v) for k, v in notification.headers.items()}
    received = notification.received_at
    now = received if isinstance(received, datetime) else channel.now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    refused = check_signature(channel.keys, headers, body, now)
    if refused is not None:
        return reject(*refused)
    try:
        envelope = _wire.load_json(body)
    except _wire.WireError as exc:
        return reject("malformed", str(exc))
    event_id = _wire.text(envelope, "id")
    event_type = _wire.text(envelope, "event_type")
    resource = envelope.get("resource")
    if event_id is None or event_type is None:
        return reject("malformed", "id or event_type is missing")
    if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
        return reject("malformed", "the body carries no encrypt-resource")
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        return reject("malformed", f"algorithm {str(resource.get('algorithm'))[:30]!r}")
    nonce, ciphertext = _wire.text(resource, "nonce"), _wire.text(resource, "ciphertext")
    associated = resource.get("associated_data", "")
    if nonce is None or ciphertext is None or not isinstance(associated, str):
        return reject("malformed", "the resource lacks nonce, ciphertext or associated_data")
    try:
        plaintext = _crypto.decrypt(channel.settings.apiv3_key, nonce, associated, ciphertext)
    except _crypto.CryptoError as exc:
        return reject("bad_encryption", str(exc))
    try:
        data = _wire.load_json(plaintext)
    except _wire.WireError as exc:
        return reject("malformed", f"the decrypted resource: {exc}")
    if _wire.text(data, "mchid") != channel.mchid:
        return reject("wrong_merchant", f"mchid {str(data.get('mchid'))[:40]!r} is not ours")
    if event_type.startswith("TRANSACTION."):
        return _transaction(channel, data, event_type, event_id)
    refund_status = _REFUND_EVENTS.get(event_type)
    if refund_status is not None:
        return _refund(data, refund_status, event_id)
    return NotificationResult()  # a verified event type we have no use for


def _transaction(
    channel: WechatChannel, data: dict[str, Any], event_type: str, event_id: str
) -> NotificationResult:
    reject = NotificationResult.reject
    if _wire.text(data, "appid") != channel.appid:
        return reject("wrong_merchant", f"appid {str(data.get('appid'))[:40]!r} is not ours")
    out_trade_no = _wire.text(data, "out_trade_no")
    state = _wire.text(data, "trade_state")
    if out_trade_no is None or state is None:
        return reject("malformed", "out_trade_no or trade_state is missing")
    if state == "SUCCESS":
        event = payment_event(data, event_id)
        if isinstance(event, str):
            return reject("malformed", event)
        return NotificationResult(events=(event,))
    if state in _WAITING_STATES or state == "REFUND":
        return NotificationResult()  # not yet paid (or a refund state): nothing to apply
    if state in _UNPAID_STATES:
        unpaid = PaymentEvent(
            out_trade_no=out_trade_no,
            paid=False,
            amount=None,
            channel_trade_no=_wire.text(data, "transaction_id"),
            status=state,
            merchant_id=channel.mchid,
            event_id=event_id,
        )
        return NotificationResult(events=(unpaid,))
    return reject("malformed", f"trade_state {state[:30]!r} in {event_type[:40]}")


def _refund(data: dict[str, Any], expected: str, event_id: str) -> NotificationResult:
    reject = NotificationResult.reject
    out_refund_no = _wire.text(data, "out_refund_no")
    if out_refund_no is None:
        return reject("malformed", "out_refund_no is missing")
    status = _wire.text(data, "refund_status")
    if status != expected:
        return reject("malformed", f"refund_status {str(status)[:20]!r} is not {expected}")
    money = _money(data.get("amount"), "refund", "CNY")
    if isinstance(money, str):
        return reject("malformed", money)
    succeeded = status == "SUCCESS"
    event = RefundEvent(
        out_refund_no=out_refund_no,
        outcome=Outcome.SUCCEEDED if succeeded else Outcome.FAILED,
        amount=money,
        channel_refund_no=_wire.text(data, "refund_id"),
        out_trade_no=_wire.text(data, "out_trade_no"),
        event_id=event_id,
        code=None if succeeded else status,
        message=None if succeeded else f"REFUND.{status}",
    )
    return NotificationResult(events=(event,))
