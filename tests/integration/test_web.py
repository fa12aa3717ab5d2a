"""The HTTP callback endpoint (``ordercore.web``) and the framework examples of docs/web.md.

The payment engine is played by a stand-in core whose ``payments.handle_callback`` records
what it was given and answers a chosen :class:`HttpReply`. Every way of reaching it — the
development server over real loopback HTTP, the ASGI app driven by a hand-written harness, and
the Flask, FastAPI and Django examples through their test clients — goes through the same
checks: the raw body arrives byte for byte, header names lower-cased, the reply goes back
exactly; wrong methods get 405 with ``Allow``, bad channel names 404, large bodies 413.
The framework examples run when their framework is installed (the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import logging
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine

from ordercore.channels import HttpReply
from ordercore.web import (
    MAX_BODY_SIZE,
    deliver_callback,
    make_asgi_app,
    make_wsgi_app,
    serve,
    start_background_server,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
WEB_DOC = ROOT / "docs" / "web.md"

#: A body no text decoding survives: invalid UTF-8, NUL, CR LF, a lone high byte at the end.
RAW_BODY = b"\xff\xfe\x00notify_id=1&amount=10.00&sign=\x80\x81\r\n\xc3(\xe9\x00\xff"
#: Header names as clients spell them; the engine must see them lower-cased.
ODD_HEADERS = {
    "X-Pay-SIGNATURE": "t=1,v1=abc==",
    "wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A72",
    "Content-Type": "application/octet-stream",
}
ACK = HttpReply(
    200,
    b'{"code":"SUCCESS","message":"\xe6\x88\x90\xe5\x8a\x9f"}',
    {"Content-Type": "application/json; charset=utf-8", "X-Ack-Id": "ack-42"},
)
UNKNOWN_CHANNEL = HttpReply(404, b'{"code":"FAIL","message":"unknown channel"}')
SERIAL_DELAY = 0.2
DELIVERIES = 16


# -- the stand-in core ----------------------------------------------------------------------


@dataclass
class Call:
    channel: str
    headers: dict[str, str]
    body: bytes
    remote_addr: str | None
    thread: int


@dataclass
class FakePayments:
    """Plays ``core.payments``: records each call; answers ``reply`` for known channels and
    the engine's 404 for others; can sleep or raise."""

    reply: Any = ACK
    channels: frozenset[str] = frozenset({"fake", "alipay", "we-chat_v3"})
    delay: float = 0.0
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_callback(
        self, channel: str, headers: Mapping[str, str], body: bytes, remote_addr: str | None
    ) -> Any:
        with self._lock:
            self.calls.append(
                Call(channel, dict(headers), body, remote_addr, threading.get_ident())
            )
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.error is not None:
                raise self.error
            if channel not in self.channels:
                return UNKNOWN_CHANNEL
            return self.reply
        finally:
            with self._lock:
                self.active -= 1


class FakeCore:
    def __init__(self, engine: Any = None) -> None:
        self.payments = FakePayments()
        if engine is not None:
            self.engine = engine


# -- one way of sending requests per host ------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


Headers = Mapping[str, str]


@dataclass
class Driver:
    """A host serving the endpoint: ``callbacks`` is the callback path with ``{}`` for the
    channel; ``health`` the health path, when the host has one; ``remote_addr`` what the
    engine is told about the client."""

    name: str
    core: FakeCore
    send: Callable[[str, str, bytes, Headers], Response]
    callbacks: str
    health: str | None
    remote_addr: str | None

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Headers | None = None
    ) -> Response:
        return self.send(method, path, body, headers or {})

    def post(self, channel: str, body: bytes, headers: Headers | None = None) -> Response:
        return self.request("POST", self.callbacks.format(channel), body, headers)


