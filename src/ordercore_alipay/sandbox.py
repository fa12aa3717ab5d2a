"""A local Alipay gateway, for tests and development: no account, no network.

:class:`AlipaySandbox` is an HTTP server on loopback (standard library, one thread per
connection) that answers ``alipay.trade.precreate``, ``page.pay``, ``wap.pay``, ``query``,
``refund``, ``fastpay.refund.query`` and ``close`` the way Alipay's gateway does: it verifies
each request's RSA2 signature with the application's public key, keeps trades in memory and
signs its answers with a key pair of its own (``{"alipay_trade_xxx_response": {...},
"sign": "..."}``). The test (or the developer) plays the buyer:

* :meth:`~AlipaySandbox.scan` — the buyer scans the QR code: the trade now exists
  (before that, query and close answer ``40004 ACQ.TRADE_NOT_EXIST``, as Alipay does);
* :meth:`~AlipaySandbox.pay` — the buyer pays: the trade is ``TRADE_SUCCESS`` and a signed
  form notification is POSTed to the trade's ``notify_url``;
  :meth:`~AlipaySandbox.finish` sends ``TRADE_FINISHED``,
  :meth:`~AlipaySandbox.notify_refund` a refund notification;
* :meth:`~AlipaySandbox.notification` builds any notification without changing a trade —
  duplicates, out of order, tampered after signing, in GBK, signed with another key — and
  :meth:`~AlipaySandbox.deliver` POSTs it;
* :meth:`~AlipaySandbox.fail_next` makes the next call of a method time out, drop the
  connection, answer ``20000``, HTTP 500, a bad signature, an unsigned error or a ``40004``
  — after doing the work (``apply=True``: only the answer is lost) or not.

Refunds are idempotent per ``out_request_no`` (a repeat answers ``fund_change: "N"`` and
refunds nothing; :attr:`~AlipaySandbox.refunds_made` counts real ones) and never exceed the
paid total. Opening a QR code's content (or a page/H5 checkout URL) in a browser shows a
cashier page with a *Pay* button, so a host application can be tried by hand:
``python -m ordercore_alipay.sandbox --help``.

::

    with AlipaySandbox() as sandbox:
        config = sandbox.channel_config(notify_url="http://127.0.0.1:8000/callbacks/alipay")
        core = OrderCore.from_url(url, channels={"alipay": config})
        started = core.payments.start(number, channel="alipay", method="qr", actor=actor)
        sandbox.pay(started.attempt.out_trade_no)   # the notification reaches notify_url
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import itertools
import json
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Final

import attrs
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ordercore import Money
from ordercore.channels import ChannelConfig, Notification, Secret

from . import _sign
from ._channel import BEIJING, beijing_time, parse_form

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_SELLER_ID",
    "FAULTS",
    "AlipaySandbox",
    "SandboxError",
    "SandboxNotification",
    "SandboxRefund",
    "SandboxTrade",
    "generate_key",
    "main",
]

#: The application id the sandbox expects unless told otherwise.
DEFAULT_APP_ID: Final = "2021000000000001"
#: The merchant PID (seller_id) the sandbox uses unless told otherwise.
DEFAULT_SELLER_ID: Final = "2088000000000001"
#: What :meth:`AlipaySandbox.fail_next` can do to the next call.
FAULTS: Final = frozenset(
    {"timeout", "disconnect", "20000", "500", "bad_sign", "unsigned_error", "40004"}
)
_METHODS: Final = frozenset(
    {
        "alipay.trade.precreate",
        "alipay.trade.page.pay",
        "alipay.trade.wap.pay",
        "alipay.trade.query",
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
        "alipay.trade.close",
    }
)
_BROWSER_METHODS: Final = frozenset({"alipay.trade.page.pay", "alipay.trade.wap.pay"})
_CREATED: Final = "CREATED"  # our own: created but not scanned, invisible to query/close
_BUYER_ID: Final = "2088102177846880"
_BUYER_LOGON: Final = "buy***@sandbox.example"


class SandboxError(Exception):
    """The test asked the sandbox for something it cannot do (pay an unknown or closed trade,
    refund notification for an unknown refund...). Never sent to a channel."""


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (2048 bits: what RSA2 uses)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _as_private_key(value: rsa.RSAPrivateKey | bytes | None) -> rsa.RSAPrivateKey:
    if value is None:
        return generate_key()
    if isinstance(value, bytes):
        return _sign.load_private_key(value)
    return value


def _yuan(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def _amount(text: object) -> Decimal | None:
    if not isinstance(text, str):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        return None
    if not Decimal("0.01") <= value <= Decimal("100000000"):
        return None
    return value


# -- what the sandbox keeps ------------------------------------------------------------------
@attrs.define
class _Refund:
    out_request_no: str
    amount: Decimal
    reason: str | None
    gmt_refund: dt.datetime


@attrs.define
class _Trade:
    out_trade_no: str
    trade_no: str
    total: Decimal
    subject: str
    method: str
    notify_url: str | None
    return_url: str | None
    gmt_create: dt.datetime
    status: str = _CREATED
    gmt_payment: dt.datetime | None = None
    gmt_close: dt.datetime | None = None
    refunds: dict[str, _Refund] = attrs.field(factory=dict)

    @property
    def exists(self) -> bool:
        return self.status != _CREATED

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal("0.00"))


@frozen
class SandboxRefund:
    """One refund the sandbox made."""

    out_request_no: str
    amount: Money
    reason: str | None


@frozen
class SandboxTrade:
    """A snapshot of one trade. ``status`` is Alipay's ``trade_status``, or ``CREATED`` for a
    QR code nobody scanned yet (a trade Alipay does not know)."""

    out_trade_no: str
    trade_no: str
    total_amount: Money
    status: str
    subject: str
    notify_url: str | None
    refunded: Money
    refunds: tuple[SandboxRefund, ...]


@frozen
class SandboxNotification:
    """A notification as the sandbox sends it: the form's ``params`` (what was signed, or the
    tampered values), its ``charset`` and the raw ``body``; ``url`` is where it goes."""

    params: Mapping[str, str]
    charset: str
    body: bytes
    url: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": f"application/x-www-form-urlencoded; charset={self.charset}"}

    def to_notification(self, channel: str = "alipay") -> Notification:
        """The :class:`~ordercore.channels.Notification` a host builds on receipt."""
        return Notification(channel, self.headers, self.body, remote_addr="127.0.0.1")


@attrs.define
class _Fault:
    kind: str
    apply: bool
    sub_code: str | None


@frozen
class _Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json;charset=utf-8"
    hang: float = 0.0  # sleep, then drop the connection without an answer
    drop: bool = False  # drop the connection without an answer
    headers: Mapping[str, str] = attrs.field(factory=dict)


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
class AlipaySandbox:
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

    # -- the test side ----------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        kind: str = "timeout",
        *,
        apply: bool = True,
        sub_code: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (e.g. ``"alipay.trade.refund"``) go
        wrong: ``timeout`` (hold the connection ``hang_seconds``, then drop it),
        ``disconnect`` (drop it at once), ``20000`` (a signed "unknown" answer), ``500``,
        ``bad_sign`` (an answer whose signature does not match), ``unsigned_error`` (an
        ``error_response`` without sign) or ``40004`` with ``sub_code`` (a signed business
        refusal, nothing done). With ``apply`` (the default) the work is done first and only
        the answer is wrong — the case a retry or a query must resolve."""
        if method not in _METHODS:
            raise ValueError(f"unknown method {method!r}; one of {sorted(_METHODS)}")
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        if kind == "40004":
            apply = False
        with self._lock:
            self._faults[method].extend([_Fault(kind, apply, sub_code)] * times)

    def scan(self, out_trade_no: str) -> SandboxTrade:
        """The buyer scans the QR code: the trade exists from now on (``WAIT_BUYER_PAY``)."""
        with self._lock:
            trade = self._get(out_trade_no)
            if trade.status == _CREATED:
                trade.status = "WAIT_BUYER_PAY"
            return self._snapshot(trade)

    def pay(
        self,
        out_trade_no: str,
        *,
        deliver: bool = True,
        charset: str = "utf-8",
        force: bool = False,
    ) -> SandboxNotification:
        """The buyer pays: the trade becomes ``TRADE_SUCCESS`` and its signed notification is
        POSTed to the trade's ``notify_url`` (unless ``deliver`` is false) and returned.
        ``force`` pays a closed or paid trade anyway (a late payment, a second one)."""
        with self._lock:
            trade = self._get(out_trade_no)
            if trade.status not in (_CREATED, "WAIT_BUYER_PAY") and not force:
                raise SandboxError(f"trade {out_trade_no} is {trade.status}: pass force=True")
            trade.status = "TRADE_SUCCESS"
            trade.gmt_payment = self.clock()
            notification = self._build(trade, charset=charset)
        if deliver:
            self.deliver(notification)
        return notification

    def finish(
        self, out_trade_no: str, *, deliver: bool = True, charset: str = "utf-8"
    ) -> SandboxNotification:
        """The refund window ends: ``TRADE_FINISHED`` and its notification."""
        with self._lock:
            trade = self._get(out_trade_no)
            if trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise SandboxError(f"trade {out_trade_no} is {trade.status}, not paid")
            trade.status = "TRADE_FINISHED"
            notification = self._build(trade, charset=charset)
        if deliver:
            self.deliver(notification)
        return notification

    def notify_refund(
        self,
        out_trade_no: str,
        out_request_no: str,
        *,
        deliver: bool = True,
        charset: str = "utf-8",
    ) -> SandboxNotification:
        """The notification Alipay sends after a refund: the trade's status (``TRADE_SUCCESS``,
        or ``TRADE_CLOSED`` once fully refunded), ``refund_fee`` (the refunded total),
        ``gmt_refund`` and ``out_biz_no`` = the refund's ``out_request_no``."""
        with self._lock:
            trade = self._get(out_trade_no)
            refund = trade.refunds.get(out_request_no)
            if refund is None:
                raise SandboxError(f"no refund {out_request_no} on trade {out_trade_no}")
            extra = {
                "refund_fee": _yuan(trade.refunded),
                "gmt_refund": beijing_time(refund.gmt_refund) + ".000",
                "out_biz_no": out_request_no,
            }
            notification = self._build(trade, charset=charset, extra=extra)
        if deliver:
            self.deliver(notification)
        return notification

    def notification(
        self,
        out_trade_no: str,
        *,
        trade_status: str | None = None,
        charset: str = "utf-8",
        extra: Mapping[str, str | None] | None = None,
        tamper: Mapping[str, str | None] | None = None,
        sign_type: str = "RSA2",
        signing_key: rsa.RSAPrivateKey | None = None,
        url: str | None = None,
    ) -> SandboxNotification:
        """Build a signed notification for a trade without changing it (and without sending
        it): ``trade_status`` (default: the trade's), ``extra`` fields set (or, with None,
        removed) before signing, ``tamper`` fields changed after signing, another
        ``sign_type`` or ``signing_key``, in another ``charset`` (``gbk``)."""
        with self._lock:
            trade = self._get(out_trade_no)
            return self._build(
                trade,
                charset=charset,
                status=trade_status,
                extra=extra,
                tamper=tamper,
                sign_type=sign_type,
                signing_key=signing_key,
                url=url,
            )

    def deliver(
        self, notification: SandboxNotification, url: str | None = None, *, timeout: float = 10
    ) -> tuple[int, bytes]:
        """POST the notification (to ``url``, else its own) and return the answer's status
        and body (an HTTP error status is returned, a connection error raises
        :class:`SandboxError`)."""
        target = url or notification.url
        if not target:
            raise SandboxError("the trade has no notify_url: pass url=")
        request = urllib.request.Request(
            target,
            data=notification.body,
            headers={
                "Content-Type": notification.headers["content-type"],
                "User-Agent": "Mozilla/4.0 (ordercore alipay sandbox notify)",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                status, body = int(exc.code), bytes(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise SandboxError(f"cannot deliver to {target}: {exc}") from None
        with self._lock:
            self.deliveries.append((notification, status, body))
        return status, body

    def trade(self, out_trade_no: str) -> SandboxTrade:
        """A snapshot of the trade (:class:`SandboxError` if the sandbox never saw it)."""
        with self._lock:
            return self._snapshot(self._get(out_trade_no))

    def trades(self) -> list[SandboxTrade]:
        with self._lock:
            return [self._snapshot(t) for t in self._trades.values()]

    # -- internals: state -------------------------------------------------------------------
    def _get(self, out_trade_no: str) -> _Trade:
        try:
            return self._trades[out_trade_no]
        except KeyError:
            raise SandboxError(f"no trade {out_trade_no!r} in the sandbox") from None

    @staticmethod
    def _snapshot(trade: _Trade) -> SandboxTrade:
        return SandboxTrade(
            out_trade_no=trade.out_trade_no,
            trade_no=trade.trade_no,
            total_amount=Money.of(trade.total, "CNY"),
            status=trade.status,
            subject=trade.subject,
            notify_url=trade.notify_url,
            refunded=Money.of(trade.refunded, "CNY"),
            refunds=tuple(
                SandboxRefund(r.out_request_no, Money.of(r.amount, "CNY"), r.reason)
                for r in trade.refunds.values()
            ),
        )

    def _sign_form(
        self,
        params: Mapping[str, str],
        codec: str,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        content = _sign.notification_sign_content(params)
        return _sign.sign(content, key or self._alipay_key, codec)

    def _build(
        self,
        trade: _Trade,
        *,
        charset: str,
        status: str | None = None,
        extra: Mapping[str, str | None] | None = None,
        tamper: Mapping[str, str | None] | None = None,
        sign_type: str = "RSA2",
        signing_key: rsa.RSAPrivateKey | None = None,
        url: str | None = None,
    ) -> SandboxNotification:
        codec = _sign.CHARSETS.get(charset.lower())
        if codec is None:
            raise ValueError(f"charset must be utf-8 or gbk, not {charset!r}")
        now = self.clock()
        paid_at = trade.gmt_payment or now
        total = _yuan(trade.total)
        params: dict[str, str] = {
            "gmt_create": beijing_time(trade.gmt_create),
            "charset": charset,
            "seller_email": "seller@sandbox.example",
            "subject": trade.subject,
            "buyer_id": _BUYER_ID,
            "invoice_amount": total,
            "notify_id": f"2026{next(self._notify_ids):028d}",
            "fund_bill_list": json.dumps(
                [{"amount": total, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            ),
            "notify_type": "trade_status_sync",
            "trade_status": status or trade.status,
            "receipt_amount": total,
            "app_id": self.app_id,
            "buyer_pay_amount": total,
            "seller_id": self.seller_id,
            "gmt_payment": beijing_time(paid_at),
            "notify_time": beijing_time(now),
            "version": "1.0",
            "out_trade_no": trade.out_trade_no,
            "total_amount": total,
            "trade_no": trade.trade_no,
            "auth_app_id": self.app_id,
            "buyer_logon_id": _BUYER_LOGON,
            "point_amount": "0.00",
        }
        if params["trade_status"] == "TRADE_CLOSED" and trade.gmt_close is not None:
            params["gmt_close"] = beijing_time(trade.gmt_close)
        for key, value in (extra or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        params["sign_type"] = sign_type
        params["sign"] = self._sign_form(params, codec, signing_key)
        for key, value in (tamper or {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        body = "&".join(
            f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v, encoding=codec)}"
            for k, v in params.items()
        ).encode("ascii")
        return SandboxNotification(params, charset, body, url or trade.notify_url)

    # -- internals: HTTP --------------------------------------------------------------------
    def _http(self, command: str, target: str, body: bytes) -> _Answer:
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        try:
            if path == "/gateway.do":
                form = parts.query.encode("latin-1")
                if body:
                    form = form + b"&" + body if form else body
                try:
                    params, codec = parse_form(form)
                except (ValueError, UnicodeError) as exc:
                    return _Answer(400, f"bad request: {exc}".encode(), "text/plain")
                return self._gateway(params, codec, command)
            if path.startswith("/cashier/"):
                rest = urllib.parse.unquote(path[len("/cashier/") :])
                if command == "POST" and rest.endswith("/pay"):
                    return self._cashier_pay(rest[: -len("/pay")])
                return self._cashier(rest)
        except SandboxError as exc:
            return _Answer(404, str(exc).encode(), "text/plain; charset=utf-8")
        return _Answer(404, b"not found", "text/plain")

    def _response(
        self, method: str, data: Mapping[str, Any], *, corrupt_sign: bool = False
    ) -> _Answer:
        key = method.replace(".", "_") + "_response"
        inner = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        signature = _sign.sign(inner + ("x" if corrupt_sign else ""), self._alipay_key)
        text = f'{{"{key}":{inner},"sign":"{signature}"'
        if self._certs:
            alipay_sn = _sign.cert_sn(self._certs["alipay_cert"])
            text += f',"alipay_cert_sn":"{alipay_sn}"'
        return _Answer(200, (text + "}").encode("utf-8"))

    @staticmethod
    def _unsigned(data: Mapping[str, Any]) -> _Answer:
        inner = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return _Answer(200, f'{{"error_response":{inner}}}'.encode())

    @staticmethod
    def _failure(sub_code: str, sub_msg: str) -> dict[str, str]:
        return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}

    def _gateway(self, params: dict[str, str], codec: str, command: str) -> _Answer:
        method = params.get("method", "")
        with self._lock:
            self.calls[method] += 1
        if method not in _METHODS:
            return self._unsigned(
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method"}
            )
        if params.get("app_id") != self.app_id:
            return self._unsigned(
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"}
            )
        signature = params.get("sign", "")
        content = _sign.request_sign_content(params)
        if params.get("sign_type") != "RSA2" or not _sign.verify(
            content, signature, self._app_public_key, codec
        ):
            refusal = {
                "code": "40002",
                "msg": "Invalid Arguments",
                "sub_code": "isv.invalid-signature",
                "sub_msg": "验签出错",
            }
            if method in _BROWSER_METHODS:
                return _Answer(400, b"invalid signature", "text/plain")
            return self._response(method, refusal)
        if self._certs:
            expected = {
                "app_cert_sn": _sign.cert_sn(self._certs["app_cert"]),
                "alipay_root_cert_sn": _sign.root_cert_sn(self._certs["alipay_root_cert"]),
            }
            for name, value in expected.items():
                if params.get(name) != value:
                    refusal = {
                        "code": "40002",
                        "msg": "Invalid Arguments",
                        "sub_code": f"isv.invalid-{name.replace('_', '-')}",
                    }
                    return self._response(method, refusal)
        try:
            biz = json.loads(params.get("biz_content", "{}"), parse_float=Decimal)
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return self._response(
                method,
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-biz"},
            )
        with self._lock:
            queue = self._faults[method]
            fault = queue.popleft() if queue else None
            if fault is not None and not fault.apply:
                return self._fault_answer(method, fault, None)
            data = self._dispatch(method, biz, params)
        if fault is not None:
            return self._fault_answer(method, fault, data)
        if method in _BROWSER_METHODS:
            if data.get("code") != "10000":
                return _Answer(400, json.dumps(data).encode(), "application/json")
            return self._cashier(str(biz.get("out_trade_no", "")))
        return self._response(method, data)

    def _fault_answer(self, method: str, fault: _Fault, data: Mapping[str, Any] | None) -> _Answer:
        kind = fault.kind
        if kind == "timeout":
            return _Answer(hang=self.hang_seconds)
        if kind == "disconnect":
            return _Answer(drop=True)
        if kind == "500":
            return _Answer(500, b"Internal Server Error", "text/plain")
        if kind == "20000":
            return self._response(
                method,
                {
                    "code": "20000",
                    "msg": "Service Currently Unavailable",
                    "sub_code": "isp.unknow-error",
                    "sub_msg": "系统繁忙",
                },
            )
        if kind == "unsigned_error":
            return self._unsigned(
                {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"}
            )
        if kind == "40004":
            return self._response(
                method, self._failure(fault.sub_code or "ACQ.SYSTEM_ERROR", "sandbox fault")
            )
        # bad_sign: the real answer, with a signature that does not match it
        return self._response(
            method, data or {"code": "10000", "msg": "Success"}, corrupt_sign=True
        )

    def _dispatch(
        self, method: str, biz: Mapping[str, Any], params: Mapping[str, str]
    ) -> dict[str, Any]:
        if method in ("alipay.trade.precreate", *_BROWSER_METHODS):
            return self._create(method, biz, params)
        if method == "alipay.trade.query":
            return self._query(biz)
        if method == "alipay.trade.refund":
            return self._refund(biz)
        if method == "alipay.trade.fastpay.refund.query":
            return self._refund_query(biz)
        return self._close(biz)

    def _find(self, biz: Mapping[str, Any]) -> _Trade | None:
        no = biz.get("out_trade_no")
        trade = self._trades.get(no) if isinstance(no, str) else None
        if trade is None and isinstance(biz.get("trade_no"), str):
            trade = next((t for t in self._trades.values() if t.trade_no == biz["trade_no"]), None)
        return trade if trade is not None and trade.exists else None

    def _create(
        self, method: str, biz: Mapping[str, Any], params: Mapping[str, str]
    ) -> dict[str, Any]:
        no = biz.get("out_trade_no")
        total = _amount(biz.get("total_amount"))
        subject = biz.get("subject")
        if not isinstance(no, str) or not 0 < len(no) <= 64 or total is None:
            return self._failure("ACQ.INVALID_PARAMETER", "参数无效")
        if not isinstance(subject, str) or not subject:
            return self._failure("ACQ.INVALID_PARAMETER", "subject 不能为空")
        trade = self._trades.get(no)
        if trade is not None:
            if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                return self._failure("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if trade.status == "TRADE_CLOSED":
                return self._failure("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if trade.total != total:
                return self._failure("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        else:
            now = self.clock()
            number = next(self._trade_numbers)
            trade = _Trade(
                out_trade_no=no,
                trade_no=f"{now.astimezone(BEIJING):%Y%m%d}22001{number:015d}",
                total=total,
                subject=subject,
                method=method,
                notify_url=params.get("notify_url") or None,
                return_url=params.get("return_url") or None,
                gmt_create=now,
            )
            self._trades[no] = trade
        qr_code = f"{self.url}/cashier/{urllib.parse.quote(no, safe='')}"
        return {"code": "10000", "msg": "Success", "out_trade_no": no, "qr_code": qr_code}

    def _query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return self._failure("ACQ.TRADE_NOT_EXIST", "交易不存在")
        data: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON,
            "trade_status": trade.status,
            "total_amount": _yuan(trade.total),
            "buyer_user_id": _BUYER_ID,
        }
        if trade.gmt_payment is not None:
            paid = _yuan(trade.total)
            data.update(
                buyer_pay_amount=paid,
                receipt_amount=paid,
                invoice_amount=paid,
                point_amount="0.00",
                send_pay_date=beijing_time(trade.gmt_payment),
            )
        return data

    def _refund(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return self._failure("ACQ.TRADE_NOT_EXIST", "交易不存在")
        amount = _amount(biz.get("refund_amount"))
        if amount is None:
            return self._failure("ACQ.INVALID_PARAMETER", "退款金额无效")
        request_no = biz.get("out_request_no")
        if request_no is not None and not isinstance(request_no, str):
            return self._failure("ACQ.INVALID_PARAMETER", "out_request_no 无效")
        if not request_no:
            if amount != trade.total:
                return self._failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            request_no = trade.out_trade_no
        existing = trade.refunds.get(request_no)
        if existing is not None:
            if existing.amount != amount:
                return self._failure("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self._refund_answer(trade, "N")
        if trade.status == "WAIT_BUYER_PAY":
            return self._failure("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if trade.status == "TRADE_CLOSED":
            return self._failure("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if trade.status == "TRADE_FINISHED":
            return self._failure("ACQ.TRADE_HAS_FINISHED", "交易已完结")
        if trade.refunded + amount > trade.total:
            return self._failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        if self.seller_balance_insufficient:
            return self._failure("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
        reason = biz.get("refund_reason")
        trade.refunds[request_no] = _Refund(
            request_no, amount, reason if isinstance(reason, str) else None, self.clock()
        )
        self.refunds_made += 1
        if trade.refunded == trade.total:
            trade.status = "TRADE_CLOSED"
            trade.gmt_close = self.clock()
        return self._refund_answer(trade, "Y")

    def _refund_answer(self, trade: _Trade, fund_change: str) -> dict[str, Any]:
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": _BUYER_LOGON,
            "fund_change": fund_change,
            "refund_fee": _yuan(trade.refunded),
            "gmt_refund_pay": beijing_time(self.clock()),
            "buyer_user_id": _BUYER_ID,
        }

    def _refund_query(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return self._failure("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = biz.get("out_request_no")
        refund = trade.refunds.get(request_no) if isinstance(request_no, str) else None
        if refund is None:
            return {"code": "10000", "msg": "Success"}
        data: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "out_request_no": refund.out_request_no,
            "total_amount": _yuan(trade.total),
            "refund_amount": _yuan(refund.amount),
            "gmt_refund_pay": beijing_time(refund.gmt_refund),
        }
        if self.refund_query_status:
            data["refund_status"] = "REFUND_SUCCESS"
        return data

    def _close(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return self._failure("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            return self._failure("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if trade.status != "TRADE_CLOSED":
            trade.status = "TRADE_CLOSED"
            trade.gmt_close = self.clock()
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
        }

    # -- the cashier (for a person trying it in a browser) ----------------------------------
    def _cashier(self, out_trade_no: str) -> _Answer:
        snapshot = self.scan(out_trade_no)
        escaped = html.escape(out_trade_no)
        quoted = urllib.parse.quote(out_trade_no, safe="")
        button = (
            f'<form method="post" action="/cashier/{quoted}/pay">'
            '<button type="submit">Pay</button></form>'
            if snapshot.status == "WAIT_BUYER_PAY"
            else f"<p>This trade is {html.escape(snapshot.status)}.</p>"
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>Alipay sandbox cashier</title>"
            f"<h1>Alipay sandbox</h1><p>{html.escape(snapshot.subject)}</p>"
            f"<p>Trade {escaped}: <strong>{snapshot.total_amount}</strong></p>{button}"
        )
        return _Answer(200, page.encode("utf-8"), "text/html; charset=utf-8")

    def _cashier_pay(self, out_trade_no: str) -> _Answer:
        with self._lock:
            trade = self._get(out_trade_no)
            return_url = trade.return_url
        try:
            notification = self.pay(out_trade_no, deliver=False)
        except SandboxError as exc:
            return _Answer(409, str(exc).encode(), "text/plain; charset=utf-8")
        if notification.url:
            with contextlib.suppress(SandboxError):  # Alipay retries later; so may the person
                self.deliver(notification)
        if return_url:
            location = self._return_location(out_trade_no, return_url)
            return _Answer(303, b"", "text/plain", headers={"Location": location})
        page = "<!doctype html><meta charset=utf-8><title>Paid</title><h1>Paid</h1>"
        return _Answer(200, page.encode(), "text/html; charset=utf-8")

    def _return_location(self, out_trade_no: str, return_url: str) -> str:
        """The browser's redirect to ``return_url``: signed like a notification, but never
        proof of payment (only the notification or a query is)."""
        with self._lock:
            trade = self._get(out_trade_no)
            params = {
                "charset": "utf-8",
                "out_trade_no": trade.out_trade_no,
                "method": f"{trade.method}.return",
                "total_amount": _yuan(trade.total),
                "trade_no": trade.trade_no,
                "auth_app_id": self.app_id,
                "version": "1.0",
                "app_id": self.app_id,
                "seller_id": self.seller_id,
                "timestamp": beijing_time(self.clock()),
            }
            params["sign"] = self._sign_form(params, "utf-8")
            params["sign_type"] = "RSA2"
        joiner = "&" if "?" in return_url else "?"
        return f"{return_url}{joiner}{urllib.parse.urlencode(params)}"


# -- python -m ordercore_alipay.sandbox ------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run a sandbox until Ctrl-C, with its key files written to ``--dir`` and the matching
    ``[channels.alipay]`` table printed, for trying a host application by hand."""
    parser = argparse.ArgumentParser(
        prog="python -m ordercore_alipay.sandbox", description=main.__doc__
    )
    parser.add_argument("--dir", default="alipay-sandbox", help="where to write the key files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--notify-url", default=None, help="the host's /callbacks/alipay URL")
    parser.add_argument("--cert-mode", action="store_true", help="answer in certificate mode")
    args = parser.parse_args(argv)
    sandbox = AlipaySandbox(host=args.host, port=args.port, cert_mode=args.cert_mode)
    with sandbox:
        try:  # the ready line is printed inside: Ctrl-C right after it is a clean stop
            print(sandbox.config_table(args.dir, notify_url=args.notify_url), flush=True)
            print(f"# Alipay sandbox on {sandbox.url}; Ctrl-C to stop", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
