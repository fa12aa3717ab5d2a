"""Checks for any channel (yours too): the contract every channel must keep, garbage
notifications no channel may accept or crash on, and a hypothesis strategy of random
ones."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from ordercore._errors import MoneyError
from ordercore._money import get_currency
from ordercore.channels import (
    Capabilities,
    HttpReply,
    Notification,
    NotificationResult,
    PaymentChannel,
)
from ordercore.testing._protocol import SIGNATURE_HEADER, TIMESTAMP_HEADER

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

_DEEP = b"[" * 100_000 + b"]" * 100_000

#: ``(headers, body)`` pairs no channel may accept or crash on.
GARBAGE_NOTIFICATIONS: Final[tuple[tuple[dict[str, str], bytes], ...]] = (
    ({}, b""),
    ({}, b"{}"),
    ({"content-type": "application/json"}, b"not json"),
    ({"content-type": "application/json"}, b"\xff\xfe\x00garbage"),
    ({"content-type": "application/json"}, b'{"amount": 30.0}'),
    ({"content-type": "application/json"}, b'{"amount": NaN, "id": 1e999}'),
    ({"content-type": "application/json"}, b"[1, 2, 3]"),
    ({"content-type": "application/json"}, _DEEP),
    ({"content-type": "application/x-www-form-urlencoded"}, b"a=1&sign=xyz&sign_type=RSA2"),
    ({"content-type": "application/x-www-form-urlencoded"}, b"%%%&&&==="),
    ({SIGNATURE_HEADER: "0" * 64, TIMESTAMP_HEADER: "1"}, b'{"type": "payment.succeeded"}'),
    ({SIGNATURE_HEADER: "zz", TIMESTAMP_HEADER: "-1"}, b"\x00" * 64),
    ({"wechatpay-signature": "AAAA", "wechatpay-timestamp": "x", "wechatpay-nonce": ""}, b"{"),
    ({"btcpay-sig": "sha256=00", "x-nowpayments-sig": "00", "x-cc-webhook-signature": ""}, b"{}"),
)


def assert_channel_contract(
    channel: PaymentChannel,
    samples: Sequence[tuple[Mapping[str, str], bytes]] = GARBAGE_NOTIFICATIONS,
) -> None:
    """Check what every channel must do, whatever its platform; raise ``AssertionError``
    otherwise. It checks the declarations (name, methods, currencies, capabilities), that
    :meth:`~ordercore.channels.PaymentChannel.acknowledge` builds an
    :class:`~ordercore.channels.HttpReply` both ways, and that each garbage notification in
    ``samples`` comes back as a rejection (no events) rather than an exception."""
    cls = type(channel)
    problems: list[str] = []
    if not isinstance(getattr(cls, "name", None), str) or not re.fullmatch(
        r"[a-z][a-z0-9_]*", cls.name
    ):
        problems.append("name must be a lower-case identifier (the [channels.NAME] table)")
    for attr in ("methods", "currencies"):
        value = getattr(cls, attr, None)
        if not isinstance(value, frozenset) or not value:
            problems.append(f"{attr} must be a non-empty frozenset of str")
        elif not all(isinstance(v, str) for v in value):
            problems.append(f"{attr} must hold strings only")
    for code in getattr(cls, "currencies", ()) or ():
        try:
            get_currency(code)
        except MoneyError:
            problems.append(f"currency {code!r} is not registered (ordercore.register_currency)")
    if not isinstance(getattr(cls, "capabilities", None), Capabilities):
        problems.append("capabilities must be a Capabilities instance")
    for accepted in (True, False):
        reply: object = channel.acknowledge(accepted, "rejected by the contract check")
        if not isinstance(reply, HttpReply) or not isinstance(reply.body, bytes):
            problems.append(f"acknowledge({accepted}) must return an HttpReply with bytes")
    for index, (headers, body) in enumerate(samples):
        notification = Notification(getattr(cls, "name", "?"), dict(headers), body)
        try:
            result: object = channel.parse_notification(notification)
        except Exception as exc:
            problems.append(f"garbage sample {index} raised {type(exc).__name__}: {exc}"[:300])
            continue
        if not isinstance(result, NotificationResult):
            problems.append(f"garbage sample {index} did not return a NotificationResult")
        elif result.rejection is None or result.events:
            problems.append(f"garbage sample {index} was not rejected: {result!r}"[:300])
    if problems:
        raise AssertionError(
            f"{cls.__name__} breaks the channel contract:\n- " + "\n- ".join(problems)
        )


def garbage_notifications(channel: str = "fake") -> SearchStrategy[Notification]:
    """A hypothesis strategy of random notifications for ``channel``: random header names
    and values (the usual signature headers among them) and random bodies (bytes, text,
    JSON-ish). Needs hypothesis (the ``test`` extra)::

        @given(garbage_notifications("mypay"))
        def test_garbage_is_rejected(notification):
            result = channel.parse_notification(notification)
            assert result.rejection is not None and not result.events
    """
    from hypothesis import strategies as st

    names = st.sampled_from(
        [
            SIGNATURE_HEADER,
            TIMESTAMP_HEADER,
            "content-type",
            "wechatpay-signature",
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-serial",
            "btcpay-sig",
            "x-nowpayments-sig",
            "x-cc-webhook-signature",
        ]
    ) | st.text(max_size=30)
    values = st.text(max_size=80) | st.sampled_from(["", "0" * 64, "sha256=", "1700000000"])
    json_ish = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode("utf-8"))
    bodies = st.binary(max_size=300) | st.text(max_size=200).map(str.encode) | json_ish
    return st.builds(
        Notification,
        channel=st.just(channel),
        headers=st.dictionaries(names, values, max_size=6),
        body=bodies,
    )
