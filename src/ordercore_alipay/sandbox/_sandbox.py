"""The sandbox itself: :class:`AlipaySandbox` — its life (an HTTP server on loopback), its
keys, certificates and the channel configuration that talks to it."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import socket
import socketserver
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ordercore.channels import ChannelConfig, Secret
from ordercore_alipay import _sign
from ordercore_alipay.sandbox._gateway import _SandboxGateway
from ordercore_alipay.sandbox._records import (
    _METHODS,
    DEFAULT_APP_ID,
    DEFAULT_SELLER_ID,
    SandboxError,
    SandboxNotification,
    _as_private_key,
    _Fault,
    _private_pem,
    _Trade,
    generate_key,
)


# -- the server ------------------------------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: AlipaySandbox

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (the timeout fault) is not news


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ordercore-alipay-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length_text = self.headers.get("content-length") or "0"
        length = int(length_text) if length_text.isdigit() else 0
        self._serve(self.rfile.read(min(length, 4 * 1024 * 1024)))

    def _serve(self, body: bytes) -> None:
        answer = self.server.sandbox._http(self.command, self.path, body)
        if answer.hang:
            time.sleep(answer.hang)
        if answer.hang or answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)


# -- the sandbox -----------------------------------------------------------------------------
class AlipaySandbox(_SandboxGateway):
    """A local Alipay gateway (see the module docstring). Thread-safe. Use it as a context
    manager, or call :meth:`start` and :meth:`stop`.

    :param app_id: the application id requests must carry.
    :param seller_id: the merchant PID notifications carry.
    :param app_private_key: the application's key (a ``cryptography`` key or PEM bytes); a
        new one is generated unless given (or unless ``app_public_key`` is given).
    :param app_public_key: the application's public key (PEM), when the sandbox must not
        know the private one; :meth:`channel_config` then cannot work.
    :param alipay_private_key: the sandbox's own signing key (default: a new one).
    :param cert_mode: answer as in certificate mode: make a root chain, an Alipay certificate
        and an application certificate, require ``app_cert_sn`` and ``alipay_root_cert_sn``
        on requests and send ``alipay_cert_sn`` with answers.
    :param clock: the sandbox's time (default: the wall clock).
    :param hang_seconds: how long a ``timeout`` fault holds the connection before dropping it.
    """

    refund_query_status: bool
    """Whether refund queries carry ``refund_status`` (set False for the older answers that
    only carry ``refund_amount``)."""

    _trade_numbers: ClassVar[itertools.count[int]] = itertools.count(1)

    def __init__(
        self,
        *,
        app_id: str = DEFAULT_APP_ID,
        seller_id: str = DEFAULT_SELLER_ID,
        app_private_key: rsa.RSAPrivateKey | bytes | None = None,
        app_public_key: bytes | None = None,
        alipay_private_key: rsa.RSAPrivateKey | bytes | None = None,
        cert_mode: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
        hang_seconds: float = 3.0,
    ) -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.host, self.port = host, port
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.hang_seconds = hang_seconds
        self.refund_query_status = True
        self._app_private_key: rsa.RSAPrivateKey | None
        if app_public_key is not None and app_private_key is None:
            self._app_private_key = None
            self._app_public_key = _sign.load_public_key(app_public_key)
        else:
            self._app_private_key = _as_private_key(app_private_key)
            self._app_public_key = self._app_private_key.public_key()
        self._alipay_key = _as_private_key(alipay_private_key)
        self._lock = threading.RLock()
        self._trades: dict[str, _Trade] = {}
        self._faults: dict[str, deque[_Fault]] = {m: deque() for m in _METHODS}
        self._notify_ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Calls by method name (every gateway request, faulty ones included).
        self.calls: Counter[str] = Counter()
        #: Refunds actually made (one per out_request_no, whatever the retries).
        self.refunds_made = 0
        #: Every notification delivered, with the answer: ``(notification, status, body)``.
        self.deliveries: list[tuple[SandboxNotification, int, bytes]] = []
        #: Refund calls answer ``40004 ACQ.SELLER_BALANCE_NOT_ENOUGH`` while this is true.
        self.seller_balance_insufficient = False
        self._certs: dict[str, bytes] = {}
        if cert_mode:
            self._certs = self._make_certificates()

    # -- life -------------------------------------------------------------------------------
    def start(self) -> AlipaySandbox:
        """Listen (``port=0``: a free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sandbox = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"alipay sandbox {self.url}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AlipaySandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:49152``."""
        if self._server is None:
            raise SandboxError("the sandbox is not started")
        host = self._server.server_name
        return f"http://{'[' + host + ']' if ':' in host else host}:{self._server.server_port}"

    @property
    def gateway_url(self) -> str:
        """What to configure as the channel's ``gateway_url``."""
        return f"{self.url}/gateway.do"

    # -- keys and configuration ---------------------------------------------------------------
    @property
    def alipay_public_key_pem(self) -> bytes:
        """The sandbox's public key (the "Alipay public key" of the channel's settings)."""
        return _sign.public_pem(self._alipay_key)

    @property
    def app_private_key_pem(self) -> bytes:
        if self._app_private_key is None:
            raise SandboxError("the sandbox was given only the application's public key")
        return _private_pem(self._app_private_key)

    @property
    def certificates(self) -> Mapping[str, bytes]:
        """Cert mode: the PEMs ``app_cert``, ``alipay_cert`` and ``alipay_root_cert``."""
        return dict(self._certs)

    def _secrets(self) -> dict[str, bytes]:
        secrets = {"app_private_key": self.app_private_key_pem}
        if self._certs:
            secrets.update(self._certs)
        else:
            secrets["alipay_public_key"] = self.alipay_public_key_pem
        return secrets

    def channel_config(
        self, *, notify_url: str | None = None, name: str = "alipay", **options: Any
    ) -> ChannelConfig:
        """A :class:`~ordercore.channels.ChannelConfig` for an ``alipay`` channel talking to
        this sandbox (key material passed directly as secrets). ``options`` add to or replace
        the channel's settings (``timeout_seconds``, ``return_url``, ``transport``...);
        ``ChannelConfig`` fields (``refund_deadline_days``, ``min_amount``...) may be given
        too."""
        fields = {
            k: options.pop(k)
            for k in list(options)
            if k in attrs.fields_dict(ChannelConfig) and k not in ("name", "options")
        }
        settings: dict[str, Any] = {"app_id": self.app_id, "seller_id": self.seller_id}
        if "gateway_url" not in options:
            settings["gateway_url"] = self.gateway_url
        settings.update(options)
        return ChannelConfig(
            name=name,
            notify_url=notify_url,
            options=settings,
            secrets={k: Secret(v) for k, v in self._secrets().items()},
            **fields,
        )

    def write_files(self, directory: str | Path) -> dict[str, Path]:
        """Write the key material into ``directory`` (PEM files) and return the paths by
        setting name (``app_private_key_file``, ``alipay_public_key_file`` or the cert
        files), ready for a ``[channels.alipay]`` table."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, pem in self._secrets().items():
            path = folder / f"{name}.pem"
            path.write_bytes(pem)
            if name == "app_private_key":
                path.chmod(0o600)
            paths[f"{name}_file"] = path
        return paths

    def config_table(self, directory: str | Path, *, notify_url: str | None = None) -> str:
        """A ``[channels.alipay]`` TOML table for this sandbox, its key files written into
        ``directory``."""
        lines = [
            "[channels.alipay]",
            f'app_id = "{self.app_id}"',
            f'seller_id = "{self.seller_id}"',
            f"gateway_url = {json.dumps(self.gateway_url)}",
        ]
        if notify_url:
            lines.append(f"notify_url = {json.dumps(notify_url)}")
        for key, path in self.write_files(directory).items():
            lines.append(f"{key} = {json.dumps(str(path))}")
        return "\n".join(lines) + "\n"

    def _make_certificates(self) -> dict[str, bytes]:
        now = dt.datetime.now(dt.timezone.utc)

        def name(cn: str) -> x509.Name:
            return x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sandbox Financial"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                ]
            )

        def build(
            subject: x509.Name,
            issuer: x509.Name,
            public: Any,
            signer: Any,
            algorithm: hashes.SHA256,
            ca: bool,
        ) -> x509.Certificate:
            return (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, algorithm)
            )

        root_key = generate_key()
        root_name = name("Sandbox Root CA R1")
        root = build(root_name, root_name, root_key.public_key(), root_key, hashes.SHA256(), True)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_name = name("Sandbox Root CA E1")
        ec_root = build(ec_name, ec_name, ec_key.public_key(), ec_key, hashes.SHA256(), True)
        alipay_cert = build(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.app_id)]),
            root_name,
            self._alipay_key.public_key(),
            root_key,
            hashes.SHA256(),
            False,
        )
        app_cert = build(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"app {self.app_id}")]),
            root_name,
            self._app_public_key,
            root_key,
            hashes.SHA256(),
            False,
        )

        def pem(cert: x509.Certificate) -> bytes:
            return cert.public_bytes(serialization.Encoding.PEM)

        return {
            "app_cert": pem(app_cert),
            "alipay_cert": pem(alipay_cert) + pem(root),
            # Alipay's root file: certificates separated by blank lines, RSA and EC ones.
            "alipay_root_cert": pem(root) + b"\n" + pem(ec_root),
        }
