"""Alipay's side of :class:`AlipaySandbox`: the gateway's answers over HTTP (request
checks, faults, precreate/page/wap pay, query, refund, refund query, close) and the cashier
page a person can pay on in a browser."""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import urllib.parse
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore_alipay import _sign
from ordercore_alipay._wire import BEIJING, beijing_time, parse_form
from ordercore_alipay.sandbox._records import (
    _BROWSER_METHODS,
    _BUYER_ID,
    _BUYER_LOGON,
    _METHODS,
    SandboxError,
    _amount,
    _Answer,
    _Fault,
    _Refund,
    _Trade,
    _yuan,
)
from ordercore_alipay.sandbox._state import _SandboxState


class _SandboxGateway(_SandboxState):
    """Alipay's side of :class:`AlipaySandbox` (a base class of it; the attributes below are
    set by its ``__init__``)."""

    calls: Counter[str]
    hang_seconds: float
    refund_query_status: bool
    refunds_made: int
    seller_balance_insufficient: bool
    _certs: dict[str, bytes]
    _app_public_key: rsa.RSAPublicKey
    _trade_numbers: ClassVar[itertools.count[int]]

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

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