def _load_example(name: str) -> ModuleType:
    """Import docs/examples/<name>.py under a name of its own (once per process)."""
    module_name = f"ordercore_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def urllib_send(base_url: str) -> Callable[[str, str, bytes, Headers], Response]:
    def send(method: str, path: str, body: bytes, headers: Headers) -> Response:
        request = urllib.request.Request(
            base_url + path,
            data=body if method in ("POST", "PUT", "PATCH") else None,
            headers=dict(headers),
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Response(response.status, list(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, list(error.headers.items()), error.read())

    return send


@dataclass
class AsgiResult:
    messages: list[dict[str, Any]]
    receive_calls: int

    @property
    def response(self) -> Response:
        start, *bodies = self.messages
        assert start["type"] == "http.response.start"
        assert all(m["type"] == "http.response.body" for m in bodies)
        assert not bodies[-1].get("more_body", False)
        return Response(
            start["status"],
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]],
            b"".join(m.get("body", b"") for m in bodies),
        )


async def call_asgi(
    app: Any,
    method: str,
    path: str,
    chunks: Sequence[bytes] = (b"",),
    headers: Headers | None = None,
    *,
    root_path: str = "",
    client: tuple[str, int] | None = ("203.0.113.7", 40000),
    disconnect_after: int | None = None,
) -> AsgiResult:
    """A minimal ASGI server: one HTTP request whose body arrives in ``chunks``; after them
    (or after ``disconnect_after`` of them) ``receive`` reports a disconnect."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": root_path,
        "query_string": b"",
        "headers": [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        ],
        "client": client,
        "server": ("testserver", 80),
    }
    pending: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect_after is not None:
        pending = pending[:disconnect_after]
    received = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return AsgiResult(sent, received)


def asgi_send(app: Any) -> Callable[[str, str, bytes, Headers], Response]:
    def send(method: str, path: str, body: bytes, headers: Headers) -> Response:
        # The body in three pieces, as a server may deliver it.
        third = max(1, len(body) // 3)
        chunks = [body[:third], body[third : 2 * third], body[2 * third :]] if body else [b""]
        all_headers = {**headers}
        if body:
            all_headers.setdefault("Content-Length", str(len(body)))
        return asyncio.run(call_asgi(app, method, path, chunks, all_headers)).response

    return send


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
def server(core: FakeCore) -> Iterator[str]:
    srv, url = start_background_server(core)
    try:
        yield url
    finally:
        srv.shutdown()


def _http_driver(core: FakeCore) -> Iterator[Driver]:
    srv, url = start_background_server(core)
    try:
        yield Driver("http", core, urllib_send(url), "/callbacks/{}", "/health", "127.0.0.1")
    finally:
        srv.shutdown()


def _asgi_driver(core: FakeCore) -> Iterator[Driver]:
    app = make_asgi_app(core)
    yield Driver("asgi", core, asgi_send(app), "/callbacks/{}", "/health", "203.0.113.7")


def _werkzeug_send(client: Any) -> Callable[[str, str, bytes, Headers], Response]:
    def send(method: str, path: str, body: bytes, headers: Headers) -> Response:
        response = client.open(path, method=method, data=body, headers=dict(headers))
        return Response(response.status_code, list(response.headers.items()), response.data)

    return send


def _flask_mount_driver(core: FakeCore) -> Iterator[Driver]:
    pytest.importorskip("flask")
    app = _load_example("flask_app").create_app(core)
    client = app.test_client()
    yield Driver(
        "flask-mount", core, _werkzeug_send(client), "/pay/callbacks/{}", "/pay/health", "127.0.0.1"
    )


def _flask_route_driver(core: FakeCore) -> Iterator[Driver]:
    pytest.importorskip("flask")
    app = _load_example("flask_app").create_app_with_route(core)
    client = app.test_client()
    yield Driver(
        "flask-route", core, _werkzeug_send(client), "/shop/payments/{}/notify", None, "127.0.0.1"
    )


def _fastapi_driver(core: FakeCore) -> Iterator[Driver]:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        # Newer Starlette announces a move from httpx to httpx2; both work.
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient

    app = _load_example("fastapi_app").create_app(core)
    with TestClient(app) as client:

        def send(method: str, path: str, body: bytes, headers: Headers) -> Response:
            response = client.request(method, path, content=body, headers=dict(headers))
            return Response(response.status_code, response.headers.multi_items(), response.content)

        yield Driver("fastapi", core, send, "/pay/callbacks/{}", "/pay/health", "testclient")


def _django_driver(core: FakeCore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    django = pytest.importorskip("django")
    from django.conf import settings

    module = _load_example("django_app")
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="ordercore-tests",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=module.__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=[
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
            ],
            USE_TZ=True,
            ORDERCORE_DATABASE_URL="sqlite://",
        )
        django.setup()
    from django.test import Client

    monkeypatch.setattr(module, "get_core", lambda: core)
    # CSRF checks on, as in a real project: the view must be exempt.
    client = Client(enforce_csrf_checks=True)

    def send(method: str, path: str, body: bytes, headers: Headers) -> Response:
        extra = dict(headers)
        content_type = next(
            (extra.pop(name) for name in list(extra) if name.lower() == "content-type"),
            "application/octet-stream",
        )
        response = client.generic(method, path, data=body, content_type=content_type, headers=extra)
        return Response(response.status_code, list(response.headers.items()), response.content)

    yield Driver("django", core, send, "/pay/callbacks/{}", None, "127.0.0.1")


DRIVERS = ["http", "asgi", "flask-mount", "flask-route", "fastapi", "django"]
#: The hosts that mount the whole endpoint (the others route only the callback).
HEALTH_DRIVERS = {"http", "asgi", "flask-mount", "fastapi"}


@pytest.fixture(params=DRIVERS)
def driver(
    request: pytest.FixtureRequest, core: FakeCore, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Driver]:
    makers: dict[str, Callable[[], Iterator[Driver]]] = {
        "http": lambda: _http_driver(core),
        "asgi": lambda: _asgi_driver(core),
        "flask-mount": lambda: _flask_mount_driver(core),
        "flask-route": lambda: _flask_route_driver(core),
        "fastapi": lambda: _fastapi_driver(core),
        "django": lambda: _django_driver(core, monkeypatch),
    }
    yield from makers[request.param]()


# -- the same checks on every host -------------------------------------------------------------


def assert_reply_sent(response: Response, reply: HttpReply) -> None:
    assert response.status == reply.status
    assert response.body == reply.body
    for name, value in reply.headers.items():
        assert response.header(name) == value, name


def test_raw_body_and_lower_cased_headers_reach_the_engine(driver: Driver) -> None:
    response = driver.post("fake", RAW_BODY, ODD_HEADERS)

    [call] = driver.core.payments.calls
    assert call.channel == "fake"
    assert call.body == RAW_BODY
    assert all(name == name.lower() for name in call.headers)
    assert call.headers["x-pay-signature"] == "t=1,v1=abc=="
    assert call.headers["wechatpay-serial"] == "5157F09EFDC096DE15EBE81A47057A72"
    assert call.headers["content-type"] == "application/octet-stream"
    assert call.headers["content-length"] == str(len(RAW_BODY))
    assert call.remote_addr == driver.remote_addr
    assert_reply_sent(response, ACK)


def test_the_reply_is_sent_as_it_is(driver: Driver) -> None:
    plain = HttpReply(202, b"success", {"X-Platform": "ok"})  # no content-type: none added
    driver.core.payments.reply = plain
    response = driver.post("alipay", b"trade_status=TRADE_SUCCESS")
    assert_reply_sent(response, plain)
    assert response.header("Content-Type") is None
    assert driver.core.payments.calls[0].channel == "alipay"


def test_channel_names_with_dash_and_underscore(driver: Driver) -> None:
    response = driver.post("we-chat_v3", b"{}")
    assert_reply_sent(response, ACK)
    assert [c.channel for c in driver.core.payments.calls] == ["we-chat_v3"]


def test_the_engine_answers_an_unknown_channel(driver: Driver) -> None:
    response = driver.post("nosuchpay", b"{}")
    assert_reply_sent(response, UNKNOWN_CHANNEL)
    assert [c.channel for c in driver.core.payments.calls] == ["nosuchpay"]


@pytest.mark.parametrize("channel", ["Fake", "a" * 33, "bad.name", "bad%20name", "x$y"])
def test_a_malformed_channel_name_is_404_and_never_reaches_the_engine(
    driver: Driver, channel: str
) -> None:
    response = driver.post(channel, b"{}")
    assert response.status == 404
    assert driver.core.payments.calls == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_with_allow(driver: Driver, method: str) -> None:
    response = driver.request(method, driver.callbacks.format("fake"))
    assert response.status == 405
    allow = response.header("Allow")
    assert allow is not None
    assert "POST" in [m.strip() for m in allow.split(",")]
    assert driver.core.payments.calls == []


def test_a_body_over_one_mib_is_413(driver: Driver) -> None:
    response = driver.post("fake", b"x" * (MAX_BODY_SIZE + 1))
    assert response.status == 413
    assert driver.core.payments.calls == []


def test_a_body_of_exactly_one_mib_is_delivered(driver: Driver) -> None:
    body = bytes(range(256)) * (MAX_BODY_SIZE // 256)
    response = driver.post("fake", body)
    assert_reply_sent(response, ACK)
    assert driver.core.payments.calls[0].body == body


def test_an_engine_error_is_a_500_and_logged(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    driver.core.payments.error = RuntimeError("database went away")
    with caplog.at_level(logging.ERROR, logger="ordercore.web"):
        response = driver.post("fake", b"{}")
    assert response.status == 500
    assert response.json() == {"code": "FAIL", "message": "internal error"}
    assert "the callback for channel fake failed" in caplog.text
    assert "database went away" in caplog.text


@pytest.mark.parametrize("driver", [d for d in DRIVERS if d in HEALTH_DRIVERS], indirect=True)
def test_health(driver: Driver) -> None:
    assert driver.health is not None
    response = driver.request("GET", driver.health)
    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert response.header("Content-Type") == "application/json"
    wrong = driver.request("POST", driver.health, b"{}")
    assert wrong.status == 405
    assert wrong.header("Allow") == "GET, HEAD"


def test_unknown_paths_are_404(driver: Driver) -> None:
    prefix = driver.callbacks.split("/callbacks/")[0] if "/callbacks/" in driver.callbacks else ""
    for path in (f"{prefix}/", f"{prefix}/callbacks", f"{prefix}/callbacks/fake/x", "/nope"):
        assert driver.request("POST", path, b"{}").status == 404, path
    assert driver.core.payments.calls == []


# -- the development server, over real HTTP ----------------------------------------------------


def test_odd_header_casing_on_the_wire_and_repeated_headers(server: str, core: FakeCore) -> None:
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/callbacks/fake", skip_accept_encoding=True)
        connection.putheader("X-Pay-SIGNATURE", "sig")
        connection.putheader("x-REPEATED", "one")
        connection.putheader("X-Repeated", "two")
        connection.putheader("Content-Length", str(len(RAW_BODY)))
        connection.endheaders(RAW_BODY)
        response = connection.getresponse()
        status, header_items, body = response.status, response.getheaders(), response.read()
    finally:
        connection.close()
    [call] = core.payments.calls
    assert call.body == RAW_BODY
    assert call.headers["x-pay-signature"] == "sig"
    assert call.headers["x-repeated"] in ("one,two", "one, two")
    assert "content-type" not in call.headers  # none sent, none invented
    assert (status, body) == (ACK.status, ACK.body)
    # Header names go back exactly as the reply spells them.
    assert ("X-Ack-Id", "ack-42") in header_items
    assert ("Content-Type", "application/json; charset=utf-8") in header_items
    assert ("Content-Length", str(len(ACK.body))) in header_items


def test_head_health_has_no_body(server: str) -> None:
    request = urllib.request.Request(server + "/health", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(b'{"status":"ok"}'))
        assert response.read() == b""


def test_concurrent_deliveries_are_served_concurrently(server: str, core: FakeCore) -> None:
    core.payments.delay = SERIAL_DELAY
    send = urllib_send(server)

    def deliver(i: int) -> Response:
        return send("POST", "/callbacks/fake", f"delivery {i}".encode(), {})

    started = time.perf_counter()
    with ThreadPoolExecutor(DELIVERIES) as pool:
        responses = list(pool.map(deliver, range(DELIVERIES)))
    elapsed = time.perf_counter() - started

    assert [r.status for r in responses] == [200] * DELIVERIES
    assert sorted(c.body for c in core.payments.calls) == sorted(
        f"delivery {i}".encode() for i in range(DELIVERIES)
    )
    assert elapsed < DELIVERIES * SERIAL_DELAY / 2, f"{elapsed:.2f}s: deliveries were serialised"
    assert core.payments.peak >= DELIVERIES // 2


def test_prefix() -> None:
    core = FakeCore()
    srv, url = start_background_server(core, prefix="/pay/")
    try:
        send = urllib_send(url)
        assert send("POST", "/pay/callbacks/fake", b"a", {}).status == 200
        assert send("GET", "/pay/health", b"", {}).status == 200
        assert send("POST", "/callbacks/fake", b"b", {}).status == 404
        assert send("GET", "/health", b"", {}).status == 404
        assert send("POST", "/payx/callbacks/fake", b"c", {}).status == 404
    finally:
        srv.shutdown()
    assert [c.body for c in core.payments.calls] == [b"a"]


def test_shutdown_closes_the_socket(core: FakeCore) -> None:
    srv, url = start_background_server(core)
    srv.shutdown()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=2)


def test_health_runs_select_1_on_the_core_engine(tmp_path: Path) -> None:
    good = FakeCore(engine=create_engine(f"sqlite:///{tmp_path / 'ok.db'}"))
    broken = FakeCore(engine=create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    for fake, status, body in ((good, 200, {"status": "ok"}), (broken, 503, None)):
        srv, url = start_background_server(fake)
        try:
            response = urllib_send(url)("GET", "/health", b"", {})
        finally:
            srv.shutdown()
        assert response.status == status
        if body is not None:
            assert response.json() == body
        else:
            assert response.json() == {"status": "unavailable"}
    # Turned off: no query at all.
    srv, url = start_background_server(broken, check_database=False)
    try:
        assert urllib_send(url)("GET", "/health", b"", {}).status == 200
    finally:
        srv.shutdown()


def test_requests_are_logged_only_when_asked(
    core: FakeCore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ordercore.web"):
        for log_requests in (False, True):
            srv, url = start_background_server(core, log_requests=log_requests)
            try:
                urllib_send(url)("GET", f"/health?quiet={not log_requests}", b"", {})
            finally:
                srv.shutdown()
    access = [r.getMessage() for r in caplog.records if "GET /health" in r.getMessage()]
    assert len(access) == 1
    assert "quiet=False" in access[0]


def test_serve_runs_until_ctrl_c() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C is delivered to the main thread")
    import _thread

    core = FakeCore()
    answers: list[Response] = []

    def client(url: str) -> None:
        try:
            answers.append(urllib_send(url)("POST", "/callbacks/fake", b"via serve", {}))
        finally:
            _thread.interrupt_main()

    # A process started in the background by a shell ignores SIGINT, and then
    # interrupt_main() does nothing: give the main thread Python's own Ctrl-C handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        serve(
            core,
            "127.0.0.1",
            0,
            ready=lambda url: threading.Thread(target=client, args=(url,)).start(),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [a.status for a in answers] == [200]
    assert core.payments.calls[0].body == b"via serve"


# -- the WSGI app called directly --------------------------------------------------------------


def call_wsgi(app: Any, environ: dict[str, Any]) -> Response:
    import io

    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/callbacks/fake",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    base.update(environ)
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(app(base, start_response))
    status, headers = started[0]
    assert re.fullmatch(r"\d{3} .+", status)
    return Response(int(status[:3]), headers, body)


def test_wsgi_reads_only_content_length_bytes(core: FakeCore) -> None:
    import io

    app = make_wsgi_app(core)
    stream = io.BytesIO(b"abcdefNEXT-REQUEST")
    response = call_wsgi(app, {"CONTENT_LENGTH": "6", "wsgi.input": stream})
    assert response.status == 200
    assert core.payments.calls[0].body == b"abcdef"
    assert stream.read() == b"NEXT-REQUEST"


@pytest.mark.parametrize("length", ["-1", "abc", "1_0", "+5", "１２"])
def test_wsgi_bad_content_length_is_400(core: FakeCore, length: str) -> None:
    response = call_wsgi(make_wsgi_app(core), {"CONTENT_LENGTH": length})
    assert response.status == 400
    assert core.payments.calls == []


def test_wsgi_short_body_is_400(core: FakeCore) -> None:
    import io

    response = call_wsgi(
        make_wsgi_app(core), {"CONTENT_LENGTH": "10", "wsgi.input": io.BytesIO(b"short")}
    )
    assert response.status == 400
    assert core.payments.calls == []


def test_wsgi_without_content_length(core: FakeCore) -> None:
    import io

    app = make_wsgi_app(core, max_body_size=8)
    # A server that ends the input itself (chunked requests): read to the end, capped.
    ok = call_wsgi(app, {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"12345678")})
    big = call_wsgi(app, {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(b"123456789")})
    # A server that does not: a chunked body cannot be read safely.
    chunked = call_wsgi(
        app, {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": io.BytesIO(b"5\r\nhello")}
    )
    empty = call_wsgi(app, {})
    assert (ok.status, big.status, chunked.status, empty.status) == (200, 413, 411, 200)
    assert [c.body for c in core.payments.calls] == [b"12345678", b""]


def test_wsgi_mounted_by_script_name_routes_on_path_info(core: FakeCore) -> None:
    app = make_wsgi_app(core)
    response = call_wsgi(app, {"SCRIPT_NAME": "/pay", "PATH_INFO": "/callbacks/fake"})
    assert response.status == 200


# -- the ASGI app, driven by the harness -------------------------------------------------------


def test_asgi_raw_body_in_pieces(core: FakeCore) -> None:
    app = make_asgi_app(core)
    chunks = [RAW_BODY[:1], b"", RAW_BODY[1:5], RAW_BODY[5:]]
    result = asyncio.run(call_asgi(app, "POST", "/callbacks/fake", chunks, ODD_HEADERS))
    assert_reply_sent(result.response, ACK)
    [call] = core.payments.calls
    assert call.body == RAW_BODY
    assert call.headers == {
        "x-pay-signature": "t=1,v1=abc==",
        "wechatpay-serial": "5157F09EFDC096DE15EBE81A47057A72",
        "content-type": "application/octet-stream",
    }
    assert call.remote_addr == "203.0.113.7"


def test_asgi_runs_the_engine_off_the_event_loop(core: FakeCore) -> None:
    app = make_asgi_app(core)

    async def main() -> int:
        await call_asgi(app, "POST", "/callbacks/fake", [b"x"])
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert core.payments.calls[0].thread != loop_thread


def test_asgi_concurrent_deliveries(core: FakeCore) -> None:
    core.payments.delay = SERIAL_DELAY
    app = make_asgi_app(core)

    async def main() -> list[AsgiResult]:
        return await asyncio.gather(
            *(call_asgi(app, "POST", "/callbacks/fake", [b"%d" % i]) for i in range(DELIVERIES))
        )

    started = time.perf_counter()
    results = asyncio.run(main())
    elapsed = time.perf_counter() - started
    assert [r.response.status for r in results] == [200] * DELIVERIES
    assert elapsed < DELIVERIES * SERIAL_DELAY / 2, f"{elapsed:.2f}s: deliveries were serialised"
    assert core.payments.peak > 1


def test_asgi_declared_length_over_the_cap_is_refused_unread(core: FakeCore) -> None:
    app = make_asgi_app(core)
    result = asyncio.run(
        call_asgi(
            app,
            "POST",
            "/callbacks/fake",
            [b"x"],
            {"content-length": str(MAX_BODY_SIZE + 1)},
        )
    )
    assert result.response.status == 413
    assert result.receive_calls == 0
    assert core.payments.calls == []


def test_asgi_streamed_body_over_the_cap_is_413(core: FakeCore) -> None:
    app = make_asgi_app(core, max_body_size=10)
    result = asyncio.run(call_asgi(app, "POST", "/callbacks/fake", [b"123456", b"78901"]))
    assert result.response.status == 413
    assert core.payments.calls == []


def test_asgi_bad_content_length_is_400(core: FakeCore) -> None:
    app = make_asgi_app(core)
    result = asyncio.run(call_asgi(app, "POST", "/callbacks/fake", [b"x"], {"content-length": "x"}))
    assert result.response.status == 400


def test_asgi_client_gone_mid_body(core: FakeCore) -> None:
    app = make_asgi_app(core)
    result = asyncio.run(
        call_asgi(app, "POST", "/callbacks/fake", [b"part", b"rest"], disconnect_after=1)
    )
    assert result.messages == []
    assert core.payments.calls == []


@pytest.mark.parametrize(
    ("root_path", "path"),
    [
        ("/pay", "/pay/callbacks/fake"),  # path includes root_path (ASGI spec, Starlette >= 0.35)
        ("/pay", "/callbacks/fake"),  # path below root_path (older servers)
        ("", "/callbacks/fake"),
    ],
)
def test_asgi_mounted_under_root_path(core: FakeCore, root_path: str, path: str) -> None:
    app = make_asgi_app(core)
    result = asyncio.run(call_asgi(app, "POST", path, [b"x"], root_path=root_path))
    assert result.response.status == 200


def test_asgi_prefix(core: FakeCore) -> None:
    app = make_asgi_app(core, prefix="pay")
    ok = asyncio.run(call_asgi(app, "POST", "/pay/callbacks/fake", [b"x"]))
    missing = asyncio.run(call_asgi(app, "POST", "/callbacks/fake", [b"x"]))
    assert (ok.response.status, missing.response.status) == (200, 404)


def test_asgi_health_checks_the_database_in_a_thread(tmp_path: Path) -> None:
    good = make_asgi_app(FakeCore(engine=create_engine(f"sqlite:///{tmp_path / 'ok.db'}")))
    broken = make_asgi_app(
        FakeCore(engine=create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    )
    assert asyncio.run(call_asgi(good, "GET", "/health")).response.status == 200
    assert asyncio.run(call_asgi(broken, "GET", "/health")).response.status == 503
    head = asyncio.run(call_asgi(good, "HEAD", "/health")).response
    assert (head.status, head.body, head.header("content-length")) == (200, b"", "15")


def test_asgi_lifespan() -> None:
    app = make_asgi_app(FakeCore())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


def test_asgi_refuses_websockets() -> None:
    app = make_asgi_app(FakeCore())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "websocket", "path": "/callbacks/fake"}, receive, send))
    assert sent[0]["type"] == "websocket.close"


# -- deliver_callback, used by the framework routes --------------------------------------------


def test_deliver_callback_joins_repeated_headers(core: FakeCore) -> None:
    pairs = [("X-Sig", "a"), ("x-sig", "b"), ("Content-Type", "text/plain")]
    reply = deliver_callback(core, "fake", pairs, b"body", "10.1.1.1")
    assert reply is ACK
    assert core.payments.calls[0].headers == {"x-sig": "a, b", "content-type": "text/plain"}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "success",
        HttpReply(200, b"x", {"X-Bad": "line\r\nSet-Cookie: a=b"}),
        HttpReply(200, b"x", {"X-Bad": "中文"}),
        HttpReply(200, b"four", {"Content-Length": "99"}),
        HttpReply(42, b"x"),
    ],
)
def test_deliver_callback_refuses_an_unusable_reply(
    core: FakeCore, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    core.payments.reply = bad
    with caplog.at_level(logging.ERROR, logger="ordercore.web"):
        reply = deliver_callback(core, "fake", {}, b"x")
    assert reply.status == 500
    assert "unusable reply" in caplog.text


# -- the documentation -------------------------------------------------------------------------


def test_docs_include_every_example_and_existing_sections() -> None:
    text = WEB_DOC.read_text(encoding="utf-8")
    included = re.findall(r'--8<-- "([^"]+)"', text)
    files = {ref.split(":")[0] for ref in included}
    assert files == {f"docs/examples/{p.name}" for p in EXAMPLES.glob("*.py")}
    for ref in included:
        path, _, section = ref.partition(":")
        source = (ROOT / path).read_text(encoding="utf-8")
        if section:
            assert f"--8<-- [start:{section}]" in source, ref
            assert f"--8<-- [end:{section}]" in source, ref
