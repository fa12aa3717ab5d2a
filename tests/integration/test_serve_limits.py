"""The development server's limits (issue 12, items 8 and 12), over real loopback HTTP.

* Headers over ``max_header_size`` (64 KiB) get 431 before anything reaches the engine; a
  request cut off inside its headers is not processed at all.
* A body that stalls gets 408 (no 500, no traceback).
* A fixed set of worker threads: with all of them busy and the backlog full, the answer is
  503 with ``Retry-After``; on PostgreSQL, threads bounded to the connection pool answer
  every delivery, where more threads than connections time out waiting for the pool.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import attrs
import pytest
from sqlalchemy import event

import ordercore.testing
from helpers import Backend, FakeClock
from ordercore import OrderCore, OrderStatus
from ordercore.channels import HttpReply
from ordercore.web import MAX_HEADER_SIZE, deliver_callback, start_background_server, threads_for

from .payment_kit import ADMIN, cny, make_shop

OK = HttpReply(200, b"OK", {"Content-Type": "text/plain"})


class Payments:
    """Plays ``core.payments``: records calls; blocks while ``gate`` is clear."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0
        self._lock = threading.Lock()

    def handle_callback(
        self, channel: str, headers: Mapping[str, str], body: bytes, remote_addr: str | None
    ) -> HttpReply:
        with self._lock:
            self.calls.append((dict(headers), body))
            self.active += 1
        try:
            assert self.gate.wait(timeout=30)
            return OK
        finally:
            with self._lock:
                self.active -= 1


class StandIn:
    def __init__(self) -> None:
        self.payments = Payments()


@pytest.fixture
def core() -> StandIn:
    return StandIn()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(url: str, data: bytes, *, close: bool = True, timeout: float = 10) -> bytes:
    """Send ``data`` as it is; the bytes answered until the server closes."""
    with socket.create_connection(_address(url), timeout=timeout) as sock:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _post(url: str, body: bytes = b"{}", headers: Mapping[str, str] | None = None) -> Any:
    connection = http.client.HTTPConnection(*_address(url), timeout=30)
    try:
        connection.request("POST", "/callbacks/fake", body, dict(headers or {}))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def served(core: StandIn) -> Iterator[str]:
    server, url = start_background_server(core, read_timeout=0.5)
    try:
        yield url
    finally:
        server.shutdown()


# -- headers ----------------------------------------------------------------------------------


def test_headers_over_the_cap_are_431_and_never_reach_the_engine(
    served: str, core: StandIn
) -> None:
    flood = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 60_000) for i in range(95))
    answer = _raw(served, b"POST /callbacks/fake HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    assert answer.startswith(b"HTTP/1.0 431 ")
    assert core.payments.calls == []
    # Just under the cap goes through.
    headers = {f"X-Big-{i}": "v" * 6_000 for i in range(10)}
    status, _, body = _post(served, b"{}", headers)
    assert (status, body) == (200, b"OK")
    assert core.payments.calls[0][0]["x-big-9"] == "v" * 6_000


def test_the_apps_cap_headers_too(core: StandIn) -> None:
    big = [(f"X-H{i}", "v" * 1000) for i in range(70)]
    reply = deliver_callback(core, "fake", big, b"{}")
    assert reply.status == 431
    assert deliver_callback(core, "fake", big[:60], b"{}").status == 200
    assert sum(len(n) + len(v) + 4 for n, v in big[:60]) < MAX_HEADER_SIZE
    assert len(core.payments.calls) == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"POST /callbacks/fake HTTP/1.1\r\nContent-Length: 0\r\nX-Sig: abc",
        b"POST /callbacks/fake HTTP/1.1\r\nContent-Length: 2\r\n",
        b"POST /callbacks/fake HTTP/1.1\r\n",
    ],
)
def test_a_request_cut_off_inside_its_headers_is_not_processed(
    served: str, core: StandIn, partial: bytes
) -> None:
    assert _raw(served, partial) == b""  # no answer: there was no request
    assert core.payments.calls == []


def test_headers_that_stall_are_dropped(served: str, core: StandIn) -> None:
    partial = b"POST /callbacks/fake HTTP/1.1\r\nContent-Length: 2\r\n"
    assert _raw(served, partial, close=False) == b""  # the server gave up after read_timeout
    assert core.payments.calls == []


# -- bodies -----------------------------------------------------------------------------------


def test_a_stalled_body_is_408_without_a_traceback(
    served: str, core: StandIn, capfd: pytest.CaptureFixture[str]
) -> None:
    head = b"POST /callbacks/fake HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = _raw(served, head + b"only ten..", close=False)
    assert answer.startswith(b"HTTP/1.0 408 ")
    assert b'"the body did not arrive in time"' in answer
    assert core.payments.calls == []
    assert "Traceback" not in capfd.readouterr().err


# -- worker threads ---------------------------------------------------------------------------


