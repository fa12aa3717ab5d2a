"""The sandbox's API endpoints: each takes the request's JSON (or path parameter) and returns
``(status, body)`` — the body is signed by the caller. The sandbox's lock is held."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import secrets
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

from ordercore_wechat import _crypto, _wire

from ._model import ERROR_STATUS, PlatformKey, Refund, Trade

__all__ = ["Endpoints", "Reply"]

#: ``(HTTP status, JSON body or None)``.
Reply = tuple[int, dict[str, Any] | None]
_OUT_NO: Final = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-|*")
_OPENID: Final = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def error(code: str, message: str) -> Reply:
    return ERROR_STATUS.get(code, 400), {"code": code, "message": message}


def _ip(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class Endpoints:
    """The business rules, mixed into :class:`~ordercore_wechat.sandbox.WechatSandbox`."""

    _numbers: ClassVar[itertools.count[int]] = itertools.count(1)

    mchid: str
    appid: str
    apiv3_key: bytes
    clock: Callable[[], dt.datetime]
    refund_processing: bool
    balance_insufficient: bool
    refunds_made: int
    _trades: dict[str, Trade]
    _platform: list[PlatformKey]

    @property
    def url(self) -> str:
        raise NotImplementedError

    # -- payments -----------------------------------------------------------------------------
    def _create(self, trade_type: str, data: Mapping[str, Any]) -> Reply:
        if data.get("appid") != self.appid or data.get("mchid") != self.mchid:
            return error("PARAM_ERROR", "appid 和 mch_id 不匹配")
        no, description = data.get("out_trade_no"), data.get("description")
        notify_url = data.get("notify_url")
        amount = data.get("amount")
        total = _wire.integer(amount, "total")
        if not isinstance(no, str) or not 6 <= len(no) <= 32 or not set(no) <= _OUT_NO:
            return error("PARAM_ERROR", "out_trade_no 格式错误")
        if not isinstance(description, str) or not 0 < len(description) <= 127:
            return error("PARAM_ERROR", "description 格式错误")
        if not isinstance(notify_url, str) or "?" in notify_url:
            return error("PARAM_ERROR", "notify_url 格式错误")
        if total is None or total < 1 or _wire.text(amount, "currency") != "CNY":
            return error("PARAM_ERROR", "amount 格式错误")
        client_ip = None
        if trade_type == "MWEB":
            scene = data.get("scene_info")
            client_ip = _ip(scene.get("payer_client_ip") if isinstance(scene, dict) else None)
            if client_ip is None:
                return error("PARAM_ERROR", "scene_info.payer_client_ip 格式错误")
        trade = self._trades.get(no)
        if trade is not None:
            if trade.state in ("SUCCESS", "REFUND"):
                return error("ORDERPAID", "该订单已支付")
            if trade.state == "CLOSED":
                return error("ORDER_CLOSED", "订单已关闭")
            if (trade.total, trade.description, trade.trade_type) != (
                total,
                description,
                trade_type,
            ):
                return error("INVALID_REQUEST", "201 商户订单号重复")
        else:
            trade = Trade(
                out_trade_no=no,
                trade_type=trade_type,
                total=total,
                description=description,
                notify_url=notify_url,
                created=self.clock(),
                time_expire=_wire.text(data, "time_expire"),
                payer_client_ip=client_ip,
                code=secrets.token_urlsafe(12),
            )
            self._trades[no] = trade
        if trade_type == "NATIVE":
            return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={trade.code}"}
        quoted = urllib.parse.quote(no, safe="")
        return 200, {"h5_url": f"{self.url}/cashier/{quoted}?prepay_id=wx{trade.code}"}

    def transaction(self, trade: Trade) -> dict[str, Any]:
        """A trade as the query answers it (and as a notification's resource holds it)."""
        data: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "trade_type": trade.trade_type,
            "trade_state": trade.state,
            "trade_state_desc": {
                "SUCCESS": "支付成功",
                "REFUND": "转入退款",
                "NOTPAY": "未支付",
                "CLOSED": "已关闭",
                "USERPAYING": "用户支付中",
                "PAYERROR": "支付失败",
                "REVOKED": "已撤销",
            }.get(trade.state, trade.state),
            "attach": "",
            "amount": {"total": trade.total, "currency": "CNY"},
        }
        if trade.transaction_id is not None:
            paid = trade.total if trade.payer_total is None else trade.payer_total
            data.update(
                transaction_id=trade.transaction_id,
                bank_type="OTHERS",
                success_time=_wire.rfc3339(trade.success_time or self.clock()),
                payer={"openid": _OPENID},
                amount={
                    "total": trade.total,
                    "payer_total": paid,
                    "currency": "CNY",
                    "payer_currency": "CNY",
                },
            )
        return data

    def _query(self, no: str, query: Mapping[str, list[str]]) -> Reply:
        if query.get("mchid") != [self.mchid]:
            return error("PARAM_ERROR", "mchid 参数错误")
        trade = self._trades.get(no)
        if trade is None:
            return error("ORDER_NOT_EXIST", "订单不存在")
        return 200, self.transaction(trade)

    def _close(self, no: str, data: Mapping[str, Any]) -> Reply:
        if data.get("mchid") != self.mchid:
            return error("PARAM_ERROR", "mchid 参数错误")
        trade = self._trades.get(no)
        if trade is None:
            return error("ORDER_NOT_EXIST", "订单不存在")
        if trade.state in ("SUCCESS", "REFUND"):
            return error("ORDERPAID", "该订单已支付")
        trade.state = "CLOSED"
        return 204, None

    # -- refunds ------------------------------------------------------------------------------
    def refund_body(self, trade: Trade, refund: Refund) -> dict[str, Any]:
        """A refund as the refund and refund-query answers hold it."""
        data: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": trade.transaction_id,
            "out_trade_no": trade.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": _wire.rfc3339(refund.created),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total,
                "refund": refund.amount,
                "payer_total": refund.total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": refund.total,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0,
            },
        }
        if refund.success_time is not None:
            data["success_time"] = _wire.rfc3339(refund.success_time)
        return data

    def find_refund(self, out_refund_no: str) -> tuple[Trade, Refund] | None:
        for trade in self._trades.values():
            refund = trade.refunds.get(out_refund_no)
            if refund is not None:
                return trade, refund
        return None

    def _refund(self, data: Mapping[str, Any]) -> Reply:
        no, transaction_id = data.get("out_trade_no"), data.get("transaction_id")
        trade = self._trades.get(no) if isinstance(no, str) else None
        if trade is None and isinstance(transaction_id, str):
            trade = next(
                (t for t in self._trades.values() if t.transaction_id == transaction_id), None
            )
        if trade is None:
            return error("RESOURCE_NOT_EXISTS", "订单不存在")
        out_refund_no = data.get("out_refund_no")
        amount = data.get("amount")
        refund_fen, total = _wire.integer(amount, "refund"), _wire.integer(amount, "total")
        if not isinstance(out_refund_no, str) or not 1 <= len(out_refund_no) <= 64:
            return error("PARAM_ERROR", "out_refund_no 格式错误")
        if refund_fen is None or total is None or refund_fen < 1:
            return error("PARAM_ERROR", "amount 格式错误")
        if _wire.text(amount, "currency") != "CNY":
            return error("PARAM_ERROR", "currency 只支持 CNY")
        found = self.find_refund(out_refund_no)
        if found is not None:
            old_trade, existing = found
            if old_trade is not trade or existing.amount != refund_fen:
                return error("INVALID_REQUEST", "同一 out_refund_no 的退款参数不一致")
            return 200, self.refund_body(trade, existing)
        if trade.state not in ("SUCCESS", "REFUND"):
            return error("INVALID_REQUEST", "订单未支付")
        if total != trade.total:
            return error("PARAM_ERROR", "订单金额与原订单不一致")
        if trade.refunded + refund_fen > trade.total:
            return error("INVALID_REQUEST", "申请退款金额超过订单可退金额")
        if self.balance_insufficient:
            return error("NOT_ENOUGH", "基本账户余额不足")
        now = self.clock()
        reason = data.get("reason")
        notify_url = data.get("notify_url")
        refund = Refund(
            out_refund_no=out_refund_no,
            refund_id=f"50300{next(self._numbers):024d}",
            amount=refund_fen,
            total=total,
            reason=reason if isinstance(reason, str) else None,
            notify_url=notify_url if isinstance(notify_url, str) else None,
            created=now,
            status="PROCESSING" if self.refund_processing else "SUCCESS",
            success_time=None if self.refund_processing else now,
        )
        trade.refunds[out_refund_no] = refund
        trade.state = "REFUND"
        self.refunds_made += 1
        return 200, self.refund_body(trade, refund)

    def _refund_query(self, out_refund_no: str) -> Reply:
        found = self.find_refund(out_refund_no)
        if found is None:
            return error("RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self.refund_body(*found)

    # -- certificates -------------------------------------------------------------------------
    def _certificates(self) -> Reply:
        """Every platform certificate, encrypted with the APIv3 key."""
        items = []
        for platform in self._platform:
            if platform.certificate is None:
                continue
            pem = platform.certificate.public_bytes(_crypto_pem())
            nonce = _crypto.make_nonce(12).lower()
            items.append(
                {
                    "serial_no": platform.serial,
                    "effective_time": _wire.rfc3339(platform.certificate.not_valid_before_utc),
                    "expire_time": _wire.rfc3339(platform.certificate.not_valid_after_utc),
                    "encrypt_certificate": {
                        "algorithm": "AEAD_AES_256_GCM",
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": _crypto.encrypt(self.apiv3_key, nonce, "certificate", pem),
                    },
                }
            )
        return 200, {"data": items}


def _crypto_pem() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM
