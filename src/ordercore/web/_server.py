"""The development server: the WSGI app on ``wsgiref`` with a thread per connection
(``ordercore serve``), and a background server for tests and demos."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    pass

from ._apps import (
    _CHUNK,
    _DIGITS,
    _DRAIN_LIMIT,
    MAX_BODY_SIZE,
    CallbackCore,
    _normalise_prefix,
    logger,
    make_wsgi_app,
)

__all__ = ["BackgroundServer", "serve", "start_background_server"]


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
