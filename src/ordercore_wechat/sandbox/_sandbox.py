"""The sandbox gateway itself: life, keys, configuration, the buyer's side, notifications,
faults, and the HTTP front of the endpoints in :mod:`._api`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ordercore import Money
from ordercore.channels import ChannelConfig, Secret
from ordercore_wechat import _crypto, _wire

from ._http import Fault, HttpFront
from ._model import (
    ENDPOINTS,
    FAULTS,
    NOTIFICATION_FAULTS,
    PlatformKey,
    SandboxError,
    SandboxNotification,
    SandboxRefund,
    SandboxTrade,
    Trade,
)
from ._server import Answer, Server, serve

__all__ = ["DEFAULT_APPID", "DEFAULT_MCHID", "MODES", "WechatSandbox", "generate_key"]

#: The merchant id the sandbox expects unless told otherwise.
DEFAULT_MCHID: Final = "1900000109"
#: The app id the sandbox expects unless told otherwise.
DEFAULT_APPID: Final = "wxd678efh567hg6787"
#: How the platform names its keys: ``public_key`` (``PUB_KEY_ID_…``) or ``certificate``.
MODES: Final = frozenset({"public_key", "certificate"})
_ALNUM: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (2048 bits: what WeChat Pay uses)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _pkcs8(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class WechatSandbox(HttpFront):
    """A local WeChat Pay API v3 gateway (see the package docstring). Thread-safe. Use it as
    a context manager, or call :meth:`start` and :meth:`stop`.

    :param mode: how the platform's key is named: ``public_key`` (``PUB_KEY_ID_…``; the
        channel is configured with the public key) or ``certificate`` (a certificate the
        channel downloads from ``GET /v3/certificates``).
    :param merchant_private_key: the merchant's API key (default: a new one).
    :param platform_private_key: the platform's signing key (default: a new one).
    :param apiv3_key: the 32-character APIv3 key (default: a random one).
    :param clock: the sandbox's time (default: the wall clock).
    :param hang_seconds: how long a ``timeout`` fault holds the connection.
    """

    def __init__(
        self,
        *,
        mode: str = "public_key",
        mchid: str = DEFAULT_MCHID,
        appid: str = DEFAULT_APPID,
        merchant_private_key: rsa.RSAPrivateKey | None = None,
        merchant_serial_no: str | None = None,
        platform_private_key: rsa.RSAPrivateKey | None = None,
        apiv3_key: bytes | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
        hang_seconds: float = 3.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        self.mode = mode
        self.mchid, self.appid = mchid, appid
        self.host, self.port = host, port
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.hang_seconds = hang_seconds
        self.merchant_key = merchant_private_key or generate_key()
        self.merchant_serial_no = merchant_serial_no or f"{x509.random_serial_number():X}"
        self.apiv3_key = apiv3_key or "".join(
            _ALNUM[b % len(_ALNUM)] for b in uuid.uuid4().bytes + uuid.uuid4().bytes
        ).encode("ascii")
        self._lock = threading.RLock()
        self._trades: dict[str, Trade] = {}
        self._platform: list[PlatformKey] = []
        self._stranger: rsa.RSAPrivateKey | None = None
        self._faults: dict[str, deque[Fault]] = {e: deque() for e in ENDPOINTS}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        #: Calls by endpoint name (every API request, faulty ones included).
        self.calls: Counter[str] = Counter()
        #: Refunds actually made (one per out_refund_no, whatever the retries).
        self.refunds_made = 0
        #: Every notification delivered, with the answer: ``(notification, status, body)``.
        self.deliveries: list[tuple[SandboxNotification, int, bytes]] = []
        #: New refunds answer ``PROCESSING`` (settle them with :meth:`settle_refund`).
        self.refund_processing = False
        #: Refunds answer ``403 NOT_ENOUGH`` while this is true.
        self.balance_insufficient = False
        self.rotate(mode, key=platform_private_key)

    # -- life -------------------------------------------------------------------------------
    def start(self) -> WechatSandbox:
        """Listen (``port=0``: a free port) and serve in a daemon thread."""
        if self._server is None:
            self._server = serve(self.host, self.port, self._http)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"wechat sandbox {self.url}",
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

    def __enter__(self) -> WechatSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL (the channel's ``gateway_url``), e.g. ``http://127.0.0.1:49152``."""
        if self._server is None:
            raise SandboxError("the sandbox is not started")
        host = self._server.server_name
        return f"http://{'[' + host + ']' if ':' in host else host}:{self._server.server_port}"

    # -- keys -------------------------------------------------------------------------------
    def rotate(self, mode: str | None = None, *, key: rsa.RSAPrivateKey | None = None) -> str:
        """Add a platform key and sign with it from now on (the old ones stay valid and
        listed): a rotation, or with another ``mode`` the migration between certificates and
        the public key. Returns the new key's serial."""
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}")
        private = key or generate_key()
        certificate = None
        if mode == "certificate":
            certificate = self._certificate(private)
            serial = _crypto.certificate_serial(certificate)
        else:
            serial = f"PUB_KEY_ID_0119{x509.random_serial_number() % 10**24:024d}"
        with self._lock:
            self._platform.append(PlatformKey(serial, private, certificate))
        return serial

    def _certificate(self, key: rsa.RSAPrivateKey) -> x509.Certificate:
        now = self.clock()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com (sandbox)"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)"),
            ]
        )
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=5 * 365))
            .sign(key, hashes.SHA256())
        )

    @property
    def platform_serials(self) -> list[str]:
        """Every platform key's serial, oldest first (the last one signs)."""
        with self._lock:
            return [p.serial for p in self._platform]

    def _public_key_mode(self) -> list[PlatformKey]:
        return [p for p in self._platform if p.certificate is None]

    @property
    def platform_public_key_pem(self) -> bytes:
        """The platform public key(s) of public-key mode, in one PEM file (oldest first)."""
        return b"".join(_crypto.public_pem(p.key) for p in self._public_key_mode())

    @property
    def platform_certificates_pem(self) -> bytes:
        """The platform certificates of certificate mode (what ``platform_cert_files``
        pins), PEM."""
        return b"".join(
            p.certificate.public_bytes(serialization.Encoding.PEM)
            for p in self._platform
            if p.certificate is not None
        )

    @property
    def merchant_private_key_pem(self) -> bytes:
        """The merchant's API key as the merchant console gives it (PKCS#8 PEM)."""
        return _pkcs8(self.merchant_key)

    def _secrets(self) -> dict[str, bytes]:
        secrets = {
            "merchant_private_key": self.merchant_private_key_pem,
            "apiv3_key": self.apiv3_key,
        }
        if self._public_key_mode():
            secrets["platform_public_key"] = self.platform_public_key_pem
        return secrets

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "mchid": self.mchid,
            "appid": self.appid,
            "merchant_serial_no": self.merchant_serial_no,
        }
        ids = [p.serial for p in self._public_key_mode()]
        if ids:
            options["platform_public_key_id"] = ids[0] if len(ids) == 1 else ids
            if len(ids) < len(self._platform):
                options["platform_cert_download"] = True
        return options

    def channel_config(
        self, *, notify_url: str | None = None, name: str = "wechat", **options: Any
    ) -> ChannelConfig:
        """A :class:`~ordercore.channels.ChannelConfig` for a ``wechat`` channel talking to
        this sandbox (key material passed directly as secrets). ``options`` add to or
        replace the channel's settings (``timeout_seconds``, ``transport``, ``clock``...);
        ``ChannelConfig`` fields (``refund_deadline_days``, ``min_amount``...) too."""
        fields = {
            k: options.pop(k)
            for k in list(options)
            if k in attrs.fields_dict(ChannelConfig) and k not in ("name", "options")
        }
        settings = self._options()
        if "gateway_url" not in options:
            settings["gateway_url"] = self.url
        settings.update(options)
        return ChannelConfig(
            name=name,
            notify_url=notify_url,
            options=settings,
            secrets={k: Secret(v) for k, v in self._secrets().items()},
            **fields,
        )

    def write_files(self, directory: str | Path) -> dict[str, Path]:
        """Write the key material into ``directory`` and return the paths by setting name
        (``merchant_private_key_file``, ``apiv3_key_file``, ``platform_public_key_file``)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, data in self._secrets().items():
            path = folder / (f"{name}.txt" if name == "apiv3_key" else f"{name}.pem")
            path.write_bytes(data)
            if name in ("merchant_private_key", "apiv3_key"):
                path.chmod(0o600)
            paths[f"{name}_file"] = path
        return paths

    def config_table(self, directory: str | Path, *, notify_url: str | None = None) -> str:
        """A ``[channels.wechat]`` TOML table for this sandbox, its key files written into
        ``directory``."""
        lines = ["[channels.wechat]"]
        for key, value in self._options().items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append(f"gateway_url = {json.dumps(self.url)}")
        if notify_url:
            lines.append(f"notify_url = {json.dumps(notify_url)}")
        for key, path in self.write_files(directory).items():
            lines.append(f"{key} = {json.dumps(str(path))}")
        return "\n".join(lines) + "\n"

    # -- the test side ----------------------------------------------------------------------
    def fail_next(
        self,
        endpoint: str,
        kind: str = "timeout",
        *,
        apply: bool = True,
        code: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``endpoint`` (``native``, ``h5``, ``query``,
        ``close``, ``refund``, ``refund_query``, ``certificates``) go wrong (see
        :data:`FAULTS`). With ``apply`` (the default) the work is done first and only the
        answer is wrong; ``error`` (a signed 4xx with ``code``) never does the work."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}")
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        if kind == "error":
            apply = False
            code = code or "SYSTEM_ERROR"
        with self._lock:
            self._faults[endpoint].extend([Fault(kind, apply, code)] * times)

    def pay(
        self,
        out_trade_no: str,
        *,
        deliver: bool = True,
        payer_total: int | None = None,
        force: bool = False,
    ) -> SandboxNotification:
        """The payer pays: ``SUCCESS``, and the encrypted, signed ``TRANSACTION.SUCCESS``
        notification is POSTed to the trade's ``notify_url`` (unless ``deliver`` is false)
        and returned. ``payer_total`` (fen) is what the payer paid after coupons. ``force``
        pays a closed or paid trade anyway."""
        with self._lock:
            trade = self._get(out_trade_no)
            if trade.state not in ("NOTPAY", "USERPAYING") and not force:
                raise SandboxError(f"trade {out_trade_no} is {trade.state}: pass force=True")
            trade.state = "SUCCESS"
            trade.transaction_id = f"42000{next(self._numbers):023d}"
            trade.success_time = self.clock()
            trade.payer_total = payer_total
            notification = self.notification(out_trade_no)
        if deliver:
            self.deliver(notification)
        return notification

    def notification(
        self,
        out_trade_no: str,
        *,
        changes: Mapping[str, Any] | None = None,
        fault: str | None = None,
        event_type: str = "TRANSACTION.SUCCESS",
        timestamp_offset: int = 0,
        apiv3_key: bytes | None = None,
        url: str | None = None,
    ) -> SandboxNotification:
        """Build (not send) the payment notification of a trade as it stands: ``changes``
        replace (None: remove) fields of the resource before it is encrypted; ``fault`` is
        one of :data:`NOTIFICATION_FAULTS`; ``timestamp_offset`` moves the signed time."""
        with self._lock:
            trade = self._get(out_trade_no)
            resource = self.transaction(trade)
            url = url or trade.notify_url
        return self._envelope(
            event_type,
            resource,
            changes=changes,
            original_type="transaction",
            summary="支付成功",
            fault=fault,
            timestamp_offset=timestamp_offset,
            apiv3_key=apiv3_key,
            url=url,
        )

    def refund_notification(
        self,
        out_refund_no: str,
        *,
        changes: Mapping[str, Any] | None = None,
        fault: str | None = None,
        event_type: str | None = None,
        url: str | None = None,
    ) -> SandboxNotification:
        """Build (not send) the notification of a refund's current status
        (``REFUND.SUCCESS``/``ABNORMAL``/``CLOSED``), like :meth:`notification`."""
        with self._lock:
            found = self.find_refund(out_refund_no)
            if found is None:
                raise SandboxError(f"no refund {out_refund_no!r} in the sandbox")
            trade, refund = found
            resource: dict[str, Any] = {
                "mchid": self.mchid,
                "out_trade_no": trade.out_trade_no,
                "transaction_id": trade.transaction_id,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_status": refund.status,
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": refund.total,
                    "refund": refund.amount,
                    "payer_total": refund.total,
                    "payer_refund": refund.amount,
                },
            }
            if refund.success_time is not None:
                resource["success_time"] = _wire.rfc3339(refund.success_time)
            url = url or refund.notify_url or trade.notify_url
        return self._envelope(
            event_type or f"REFUND.{refund.status}",
            resource,
            changes=changes,
            original_type="refund",
            summary="退款状态变更",
            fault=fault,
            url=url,
        )

    def settle_refund(
        self, out_refund_no: str, status: str = "SUCCESS", *, deliver: bool = True
    ) -> SandboxNotification:
        """A ``PROCESSING`` refund ends ``SUCCESS``, ``ABNORMAL`` or ``CLOSED`` (the last
        two give the money back to the trade); its notification is sent and returned."""
        if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise ValueError("status must be SUCCESS, ABNORMAL or CLOSED")
        with self._lock:
            found = self.find_refund(out_refund_no)
            if found is None:
                raise SandboxError(f"no refund {out_refund_no!r} in the sandbox")
            refund = found[1]
            if refund.status != "PROCESSING":
                raise SandboxError(f"refund {out_refund_no} is {refund.status}, not PROCESSING")
            refund.status = status
            refund.success_time = self.clock() if status == "SUCCESS" else None
            notification = self.refund_notification(out_refund_no)
        if deliver:
            self.deliver(notification)
        return notification

    def deliver(
        self, notification: SandboxNotification, url: str | None = None, *, timeout: float = 10
    ) -> tuple[int, bytes]:
        """POST the notification (to ``url``, else its own) and return the answer's status
        and body (an HTTP error status is returned; no connection raises
        :class:`SandboxError`)."""
        target = url or notification.url
        if not target:
            raise SandboxError("the notification has no URL: pass url=")
        headers = {"User-Agent": "Mozilla/4.0", **notification.headers}
        request = urllib.request.Request(
            target, data=notification.body, headers=headers, method="POST"
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
            trade = self._get(out_trade_no)
            return SandboxTrade(
                out_trade_no=trade.out_trade_no,
                transaction_id=trade.transaction_id,
                trade_type=trade.trade_type,
                total=Money.from_minor(trade.total, "CNY"),
                state=trade.state,
                description=trade.description,
                notify_url=trade.notify_url,
                payer_client_ip=trade.payer_client_ip,
                refunded=Money.from_minor(trade.refunded, "CNY"),
                refunds=tuple(
                    SandboxRefund(
                        r.out_refund_no,
                        r.refund_id,
                        Money.from_minor(r.amount, "CNY"),
                        r.status,
                        r.reason,
                    )
                    for r in trade.refunds.values()
                ),
            )

    def trades(self) -> list[SandboxTrade]:
        with self._lock:
            numbers = list(self._trades)
        return [self.trade(n) for n in numbers]

    # -- internals: signing -------------------------------------------------------------------
    def _get(self, out_trade_no: str) -> Trade:
        try:
            return self._trades[out_trade_no]
        except KeyError:
            raise SandboxError(f"no trade {out_trade_no!r} in the sandbox") from None

    def _stranger_key(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._stranger is None:
                self._stranger = generate_key()
            return self._stranger

    def signature_headers(
        self, body: bytes, *, fault: str | None = None, timestamp_offset: int = 0
    ) -> dict[str, str]:
        """The ``Wechatpay-*`` headers of an answer or notification with ``body``, signed by
        the newest platform key (or broken the way ``fault`` says)."""
        if fault == "unsigned":
            return {}
        with self._lock:
            platform = self._platform[-1]
        key, serial = platform.key, platform.serial
        if fault == "unknown_serial":
            key, serial = self._stranger_key(), f"{x509.random_serial_number():X}"
        offset = timestamp_offset - (600 if fault == "stale" else 0)
        timestamp = str(int(self.clock().timestamp()) + offset)
        nonce = _crypto.make_nonce()
        signed = body + b"x" if fault == "bad_signature" else body
        signature = _crypto.sign(_crypto.answer_message(timestamp, nonce, signed), key)
        if fault == "signtest":
            signature = _crypto.SIGNTEST_PREFIX + signature
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": _crypto.SIGNATURE_TYPE,
        }

    def _envelope(
        self,
        event_type: str,
        resource: dict[str, Any],
        *,
        changes: Mapping[str, Any] | None,
        original_type: str,
        summary: str,
        fault: str | None,
        url: str | None,
        timestamp_offset: int = 0,
        apiv3_key: bytes | None = None,
    ) -> SandboxNotification:
        if fault is not None and fault not in NOTIFICATION_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(NOTIFICATION_FAULTS)}")
        for name, value in (changes or {}).items():
            if value is None:
                resource.pop(name, None)
            else:
                resource[name] = value
        nonce = _crypto.make_nonce(12).lower()
        plaintext = _wire.dumps(resource)
        ciphertext = _crypto.encrypt(apiv3_key or self.apiv3_key, nonce, original_type, plaintext)
        if fault == "bad_tag":
            sealed = bytearray(base64.b64decode(ciphertext))
            sealed[-1] ^= 0x01
            ciphertext = base64.b64encode(bytes(sealed)).decode("ascii")
        body = _wire.dumps(
            {
                "id": str(uuid.uuid4()),
                "create_time": _wire.rfc3339(self.clock()),
                "resource_type": "encrypt-resource",
                "event_type": event_type,
                "summary": summary,
                "resource": {
                    "original_type": original_type,
                    "algorithm": "AEAD_AES_256_GCM",
                    "ciphertext": ciphertext,
                    "associated_data": original_type,
                    "nonce": nonce,
                },
            }
        )
        header_fault = None if fault in ("bad_tag", "tampered") else fault
        headers = self.signature_headers(
            body, fault=header_fault, timestamp_offset=timestamp_offset
        )
        if fault == "tampered":  # one character of the body changed after signing
            body = body.replace(b'"summary":"', b'"summary":"!', 1)
        headers["Content-Type"] = "application/json"
        return SandboxNotification(event_type, headers, body, resource, url)

    def _signed(
        self, status: int, data: Mapping[str, Any] | None, fault: str | None = None
    ) -> Answer:
        body = b"" if data is None else _wire.dumps(data)
        headers = self.signature_headers(body, fault=fault)
        headers["Request-ID"] = str(uuid.uuid4())
        return Answer(status, body, "application/json", headers)
