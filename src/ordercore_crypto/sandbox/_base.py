"""What the three sandbox gateways share: an HTTP server on loopback (standard library, one
thread per connection), faults to inject, and webhook delivery over real HTTP."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from attrs import field, frozen

__all__ = ["FAULTS", "GatewaySandbox", "SandboxError", "SandboxNotification"]

#: Faults :meth:`GatewaySandbox.fail_next` can inject into the next API call.
FAULTS: Final = frozenset({"http500", "drop", "timeout"})


class SandboxError(Exception):
    """A test asked the sandbox for something it does not have."""


@frozen
class SandboxNotification:
    """A notification as the gateway sends it: headers and raw body (not yet delivered)."""

    url: str | None
    headers: Mapping[str, str] = field(factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        sandbox = self.server.sandbox
        fault = sandbox._take_fault()
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "timeout":
            time.sleep(sandbox.hang_seconds)
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer: Any
        if fault == "http500":
            status, answer = 500, {"code": "server-error", "message": "injected fault"}
        else:
            with sandbox._lock:
                status, answer = sandbox.handle(self.command, self.path, headers, body)
        data = json.dumps(answer, indent=2).encode() if not isinstance(answer, bytes) else answer
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sandbox: GatewaySandbox, host: str, port: int) -> None:
        self.sandbox = sandbox
        super().__init__((host, port), _Handler)


class GatewaySandbox:
    """A gateway on loopback. Subclasses answer :meth:`handle` and play the payer."""

    name = "gateway"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, hang_seconds: float = 3.0):
        self.host, self.port = host, port
        self.hang_seconds = hang_seconds
        self._lock = threading.RLock()
        self._faults: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: every delivery made: ``(url, HTTP status or None, reply body)``
        self.deliveries: list[tuple[str, int | None, bytes]] = []
        #: every API request served: ``(method, path)``
        self.requests: list[tuple[str, str]] = []
        #: the gateway's clock (invoice expiry, payment times); replace it to move time
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self.clock()

    def config_table(self, directory: Path, notify_url: str | None = None) -> str:
        """The ``[channels.NAME]`` table for this sandbox, its secrets written to files in
        ``directory``."""
        raise NotImplementedError

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> Any:
        if self._server is None:
            self._server = _Server(self, self.host, self.port)
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise SandboxError("the sandbox is not running: start() it")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- faults -------------------------------------------------------------------------------
    def fail_next(self, fault: str) -> None:
        """The next API call meets ``fault``: ``http500``, ``drop`` (connection closed with
        no answer) or ``timeout`` (answered after ``hang_seconds``)."""
        if fault not in FAULTS:
            raise SandboxError(f"unknown fault {fault!r} (known: {', '.join(sorted(FAULTS))})")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    # -- the API --------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        raise NotImplementedError

    # -- delivery -------------------------------------------------------------------------------
    def deliver(
        self, notification: SandboxNotification, url: str | None = None
    ) -> tuple[int | None, bytes]:
        """POST ``notification`` to ``url`` (default: its own); ``(status, body)``, status None
        when nothing answered."""
        target = url or notification.url
        if not target:
            raise SandboxError("no notify URL to deliver to")
        request = urllib.request.Request(
            target, data=notification.body, headers=dict(notification.headers), method="POST"
        )
        status: int | None
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, data = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status, data = int(exc.code), exc.read()
        except OSError:
            status, data = None, b""
        self.deliveries.append((target, status, data))
        return status, data

    @staticmethod
    def new_id(prefix: str = "") -> str:
        return prefix + secrets.token_hex(8)

    @staticmethod
    def write_secret(directory: Path, name: str, value: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
        return path
