"""A local BTCPay Server: Greenfield invoices in memory, signed webhooks."""

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

from ordercore import Money
from ordercore.channels import ChannelConfig, Secret

from ._base import GatewaySandbox, SandboxError, SandboxNotification

__all__ = ["BtcpayInvoice", "BtcpaySandbox"]

_INVOICES = re.compile(r"/api/v1/stores/([^/]+)/invoices(?:/([^/]+))?(/payment-methods)?\Z")


@define
class BtcpayInvoice:
    id: str
    order_id: str
    amount: Money
    coin: Money
    rate: Decimal
    expires_at: datetime
    address: str
    notify_url: str | None
    status: str = "New"
    additional: str = "None"
    paid: Decimal = Decimal(0)

    def json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "storeId": "",
            "amount": str(self.amount.amount),
            "currency": self.amount.currency.code,
            "status": self.status,
            "additionalStatus": self.additional,
            "metadata": {"orderId": self.order_id},
            "checkoutLink": f"{base}/i/{self.id}",
            "createdTime": int(self.expires_at.timestamp()) - 900,
            "expirationTime": int(self.expires_at.timestamp()),
        }

    def methods(self) -> list[dict[str, Any]]:
        due = max(self.coin.amount - self.paid, Decimal(0))
        return [
            {
                "paymentMethodId": "BTC-CHAIN",
                "currency": "BTC",
                "destination": self.address,
                "rate": str(self.rate),
                "amount": str(self.coin.amount),
                "due": str(due),
                "paymentMethodPaid": f"{self.paid:.8f}",
                "totalPaid": f"{self.paid:.8f}",
            }
        ]


class BtcpaySandbox(GatewaySandbox):
    """BTCPay Server's Greenfield API on loopback (see ``ordercore_crypto.sandbox``).

    :param rate: the order currency's price of one BTC (default 480000: CNY per BTC)."""

    name = "btcpay"

    def __init__(self, *, rate: Decimal = Decimal("480000"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self.store_id = "Store" + self.new_id()[:8]
        self.api_key = self.new_id("key")
        self.webhook_secret = self.new_id("whsec")
        self.invoices: dict[str, BtcpayInvoice] = {}
        #: the store's webhook URL (BTCPay registers webhooks per store, not per invoice)
        self.webhook_url: str | None = None

    # -- configuration ------------------------------------------------------------------------
    def channel_config(self, notify_url: str | None = None, **options: Any) -> ChannelConfig:
        self.webhook_url = notify_url or self.webhook_url
        return ChannelConfig(
            name="btcpay",
            notify_url=notify_url,
            options={"server_url": self.url, "store_id": self.store_id, **options},
            secrets={
                "api_key": Secret(self.api_key.encode()),
                "webhook_secret": Secret(self.webhook_secret.encode()),
            },
        )

    def config_table(self, directory: Path, notify_url: str | None = None) -> str:
        self.webhook_url = notify_url or self.webhook_url
        key = self.write_secret(directory, "btcpay-api-key", self.api_key)
        secret = self.write_secret(directory, "btcpay-webhook-secret", self.webhook_secret)
        lines = [
            "[channels.btcpay]",
            f"server_url = {json.dumps(self.url)}",
            f"store_id = {json.dumps(self.store_id)}",
            f"api_key_file = {json.dumps(str(key))}",
            f"webhook_secret_file = {json.dumps(str(secret))}",
        ]
        if notify_url:
            lines.append(f"notify_url = {json.dumps(notify_url)}")
        return "\n".join(lines) + "\n"

    # -- the API --------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        self.requests.append((method, path))
        if headers.get("authorization") != f"token {self.api_key}":
            return 401, {"code": "unauthenticated", "message": "bad API key"}
        found = _INVOICES.match(path)
        if found is None or found.group(1) != self.store_id:
            return 404, {"code": "store-not-found", "message": "no such store"}
        invoice_id, methods = found.group(2), found.group(3)
        if invoice_id is None:
            if method != "POST":
                return 405, {"code": "method", "message": "POST only"}
            return self._create(json.loads(body))
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            return 404, {"code": "invoice-not-found", "message": "no such invoice"}
        if methods:
            return 200, invoice.methods()
        answer = invoice.json(self.url)
        answer["storeId"] = self.store_id
        return 200, answer

    def _create(self, request: dict[str, Any]) -> tuple[int, Any]:
        amount = Money.of(Decimal(str(request["amount"])), str(request["currency"]))
        minutes = int(request.get("checkout", {}).get("expirationMinutes", 15))
        coin = (amount.amount / self.rate).quantize(Decimal("0.00000001"), rounding=ROUND_UP)
        invoice = BtcpayInvoice(
            id=self.new_id("inv"),
            order_id=str(request["metadata"]["orderId"]),
            amount=amount,
            coin=Money.of(coin, "BTC"),
            rate=self.rate,
            expires_at=self.now() + timedelta(minutes=minutes),
            address="bcrt1q" + self.new_id()[:30],
            notify_url=None,
        )
        self.invoices[invoice.id] = invoice
        answer = invoice.json(self.url)
        answer["storeId"] = self.store_id
        return 200, answer

    # -- the payer ------------------------------------------------------------------------------
    def invoice(self, out_trade_no: str) -> BtcpayInvoice:
        for invoice in self.invoices.values():
            if invoice.order_id == out_trade_no:
                return invoice
        raise SandboxError(f"no invoice for {out_trade_no!r}")

    def pay(
        self,
        out_trade_no: str,
        coins: Decimal | str | None = None,
        *,
        late: bool = False,
        notify_url: str | None = None,
        deliver: bool = True,
    ) -> list[SandboxNotification]:
        """The payer sends ``coins`` BTC (default: exactly the amount due). Fewer leave the
        invoice Expired/PaidPartial, more Settled/PaidOver; ``late`` pays after expiry
        (Expired/PaidLate). Returns the webhooks, POSTed to ``notify_url`` unless
        ``deliver`` is false."""
        with self._lock:
            invoice = self.invoice(out_trade_no)
            sent = invoice.coin.amount if coins is None else Decimal(str(coins))
            invoice.paid += sent
            received = self.webhook(
                invoice, "InvoiceReceivedPayment", afterExpiration=late, url=notify_url
            )
            if late:
                invoice.status, invoice.additional = "Expired", "PaidLate"
                hooks = [received]
            elif invoice.paid < invoice.coin.amount:
                invoice.status, invoice.additional = "Expired", "PaidPartial"
                hooks = [
                    received,
                    self.webhook(invoice, "InvoiceExpired", partiallyPaid=True, url=notify_url),
                ]
            else:
                over = invoice.paid > invoice.coin.amount
                invoice.status = "Settled"
                invoice.additional = "PaidOver" if over else "None"
                hooks = [
                    received,
                    self.webhook(invoice, "InvoicePaymentSettled", url=notify_url),
                    self.webhook(
                        invoice,
                        "InvoiceSettled",
                        overPaid=over,
                        manuallyMarked=False,
                        url=notify_url,
                    ),
                ]
        if deliver:
            for hook in hooks:
                self.deliver(hook)
        return hooks

    def expire(self, out_trade_no: str, *, notify_url: str | None = None) -> SandboxNotification:
        with self._lock:
            invoice = self.invoice(out_trade_no)
            invoice.status = "Expired"
            return self.webhook(invoice, "InvoiceExpired", partiallyPaid=False, url=notify_url)

    def webhook(
        self,
        invoice: BtcpayInvoice,
        kind: str,
        *,
        secret: str | None = None,
        url: str | None = None,
        **extra: Any,
    ) -> SandboxNotification:
        """A webhook of ``kind`` about ``invoice``: indented JSON, signed with the webhook
        secret (or ``secret``: a forgery)."""
        delivery = self.new_id("dlv")
        body = {
            "deliveryId": delivery,
            "webhookId": "wh1",
            "originalDeliveryId": delivery,
            "isRedelivery": False,
            "type": kind,
            "timestamp": int(self.now().timestamp()),
            "storeId": self.store_id,
            "invoiceId": invoice.id,
            "metadata": {"orderId": invoice.order_id},
            **extra,
        }
        raw = json.dumps(body, indent=2).encode()
        key = (secret or self.webhook_secret).encode()
        signature = "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()
        return SandboxNotification(
            url or invoice.notify_url or self.webhook_url,
            {"content-type": "application/json", "btcpay-sig": signature},
            raw,
        )
