"""The WSGI and ASGI apps of the callback endpoint (see :mod:`ordercore.web`)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import text

from ordercore.channels import HttpReply

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_HEADER_SIZE",
    "AsgiApp",
    "CallbackCore",
    "PaymentCallbacks",
    "WsgiApp",
    "deliver_callback",
    "make_asgi_app",
    "make_wsgi_app",
]

logger = logging.getLogger("ordercore.web")

#: The largest callback body accepted, in bytes (1 MiB); a larger one is answered with 413.
MAX_BODY_SIZE = 1024 * 1024
#: The largest total size of a request's headers (names and values), in bytes (64 KiB); a
#: request with more is answered with 431 before any of it reaches the engine.
MAX_HEADER_SIZE = 64 * 1024

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


def _headers_too_large(limit: int) -> HttpReply:
    return _error(431, f"the request headers are larger than {limit} bytes")


def _header_size(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> int:
    """The headers' size as sent: ``name: value`` and a line break each."""
    pairs: Iterable[tuple[str, str]] = headers.items() if isinstance(headers, Mapping) else headers
    return sum(len(name) + len(value) + 4 for name, value in pairs)


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
    max_header_size: int = MAX_HEADER_SIZE,
) -> HttpReply:
    """Pass one notification to ``core.payments.handle_callback`` the way the endpoint does,
    for hosts that route callbacks through their own framework (a Flask route, a Django view).

    The channel name is checked (404), the body size capped (413), the headers' total size
    capped (431: ``name: value`` and a line break each), header names lower-cased
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
    if not isinstance(headers, Mapping):
        headers = list(headers)
    if _header_size(headers) > max_header_size:
        return _headers_too_large(max_header_size)
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
        max_header_size: int = MAX_HEADER_SIZE,
        check_database: bool = True,
    ) -> None:
        if max_body_size < 0:
            raise ValueError("max_body_size must not be negative")
        if max_header_size < 0:
            raise ValueError("max_header_size must not be negative")
        self.core = core
        self.prefix = _normalise_prefix(prefix)
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
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
        headers = _wsgi_headers(environ)
        if _header_size(headers) > self.max_header_size:
            return _headers_too_large(self.max_header_size)
        try:
            body = self._read_body(environ)
        except TimeoutError:
            return _error(408, "the body did not arrive in time")
        except (OSError, ValueError) as exc:
            logger.info("could not read a callback body: %r", exc)
            return _error(400, "the body could not be read")
        if isinstance(body, HttpReply):
            return body
        remote_addr = environ.get("REMOTE_ADDR") or None
        return deliver_callback(
            self.core,
            route,
            headers,
            body,
            remote_addr,
            max_body_size=self.max_body_size,
            max_header_size=self.max_header_size,
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
            if _header_size(headers) > self.max_header_size:
                reply = _headers_too_large(self.max_header_size)
                await _send_reply(send, method, reply)
                return
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
                    max_header_size=self.max_header_size,
                )
        await _send_reply(send, method, reply)

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


async def _send_reply(send: ASGISend, method: str, reply: HttpReply) -> None:
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
    max_header_size: int = MAX_HEADER_SIZE,
    check_database: bool = True,
) -> WsgiApp:
    """The WSGI application serving ``POST {prefix}/callbacks/{channel}`` and
    ``GET {prefix}/health``.

    :param core: the ``OrderCore`` (anything with ``payments.handle_callback``)
    :param prefix: a path the app answers below, e.g. ``"/pay"``, when it is served on its own;
        leave it empty when the host mounts the app under a path (``SCRIPT_NAME``)
    :param max_body_size: the largest body accepted, in bytes
    :param max_header_size: the largest total size of the headers, in bytes (431 above)
    :param check_database: run ``SELECT 1`` through ``core.engine`` on ``/health``
    """
    return WsgiApp(
        core,
        prefix=prefix,
        max_body_size=max_body_size,
        max_header_size=max_header_size,
        check_database=check_database,
    )


def make_asgi_app(
    core: CallbackCore,
    *,
    prefix: str = "",
    max_body_size: int = MAX_BODY_SIZE,
    max_header_size: int = MAX_HEADER_SIZE,
    check_database: bool = True,
) -> AsgiApp:
    """The ASGI application with the same routes as ``make_wsgi_app``. It answers the
    lifespan protocol (startup and shutdown complete at once).

    :param prefix: a path the app answers below when it is served on its own; leave it empty
        when the host mounts the app (``root_path``), e.g. FastAPI's ``app.mount``
    """
    return AsgiApp(
        core,
        prefix=prefix,
        max_body_size=max_body_size,
        max_header_size=max_header_size,
        check_database=check_database,
    )