def _wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_a_saturated_server_answers_503_with_retry_after(core: StandIn) -> None:
    server, url = start_background_server(core, threads=2, backlog=1)
    core.payments.gate.clear()
    try:
        with ThreadPoolExecutor(4) as pool:
            busy = [pool.submit(_post, url) for _ in range(2)]
            _wait_until(lambda: core.payments.active == 2, "both workers busy")
            more = [pool.submit(_post, url) for _ in range(2)]
            done, _ = wait(more, timeout=10, return_when=FIRST_COMPLETED)
            # One waits in the backlog; the other is refused at once, workers still busy.
            (refused,) = done
            status, headers, body = refused.result()
            assert status == 503
            assert headers["Retry-After"] == "2"
            assert b"busy" in body
            assert core.payments.active == 2
            core.payments.gate.set()
            statuses = sorted(f.result()[0] for f in busy + more)
        assert statuses == [200, 200, 200, 503]
        assert len(core.payments.calls) == 3
        assert server.rejected == 1
    finally:
        core.payments.gate.set()
        server.shutdown()


@pytest.mark.parametrize(
    "backend",
    [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)],
    indirect=True,
)
def test_threads_bounded_to_the_pool_answer_every_delivery(
    backend: Backend, clock: FakeClock
) -> None:
    shop = make_shop(backend, clock)
    shop.core.products.add(sku="bulk", name="Bulk", price=cny("5.00"), stock=100, actor=ADMIN)
    settings = attrs.evolve(
        shop.core.settings, pool_size=2, pool_max_overflow=0, pool_timeout_seconds=1
    )
    served = OrderCore.from_settings(settings, clock=clock, load_entry_points=False)
    served.register_plugin(ordercore.testing, name="ordercore.testing")
    assert threads_for(served) == 2

    @event.listens_for(served.engine, "checkout")
    def slow_checkout(*_: Any) -> None:
        # Every transaction holds its connection a while: 8 one-transaction deliveries on 2
        # connections then need 2 s, past the pool's 1 s timeout when all wait at once.
        time.sleep(0.5)

    def deliveries() -> list[tuple[str, Any]]:
        signed = []
        for _ in range(8):
            order = shop.core.orders.create(
                customer_id=shop.customer_id, items=[("bulk", 1)], actor=ADMIN
            )
            signed.append((order.number, shop.gateway.pay(shop.start(order.number).out_trade_no)))
        return signed

    def deliver_all(threads: int) -> tuple[list[int], list[str]]:
        batch = deliveries()
        server, url = start_background_server(served, threads=threads, backlog=16)
        try:
            with ThreadPoolExecutor(len(batch)) as pool:
                answers = list(pool.map(lambda s: _post(url, s[1].body, s[1].headers), batch))
        finally:
            server.shutdown()
        return [a[0] for a in answers], [n for n, _ in batch]

    try:
        statuses, numbers = deliver_all(threads_for(served))
        assert statuses == [200] * 8
        assert all(shop.core.orders.get(n).status is OrderStatus.PAID for n in numbers)
        # More threads than connections: deliveries wait for the pool, and time out.
        statuses, _ = deliver_all(8)
        assert 500 in statuses
    finally:
        served.close()
        shop.core.close()


# -- the apps, called directly ----------------------------------------------------------------


class _Stalling:
    """A WSGI input whose read fails the way a server's does when the client stalls."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, size: int = -1) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(TimeoutError("timed out"), 408), (ConnectionResetError("reset"), 400), (ValueError(), 400)],
)
def test_wsgi_a_body_that_cannot_be_read_is_answered_not_raised(
    core: StandIn, error: Exception, status: int
) -> None:
    from ordercore.web import make_wsgi_app

    started: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/callbacks/fake",
        "CONTENT_LENGTH": "10",
        "wsgi.input": _Stalling(error),
    }
    body = b"".join(make_wsgi_app(core)(environ, lambda s, h, e=None: started.append(s)))
    assert started[0].startswith(f"{status} ")
    assert json.loads(body)["code"] == "FAIL"
    assert core.payments.calls == []


def test_asgi_headers_over_the_cap_are_431_unread(core: StandIn) -> None:
    from ordercore.web import make_asgi_app

    app = make_asgi_app(core, max_header_size=1000)
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/callbacks/fake",
        "headers": [(b"x-big", b"v" * 1000)],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 431
    assert received == 0
    assert core.payments.calls == []


# -- the command line -------------------------------------------------------------------------


def test_serve_refuses_more_threads_than_the_pool(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from ordercore.cli import cli

    config = tmp_path / "ordercore.toml"
    config.write_text("pool_size = 2\npool_max_overflow = 1\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    assert CliRunner().invoke(cli, ["--database-url", url, "db", "upgrade"]).exit_code == 0
    result = CliRunner().invoke(
        cli, ["--database-url", url, "--config", str(config), "serve", "--threads", "4"]
    )
    assert result.exit_code == 2
    assert "4 threads but the connection pool holds 3" in result.output
