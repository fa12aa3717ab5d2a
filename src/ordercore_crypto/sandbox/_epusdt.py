"""A local Epusdt gateway: trades in memory, signed callbacks (MD5 or HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

from attrs import define

from ordercore.channels import ChannelConfig, Secret

from ._base import GatewaySandbox, SandboxError, SandboxNotification

__all__ = ["EpusdtSandbox", "EpusdtTrade", "epusdt_signature"]

_STATUS = re.compile(r"/pay/check-status/([^/]+)\Z")


def _go_text(value: Any) -> str:
    """How the Go gateway writes a value it signs (its own formatter, kept apart from the
    channel's: a float64 printed shortest, an int, a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return format(Decimal(value).normalize(), "f")


def go_json(params: Mapping[str, Any]) -> bytes:
    """A flat JSON object as the Go gateway writes it: numbers in their shortest form."""
    return (
        "{"
        + ",".join(
            f"{json.dumps(k)}:{_go_text(v) if isinstance(v, Decimal) else json.dumps(v)}"
            for k, v in params.items()
        )
        + "}"
    ).encode()


def epusdt_signature(params: Mapping[str, Any], token: str, algorithm: str = "md5") -> str:
    pairs = sorted(
        f"{k}={_go_text(v)}"
        for k, v in params.items()
        if k != "signature" and v is not None and _go_text(v) != ""
    )
    text = "&".join(pairs)
    if algorithm == "hmac-sha256":
        return hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5((text + token).encode()).hexdigest()


@define
class EpusdtTrade:
    trade_id: str
    order_id: str
    amount: Decimal
    actual_amount: Decimal
    token: str
    notify_url: str
    expires_at: datetime
    status: int = 1


class EpusdtSandbox(GatewaySandbox):
    """Epusdt on loopback. ``rate`` is CNY per USDT; ``decimals`` how ``actual_amount`` is
    rounded (4: old versions and forks; 2: assimon's current code); ``algorithm`` and
    ``create_path`` play a fork."""

    name = "epusdt"

    def __init__(
        self,
        *,
        rate: Decimal = Decimal("7.2"),
        decimals: int = 4,
        algorithm: str = "md5",
        create_path: str = "/api/v1/order/create-transaction",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate, self.decimals = rate, decimals
        self.algorithm, self.create_path = algorithm, create_path
        self.token = self.new_id("tok")
        self.trades: dict[str, EpusdtTrade] = {}

    def channel_config(self, notify_url: str | None = None, **options: Any) -> ChannelConfig:
        extra: dict[str, Any] = {}
        if self.algorithm != "md5":
            extra["signature"] = self.algorithm
        if self.create_path != "/api/v1/order/create-transaction":
            extra["create_path"] = self.create_path
        return ChannelConfig(
            name="epusdt",
            notify_url=notify_url,
            options={"gateway_url": self.url, **extra, **options},
            secrets={"api_auth_token": Secret(self.token.encode())},
        )

    def config_table(self, directory: Path, notify_url: str | None = None) -> str:
        token = self.write_secret(directory, "epusdt-token", self.token)
        lines = [
            "[channels.epusdt]",
            f"gateway_url = {json.dumps(self.url)}",
            f"api_auth_token_file = {json.dumps(str(token))}",
        ]
        if self.algorithm != "md5":
            lines.append(f"signature = {json.dumps(self.algorithm)}")
        if notify_url:
            lines.append(f"notify_url = {json.dumps(notify_url)}")
        return "\n".join(lines) + "\n"

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        found = _STATUS.match(path)
        if method == "GET" and found:
            trade = self.trades.get(found.group(1))
            if trade is None:
                return 200, {"status_code": 10008, "message": "not found", "data": None}
            return 200, {
                "status_code": 200,
                "message": "success",
                "data": {"trade_id": trade.trade_id, "status": trade.status},
            }
        if method != "POST" or path != self.create_path:
            return 404, {"status_code": 404, "message": "not found"}
        request = json.loads(body, parse_float=Decimal)
        if epusdt_signature(request, self.token, self.algorithm) != request.get("signature"):
            return 200, {"status_code": 401, "message": "signature verification failed"}
        if not request.get("order_id") or not request.get("notify_url"):
            return 200, {"status_code": 10009, "message": "bad parameters"}
        if any(t.order_id == request["order_id"] for t in self.trades.values()):
            return 200, {"status_code": 10002, "message": "order already exists"}
        amount = Decimal(str(request["amount"]))
        step = Decimal(1).scaleb(-self.decimals)
        trade = EpusdtTrade(
            trade_id=self.new_id("T"),
            order_id=str(request["order_id"]),
            amount=amount,
            actual_amount=(amount / self.rate).quantize(step, rounding=ROUND_UP),
            token="T" + self.new_id()[:33],
            notify_url=str(request["notify_url"]),
            expires_at=self.now() + timedelta(minutes=10),
        )
        self.trades[trade.trade_id] = trade
        data = go_json(
            {
                "trade_id": trade.trade_id,
                "order_id": trade.order_id,
                "amount": trade.amount,
                "actual_amount": trade.actual_amount,
                "token": trade.token,
                "expiration_time": int(trade.expires_at.timestamp()),
                "payment_url": f"{self.url}/pay/checkout-counter/{trade.trade_id}",
            }
        )
        return 200, b'{"status_code":200,"message":"success","data":' + data + b"}"

    def trade(self, out_trade_no: str) -> EpusdtTrade:
        for trade in self.trades.values():
            if trade.order_id == out_trade_no:
                return trade
        raise SandboxError(f"no trade for {out_trade_no!r}")

    def pay(
        self,
        out_trade_no: str,
        actual_amount: Decimal | str | None = None,
        *,
        deliver: bool = True,
        token: str | None = None,
    ) -> SandboxNotification:
        """The payer's transfer is seen: status 2, ``actual_amount`` as given (default: the
        locked one; lower = underpaid, as some forks report)."""
        with self._lock:
            trade = self.trade(out_trade_no)
            trade.status = 2
            amount = trade.actual_amount if actual_amount is None else Decimal(str(actual_amount))
            hook = self.callback(trade, amount, token=token)
        if deliver:
            self.deliver(hook)
        return hook

    def expire(self, out_trade_no: str) -> SandboxNotification:
        with self._lock:
            trade = self.trade(out_trade_no)
            trade.status = 3
            return self.callback(trade, trade.actual_amount)

    def callback(
        self, trade: EpusdtTrade, actual_amount: Decimal, *, token: str | None = None
    ) -> SandboxNotification:
        """The callback for ``trade`` (signed with ``token``, default the right one). Numbers
        go out as Go writes float64 values in JSON (``27``, ``3.75``)."""
        params: dict[str, Any] = {
            "trade_id": trade.trade_id,
            "order_id": trade.order_id,
            "amount": trade.amount,
            "actual_amount": actual_amount,
            "token": trade.token,
            "block_transaction_id": self.new_id() + self.new_id(),
            "status": trade.status,
        }
        params["signature"] = epusdt_signature(params, token or self.token, self.algorithm)
        body = go_json(params)
        return SandboxNotification(trade.notify_url, {"content-type": "application/json"}, body)
