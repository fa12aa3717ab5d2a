"""Fixtures of the Alipay plugin's suite: key pairs made once per worker, a sandbox gateway on
loopback per test, a channel talking to it, and a shop — a real OrderCore on the test's
backend, with the ``alipay`` channel configured against the sandbox and the ``ordercore.web``
endpoint serving its notify URL over real HTTP.

(No ``__init__.py`` here, on purpose: as a package this directory would be importable as
``alipay`` and shadow python-alipay-sdk, which the signing tests cross-check against.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alipay_kit import ADMIN, NOWHERE, LateCore, Shop, make_sandbox

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.web import start_background_server
from ordercore_alipay import AlipayChannel
from ordercore_alipay.sandbox import AlipaySandbox


@pytest.fixture
def sandbox() -> Iterator[AlipaySandbox]:
    with make_sandbox() as running:
        yield running


@pytest.fixture
def channel(sandbox: AlipaySandbox) -> AlipayChannel:
    return AlipayChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=10))


@pytest.fixture
def shop(backend: Backend, clock: FakeClock, sandbox: AlipaySandbox) -> Iterator[Shop]:
    late = LateCore()
    server, url = start_background_server(late, check_database=False)
    try:
        config = sandbox.channel_config(notify_url=f"{url}/callbacks/alipay", timeout_seconds=10)
        core = backend.core(clock, channels={"alipay": config})
        late.payments = core.payments
        customer = core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
        assert customer.id is not None
        core.products.add(
            sku="vpn", name="VPN 月卡", price=Money.of("27.00", "CNY"), stock=100, actor=ADMIN
        )
        assert isinstance(core.channel("alipay"), AlipayChannel)
        yield Shop(backend, core, clock, sandbox, server, url, customer.id)
        core.close()
    finally:
        server.shutdown()
