"""Human-readable, time-ordered, collision-safe order numbers.

A number is the UTC time to the millisecond followed by five Crockford base-32 characters,
e.g. ``20261124163000123K7M2Q`` (22 characters: letters and digits only, accepted as an
out-trade-number by every channel). Within one generator the suffix of numbers issued in the
same millisecond increases by one, so numbers sort in issue order; across processes the
random start of each millisecond's suffix (33 million values) makes a clash unlikely and the
unique index on the number makes it impossible (the repository retries with a new number).
"""

from __future__ import annotations

import re
import secrets
import threading
from datetime import datetime, timedelta, timezone
from typing import Final

__all__ = ["ORDER_NUMBER", "OrderNumberGenerator", "created_before"]

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SUFFIX_LEN: Final = 5
_SPACE: Final = len(_ALPHABET) ** _SUFFIX_LEN
_EARLIEST_STAMP: Final = "00000101000000000"  # YYYY MM DD HH MM SS mmm
ORDER_NUMBER: Final = re.compile(r"\d{17}[0-9A-HJKMNP-TV-Z]{5}\Z")


def _encode(value: int) -> str:
    chars = []
    for _ in range(_SUFFIX_LEN):
        value, digit = divmod(value, len(_ALPHABET))
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _next_millisecond(stamp: str) -> str:
    moment = datetime.strptime(stamp + "000", "%Y%m%d%H%M%S%f") + timedelta(milliseconds=1)
    return moment.strftime("%Y%m%d%H%M%S%f")[:17]


class OrderNumberGenerator:
    """Thread-safe generator; one per process is enough."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_stamp = ""
        self._last_suffix = 0

    def next(self, now: datetime) -> str:
        stamp = now.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S%f")[:17]
        with self._lock:
            if stamp < self._last_stamp:  # the clock went back: stay ordered
                stamp = self._last_stamp
            if stamp == self._last_stamp:
                suffix = self._last_suffix + 1
                if suffix >= _SPACE:  # this millisecond is used up: borrow the next one
                    stamp = _next_millisecond(stamp)
                    suffix = secrets.randbelow(_SPACE // 2)
            else:
                suffix = secrets.randbelow(_SPACE // 2)  # leave room to count up
            self._last_stamp, self._last_suffix = stamp, suffix
        return stamp + _encode(suffix)


def created_before(prefix: str) -> datetime | None:
    """An instant before which every order whose number starts with ``prefix`` was created.

    A number's stamp is never earlier than its order's creation time (the generator only
    moves stamps forward), so an order numbered ``P…`` was created before the first instant
    whose stamp sorts after every ``P…``: the prefix's digits incremented and padded with
    the earliest stamp (month 01, day 01, zeros). ``None`` when the prefix says nothing
    about time.
    """
    digits = ""
    for char in prefix[:17]:
        if not char.isdigit():
            break
        digits += char
    while digits:
        upper = str(int(digits) + 1).rjust(len(digits), "0")
        if len(upper) == len(digits):
            padded = upper + _EARLIEST_STAMP[len(upper) :]
            try:
                moment = datetime.strptime(padded + "000", "%Y%m%d%H%M%S%f")
            except ValueError:  # a field overflowed (month 13, day 32...): loosen the bound
                digits = digits[:-1]
                continue
            return moment.replace(tzinfo=timezone.utc)
        digits = digits[:-1]
    return None
