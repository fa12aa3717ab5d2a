"""The ``wechat`` payment channel: WeChat Pay API v3, Native (QR) and H5.

Everything the protocol says is in ``shared/specs/wechatpay-v3.md`` and
``docs/channels/wechat.md``; the mapping of every answer to an
:class:`~ordercore.channels.Outcome` is in the docstrings below. Two rules run through it:

* an answer is believed only when its ``Wechatpay-*`` signature verifies with a platform key
  (a 2xx answer without one is forged: its QR code is never shown, its outcome never taken),
  or — for failures only — when believing a forged one can cost no money (a checkout that
  fails shows nothing to pay); anything else is ``UNKNOWN``, which only a later query or
  notification decides;
* the channel never raises for what comes from outside.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar, Final

import attrs
from attrs import field, frozen
from cryptography import x509

from ordercore import ConfigurationError, Money
from ordercore.channels import (
    Capabilities,
    ChannelConfig,
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    NotificationResult,
    Outcome,
    PaymentChannel,
    PaymentEvent,
    PaymentQuery,
    RefundRequest,
    RefundResult,
)

from . import _crypto, _notify, _wire
from ._config import DEFAULT_REFUND_DEADLINE_DAYS, WechatSettings, check_url, read_settings
from ._keys import PlatformKeys
from ._transport import HttpResponse, Transport, TransportError

__all__ = [
    "RETRYABLE_REFUND_CODES",
    "WechatChannel",
    "WechatReply",
]

#: Refund error codes after which the same refund, made again later, can succeed.
RETRYABLE_REFUND_CODES: Final = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "NOT_ENOUGH"})
_PAID_STATES: Final = frozenset({"SUCCESS", "REFUND"})
_WAITING_STATES: Final = frozenset({"NOTPAY", "USERPAYING"})
_FAILED_STATES: Final = frozenset({"CLOSED", "REVOKED", "PAYERROR"})
_REFUND_FAILED: Final = frozenset({"CLOSED", "ABNORMAL"})
_OUT_TRADE_NO_CHARS: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-|*"
)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@frozen
class WechatReply:
    """What came back from one API call.

    ``status`` is the HTTP status (None: no answer); ``signed`` says the ``Wechatpay-*``
    signature verified; ``data`` is the JSON body (``{}`` for an empty one). ``problem`` is
    set when there is no believable answer: no answer, a 5xx, a 2xx whose signature is
    missing or wrong (forged), an unreadable 2xx body.
    """

    status: int | None = None
    data: Mapping[str, Any] = field(factory=dict)
    signed: bool = False
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """A signed 2xx answer."""
        return (
            self.problem is None
            and self.signed
            and self.status is not None
            and (200 <= self.status < 300)
        )

    @property
    def refusal(self) -> bool:
        """A 4xx answer (signed or not: see :attr:`signed`)."""
        return self.problem is None and self.status is not None and 400 <= self.status < 500

    @property
    def code(self) -> str | None:
        return _wire.text(self.data, "code")

    def describe(self) -> str:
        if self.problem is not None:
            return self.problem[:500]
        parts = [f"HTTP {self.status}"]
        if self.code:
            parts.append(self.code)
        message = _wire.text(self.data, "message")
        text = " ".join(parts) + (f": {message}" if message else "")
        return (text + ("" if self.signed else " (unsigned)"))[:500]


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


class WechatChannel(PaymentChannel):
    """WeChat Pay API v3: ``native`` (a QR code) and ``h5`` (a mobile browser URL).

    Configured from ``[channels.wechat]`` (see ``docs/channels/wechat.md``); a missing or
    invalid setting raises :class:`~ordercore.ConfigurationError` here, at construction.

    :param transport: how to reach WeChat Pay (default: ``options["transport"]``, else
        :class:`~ordercore_wechat.UrllibTransport`).
    :param clock: the time requests are stamped with and answers are judged by (default:
        ``options["clock"]``, else the wall clock).
    """

    name: ClassVar[str] = "wechat"
    methods: ClassVar[frozenset[str]] = frozenset({"native", "h5"})
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    notification_headers: ClassVar[frozenset[str] | None] = _notify.NOTIFICATION_HEADERS
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=True, close=True, refund=True, partial_refund=True, refund_notifications=True
    )
    #: WeChat refund codes that name an item of ordercore's refund-failure checklist; other
    #: codes are ``channel_error`` when retryable, else ``channel_refused``.
    refund_failures: ClassVar[Mapping[str, str]] = {
        "NOT_ENOUGH": "merchant_balance_insufficient",
        "USER_ACCOUNT_ABNORMAL": "missing_information",
        "ABNORMAL": "missing_information",
        "unsupported_currency": "refund_unsupported",
    }

    def __init__(
        self,
        config: ChannelConfig,
        *,
        transport: Transport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if config.refund_deadline_days is not None and config.refund_deadline_days <= 0:
            raise ConfigurationError(
                f"[channels.{config.name}] refund_deadline_days must be at least 1",
                channel=config.name,
            )
        if config.refund_deadline_days is None:
            config = attrs.evolve(config, refund_deadline_days=DEFAULT_REFUND_DEADLINE_DAYS)
        super().__init__(config)
        self.settings: WechatSettings = read_settings(config, transport)
        self._clock: Callable[[], datetime] = clock or self.settings.clock or _utcnow
        self.keys = PlatformKeys(
            self.settings.public_keys,
            self.settings.pinned,
            self._download_certificates if self.settings.download else None,
        )

    # -- settings -------------------------------------------------------------------------
    @property
    def mchid(self) -> str:
        return self.settings.mchid

    @property
    def appid(self) -> str:
        return self.settings.appid

    @property
    def gateway_url(self) -> str:
        return self.settings.gateway_url

    @property
    def notify_url(self) -> str | None:
        return self.settings.notify_url

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def transport(self) -> Transport:
        return self.settings.transport

    def now(self) -> datetime:
        return self._clock()

    def __repr__(self) -> str:
        modes = []
        if self.settings.public_keys:
            modes.append("public-key")
        if self.settings.pinned or self.settings.download:
            modes.append("certificate")
        return (
            f"<WechatChannel mchid={self.mchid} appid={self.appid} "
            f"{'+'.join(modes)} mode gateway={self.gateway_url}>"
        )

    # -- requests -------------------------------------------------------------------------
    def request_headers(
        self, method: str, url: str, body: bytes, *, timestamp: str, nonce: str
    ) -> dict[str, str]:
        """Every header of one request: ``Authorization`` signed over ``url`` (path and
        query) and ``body``, ``Accept``/``Content-Type`` JSON, and ``Wechatpay-Serial`` in
        public-key mode (the last id of ``platform_public_key_id``: the newest)."""
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "ordercore-wechat",
            "Authorization": _crypto.authorization(
                mchid=self.mchid,
                serial_no=self.settings.merchant_serial_no,
                key=self.settings.merchant_key,
                method=method,
                url=url,
                body=body,
                timestamp=timestamp,
                nonce=nonce,
            ),
        }
        if self.settings.public_keys:  # the newest key: listed last
            headers["Wechatpay-Serial"] = list(self.settings.public_keys)[-1]
        return headers

    def send(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> HttpResponse | WechatReply:
        """Sign and send one request; the raw answer, or a :class:`WechatReply` with the
        ``problem`` when none came. Never raises."""
        try:
            body = b"" if payload is None else _wire.dumps(payload)
            timestamp = str(int(self.now().timestamp()))
            headers = self.request_headers(
                method, path, body, timestamp=timestamp, nonce=_crypto.make_nonce()
            )
            return self.transport.request(
                method,
                self.gateway_url + path,
                body if method != "GET" else None,
                headers,
                self.timeout,
            )
        except TransportError as exc:
            return WechatReply(problem=f"no answer from WeChat Pay: {exc}"[:500])
        except Exception as exc:  # a broken transport: the call may have gone through
            return WechatReply(problem=f"the transport failed: {exc!r}"[:500])

    def call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> WechatReply:
        """Call ``path`` (``/v3/…`` with its query string) and verify the answer. Never
        raises."""
        response = self.send(method, path, payload)
        if isinstance(response, WechatReply):
            return response
        return self.verify_answer(response)

    def verify_answer(self, response: HttpResponse) -> WechatReply:
        """Judge one HTTP answer: a 5xx is no answer; otherwise the ``Wechatpay-*`` signature
        is checked over the raw body. A 2xx whose signature is missing or does not verify
        is forged (``problem``); a 4xx without a valid one is kept, marked unsigned."""
        status = response.status
        if status >= 500 or status < 200:
            return WechatReply(status=status, problem=f"WeChat Pay answered HTTP {status}")
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        rejection = _notify.check_signature(self.keys, headers, response.body, self.now())
        if rejection is not None:
            if 200 <= status < 300:
                why = f"a {status} answer without a valid signature (forged): {rejection[1]}"
                return WechatReply(status=status, problem=why[:500])
            return self._read(response, signed=False)
        return self._read(response, signed=True)

    @staticmethod
    def _read(response: HttpResponse, *, signed: bool) -> WechatReply:
        if not response.body.strip():
            return WechatReply(status=response.status, signed=signed)
        try:
            data = _wire.load_json(response.body)
        except _wire.WireError as exc:
            if 200 <= response.status < 300:
                return WechatReply(status=response.status, problem=f"unreadable answer: {exc}")
            data = {}
        return WechatReply(status=response.status, data=data, signed=signed)

    # -- platform certificates ----------------------------------------------------------------
    def _download_certificates(
        self,
    ) -> tuple[dict[str, x509.Certificate] | None, str | None]:
        """``GET /v3/certificates``: decrypt each certificate with the APIv3 key (which
        authenticates it: only WeChat and the merchant know that key), keep those whose
        serial matches, then verify the answer's own signature with one of them (or a key
        already trusted)."""
        response = self.send("GET", "/v3/certificates")
        if isinstance(response, WechatReply):
            return None, f"certificate download: {response.describe()}"
        reply = self._read(response, signed=False)
        if reply.problem is not None or reply.status != 200:
            return None, f"certificate download: {reply.describe()}"
        items = reply.data.get("data")
        if not isinstance(items, list):
            return None, "certificate download: no data list"
        found: dict[str, x509.Certificate] = {}
        for item in items:
            certificate = self._open_certificate(item)
            if certificate is not None:
                found[_crypto.certificate_serial(certificate)] = certificate
        if not found:
            return None, "certificate download: no certificate could be opened"
        # The list's own signature: by a certificate it holds, a pinned one or a public key.
        trusted = PlatformKeys(self.settings.public_keys, {**self.settings.pinned, **found}, None)
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        refused = _notify.check_signature(trusted, headers, response.body, self.now())
        if refused is not None:
            return None, f"certificate download: {refused[1]}"
        return found, None

    def _open_certificate(self, item: object) -> x509.Certificate | None:
        serial = _wire.text(item, "serial_no")
        envelope = item.get("encrypt_certificate") if isinstance(item, dict) else None
        if serial is None or not isinstance(envelope, dict):
            return None
        if envelope.get("algorithm") != "AEAD_AES_256_GCM":
            return None
        nonce, ciphertext = _wire.text(envelope, "nonce"), _wire.text(envelope, "ciphertext")
        aad = envelope.get("associated_data", "")
        if nonce is None or ciphertext is None or not isinstance(aad, str):
            return None
        try:
            pem = _crypto.decrypt(self.settings.apiv3_key, nonce, aad, ciphertext)
            (certificate,) = _crypto.load_certificates(pem)
        except (_crypto.CryptoError, ValueError):
            return None
        if _crypto.certificate_serial(certificate) != serial.upper().lstrip("0"):
            return None
        return certificate

    # -- checkout -----------------------------------------------------------------------------
    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """``native``: ``POST /v3/pay/transactions/native`` → ``code_url`` (``kind="qr"``);
        ``h5``: ``POST /v3/pay/transactions/h5`` with the payer's IP → ``h5_url``
        (``kind="redirect"``). A signed answer with the URL is PENDING; a 4xx (signed or
        not) FAILED — nothing is shown, so nothing can be paid; no answer, a 5xx or a 2xx
        without a valid signature UNKNOWN (never shown to the payer)."""
        method = request.method
        kind = "qr" if method == "native" else "redirect"
        if method not in self.methods:
            return Checkout(
                kind=method,
                outcome=Outcome.FAILED,
                message=f"wechat has no method {method!r} (native, h5)",
            )
        problem = self._checkout_problem(request)
        if problem is not None:
            return Checkout(kind=kind, outcome=Outcome.FAILED, message=problem)
        notify_url = request.notify_url or self.notify_url
        assert notify_url is not None  # checked above
        payload: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": (request.subject or request.out_trade_no)[:127],
            "out_trade_no": request.out_trade_no,
            "time_expire": _wire.rfc3339(request.expires_at),
            "notify_url": notify_url,
            "amount": {"total": _wire.fen(request.amount), "currency": "CNY"},
        }
        if method == "h5":
            payload["scene_info"] = {
                "payer_client_ip": _valid_ip(request.client_ip),
                "h5_info": {"type": self.settings.h5_type},
            }
        reply = self.call("POST", f"/v3/pay/transactions/{method}", payload)
        if reply.ok:
            name = "code_url" if method == "native" else "h5_url"
            url = _wire.text(reply.data, name)
            if url is None:
                return Checkout(kind=kind, outcome=Outcome.UNKNOWN, message=f"no {name}")
            if method == "native":
                return Checkout(kind="qr", outcome=Outcome.PENDING, content=url)
            return Checkout(kind="redirect", outcome=Outcome.PENDING, url=url)
        if reply.refusal:
            return Checkout(kind=kind, outcome=Outcome.FAILED, message=reply.describe())
        return Checkout(kind=kind, outcome=Outcome.UNKNOWN, message=reply.describe())

    def _checkout_problem(self, request: CheckoutRequest) -> str | None:
        amount = request.amount
        if amount.currency.code != "CNY":
            return "wechat takes CNY amounts only"
        if not 1 <= amount.to_minor() <= _wire.MAX_FEN:
            return f"wechat takes 0.01 to 100000000.00 CNY, not {amount.amount:f}"
        no = request.out_trade_no
        if not 6 <= len(no) <= 32 or not set(no) <= _OUT_TRADE_NO_CHARS:
            return "out_trade_no must be 6 to 32 letters, digits, _-|*"
        notify_url = request.notify_url or self.notify_url
        if notify_url is None:
            return "wechat needs a notify_url ([channels.wechat] notify_url)"
        try:
            check_url(self.config, "notify_url", notify_url, base=False)
        except ConfigurationError as exc:
            return str(exc)
        if request.method == "h5" and _valid_ip(request.client_ip) is None:
            return "h5 needs the payer's IP address (orders pay --client-ip)"
        return None

    # -- notifications ------------------------------------------------------------------------
    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        """204 with no body when accepted; 400 with ``{"code":"FAIL","message":…}`` otherwise,
        which makes WeChat Pay deliver the notification again later."""
        if accepted:
            return HttpReply(204, b"")
        body = _wire.dumps({"code": "FAIL", "message": (message or "refused")[:200]})
        return HttpReply(400, body, {"Content-Type": "application/json; charset=utf-8"})

    def parse_notification(self, notification: Notification) -> NotificationResult:
        """Verify and decrypt a notification and turn it into events. Never raises; see
        :func:`ordercore_wechat._notify.parse` for every check and rejection code."""
        try:
            return _notify.parse(self, notification)
        except Exception as exc:  # never raise on garbage
            return NotificationResult.reject(
                "malformed", f"unreadable notification ({type(exc).__name__})"
            )

    # -- queries, refunds, close --------------------------------------------------------------
    def _trade_path(self, out_trade_no: str) -> str:
        return f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(out_trade_no, safe='')}"

    def query_payment(self, out_trade_no: str) -> PaymentQuery:
        """``GET …/out-trade-no/{no}?mchid=…``: ``SUCCESS`` (or ``REFUND``: paid, then
        refunded) SUCCEEDED with the paid event; ``NOTPAY``/``USERPAYING`` PENDING (the payer
        may still pay); ``CLOSED``/``REVOKED``/``PAYERROR`` FAILED; a signed 404
        ``ORDER_NOT_EXIST`` PENDING (never created, so not paid); anything else UNKNOWN."""
        mchid = urllib.parse.quote(self.mchid, safe="")
        reply = self.call("GET", f"{self._trade_path(out_trade_no)}?mchid={mchid}")
        if reply.ok:
            data = reply.data
            if _wire.text(data, "out_trade_no") != out_trade_no:
                return PaymentQuery(Outcome.UNKNOWN, message="the answer is about another trade")
            if _wire.text(data, "mchid") != self.mchid or _wire.text(data, "appid") != self.appid:
                return PaymentQuery(Outcome.UNKNOWN, message="the answer is for another merchant")
            state = _wire.text(data, "trade_state") or ""
            if state in _PAID_STATES:
                event = _notify.payment_event(dict(data), event_id=None)
                if not isinstance(event, PaymentEvent):
                    return PaymentQuery(Outcome.UNKNOWN, message=f"unusable answer: {event}")
                return PaymentQuery(Outcome.SUCCEEDED, event=event, message=state)
            if state in _WAITING_STATES:
                return PaymentQuery(Outcome.PENDING, message=state)
            if state in _FAILED_STATES:
                return PaymentQuery(Outcome.FAILED, message=state)
            return PaymentQuery(Outcome.UNKNOWN, message=f"trade_state {state[:40]!r}")
        if reply.signed and reply.status == 404 and reply.code == "ORDER_NOT_EXIST":
            return PaymentQuery(Outcome.PENDING, message="ORDER_NOT_EXIST: never created, not paid")
        return PaymentQuery(Outcome.UNKNOWN, message=reply.describe())

    def close(self, out_trade_no: str) -> Outcome:
        """``POST …/out-trade-no/{no}/close``: a signed 204 SUCCEEDED; a signed 404
        ``ORDER_NOT_EXIST`` or ``ORDER_CLOSED`` SUCCEEDED too (nothing can be paid); another
        signed refusal (the trade is paid) FAILED; anything unsigned or missing UNKNOWN."""
        reply = self.call("POST", f"{self._trade_path(out_trade_no)}/close", {"mchid": self.mchid})
        if reply.ok:
            return Outcome.SUCCEEDED
        if reply.refusal and reply.signed:
            if reply.code in ("ORDER_NOT_EXIST", "ORDER_CLOSED"):
                return Outcome.SUCCEEDED
            return Outcome.FAILED
        return Outcome.UNKNOWN

    def refund(self, request: RefundRequest) -> RefundResult:
        """``POST /v3/refund/domestic/refunds`` with ``out_refund_no`` = the refund's id
        (sent again on every retry: WeChat refunds once per number) and the amounts in fen.

        Signed 200: ``SUCCESS`` SUCCEEDED, ``PROCESSING`` PENDING (settled later by a
        notification or a query), ``CLOSED``/``ABNORMAL`` FAILED. A signed 4xx: FAILED with
        ``code``, retryable for :data:`RETRYABLE_REFUND_CODES`. No answer, a 5xx, an unsigned
        or forged answer: UNKNOWN (retry with the same number, or query)."""
        if request.amount.currency.code != "CNY" or request.total.currency.code != "CNY":
            return RefundResult(
                Outcome.FAILED, code="unsupported_currency", message="wechat refunds CNY only"
            )
        payload: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
        }
        if request.reason:
            payload["reason"] = request.reason[:80]
        notify_url = request.notify_url or self.notify_url
        if notify_url:
            payload["notify_url"] = notify_url
        payload["amount"] = {
            "refund": _wire.fen(request.amount),
            "total": _wire.fen(request.total),
            "currency": "CNY",
        }
        reply = self.call("POST", "/v3/refund/domestic/refunds", payload)
        if reply.ok:
            return self._refund_state(reply, request)
        if reply.refusal and reply.signed:
            code = reply.code or "unknown"
            return RefundResult(
                Outcome.FAILED,
                code=code,
                message=reply.describe(),
                retryable=code in RETRYABLE_REFUND_CODES,
            )
        return RefundResult(Outcome.UNKNOWN, message=reply.describe(), retryable=True)

    def _refund_state(self, reply: WechatReply, request: RefundRequest) -> RefundResult:
        data = reply.data
        if _wire.text(data, "out_refund_no") != request.out_refund_no:
            return RefundResult(
                Outcome.UNKNOWN, message="the answer is about another refund", retryable=True
            )
        amount = data.get("amount")
        refunded = _wire.integer(amount, "refund")
        if refunded is not None and refunded != _wire.fen(request.amount):
            return RefundResult(
                Outcome.UNKNOWN,
                message=f"WeChat Pay refunded {Money.from_minor(refunded, 'CNY').amount} for "
                f"{request.out_refund_no}, not {request.amount.amount}",
                retryable=False,
            )
        status = _wire.text(data, "status") or ""
        refund_id = _wire.text(data, "refund_id")
        if status == "SUCCESS":
            return RefundResult(Outcome.SUCCEEDED, channel_refund_no=refund_id, message=status)
        if status == "PROCESSING":
            return RefundResult(Outcome.PENDING, channel_refund_no=refund_id, message=status)
        if status in _REFUND_FAILED:
            return RefundResult(
                Outcome.FAILED, channel_refund_no=refund_id, code=status, message=status
            )
        return RefundResult(Outcome.UNKNOWN, message=f"refund status {status[:40]!r}")

    def query_refund(self, request: RefundRequest) -> RefundResult:
        """``GET /v3/refund/domestic/refunds/{out_refund_no}``: the same statuses as
        :meth:`refund`; a signed 404 ``RESOURCE_NOT_EXISTS`` FAILED with ``code``
        ``not_found``, retryable (the refund was never made: retry with the same number);
        anything else UNKNOWN."""
        no = urllib.parse.quote(request.out_refund_no, safe="")
        reply = self.call("GET", f"/v3/refund/domestic/refunds/{no}")
        if reply.ok:
            return self._refund_state(reply, request)
        if reply.signed and reply.status == 404 and reply.code == "RESOURCE_NOT_EXISTS":
            return RefundResult(
                Outcome.FAILED,
                code="not_found",
                message=f"WeChat Pay has no refund {request.out_refund_no}: it was never made; "
                "retry with the same out_refund_no",
                retryable=True,
            )
        return RefundResult(Outcome.UNKNOWN, message=reply.describe(), retryable=True)
