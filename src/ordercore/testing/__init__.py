"""The public test kit: a fake payment channel, its in-memory platform, builders and fixtures.

For host developers, who want their payment tests offline, and for plugin authors, who want
something to copy and helpers to test their own channel (see ``docs/testing.md`` and
``docs/plugins.md``).

* :class:`FakeChannel` is a real channel (the HMAC-webhook family): notifications are JSON
  bodies signed with HMAC-SHA256 over ``f"{timestamp}.".encode() + body``, verified in
  constant time over the raw bytes, with a five-minute replay window. It talks to a
  :class:`FakeGateway` instead of the network.
* :class:`FakeGateway` is the platform: it keeps trades and refunds in memory (thread-safe),
  "pays" a trade by returning the signed notification the platform would send
  (:meth:`~FakeGateway.pay`), builds duplicate, out-of-order, stale, tampered and refund
  notifications (:meth:`~FakeGateway.notification_for`), delivers them over real HTTP
  (:meth:`~FakeGateway.deliver`), injects faults (:meth:`~FakeGateway.fail_next`: timeouts
  whose answer is lost after the work was done, platform errors) and counts every call.
* :func:`make_fake_channel`, :func:`fake_channel_config`, :func:`make_checkout_request`,
  :func:`make_refund_request` build what tests need; :func:`assert_channel_contract` and
  :func:`garbage_notifications` test any channel (yours too) against the rules every channel
  must keep.
* With ``pytest_plugins = ["ordercore.testing"]`` in a ``conftest.py``, the fixtures
  ``fake_gateway`` and ``fake_channel`` are available. pytest and hypothesis stay optional:
  this module imports without them.

The module also implements the ``ordercore_register_channels`` hook, so that registering it
as a plugin (``make_plugin_manager([ordercore.testing])``) offers the ``fake`` channel to
every configuration with a ``[channels.fake]`` table.
"""

from __future__ import annotations

# isort: off
# The reference in docs/testing.md (mkdocstrings, members_order: source) lists these names in
# the order they are imported here: keep it, and keep the fixtures below in this module.
from ordercore.testing._protocol import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_SECONDS,
    DEFAULT_MERCHANT_ID,
    DEFAULT_SECRET,
    EVENT_TYPES,
    fake_signature,
)
from ordercore.testing._records import (
    FakeGatewayError,
    TradeStatus,
    FakeTrade,
    FakeRefund,
    SignedNotification,
)
from ordercore.testing._fake_gateway import FakeGateway
from ordercore.testing._fake_channel import FakeChannel, ordercore_register_channels
from ordercore.testing._builders import (
    fake_channel_config,
    make_fake_channel,
    make_checkout_request,
    make_refund_request,
)
from ordercore.testing._contract import (
    GARBAGE_NOTIFICATIONS,
    assert_channel_contract,
    garbage_notifications,
)
from ordercore.testing._risk import TestRiskRule, make_risk_rule
from ordercore.testing._interrupt import wait_for_interrupt

# isort: on

__all__ = [
    "DEFAULT_MERCHANT_ID",
    "DEFAULT_SECRET",
    "EVENT_TYPES",
    "GARBAGE_NOTIFICATIONS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "FakeChannel",
    "FakeGateway",
    "FakeGatewayError",
    "FakeRefund",
    "FakeTrade",
    "SignedNotification",
    "TestRiskRule",
    "TradeStatus",
    "assert_channel_contract",
    "fake_channel_config",
    "fake_signature",
    "garbage_notifications",
    "make_checkout_request",
    "make_fake_channel",
    "make_refund_request",
    "make_risk_rule",
    "ordercore_register_channels",
    "wait_for_interrupt",
]


# -- pytest fixtures (only when pytest is importable) --------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is in the test extra only
    pass
else:

    @pytest.fixture
    def fake_gateway() -> FakeGateway:
        """A fresh :class:`FakeGateway` (wall clock, synchronous refunds)."""
        return FakeGateway()

    @pytest.fixture
    def fake_channel(fake_gateway: FakeGateway) -> FakeChannel:
        """A :class:`FakeChannel` on ``fake_gateway``, with :data:`DEFAULT_SECRET`."""
        channel, _ = make_fake_channel(gateway=fake_gateway)
        return channel
