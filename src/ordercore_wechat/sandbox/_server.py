"""The sandbox's HTTP plumbing: a threading server on loopback and the answers it sends."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
from attrs import frozen

__all__ = ["Answer", "Server", "serve"]

#: ``(method, target, headers with lower-case names, body)`` → the answer.
Handler = Callable[[str, str, Mapping[str, str], bytes], "Answer"]


@frozen
class Answer:
    """One HTTP answer; ``hang`` holds the connection that long, then drops it without an
    answer (a timeout); ``drop`` drops it at once."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    hang: float = 0.0
    drop: bool = False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    handler: Handler

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (the timeout fault) is not news


class _Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "ordercore-wechat-sandbox"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length_text = self.headers.get("content-length") or "0"
        length = int(length_text) if length_text.isdigit() else 0
        self._serve(self.rfile.read(min(length, 4 * 1024 * 1024)))

    def _serve(self, body: bytes) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.handler(self.command, self.path, headers, body)
        if answer.hang:
            time.sleep(answer.hang)
        if answer.hang or answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        if answer.content_type and answer.body:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)


def serve(host: str, port: int, handler: Handler) -> Server:
    """A started-later server bound to ``host:port`` (0: a free port)."""
    server = Server((host, port), _Handler)
    server.handler = handler
    return server
