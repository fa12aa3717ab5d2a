"""What travels: strict JSON (no floats, no repeated keys), RFC 3339 times in Beijing time,
amounts in integer fen."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from ordercore import Money

__all__ = [
    "BEIJING",
    "MAX_FEN",
    "WireError",
    "fen",
    "integer",
    "load_json",
    "parse_time",
    "rfc3339",
    "text",
]

#: China Standard Time (WeChat Pay writes every time with ``+08:00``).
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
#: The largest amount WeChat takes, in fen (100 million yuan), well inside int64.
MAX_FEN: Final = 10_000_000_000
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


class WireError(ValueError):
    """JSON that WeChat Pay does not send."""


def _no_float(text: str) -> Any:
    raise WireError(f"a number with a fraction or exponent ({text[:20]}): amounts are fen")


def _no_constant(text: str) -> Any:
    raise WireError(f"{text} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireError(f"the key {key[:40]!r} appears twice")
        result[key] = value
    return result


def load_json(body: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes; :class:`WireError` for anything else (a float, NaN,
    a repeated key, nesting too deep, not an object)."""
    try:
        value = json.loads(
            body.decode("utf-8"),
            parse_float=_no_float,
            parse_constant=_no_constant,
            object_pairs_hook=_unique,
        )
    except WireError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError
        raise WireError(f"not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as sent (the exact bytes that are signed)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def text(data: Any, name: str) -> str | None:
    """``data[name]`` when it is a non-empty string."""
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def integer(data: Any, name: str) -> int | None:
    """``data[name]`` when it is an integer (not a bool) between 0 and :data:`MAX_FEN`."""
    value = data.get(name) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FEN:
        return None
    return value


def fen(money: Money) -> int:
    """``money`` in integer fen (CNY has two decimals: exact, never rounded)."""
    if money.currency.code != "CNY":
        raise ValueError(f"WeChat Pay takes CNY, not {money.currency.code}")
    return money.to_minor()


def rfc3339(moment: datetime) -> str:
    """``moment`` as WeChat writes times: ``2026-11-24T16:30:15+08:00`` (a naive ``moment``
    is taken as UTC)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time, or None if ``value`` is not one."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
