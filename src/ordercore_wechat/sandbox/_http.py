"""The sandbox's HTTP front: request signatures checked, routes to the endpoints of
:mod:`._api`, faults applied to the answers, and the cashier page a person can pay on."""

from __future__ import annotations

import contextlib
import html
import threading
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa

from ordercore_wechat import _crypto, _wire

from ._api import Endpoints, Reply, error
from ._model import ERROR_STATUS, SandboxError, SandboxTrade
from ._server import Answer

__all__ = ["Fault", "HttpFront"]


@attrs.define
class Fault:
    kind: str
    apply: bool
    code: str | None


class HttpFront(Endpoints):
    """Mixed into :class:`~ordercore_wechat.sandbox.WechatSandbox`."""

    merchant_key: rsa.RSAPrivateKey
    merchant_serial_no: str
    hang_seconds: float
    calls: Counter[str]
    _faults: dict[str, deque[Fault]]
    _lock: threading.RLock

    @property
    def platform_serials(self) -> list[str]:
        raise NotImplementedError

    def _signed(
        self, status: int, data: Mapping[str, Any] | None, fault: str | None = None
    ) -> Answer:
        raise NotImplementedError

    def pay(self, out_trade_no: str, *, deliver: bool = True) -> Any:
        raise NotImplementedError

    def deliver(self, notification: Any) -> Any:
        raise NotImplementedError

    def trade(self, out_trade_no: str) -> SandboxTrade:
        raise NotImplementedError

    def _authorized(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        """Why the request's signature is refused, or None."""
        try:
            params = _crypto.parse_authorization(headers.get("authorization", ""))
        except ValueError as exc:
            return f"Authorization: {exc}"
        if params["mchid"] != self.mchid:
            return "mchid 与 Authorization 不匹配"
        if params["serial_no"].upper() != self.merchant_serial_no.upper():
            return "商户证书序列号有误"
        timestamp = params["timestamp"]
        if not timestamp.isdigit() or abs(self.clock().timestamp() - int(timestamp)) >= 300:
            return "timestamp 与当前时间相差过大"
        message = _crypto.request_message(method, target, timestamp, params["nonce_str"], body)
        if not _crypto.verify(message, params["signature"], self.merchant_key.public_key()):
            return "签名错误"
        return None

    def _route(
        self, method: str, path: str, query: str, data: dict[str, Any]
    ) -> tuple[str, Callable[[], Reply]] | None:
        trade_prefix = "/v3/pay/transactions/out-trade-no/"
        refund_prefix = "/v3/refund/domestic/refunds/"
        if method == "POST" and path == "/v3/pay/transactions/native":
            return "native", lambda: self._create("NATIVE", data)
        if method == "POST" and path == "/v3/pay/transactions/h5":
            return "h5", lambda: self._create("MWEB", data)
        if path.startswith(trade_prefix):
            rest = path[len(trade_prefix) :]
            if method == "POST" and rest.endswith("/close"):
                no = urllib.parse.unquote(rest[: -len("/close")])
                return "close", lambda: self._close(no, data)
            if method == "GET" and "/" not in rest:
                fields = urllib.parse.parse_qs(query)
                return "query", lambda: self._query(urllib.parse.unquote(rest), fields)
        if method == "POST" and path == "/v3/refund/domestic/refunds":
            return "refund", lambda: self._refund(data)
        if method == "GET" and path.startswith(refund_prefix):
            no = urllib.parse.unquote(path[len(refund_prefix) :])
            return "refund_query", lambda: self._refund_query(no)
        if method == "GET" and path == "/v3/certificates":
            return "certificates", self._certificates
        return None

    def _http(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        parts = urllib.parse.urlsplit(target)
        if parts.path.startswith("/cashier/"):
            return self._cashier(method, urllib.parse.unquote(parts.path[len("/cashier/") :]))
        data: dict[str, Any] = {}
        if method == "POST":
            try:
                data = _wire.load_json(body)
            except _wire.WireError as exc:
                return self._signed(*error("PARAM_ERROR", f"请求体错误: {exc}"))
        route = self._route(method, parts.path, parts.query, data)
        if route is None:
            return self._signed(*error("NOT_FOUND", "没有这个接口"))
        endpoint, work = route
        with self._lock:
            self.calls[endpoint] += 1
        refused = self._authorized(method, target, headers, body)
        if refused is not None:  # WeChat does not sign this answer
            return Answer(401, _wire.dumps({"code": "SIGN_ERROR", "message": refused}))
        serial = headers.get("wechatpay-serial")
        if serial is not None and serial not in self.platform_serials:
            return self._signed(*error("PARAM_ERROR", "Wechatpay-Serial 不是有效的平台证书或公钥"))
        with self._lock:
            queue = self._faults[endpoint]
            fault = queue.popleft() if queue else None
            if fault is not None and not fault.apply:
                return self._fault_answer(fault, None)
            reply = work()
        if fault is not None:
            return self._fault_answer(fault, reply)
        return self._signed(*reply)

    def _fault_answer(self, fault: Fault, reply: Reply | None) -> Answer:
        if fault.kind == "timeout":
            return Answer(hang=self.hang_seconds)
        if fault.kind == "disconnect":
            return Answer(drop=True)
        if fault.kind == "500":
            return self._signed(*error("SYSTEM_ERROR", "系统错误"))
        if fault.kind == "error":
            code = fault.code or "SYSTEM_ERROR"
            return self._signed(ERROR_STATUS.get(code, 400), {"code": code, "message": "sandbox"})
        status, data = reply if reply is not None else (200, {})
        return self._signed(status, data, fault=fault.kind)

    def _cashier(self, method: str, rest: str) -> Answer:
        paying = method == "POST" and rest.endswith("/pay")
        no = rest[: -len("/pay")] if paying else rest
        try:
            if paying:
                notification = self.pay(no, deliver=False)
                with contextlib.suppress(SandboxError):  # WeChat retries; so may the person
                    self.deliver(notification)
                return Answer(200, b"<!doctype html><h1>Paid</h1>", "text/html; charset=utf-8")
            snapshot = self.trade(no)
        except SandboxError as exc:
            return Answer(409, str(exc).encode(), "text/plain; charset=utf-8")
        quoted = urllib.parse.quote(no, safe="")
        button = (
            f'<form method="post" action="/cashier/{quoted}/pay"><button>Pay</button></form>'
            if snapshot.state == "NOTPAY"
            else f"<p>This trade is {html.escape(snapshot.state)}.</p>"
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>WeChat Pay sandbox</title>"
            f"<h1>WeChat Pay sandbox</h1><p>{html.escape(snapshot.description)}</p>"
            f"<p>Trade {html.escape(no)}: <strong>{snapshot.total}</strong></p>{button}"
        )
        return Answer(200, page.encode("utf-8"), "text/html; charset=utf-8")
