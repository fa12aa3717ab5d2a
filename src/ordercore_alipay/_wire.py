"""How Alipay writes things on the wire: Beijing times, yuan amounts, its form encoding
(notifications) and the envelope of its gateway's JSON answers.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import attrs
from attrs import frozen

from ordercore import Money

from . import _sign

#: Alipay's time zone (China Standard Time, no daylight saving).
__all__ = ["BEIJING", "GatewayReply", "beijing_time", "parse_form"]

BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")


_SUCCESS: Final = "10000"


_BUSINESS_FAILURE: Final = "40004"


_UNKNOWN: Final = "20000"


_AMOUNT: Final = re.compile(r"(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,2})?")


_PARAM_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


_MAX_PARAMS: Final = 200


def beijing_time(moment: datetime) -> str:
    """``moment`` as Alipay writes times: ``yyyy-MM-dd HH:mm:ss`` in Beijing time (a naive
    ``moment`` is taken as UTC)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(BEIJING).strftime(_TIME_FORMAT)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=BEIJING)
    except ValueError:
        return None


def _yuan(money: Money) -> str:
    return f"{money.amount:f}"


def _money(text: object) -> Money | None:
    """A yuan amount as Alipay writes it (``"27.00"``), or None if it is not one."""
    if not isinstance(text, str) or not _AMOUNT.fullmatch(text):
        return None
    return Money.of(text, "CNY")


def parse_form(body: bytes) -> tuple[dict[str, str], str]:
    """Decode an ``application/x-www-form-urlencoded`` body the way Alipay encodes it: each
    name and value percent-decoded to bytes (``+`` is a space), then decoded with the charset
    the form's own ``charset`` parameter names (UTF-8 when it names none). Returns the
    parameters, values exactly as sent, and the codec. ``ValueError`` for anything else:
    repeated names, an unknown charset, bytes the charset cannot decode."""
    raw: dict[bytes, bytes] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        if b"=" not in pair:
            raise ValueError("a form field without '='")
        name, value = pair.split(b"=", 1)
        name_bytes = urllib.parse.unquote_to_bytes(name.replace(b"+", b" "))
        if name_bytes in raw:
            raise ValueError(f"the field {name_bytes[:40]!r} appears twice")
        raw[name_bytes] = urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
        if len(raw) > _MAX_PARAMS:
            raise ValueError(f"more than {_MAX_PARAMS} fields")
    if not raw:
        raise ValueError("an empty form")
    declared = raw.get(b"charset", b"utf-8").decode("ascii", "replace").strip().lower()
    codec = _sign.CHARSETS.get(declared)
    if codec is None:
        raise ValueError(f"unsupported charset {declared[:20]!r}")
    params: dict[str, str] = {}
    for name_bytes, value_bytes in raw.items():
        name_text = name_bytes.decode("ascii")
        if not _PARAM_NAME.fullmatch(name_text):
            raise ValueError(f"a field name {name_text[:40]!r} Alipay does not send")
        params[name_text] = value_bytes.decode(codec)
    return params, codec


@frozen
class GatewayReply:
    """What came back from one gateway call.

    ``data`` is the ``*_response`` (or ``error_response``) object; ``signed`` says its
    signature was verified with Alipay's key. ``problem`` is set when there is no usable
    answer at all (no HTTP answer, an HTTP error status, an unreadable body, a signature that
    does not verify): the outcome is then unknown.
    """

    data: Mapping[str, Any] = attrs.field(factory=dict)
    signed: bool = False
    problem: str | None = None

    @property
    def code(self) -> str | None:
        value = self.data.get("code")
        return value if isinstance(value, str) else None

    @property
    def sub_code(self) -> str | None:
        value = self.data.get("sub_code")
        return value if isinstance(value, str) and value else None

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        return value if isinstance(value, str) and value else None

    @property
    def succeeded(self) -> bool:
        return self.problem is None and self.signed and self.code == _SUCCESS

    @property
    def business_failure(self) -> bool:
        return self.problem is None and self.signed and self.code == _BUSINESS_FAILURE

    @property
    def unknown(self) -> bool:
        """No verified answer, or Alipay's own "outcome unknown" (``20000``)."""
        return self.problem is not None or self.code == _UNKNOWN

    def describe(self) -> str:
        if self.problem is not None:
            return self.problem
        parts = [p for p in (self.code, self.sub_code) if p]
        message = self.text("sub_msg") or self.text("msg")
        text = " ".join(parts) or "no code"
        if message:
            text = f"{text}: {message}"
        if not self.signed:
            text = f"{text} (unsigned)"
        return text[:500]
