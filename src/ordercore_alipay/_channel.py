"""The ``alipay`` payment channel: Alipay open platform, RSA2, face-to-face QR, PC page and H5.

Everything the protocol says is in ``shared/specs/alipay.md`` and ``docs/channels/alipay.md``;
the mapping of every answer to an :class:`~ordercore.channels.Outcome` is in the docstrings of
the methods below. Two rules run through it:

* a failure is believed only when it is signed by Alipay, or when believing a forged one can
  cost no money (a checkout that fails shows no QR code); anything else without a verified
  answer is ``UNKNOWN``, which only a later query or notification decides;
* the channel never raises for what comes from outside: a notification is verified and
  parsed, or rejected with a reason.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar, Final

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import ConfigurationError
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
    RefundEvent,
    RefundRequest,
    RefundResult,
)

from . import _sign
from ._settings import (
    _APP_ID,
    _CERT_SECRETS,
    _KEY_SECRETS,
    _OPTIONS,
    _SELLER_ID,
    DEFAULT_GATEWAY_URL,
    DEFAULT_REFUND_DEADLINE_DAYS,
    DEFAULT_TIMEOUT_SECONDS,
    RETRYABLE_REFUND_CODES,
    _option_text,
    _url,
)
from ._transport import Transport, TransportError, UrllibTransport
from ._wire import (
    GatewayReply,
    _money,
    _parse_time,
    _yuan,
    beijing_time,
    parse_form,
)

__all__ = ["AlipayChannel"]


_NOT_EXIST: Final = "ACQ.TRADE_NOT_EXIST"
_PAID_STATUSES: Final = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
_REFUND_MARKERS: Final = ("refund_fee", "gmt_refund", "out_biz_no")
_MIN_AMOUNT: Final = Decimal("0.01")
_MAX_AMOUNT: Final = Decimal("100000000")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AlipayChannel(PaymentChannel):
    """Alipay (RSA2): ``qr`` (face-to-face, ``alipay.trade.precreate``), ``page`` (PC web,
    ``alipay.trade.page.pay``) and ``h5`` (mobile web, ``alipay.trade.wap.pay``).

    Configured from ``[channels.alipay]`` (see ``docs/channels/alipay.md``); a missing or
    invalid setting raises :class:`~ordercore.ConfigurationError` here, at construction.

    :param transport: how to reach the gateway (default: :class:`UrllibTransport`, or
        ``options["transport"]``).
    :param clock: the time requests are stamped with (default: the wall clock).
    """

    name: ClassVar[str] = "alipay"
    methods: ClassVar[frozenset[str]] = frozenset({"qr", "page", "h5"})
    currencies: ClassVar[frozenset[str]] = frozenset({"CNY"})
    #: A notification is a signed form: the body is all there is to verify.
    notification_headers: ClassVar[frozenset[str] | None] = frozenset({"content-type"})
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=True, close=True, refund=True, partial_refund=True, refund_notifications=True
    )
    #: Alipay refund codes that name an item of ordercore's refund-failure checklist; other
    #: codes are ``channel_error`` when retryable, else ``channel_refused``.
    refund_failures: ClassVar[Mapping[str, str]] = {
        "ACQ.SELLER_BALANCE_NOT_ENOUGH": "merchant_balance_insufficient",
        "ACQ.TRADE_HAS_FINISHED": "deadline_passed",
        "unsupported_currency": "refund_unsupported",
    }

    def __init__(
        self,
        config: ChannelConfig,
        *,
        transport: Transport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        name = config.name
        unknown = set(config.options) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"[channels.{name}] unknown setting(s): {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_OPTIONS))}, plus the key files)",
                channel=name,
            )
        unknown_secrets = set(config.secrets) - _KEY_SECRETS - _CERT_SECRETS
        if unknown_secrets:
            raise ConfigurationError(
                f"[channels.{name}] unknown key file(s): "
                f"{', '.join(sorted(s + '_file' for s in unknown_secrets))} (known: "
                f"{', '.join(sorted(s + '_file' for s in _KEY_SECRETS | _CERT_SECRETS))})",
                channel=name,
            )
        if config.refund_deadline_days is None:
            config = attrs.evolve(config, refund_deadline_days=DEFAULT_REFUND_DEADLINE_DAYS)
        elif config.refund_deadline_days <= 0:
            raise ConfigurationError(
                f"[channels.{name}] refund_deadline_days must be at least 1", channel=name
            )
        super().__init__(config)

        app_id = _option_text(config, "app_id")
        if app_id is None or not _APP_ID.fullmatch(app_id):
            raise ConfigurationError(
                f"[channels.{name}] app_id is required: the digits of your Alipay "
                f"application's APPID (got {app_id!r})",
                channel=name,
            )
        seller_id = _option_text(config, "seller_id")
        if seller_id is not None and not _SELLER_ID.fullmatch(seller_id):
            raise ConfigurationError(
                f"[channels.{name}] seller_id must be the merchant's 16-digit PID starting "
                f"with 2088 (got {seller_id!r})",
                channel=name,
            )
        sign_type = (_option_text(config, "sign_type") or "RSA2").upper()
        if sign_type == "RSA":
            raise ConfigurationError(
                f"[channels.{name}] sign_type RSA (SHA1withRSA) is refused: use RSA2",
                channel=name,
            )
        if sign_type != "RSA2":
            raise ConfigurationError(
                f"[channels.{name}] sign_type must be RSA2, not {sign_type!r}", channel=name
            )
        timeout: object = config.options.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= 300
        ):
            raise ConfigurationError(
                f"[channels.{name}] timeout_seconds must be a number of seconds in (0, 300], "
                f"not {timeout!r}",
                channel=name,
            )
        chosen_transport = transport or config.options.get("transport") or UrllibTransport()
        if not callable(getattr(chosen_transport, "post", None)):
            raise ConfigurationError(
                f"[channels.{name}] transport must have a post(url, body, headers, timeout) method",
                channel=name,
            )

        self.app_id: str = app_id
        self.seller_id: str | None = seller_id
        self.gateway_url: str = (
            _url(config, "gateway_url", _option_text(config, "gateway_url")) or DEFAULT_GATEWAY_URL
        )
        self.notify_url: str | None = _url(config, "notify_url", config.notify_url)
        self.return_url: str | None = _url(config, "return_url", _option_text(config, "return_url"))
        self.app_auth_token: str | None = _option_text(config, "app_auth_token")
        self.page_product_code: str = (
            _option_text(config, "page_product_code") or "FAST_INSTANT_TRADE_PAY"
        )
        self.wap_product_code: str = _option_text(config, "wap_product_code") or "QUICK_WAP_WAY"
        self.timeout: float = float(timeout)
        self.transport: Transport = chosen_transport
        self._clock = clock or _utcnow
        self._private_key, self._alipay_key, self._cert_sns = self._load_keys(config)

    # -- configuration ------------------------------------------------------------------------
    @staticmethod
    def _load_keys(
        config: ChannelConfig,
    ) -> tuple[rsa.RSAPrivateKey, rsa.RSAPublicKey, dict[str, str]]:
        name = config.name

        def fail(what: str, exc: Exception) -> ConfigurationError:
            return ConfigurationError(f"[channels.{name}] {what}: {exc}", channel=name)

        try:
            private_key = _sign.load_private_key(config.secret("app_private_key"))
        except _sign.SigningError as exc:
            raise fail("app_private_key_file", exc) from None
        cert_files = _CERT_SECRETS & set(config.secrets)
        if not cert_files:
            try:
                alipay_key = _sign.load_public_key(config.secret("alipay_public_key"))
            except _sign.SigningError as exc:
                raise fail("alipay_public_key_file", exc) from None
            return private_key, alipay_key, {}
        missing = _CERT_SECRETS - cert_files
        if missing:
            raise ConfigurationError(
                f"[channels.{name}] certificate mode needs app_cert_file, alipay_cert_file and "
                f"alipay_root_cert_file; missing: "
                f"{', '.join(sorted(m + '_file' for m in missing))}",
                channel=name,
            )
        try:
            app_cert = _sign.load_certificates(config.secret("app_cert"))[0]
            app_cert_sn = _sign.cert_sn(config.secret("app_cert"))
        except _sign.SigningError as exc:
            raise fail("app_cert_file", exc) from None
        try:
            alipay_key = _sign.load_public_key(config.secret("alipay_cert"))
            alipay_cert_sn = _sign.cert_sn(config.secret("alipay_cert"))
        except _sign.SigningError as exc:
            raise fail("alipay_cert_file", exc) from None
        try:
            root_sn = _sign.root_cert_sn(config.secret("alipay_root_cert"))
        except _sign.SigningError as exc:
            raise fail("alipay_root_cert_file", exc) from None
        if _sign.public_pem(private_key) != _sign.public_pem(
            app_cert.public_key()  # type: ignore[arg-type]
        ):
            raise ConfigurationError(
                f"[channels.{name}] app_cert_file does not hold the public key of "
                "app_private_key_file",
                channel=name,
            )
        sns = {
            "app_cert_sn": app_cert_sn,
            "alipay_root_cert_sn": root_sn,
            "alipay_cert_sn": alipay_cert_sn,
        }
        return private_key, alipay_key, sns

    @property
    def cert_mode(self) -> bool:
        """Whether requests carry ``app_cert_sn`` and ``alipay_root_cert_sn``."""
        return bool(self._cert_sns)

    @property
    def cert_sns(self) -> Mapping[str, str]:
        """``app_cert_sn``, ``alipay_root_cert_sn`` and ``alipay_cert_sn`` (cert mode)."""
        return dict(self._cert_sns)

    def __repr__(self) -> str:
        mode = "cert" if self.cert_mode else "key"
        return f"<AlipayChannel app_id={self.app_id} {mode} mode gateway={self.gateway_url}>"

    # -- requests -----------------------------------------------------------------------------
    def signed_params(
        self,
        method: str,
        biz_content: Mapping[str, Any],
        *,
        notify_url: str | None = None,
        return_url: str | None = None,
    ) -> dict[str, str]:
        """Every parameter of a request to ``method``, ``sign`` included."""
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": beijing_time(self._clock()),
            "version": "1.0",
            "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
        }
        if notify_url:
            params["notify_url"] = notify_url
        if return_url:
            params["return_url"] = return_url
        if self.app_auth_token:
            params["app_auth_token"] = self.app_auth_token
        if self._cert_sns:
            params["app_cert_sn"] = self._cert_sns["app_cert_sn"]
            params["alipay_root_cert_sn"] = self._cert_sns["alipay_root_cert_sn"]
        params["sign"] = _sign.sign(_sign.request_sign_content(params), self._private_key)
        return params

    def _url_with(self, params: Mapping[str, str]) -> str:
        joiner = "&" if "?" in self.gateway_url else "?"
        return f"{self.gateway_url}{joiner}{urllib.parse.urlencode(params)}"

    def call(
        self, method: str, biz_content: Mapping[str, Any], *, notify_url: str | None = None
    ) -> GatewayReply:
        """Call the gateway and verify the answer. Never raises.

        The common parameters travel in the URL and ``biz_content`` in the form body, as the
        official SDKs send them.
        """
        try:
            params = self.signed_params(method, biz_content, notify_url=notify_url)
            body_params = {"biz_content": params.pop("biz_content")}
            url = self._url_with(params)
            body = urllib.parse.urlencode(body_params).encode("ascii")
            headers = {
                "Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
                "Accept": "application/json",
                "User-Agent": "ordercore-alipay",
            }
            response = self.transport.post(url, body, headers, self.timeout)
        except TransportError as exc:
            return GatewayReply(problem=f"no answer from the gateway: {exc}"[:500])
        except Exception as exc:  # a broken transport: the call may have gone through
            return GatewayReply(problem=f"the transport failed: {exc!r}"[:500])
        if response.status != 200:
            return GatewayReply(problem=f"the gateway answered HTTP {response.status}")
        return self.verify_response(method, response.body)

    def verify_response(self, method: str, body: bytes) -> GatewayReply:
        """Check a synchronous answer to ``method``: cut the ``*_response`` object out of the
        raw body and verify ``sign`` over exactly that text."""
        try:
            text = body.decode("utf-8")
            parts = _sign.split_response(text)
        except ValueError as exc:  # UnicodeDecodeError included
            return GatewayReply(problem=f"unreadable answer from the gateway: {exc}"[:500])
        key = method.replace(".", "_") + "_response"
        raw = parts.raw(key)
        if raw is None:
            raw = parts.raw("error_response")
        if raw is None:
            return GatewayReply(problem=f"the answer has no {key} object")
        try:
            data = json.loads(raw, parse_float=Decimal)
            sign_raw = parts.raw("sign")
            signature = None if sign_raw is None else json.loads(sign_raw)
        except ValueError:
            return GatewayReply(problem="unreadable answer from the gateway")
        if not isinstance(data, dict):
            return GatewayReply(problem=f"{key} is not an object")
        if signature is None or signature == "":
            return GatewayReply(data=data, signed=False)
        if not isinstance(signature, str) or not _sign.verify(raw, signature, self._alipay_key):
            problem = "the answer's signature does not verify with Alipay's public key"
            cert_sn_raw = parts.raw("alipay_cert_sn")
            if self._cert_sns and cert_sn_raw is not None:
                try:
                    sent = json.loads(cert_sn_raw)
                except ValueError:
                    sent = None
                if sent != self._cert_sns["alipay_cert_sn"]:
                    problem += (
                        f" (it names alipay_cert_sn {sent!r}, ours is "
                        f"{self._cert_sns['alipay_cert_sn']}: download Alipay's new certificate)"
                    )
            return GatewayReply(problem=problem)
        return GatewayReply(data=data, signed=True)

    # -- checkout -----------------------------------------------------------------------------
    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """``qr``: ``alipay.trade.precreate``; ``10000`` gives the QR text (PENDING), a signed
        ``40004`` or any other refusal FAILED (no QR code shown, nothing can be paid), no
        verified answer or ``20000`` UNKNOWN. ``page``/``h5``: a signed gateway URL for the
        browser (no server call)."""
        method = request.method
        kind = "qr" if method == "qr" else "redirect"
        if method not in self.methods:
            return Checkout(
                kind=method,
                outcome=Outcome.FAILED,
                message=f"alipay has no method {method!r} (qr, page, h5)",
            )
        amount = request.amount
        if amount.currency.code != "CNY":
            return Checkout(
                kind=kind, outcome=Outcome.FAILED, message="alipay takes CNY amounts only"
            )
        if not _MIN_AMOUNT <= amount.amount <= _MAX_AMOUNT:
            return Checkout(
                kind=kind,
                outcome=Outcome.FAILED,
                message=f"alipay takes 0.01 to 100000000.00 CNY, not {_yuan(amount)}",
            )
        if not 0 < len(request.out_trade_no) <= 64:
            return Checkout(kind=kind, outcome=Outcome.FAILED, message="out_trade_no too long")
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": _yuan(amount),
            "subject": (request.subject or request.out_trade_no)[:256],
            "time_expire": beijing_time(request.expires_at),
        }
        notify_url = request.notify_url or self.notify_url
        if method == "qr":
            return self._precreate(biz, notify_url)
        if method == "page":
            api, biz["product_code"] = "alipay.trade.page.pay", self.page_product_code
        else:
            api, biz["product_code"] = "alipay.trade.wap.pay", self.wap_product_code
        params = self.signed_params(
            api, biz, notify_url=notify_url, return_url=request.return_url or self.return_url
        )
        return Checkout(kind="redirect", outcome=Outcome.PENDING, url=self._url_with(params))

    def _precreate(self, biz: Mapping[str, Any], notify_url: str | None) -> Checkout:
        reply = self.call("alipay.trade.precreate", biz, notify_url=notify_url)
        if reply.unknown:
            return Checkout(kind="qr", outcome=Outcome.UNKNOWN, message=reply.describe())
        if reply.succeeded:
            qr_code = reply.text("qr_code")
            if qr_code is None:
                return Checkout(kind="qr", outcome=Outcome.FAILED, message="no qr_code")
            return Checkout(kind="qr", outcome=Outcome.PENDING, content=qr_code)
        return Checkout(kind="qr", outcome=Outcome.FAILED, message=reply.describe())

    # -- notifications ------------------------------------------------------------------------
    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        """``success`` (exactly those 7 bytes) when accepted; ``fail`` otherwise, which makes
        Alipay deliver the notification again later."""
        if accepted:
            return HttpReply(200, b"success", {"Content-Type": "text/plain; charset=utf-8"})
        return HttpReply(400, b"fail", {"Content-Type": "text/plain; charset=utf-8"})

    def parse_notification(self, notification: Notification) -> NotificationResult:
        """Verify a ``notify_url`` form and turn it into events. Never raises.

        Rejections (answered ``fail``): ``malformed`` (not a form, a charset other than
        UTF-8/GBK, no ``sign``, a missing field or a bad amount), ``bad_signature`` (the
        signature does not verify with Alipay's key, or ``sign_type`` is not RSA2),
        ``wrong_merchant`` (``app_id`` or ``seller_id`` is not ours). Accepted:
        ``TRADE_SUCCESS``/``TRADE_FINISHED`` are paid :class:`PaymentEvent` s,
        ``TRADE_CLOSED`` an unpaid one; a refund notification (``refund_fee``,
        ``gmt_refund`` or ``out_biz_no`` present) is a :class:`RefundEvent` for
        ``out_biz_no`` (our ``out_refund_no``); ``WAIT_BUYER_PAY`` and other notification
        types give no event.
        """
        try:
            return self._parse_notification(notification)
        except Exception as exc:  # never raise on garbage
            return NotificationResult.reject(
                "malformed", f"unreadable notification ({type(exc).__name__})"
            )

    def _parse_notification(self, notification: Notification) -> NotificationResult:
        reject = NotificationResult.reject
        body: object = notification.body
        if isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        if not isinstance(body, bytes):
            return reject("malformed", "the body is not bytes")
        try:
            params, codec = parse_form(body)
        except (ValueError, UnicodeError) as exc:
            return reject("malformed", f"not an Alipay notification form: {exc}"[:300])
        signature = params.get("sign", "")
        if not signature:
            return reject("malformed", "the form has no sign")
        sign_type = params.get("sign_type", "RSA2")
        if sign_type != "RSA2":
            return reject(
                "bad_signature",
                f"sign_type {sign_type[:20]!r} is refused: this channel verifies RSA2 only",
            )
        if not self._verify_notification(params, signature, codec):
            return reject("bad_signature", "the signature does not verify with Alipay's key")
        fields = {k: v for k, v in params.items() if v}  # empty values are not signed
        app_id = fields.get("app_id")
        if app_id != self.app_id:
            return reject("wrong_merchant", f"app_id {str(app_id)[:40]!r} is not ours")
        if self.seller_id is not None and fields.get("seller_id") != self.seller_id:
            return reject(
                "wrong_merchant", f"seller_id {fields.get('seller_id', '')[:40]!r} is not ours"
            )
        notify_type = fields.get("notify_type", "trade_status_sync")
        if notify_type != "trade_status_sync":
            return NotificationResult()  # a verified notification we have no use for
        out_trade_no = fields.get("out_trade_no")
        if out_trade_no is None:
            return reject("malformed", "out_trade_no is missing")
        notify_id = fields.get("notify_id")
        if any(marker in fields for marker in _REFUND_MARKERS):
            return self._refund_notification(fields, out_trade_no, notify_id)
        status = fields.get("trade_status", "")
        if status not in _PAID_STATUSES and status != "TRADE_CLOSED":
            return NotificationResult()  # WAIT_BUYER_PAY: nothing to apply
        amount = _money(fields.get("total_amount"))
        if amount is None and status in _PAID_STATUSES:
            return reject(
                "malformed", f"total_amount {fields.get('total_amount', '')[:30]!r} is not yuan"
            )
        event = PaymentEvent(
            out_trade_no=out_trade_no,
            paid=status in _PAID_STATUSES,
            amount=amount,
            channel_trade_no=fields.get("trade_no"),
            status=status,
            merchant_id=fields.get("seller_id"),
            occurred_at=_parse_time(fields.get("gmt_payment"))
            or _parse_time(fields.get("gmt_close"))
            or _parse_time(fields.get("notify_time")),
            event_id=notify_id,
        )
        return NotificationResult(events=(event,))

    def _verify_notification(self, params: Mapping[str, str], signature: str, codec: str) -> bool:
        content = _sign.notification_sign_content(params)
        if _sign.verify(content, signature, self._alipay_key, codec):
            return True
        # The official Java SDK verifies with empty values kept ("k="): accept that form too.
        if any(not v for k, v in params.items() if k not in ("sign", "sign_type")):
            kept = _sign.notification_sign_content(params, keep_empty=True)
            return _sign.verify(kept, signature, self._alipay_key, codec)
        return False

    @staticmethod
    def _refund_notification(
        fields: Mapping[str, str], out_trade_no: str, notify_id: str | None
    ) -> NotificationResult:
        refund_fee = fields.get("refund_fee")
        if refund_fee is not None and _money(refund_fee) is None:
            return NotificationResult.reject(
                "malformed", f"refund_fee {refund_fee[:30]!r} is not yuan"
            )
        out_biz_no = fields.get("out_biz_no")
        if out_biz_no is None:
            return NotificationResult()  # a refund we did not number: nothing to apply
        # refund_fee is the trade's refunded total, not this refund's amount: the event
        # carries no amount (query_refund tells the exact one).
        event = RefundEvent(
            out_refund_no=out_biz_no,
            outcome=Outcome.SUCCEEDED,
            amount=None,
            channel_refund_no=None,
            out_trade_no=out_trade_no,
            event_id=notify_id,
        )
        return NotificationResult(events=(event,))

    # -- queries, refunds, close --------------------------------------------------------------
    def query_payment(self, out_trade_no: str) -> PaymentQuery:
        """``alipay.trade.query``: ``TRADE_SUCCESS``/``TRADE_FINISHED`` SUCCEEDED (with the
        paid event), ``WAIT_BUYER_PAY`` PENDING, ``TRADE_CLOSED`` FAILED; ``40004
        ACQ.TRADE_NOT_EXIST`` PENDING (a QR code not scanned yet); any other answer UNKNOWN
        (a failed query says nothing about the payment)."""
        reply = self.call("alipay.trade.query", {"out_trade_no": out_trade_no})
        if reply.succeeded:
            if reply.text("out_trade_no") not in (None, out_trade_no):
                return PaymentQuery(Outcome.UNKNOWN, message="the answer is about another trade")
            status = reply.text("trade_status") or ""
            if status in _PAID_STATUSES:
                amount = _money(reply.data.get("total_amount"))
                if amount is None:
                    return PaymentQuery(Outcome.UNKNOWN, message="the answer has no total_amount")
                event = PaymentEvent(
                    out_trade_no=out_trade_no,
                    paid=True,
                    amount=amount,
                    channel_trade_no=reply.text("trade_no"),
                    status=status,
                    merchant_id=self.seller_id,
                    occurred_at=_parse_time(reply.text("send_pay_date")),
                )
                return PaymentQuery(Outcome.SUCCEEDED, event=event, message=status)
            if status == "WAIT_BUYER_PAY":
                return PaymentQuery(Outcome.PENDING, message=status)
            if status == "TRADE_CLOSED":
                return PaymentQuery(Outcome.FAILED, message=status)
            return PaymentQuery(Outcome.UNKNOWN, message=f"trade_status {status[:40]!r}")
        if reply.business_failure and reply.sub_code == _NOT_EXIST:
            return PaymentQuery(
                Outcome.PENDING, message=f"{_NOT_EXIST}: not scanned yet, so not paid"
            )
        return PaymentQuery(Outcome.UNKNOWN, message=reply.describe())

    def refund(self, request: RefundRequest) -> RefundResult:
        """``alipay.trade.refund`` with ``out_request_no`` = ``request.out_refund_no``.

        ``10000`` with ``fund_change`` ``Y``: SUCCEEDED. With ``N`` (a repeat of a refund
        already made, or one Alipay has not finished): the refund is queried at once —
        SUCCEEDED when the query confirms it, else PENDING. A signed ``40004``: FAILED with
        ``code`` = ``sub_code``, ``retryable`` for :data:`RETRYABLE_REFUND_CODES`. Other signed
        refusals (``40001``/``40002``/``40006``): FAILED, not retryable. ``20000``, no answer,
        an HTTP error, a bad signature or an unsigned error: UNKNOWN (retry with the same
        ``out_request_no``, or query).
        """
        if request.amount.currency.code != "CNY":
            return RefundResult(
                Outcome.FAILED, code="unsupported_currency", message="alipay refunds CNY only"
            )
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": _yuan(request.amount),
            "out_request_no": request.out_refund_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason[:256]
        reply = self.call("alipay.trade.refund", biz)
        if reply.succeeded:
            if reply.text("fund_change") == "Y":
                return RefundResult(Outcome.SUCCEEDED, message="fund_change Y")
            confirmed = self.query_refund(request)
            if confirmed.outcome is Outcome.SUCCEEDED:
                return RefundResult(
                    Outcome.SUCCEEDED, message="fund_change N, confirmed by the refund query"
                )
            return RefundResult(
                Outcome.PENDING,
                message=f"fund_change N, not confirmed yet: {confirmed.message}"[:500],
            )
        if reply.unknown or not reply.signed:
            return RefundResult(Outcome.UNKNOWN, message=reply.describe(), retryable=True)
        code = reply.sub_code or reply.code or "unknown"
        return RefundResult(
            Outcome.FAILED,
            code=code,
            message=reply.describe(),
            retryable=reply.business_failure and code in RETRYABLE_REFUND_CODES,
        )

    def query_refund(self, request: RefundRequest) -> RefundResult:
        """``alipay.trade.fastpay.refund.query`` for ``out_request_no``.

        ``10000`` with ``refund_status`` ``REFUND_SUCCESS`` — or, older answers, with no
        ``refund_status`` but a ``refund_amount`` — SUCCEEDED; another ``refund_status``
        PENDING; ``10000`` without refund data: the refund was never made — FAILED, ``code``
        ``not_found``, retryable with the same ``out_request_no``. ``40004
        ACQ.TRADE_NOT_EXIST``: FAILED, retryable (no refund exists). Anything else UNKNOWN.
        """
        biz = {"out_trade_no": request.out_trade_no, "out_request_no": request.out_refund_no}
        reply = self.call("alipay.trade.fastpay.refund.query", biz)
        if reply.succeeded:
            answered_no = reply.text("out_request_no")
            if answered_no not in (None, request.out_refund_no):
                return RefundResult(Outcome.UNKNOWN, message="the answer is about another refund")
            status = reply.text("refund_status")
            amount_text = reply.text("refund_amount")
            if status == "REFUND_SUCCESS" or (status is None and amount_text is not None):
                amount = _money(amount_text) if amount_text is not None else None
                if amount_text is not None and amount != request.amount:
                    return RefundResult(
                        Outcome.UNKNOWN,
                        message=f"Alipay refunded {amount_text} for {request.out_refund_no}, "
                        f"not {_yuan(request.amount)}",
                    )
                return RefundResult(Outcome.SUCCEEDED, message=status or "refund_amount present")
            if status is not None:
                return RefundResult(Outcome.PENDING, message=f"refund_status {status[:40]}")
            return RefundResult(
                Outcome.FAILED,
                code="not_found",
                message=f"Alipay has no refund {request.out_refund_no}: it was never made; "
                "retry with the same out_request_no",
                retryable=True,
            )
        if reply.business_failure and reply.sub_code == _NOT_EXIST:
            return RefundResult(
                Outcome.FAILED, code=_NOT_EXIST, message=reply.describe(), retryable=True
            )
        return RefundResult(Outcome.UNKNOWN, message=reply.describe(), retryable=True)

    def close(self, out_trade_no: str) -> Outcome:
        """``alipay.trade.close``: ``10000`` SUCCEEDED; ``40004 ACQ.TRADE_NOT_EXIST``
        SUCCEEDED too (a QR code never scanned: there is no trade to close, and
        ``time_expire`` — the attempt's deadline, sent at checkout — stops a later scan from
        paying); any other signed refusal (``ACQ.TRADE_STATUS_ERROR``: paid) FAILED; no
        verified answer or ``20000`` UNKNOWN."""
        reply = self.call("alipay.trade.close", {"out_trade_no": out_trade_no})
        if reply.succeeded:
            return Outcome.SUCCEEDED
        if reply.business_failure and reply.sub_code == _NOT_EXIST:
            return Outcome.SUCCEEDED
        if reply.unknown or not reply.signed:
            return Outcome.UNKNOWN
        return Outcome.FAILED
