"""Fixtures of the crypto plugin's suite: a sandbox gateway per test (each of the three), and
a shop — a real OrderCore on the test's backend with that channel configured against the
sandbox, the ``ordercore.web`` endpoint serving its notify URL over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crypto_kit import ADMIN, GATEWAYS, Gateway, LateCore, Shop, make_gateway

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.web import start_background_server


@pytest.fixture(params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    made = make_gateway(request.param)
    with made.sandbox:
        yield made


@pytest.fixture
def shop(backend: Backend, clock: FakeClock, gateway: Gateway) -> Iterator[Shop]:
    late = LateCore()
    server, url = start_background_server(late, check_database=False)
    try:
        config = gateway.config(f"{url}/callbacks/{gateway.name}")
        core = backend.core(clock, channels={gateway.name: config})
        late.payments = core.payments
        customer = core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
        assert customer.id is not None
        core.products.add(
            sku="vpn", name="VPN 月卡", price=Money.of("27.00", "CNY"), stock=100, actor=ADMIN
        )
        yield Shop(backend, core, clock, gateway, server, url, customer.id)
        core.close()
    finally:
        server.shutdown()
