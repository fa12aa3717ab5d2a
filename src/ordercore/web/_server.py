"""The development server: the WSGI app on ``wsgiref`` with a bounded set of worker threads
(``ordercore serve``), and a background server for tests and demos."""

from __future__ import annotations

import contextlib
import io
import queue
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from ._apps import (
    _CHUNK,
    _DIGITS,
    _DRAIN_LIMIT,
    MAX_BODY_SIZE,
    MAX_HEADER_SIZE,
    CallbackCore,
    _normalise_prefix,
    logger,
    make_wsgi_app,
)

__all__ = [
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_THREADS",
    "BackgroundServer",
    "serve",
    "start_background_server",
    "threads_for",
]

#: Worker threads when the core says nothing of its connection pool (5 + 10, SQLAlchemy's).
DEFAULT_THREADS = 15
#: Seconds a client may stay silent while sending its request (headers or body): past that,
#: the connection is dropped (headers) or answered 408 (body).
DEFAULT_READ_TIMEOUT = 10.0
#: The ``Retry-After`` of a 503 answered when every worker is busy and the queue is full.
RETRY_AFTER = 2


def threads_for(core: object) -> int:
    """The worker threads that fit ``core``'s connection pool: ``pool_size`` +
    ``pool_max_overflow`` of its settings (each request holds one connection at a time),
    or :data:`DEFAULT_THREADS`."""
    settings = getattr(core, "settings", None)
    size = getattr(settings, "pool_size", None)
    overflow = getattr(settings, "pool_max_overflow", None)
    if isinstance(size, int) and isinstance(overflow, int):
        return size + overflow
    return DEFAULT_THREADS


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

    server: _ThreadingWSGIServer

    def setup(self) -> None:
        super().setup()
        # seconds a silent client may hold a worker
        self.connection.settimeout(self.server.read_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            logger.info("%s - %s", self.address_string(), format % args)

    def get_environ(self) -> dict[str, str]:
        environ = super().get_environ()
        if self.headers.get("content-type") is None:
            environ.pop("CONTENT_TYPE", None)  # wsgiref invents text/plain
        return environ

    def _read_head(self) -> bytes | None:
        """The header block, up to and including its blank line; None when the client
        stopped or went silent before it ended (nothing is processed then). Over the cap,
        the rest is read and dropped (so that the 431 reaches the client) and 431 sent."""
        limit = self.server.max_header_size
        lines: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(limit + 2)
            if not line:
                return None  # cut off inside the headers
            if line in (b"\r\n", b"\n"):
                lines.append(line)
                return b"".join(lines)
            size += len(line)
            if size > limit:
                break
            lines.append(line)
        self.requestline = str(self.raw_requestline, "latin-1").rstrip("\r\n")
        self.request_version, self.command = "HTTP/1.0", ""
        dropped = size
        while dropped <= _DRAIN_LIMIT:
            line = self.rfile.readline(_CHUNK)
            if not line or line in (b"\r\n", b"\n"):
                break
            dropped += len(line)
        self.close_connection = True
        self.send_error(431, "Request Header Fields Too Large")
        return b""

    def handle(self) -> None:
        # wsgiref's handle(), with headers read to their blank line under a size cap, a body
        # that ends at its content-length, multithread=True, and the unread rest of the body
        # drained before the connection closes.
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            head = self._read_head()
        except (TimeoutError, ConnectionError):
            return  # a client that stalled or left before its headers ended
        if not head:
            return
        wire, self.rfile = self.rfile, io.BytesIO(head)
        try:
            parsed = self.parse_request()
        finally:
            self.rfile = wire
        if not parsed:
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
        with contextlib.suppress(OSError, ValueError):
            body.drain(_DRAIN_LIMIT)


_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Server: ordercore\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: %d\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
_BUSY_BODY = b'{"code":"FAIL","message":"busy, retry later"}'


class _ThreadingWSGIServer(WSGIServer):
    """wsgiref's server with a fixed set of worker threads, so that deliveries run
    concurrently without outnumbering the database connections.

    A connection is handed to an idle worker, or waits in a queue of at most ``backlog``
    connections; past that the server is saturated and answers ``503`` with
    ``Retry-After`` at once (from a closer thread that reads what the client sent first,
    so that the answer is not lost to a connection reset)."""

    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        log_requests: bool,
        threads: int = DEFAULT_THREADS,
        backlog: int | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_header_size: int = MAX_HEADER_SIZE,
        retry_after: int = RETRY_AFTER,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.log_requests = log_requests
        self.threads = threads
        self.backlog = threads if backlog is None else backlog
        if self.backlog < 0:
            raise ValueError("backlog must not be negative")
        self.read_timeout = read_timeout
        self.max_header_size = max_header_size
        self.retry_after = retry_after
        self._slots = threading.Semaphore(threads + self.backlog)
        self._work: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._busy: queue.Queue[Any] = queue.Queue(maxsize=64)
        self._workers: list[threading.Thread] = []
        self.rejected = 0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)
        for i in range(threads):
            worker = threading.Thread(
                target=self._serve_connections, name=f"ordercore.web worker {i}", daemon=True
            )
            worker.start()
            self._workers.append(worker)
        closer = threading.Thread(target=self._close_busy, name="ordercore.web 503", daemon=True)
        closer.start()
        self._workers.append(closer)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            self._work.put((request, client_address))
            return
        self.rejected += 1
        try:
            self._busy.put_nowait(request)
        except queue.Full:
            self.shutdown_request(request)

    def _serve_connections(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                self._slots.release()

    def _close_busy(self) -> None:
        answer = _BUSY % (self.retry_after, len(_BUSY_BODY), _BUSY_BODY)
        while True:
            request = self._busy.get()
            if request is None:
                return
            try:
                request.settimeout(0.25)
                with contextlib.suppress(OSError):
                    _read_some(request, self.max_header_size)
                    request.sendall(answer)
                    request.shutdown(socket.SHUT_WR)
                    _read_some(request, _DRAIN_LIMIT)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        for _ in range(self.threads):
            self._work.put(None)
        with contextlib.suppress(queue.Full):
            self._busy.put(None, timeout=1)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error while serving %s", client_address, exc_info=True)

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:8000``."""
        host = self.server_name
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server_port}"


def _read_some(sock: socket.socket, limit: int) -> None:
    """Read and drop what the client sends, ``limit`` bytes at most, until it stops or
    pauses (the socket's timeout)."""
    total = 0
    while total < limit:
        try:
            data = sock.recv(_CHUNK)
        except TimeoutError:
            return
        if not data:
            return
        total += len(data)


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
    max_header_size: int,
    check_database: bool,
    threads: int | None,
    backlog: int | None,
    read_timeout: float,
) -> _ThreadingWSGIServer:
    server = server_class(
        (host, port),
        log_requests=log_requests,
        threads=threads_for(core) if threads is None else threads,
        backlog=backlog,
        read_timeout=read_timeout,
        max_header_size=max_header_size,
    )
    server.set_app(
        make_wsgi_app(
            core,
            prefix=prefix,
            max_body_size=max_body_size,
            max_header_size=max_header_size,
            check_database=check_database,
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
    max_header_size: int = MAX_HEADER_SIZE,
    check_database: bool = True,
    threads: int | None = None,
    backlog: int | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> None:
    """Serve the WSGI app for development until Ctrl-C, on ``threads`` worker threads
    (default: :func:`threads_for` the core — its connection pool, so that no request waits
    for a connection). Up to ``backlog`` (default: ``threads``) more connections wait for a
    worker; past that the answer is ``503`` with ``Retry-After``. A client silent for
    ``read_timeout`` seconds is dropped (inside its headers) or answered 408 (inside its
    body); headers over ``max_header_size`` bytes are answered 431.

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
        max_header_size=max_header_size,
        check_database=check_database,
        threads=threads,
        backlog=backlog,
        read_timeout=read_timeout,
    )
    try:
        logger.info(
            "ordercore.web serving on %s%s with %d threads",
            server.url,
            _normalise_prefix(prefix),
            server.threads,
        )
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
    max_header_size: int = MAX_HEADER_SIZE,
    check_database: bool = True,
    threads: int | None = None,
    backlog: int | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> tuple[BackgroundServer, str]:
    """Start the development server in a daemon thread and return it with its base URL
    (``port=0`` picks a free port); the other arguments are :func:`serve`'s. For tests and
    demos; ``server.shutdown()`` stops it.

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
        max_header_size=max_header_size,
        check_database=check_database,
        threads=threads,
        backlog=backlog,
        read_timeout=read_timeout,
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
