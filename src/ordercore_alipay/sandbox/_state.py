"""The test side of :class:`AlipaySandbox`: what the test (or the developer) does as the
buyer — scan, pay, finish, notify a refund, build and deliver notifications, inject faults —
and the snapshots it reads."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore import Money
from ordercore_alipay import _sign
from ordercore_alipay._wire import beijing_time
from ordercore_alipay.sandbox._records import (
    _BUYER_ID,
    _BUYER_LOGON,
    _CREATED,
    _METHODS,
    FAULTS,
    SandboxError,
    SandboxNotification,
    SandboxRefund,
    SandboxTrade,
    _Fault,
    _Trade,
    _yuan,
)


class _SandboxState:
    """The test side and the trade state of :class:`AlipaySandbox` (a base class of it; the
    attributes below are set by its ``__init__``)."""

    app_id: str
    seller_id: str
    clock: Callable[[], dt.datetime]
    deliveries: list[tuple[SandboxNotification, int, bytes]]
    _lock: threading.RLock
    _trades: dict[str, _Trade]
    _faults: dict[str, deque[_Fault]]
    _notify_ids: itertools.count[int]
    _alipay_key: rsa.RSAPrivateKey

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
