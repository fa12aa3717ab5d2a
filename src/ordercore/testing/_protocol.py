"""The fake platform's wire format: its signature headers and signature, the replay window,
the default merchant and secret, the event types and how amounts are written."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Final

from ordercore._money import Money

#: The header carrying the hex HMAC-SHA256 signature.
SIGNATURE_HEADER: Final = "x-fake-signature"
#: The header carrying the signing time (unix seconds), part of the signed message.
TIMESTAMP_HEADER: Final = "x-fake-timestamp"
#: A notification signed more than this many seconds before (or after) it was received is
#: refused as ``stale``.
TOLERANCE_SECONDS: Final = 300
#: The merchant id the fake channel uses unless ``options["merchant_id"]`` says otherwise.
DEFAULT_MERCHANT_ID: Final = "fake-merchant"
#: The webhook secret the builders use unless told otherwise.
DEFAULT_SECRET: Final = b"fake-webhook-secret"
#: The notification types the fake platform sends.
EVENT_TYPES: Final = frozenset(
    {"payment.succeeded", "payment.failed", "refund.succeeded", "refund.failed"}
)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _amount_text(money: Money) -> str:
    """The fake platform's amount format: decimal text in the currency's unit, at its
    precision (``"30.00"`` CNY, ``"30"`` JPY, ``"0.00100000"`` BTC)."""
    return f"{money.amount:f}"


def fake_signature(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The fake platform's signature: hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``."""
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
