"""Fixtures of the WeChat plugin's suite: key pairs made once per worker, a sandbox gateway on
loopback per test, a channel talking to it, and a shop — a real OrderCore on the test's
backend, with the ``wechat`` channel configured against the sandbox and the ``ordercore.web``
endpoint serving its notify URL over real HTTP.

(No ``__init__.py`` here, on purpose — the Alipay suite's convention: as a package this
directory could shadow an SDK the cross-check imports.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wechat_kit import ADMIN, NOWHERE, LateCore, Shop, make_sandbox

from helpers import Backend, FakeClock
from ordercore import Money
from ordercore.web import start_background_server
from ordercore_wechat import WechatChannel
from ordercore_wechat.sandbox import WechatSandbox


@pytest.fixture
def sandbox() -> Iterator[WechatSandbox]:
    with make_sandbox() as running:
        yield running


@pytest.fixture
def channel(sandbox: WechatSandbox) -> WechatChannel:
    return WechatChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=10))


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    """The engine, the web endpoint and the sandbox on one fake clock (requests, answers and
    notifications are signed and judged at the same time)."""
    late = LateCore()
    server, url = start_background_server(late, check_database=False)
    try:
        with make_sandbox(clock=clock) as sandbox:
            config = sandbox.channel_config(
                notify_url=f"{url}/callbacks/wechat", timeout_seconds=10, clock=clock
            )
            core = backend.core(clock, channels={"wechat": config})
            late.payments = core.payments
            customer = core.customers.add(name="Li Lei", email="li@example.com", actor=ADMIN)
            assert customer.id is not None
            core.products.add(
                sku="vpn", name="VPN 月卡", price=Money.of("27.00", "CNY"), stock=100, actor=ADMIN
            )
            assert isinstance(core.channel("wechat"), WechatChannel)
            yield Shop(backend, core, clock, sandbox, server, url, customer.id)
            core.close()
    finally:
        server.shutdown()
