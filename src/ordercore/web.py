"""The HTTP endpoint that receives payment notifications: a WSGI app and an ASGI app, written
with the standard library only, so that any host — Flask, FastAPI, Django, gunicorn, uvicorn —
can mount it.

Routes, below an optional mount ``prefix``:

``POST /callbacks/{channel}``
    A platform's notification. ``channel`` must match ``[a-z0-9_-]{1,32}`` (404 otherwise).
    The raw body (at most ``MAX_BODY_SIZE`` bytes, 413 above) is passed byte for byte, with
    the header names lower-cased, to ``core.payments.handle_callback``, and the
    ``HttpReply`` it returns is sent back as it is: status, body and
    headers (``Content-Length`` is added when the reply has none).
``GET /health`` (and ``HEAD``)
    ``200 {"status":"ok"}``. When the core has an ``engine``, a ``SELECT 1`` runs first, and a
    database that does not answer gives ``503 {"status":"unavailable"}``.

Any other path is a 404; a known path with another method is a 405 with an ``Allow`` header.
The endpoint's own error answers are JSON: ``{"code":"FAIL","message":"..."}``. An exception
escaping ``handle_callback`` is logged (logger ``ordercore.web``) and answered with a 500, so
that the platform delivers the notification again.

Header values reach ``handle_callback`` as WSGI carries them: ``str`` decoded as latin-1, so
``value.encode("latin-1")`` gives back the bytes on the wire. Repeated headers are joined with
``", "``. ``remote_addr`` is the peer address the server saw; behind a proxy, fix it in the
server or middleware (e.g. werkzeug's ``ProxyFix``, uvicorn's ``--forwarded-allow-ips``).

``serve`` runs the WSGI app on ``wsgiref`` with one thread per connection, for
development (``ordercore serve``); use a production server (gunicorn, uvicorn, waitress...) in
production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import socketserver
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any, Protocol, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from sqlalchemy import text

from .channels import HttpReply

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "MAX_BODY_SIZE",
    "AsgiApp",
    "BackgroundServer",
    "CallbackCore",
    "PaymentCallbacks",
    "WsgiApp",
    "deliver_callback",
    "make_asgi_app",
    "make_wsgi_app",
    "serve",
    "start_background_server",
]

logger = logging.getLogger("ordercore.web")

#: The largest callback body accepted, in bytes (1 MiB); a larger one is answered with 413.
MAX_BODY_SIZE = 1024 * 1024

_CHANNEL = re.compile(r"[a-z0-9_-]{1,32}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_CHUNK = 64 * 1024
_JSON = "application/json"
_HEALTH_OK = b'{"status":"ok"}'
_HEALTH_DOWN = b'{"status":"unavailable"}'
#: How much of an unread request body the development server reads and throws away before it
#: closes the connection (closing with unread data makes the kernel reset the connection, and
#: the client may then lose the answer, e.g. a 413).
_DRAIN_LIMIT = 8 * MAX_BODY_SIZE

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]


class PaymentCallbacks(Protocol):
    """What the endpoint calls: ``core.payments``."""

    def handle_callback(
        self,
        channel: str,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None,
    ) -> HttpReply: ...


class CallbackCore(Protocol):
    """What the endpoint needs of the core: ``OrderCore``, or any object with
    a ``payments`` attribute (and, optionally, an ``engine`` for the health check)."""

    @property
    def payments(self) -> PaymentCallbacks: ...


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> HttpReply:
    body = json.dumps({"code": "FAIL", "message": message}, separators=(",", ":"))
    return HttpReply(status, body.encode("ascii"), {"Content-Type": _JSON, **(headers or {})})


def _too_large(limit: int) -> HttpReply:
    return _error(413, f"the body is larger than {limit} bytes")


_NOT_FOUND = _error(404, "not found")


def _lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs: Iterable[tuple[str, str]] = headers.items() if isinstance(headers, Mapping) else headers
    lowered: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
    return lowered


def _reply_problem(reply: object) -> str | None:
    """Why ``reply`` cannot be sent as it is, or None."""
    if not isinstance(reply, HttpReply):
        return f"handle_callback returned {type(reply).__name__}, not HttpReply"
    if not 100 <= reply.status <= 599:
        return f"status {reply.status} is not an HTTP status"
    body: object = reply.body
    if not isinstance(body, bytes):
        return "the body is not bytes"
    for name, value in reply.headers.items():
        try:
            name.encode("latin-1")
            value.encode("latin-1")
        except (AttributeError, UnicodeEncodeError):
            return f"header {name!r} is not latin-1 text"
        if not name or any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
            return f"header {name!r} is malformed"
        if name.lower() == "content-length" and value.strip() != str(len(reply.body)):
            return "its content-length does not match the body"
    return None


def deliver_callback(
    core: CallbackCore,
    channel: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    remote_addr: str | None = None,
    *,
    max_body_size: int = MAX_BODY_SIZE,
) -> HttpReply:
    """Pass one notification to ``core.payments.handle_callback`` the way the endpoint does,
    for hosts that route callbacks through their own framework (a Flask route, a Django view).

    The channel name is checked (404), the body size capped (413), header names lower-cased
    (repeated headers joined with ``", "``), and an exception or an unusable reply from the
    engine is logged and answered with a 500. Never raises.

    :param headers: the request headers, as a mapping or as ``(name, value)`` pairs, in any case
    :param body: the raw request body, untouched
    :param remote_addr: the peer address, when known
    """
    if not _CHANNEL.fullmatch(channel):
        return _NOT_FOUND
    if len(body) > max_body_size:
        return _too_large(max_body_size)
    try:
        lowered = _lower_headers(headers)
        reply = core.payments.handle_callback(channel, lowered, body, remote_addr)
    except Exception:
        logger.exception("the callback for channel %s failed", channel)
        return _error(500, "internal error")
    problem = _reply_problem(reply)
    if problem is not None:
        logger.error("the callback for channel %s got an unusable reply: %s", channel, problem)
        return _error(500, "internal error")
    return reply


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix


def _response_headers(reply: HttpReply) -> list[tuple[str, str]]:
    headers = list(reply.headers.items())
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(reply.body))))
    return headers


class _Endpoint:
    """What the WSGI and the ASGI apps share: routing, the health check, settings."""

    def __init__(
        self,
        core: CallbackCore,
        *,
        prefix: str = "",
        max_body_size: int = MAX_BODY_SIZE,
        check_database: bool = True,
    ) -> None:
        if max_body_size < 0:
            raise ValueError("max_body_size must not be negative")
        self.core = core
        self.prefix = _normalise_prefix(prefix)
        self.max_body_size = max_body_size
        self.check_database = check_database

    def _route(self, method: str, path: str) -> HttpReply | str:
        """The reply for ``method path`` when it is not a callback, else the channel name."""
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return _NOT_FOUND
            path = path[len(self.prefix) :]
        if path == "/health":
            if method not in ("GET", "HEAD"):
                return _error(405, "method not allowed", {"Allow": "GET, HEAD"})
            return ""
        if path.startswith("/callbacks/"):
            channel = path[len("/callbacks/") :]
            if _CHANNEL.fullmatch(channel):
                if method != "POST":
                    return _error(405, "method not allowed", {"Allow": "POST"})
                return channel
        return _NOT_FOUND

    def _needs_database(self) -> bool:
        return self.check_database and getattr(self.core, "engine", None) is not None

    def _health(self) -> HttpReply:
        headers = {"Content-Type": _JSON, "Cache-Control": "no-store"}
        if self._needs_database():
            try:
                with self.core.engine.connect() as connection:  # type: ignore[attr-defined]
                    connection.execute(text("SELECT 1"))
            except Exception:
                logger.warning("health check: the database did not answer", exc_info=True)
                return HttpReply(503, _HEALTH_DOWN, headers)
        return HttpReply(200, _HEALTH_OK, headers)


class WsgiApp(_Endpoint):
    """The WSGI application (see ``make_wsgi_app``). Mounted under a path by the host
    (``SCRIPT_NAME``), it routes on ``PATH_INFO``."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        reply = self._respond(method, environ)
        phrase = _phrase(reply.status)
        start_response(f"{reply.status} {phrase}", _response_headers(reply))
        return [] if method == "HEAD" else [reply.body]

    def _respond(self, method: str, environ: WSGIEnvironment) -> HttpReply:
        route = self._route(method, str(environ.get("PATH_INFO", "")) or "/")
        if isinstance(route, HttpReply):
            return route
        if not route:
            return self._health()
        body = self._read_body(environ)
        if isinstance(body, HttpReply):
            return body
        remote_addr = environ.get("REMOTE_ADDR") or None
        return deliver_callback(
            self.core,
            route,
            _wsgi_headers(environ),
            body,
            remote_addr,
            max_body_size=self.max_body_size,
        )

    def _read_body(self, environ: WSGIEnvironment) -> bytes | HttpReply:
        stream = environ.get("wsgi.input")
        declared = str(environ.get("CONTENT_LENGTH") or "").strip()
        if declared:
            if not _DIGITS.fullmatch(declared):
                return _error(400, "bad content-length")
            length = int(declared)
            if length > self.max_body_size:
                return _too_large(self.max_body_size)
            body = _read(stream, length)
            if len(body) < length:
                return _error(400, "the body ended before its content-length")
            return body
        if environ.get("wsgi.input_terminated"):
            body = _read(stream, self.max_body_size + 1)
            if len(body) > self.max_body_size:
                return _too_large(self.max_body_size)
            return body
        if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
            return _error(411, "this server needs a content-length")
        return b""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _read(stream: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``stream``: fewer only at its end."""
    if stream is None or limit <= 0:
        return b""
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _wsgi_headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if not value:
                continue
            name = key
        else:
            continue
        headers.append((name.replace("_", "-").lower(), str(value)))
    return headers


class AsgiApp(_Endpoint):
    """The ASGI application (see ``make_asgi_app``). ``handle_callback`` and the health
    check's query run in a worker thread (``to_thread``), never on the event loop.
    Mounted under a path by the host (``root_path``), it routes on the rest of the path."""

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})
        else:
            raise ValueError(f"ordercore.web cannot serve ASGI {kind!r} connections")

    async def _http(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        method = str(scope.get("method", "GET")).upper()
        route = self._route(method, _asgi_path(scope))
        if isinstance(route, HttpReply):
            reply = route
        elif not route:
            reply = (
                await asyncio.to_thread(self._health) if self._needs_database() else self._health()
            )
        else:
            headers = _asgi_headers(scope)
            body = await self._read_body(headers.get("content-length"), receive)
            if body is None:
                return  # the client went away: nobody to answer
            if isinstance(body, HttpReply):
                reply = body
            else:
                client = scope.get("client")
                remote_addr = str(client[0]) if client else None
                reply = await asyncio.to_thread(
                    deliver_callback,
                    self.core,
                    route,
                    headers,
                    body,
                    remote_addr,
                    max_body_size=self.max_body_size,
                )
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in _response_headers(reply)
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else reply.body})

    async def _read_body(
        self, declared: str | None, receive: ASGIReceive
    ) -> bytes | HttpReply | None:
        if declared is not None:
            declared = declared.strip()
            if not _DIGITS.fullmatch(declared):
                return _error(400, "bad content-length")
            if int(declared) > self.max_body_size:
                return _too_large(self.max_body_size)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_size:
                    return _too_large(self.max_body_size)
                parts.append(bytes(chunk))
            if not message.get("more_body", False):
                return b"".join(parts)


def _asgi_path(scope: ASGIScope) -> str:
    """The path below the mount point. Servers and frameworks disagree on whether ``path``
    includes ``root_path``; accept both, as Starlette does."""
    path = str(scope.get("path", "")) or "/"
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path


def _asgi_headers(scope: ASGIScope) -> dict[str, str]:
    return _lower_headers(
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in scope.get("headers", ())
    )


async def _lifespan(receive: ASGIReceive, send: ASGISend) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_wsgi_app(
    core: CallbackCore,
    *,
    prefix: str = "",
    max_body_size: int = MAX_BODY_SIZE,
    check_database: bool = True,
) -> WsgiApp:
    """The WSGI application serving ``POST {prefix}/callbacks/{channel}`` and
    ``GET {prefix}/health``.

    :param core: the ``OrderCore`` (anything with ``payments.handle_callback``)
    :param prefix: a path the app answers below, e.g. ``"/pay"``, when it is served on its own;
        leave it empty when the host mounts the app under a path (``SCRIPT_NAME``)
    :param max_body_size: the largest body accepted, in bytes
    :param check_database: run ``SELECT 1`` through ``core.engine`` on ``/health``
    """
    return WsgiApp(core, prefix=prefix, max_body_size=max_body_size, check_database=check_database)


def make_asgi_app(
    core: CallbackCore,
    *,
    prefix: str = "",
    max_body_size: int = MAX_BODY_SIZE,
    check_database: bool = True,
) -> AsgiApp:
    """The ASGI application with the same routes as ``make_wsgi_app``. It answers the
    lifespan protocol (startup and shutdown complete at once).

    :param prefix: a path the app answers below when it is served on its own; leave it empty
        when the host mounts the app (``root_path``), e.g. FastAPI's ``app.mount``
    """
    return AsgiApp(core, prefix=prefix, max_body_size=max_body_size, check_database=check_database)


# -- the development server ---------------------------------------------------------------------


class _BoundedInput:
    """The request body as WSGI input: ends at the content-length (wsgiref passes the raw
    socket file, which blocks when read further) and can throw away what the app left."""

    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._remaining = length

    def read(self, size: int = -1, /) -> bytes:
        if self._remaining <= 0:
            return b""
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        data: bytes = self._stream.read(size)
        self._remaining -= len(data)
        if not data:
            self._remaining = 0
        return data

    def readline(self, size: int = -1, /) -> bytes:
        if self._remaining <= 0:
            return b""
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        data: bytes = self._stream.readline(size)
        self._remaining -= len(data)
        if not data:
            self._remaining = 0
        return data

    def readlines(self, hint: int = -1, /) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body, if at most ``limit`` bytes; True when done."""
        if self._remaining > limit:
            return False
        while self._remaining > 0:
            if not self.read(_CHUNK):
                break
        return True


class _RequestHandler(WSGIRequestHandler):
    server_version = "ordercore"
    timeout = 30  # seconds a silent client may hold a thread

    server: _ThreadingWSGIServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            logger.info("%s - %s", self.address_string(), format % args)

    def get_environ(self) -> dict[str, str]:
        environ = super().get_environ()
        if self.headers.get("content-type") is None:
            environ.pop("CONTENT_TYPE", None)  # wsgiref invents text/plain
        return environ

    def handle(self) -> None:
        # wsgiref's handle(), with a body that ends at its content-length, multithread=True,
        # and the unread rest of the body drained before the connection closes.
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        declared = (self.headers.get("content-length") or "").strip()
        length = int(declared) if _DIGITS.fullmatch(declared) else 0
        body = _BoundedInput(self.rfile, length)
        handler = ServerHandler(
            body,
            cast(IO[bytes], self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            body.drain(_DRAIN_LIMIT)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per connection, so that deliveries run concurrently."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, log_requests: bool) -> None:
        self.log_requests = log_requests
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error while serving %s", client_address, exc_info=True)

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:8000``."""
        host = self.server_name
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server_port}"


class BackgroundServer(_ThreadingWSGIServer):
    """A development server running in a daemon thread (see ``start_background_server``);
    ``shutdown()`` stops it, closes its socket and waits for the thread."""

    _thread: threading.Thread | None = None

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def _make_server(
    server_class: type[_ThreadingWSGIServer],
    core: CallbackCore,
    host: str,
    port: int,
    *,
    prefix: str,
    log_requests: bool,
    max_body_size: int,
    check_database: bool,
) -> _ThreadingWSGIServer:
    server = server_class((host, port), log_requests=log_requests)
    server.set_app(
        make_wsgi_app(
            core, prefix=prefix, max_body_size=max_body_size, check_database=check_database
        )
    )
    return server


def serve(
    core: CallbackCore,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    prefix: str = "",
    log_requests: bool = False,
    ready: Callable[[str], object] | None = None,
    max_body_size: int = MAX_BODY_SIZE,
    check_database: bool = True,
) -> None:
    """Serve the WSGI app for development, one thread per connection, until Ctrl-C.

    Quiet unless ``log_requests`` is true: then each request is logged at INFO on the
    ``ordercore.web`` logger. ``ready`` is called with the base URL once the socket listens
    (useful with ``port=0``, which picks a free port).
    """
    server = _make_server(
        _ThreadingWSGIServer,
        core,
        host,
        port,
        prefix=prefix,
        log_requests=log_requests,
        max_body_size=max_body_size,
        check_database=check_database,
    )
    try:
        logger.info("ordercore.web serving on %s%s", server.url, _normalise_prefix(prefix))
        if ready is not None:
            ready(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start_background_server(
    core: CallbackCore,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    prefix: str = "",
    log_requests: bool = False,
    max_body_size: int = MAX_BODY_SIZE,
    check_database: bool = True,
) -> tuple[BackgroundServer, str]:
    """Start the development server in a daemon thread and return it with its base URL
    (``port=0`` picks a free port). For tests and demos; ``server.shutdown()`` stops it.

    ::

        server, url = start_background_server(core)
        try:
            urllib.request.urlopen(f"{url}/health")
        finally:
            server.shutdown()
    """
    server = _make_server(
        BackgroundServer,
        core,
        host,
        port,
        prefix=prefix,
        log_requests=log_requests,
        max_body_size=max_body_size,
        check_database=check_database,
    )
    assert isinstance(server, BackgroundServer)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"ordercore.web {server.url}",
        daemon=True,
    )
    server._thread = thread
    thread.start()
    return server, server.url
