"""Callback intake: what of a notification's headers reaches the channel and the inbox, and
whether the fields a channel hands the engine fit the database.

Headers: only the ones the channel declares (``PaymentChannel.notification_headers``) are
kept — given to the channel and stored, so that a replay sees exactly what the first delivery
saw — and every other one is counted in a bounded summary (how many, how many bytes, the
first names). Values of secret headers are stored as ``[redacted]``.

Fields: every text field of a :class:`~ordercore.channels.PaymentEvent` or
:class:`~ordercore.channels.RefundEvent` is checked against the column it ends up in (length)
and for characters no database stores (NUL, other control characters, lone surrogates)
before a transaction starts; an amount must fit a 64-bit count of minor units.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from ordercore.channels import PaymentEvent, RefundEvent

__all__ = [
    "FIELD_LIMITS",
    "MAX_KEPT_BYTES",
    "REDACTED",
    "SUMMARY_NAMES",
    "KeptHeaders",
    "event_problem",
    "keep_headers",
]

REDACTED = "[redacted]"
#: How many dropped header names the summary lists (each cut to 64 characters).
SUMMARY_NAMES = 20
#: The most header bytes (names and values) kept for one notification, whoever calls the
#: engine: past it, headers go to the summary (the HTTP endpoint refuses more with 431).
MAX_KEPT_BYTES = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,64}")
#: A header value worth keeping: latin-1 text without control characters (tab allowed).
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
#: Printable ASCII: a field made of these needs no closer look.
_PLAIN = re.compile(r"[\x20-\x7e]*")

#: The longest value of each event field, in characters: the column it is stored in
#: (``out_trade_no`` 64, ``channel_trade_no`` 128...), or a bound where it is only compared
#: or kept as evidence.
FIELD_LIMITS: Mapping[str, int] = {
    "out_trade_no": 64,
    "channel_trade_no": 128,
    "status": 64,
    "merchant_id": 128,
    "event_id": 128,
    "out_refund_no": 64,
    "channel_refund_no": 128,
    "code": 64,
    "message": 2000,
}
#: Fields that may hold free text (tabs and line breaks allowed).
_TEXT = frozenset({"message"})
_MAX_MINOR = 2**63 - 1


@frozen
class KeptHeaders:
    """The headers of one notification after intake.

    ``kept``: what the channel sees; ``stored``: what the inbox keeps (``kept`` with secret
    values redacted); ``summary``: the dropped headers, counted (None when none was
    dropped)."""

    kept: dict[str, str]
    stored: dict[str, str]
    summary: dict[str, Any] | None


def keep_headers(
    headers: Mapping[str, str],
    *,
    needed: frozenset[str] | None,
    secret: frozenset[str],
) -> KeptHeaders:
    """Split ``headers`` (any case) into what a channel needing ``needed`` (None: every
    header) sees, what the inbox stores, and a summary of the rest. A header whose name is
    not an HTTP token, or whose value is not latin-1 text without control characters, is
    never kept; nor are headers past :data:`MAX_KEPT_BYTES`."""
    kept: dict[str, str] = {}
    kept_bytes = 0
    dropped: list[str] = []
    dropped_bytes = 0
    for raw_name, raw_value in headers.items():
        name, value = str(raw_name).lower(), str(raw_value)
        # Only a header that may be kept is looked at closely: the cost of the others is
        # their length, whatever their size.
        size = len(name) + len(value)
        if (
            (needed is None or name in needed)
            and kept_bytes + size <= MAX_KEPT_BYTES
            and _TOKEN.fullmatch(name) is not None
            and _VALUE.fullmatch(value) is not None
        ):
            kept[name] = value
            kept_bytes += size
        else:
            dropped.append(name)
            dropped_bytes += size
    stored = {name: (REDACTED if name in secret else value) for name, value in kept.items()}
    summary = None
    if dropped:
        names = sorted({_printable(n[:64]) for n in dropped})
        summary = {
            "dropped": len(dropped),
            "bytes": dropped_bytes,
            "names": names[:SUMMARY_NAMES],
        }
        if len(names) > SUMMARY_NAMES:
            summary["more_names"] = len(names) - SUMMARY_NAMES
    return KeptHeaders(kept, stored, summary)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() and c.isascii() else "?" for c in text)


def _text_problem(name: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"{name} is {type(value).__name__}, not text"
    limit = FIELD_LIMITS[name]
    if len(value) > limit:
        return f"{name} is {len(value)} characters long, more than {limit}"
    if _PLAIN.fullmatch(value) is not None:
        return None
    for c in value:
        category = unicodedata.category(c)
        if category == "Cs":
            return f"{name} holds a lone surrogate (U+{ord(c):04X})"
        if category == "Cc" and not (name in _TEXT and c in "\t\n\r"):
            return f"{name} holds the control character U+{ord(c):04X}"
    return None


def event_problem(event: PaymentEvent | RefundEvent) -> str | None:
    """Why ``event`` cannot be stored as it is (naming the field), or None."""
    if isinstance(event, PaymentEvent):
        texts = {
            "out_trade_no": event.out_trade_no,
            "channel_trade_no": event.channel_trade_no,
            "status": event.status,
            "merchant_id": event.merchant_id,
            "event_id": event.event_id,
        }
        required: tuple[str, ...] = ("out_trade_no", "status")
    else:
        texts = {
            "out_refund_no": event.out_refund_no,
            "channel_refund_no": event.channel_refund_no,
            "out_trade_no": event.out_trade_no,
            "event_id": event.event_id,
            "code": event.code,
            "message": event.message,
        }
        required = ("out_refund_no",)
    for name, value in texts.items():
        if value is None:
            if name in required:
                return f"{name} is missing"
            continue
        problem = _text_problem(name, value)
        if problem is not None:
            return problem
    if event.amount is not None:
        try:
            minor = event.amount.to_minor()
        except Exception as exc:  # an amount with more decimals than its currency has
            return f"amount {event.amount} cannot be stored: {exc}"
        if abs(minor) > _MAX_MINOR:
            return f"amount {event.amount} is too large to store"
    return None
