"""The built-in channels, registered through the same hook as third-party ones.

* ``balance`` pays from the customer's wallet, in the same transaction as the order's state
  change (the engine settles it internally; the channel only declares itself);
* ``bank_transfer`` shows transfer instructions; the customer or an operator attaches proof
  and the attempt waits in ``awaiting_review`` until an operator approves or rejects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ordercore._config import Settings
from ordercore._money import _REGISTRY
from ordercore.channels import (
    Capabilities,
    Checkout,
    CheckoutRequest,
    HttpReply,
    Notification,
    NotificationResult,
    Outcome,
    PaymentChannel,
    PaymentQuery,
)
from ordercore.hookspecs import hookimpl

__all__ = ["BalanceChannel", "BankTransferChannel", "ordercore_register_channels"]

_ALL_CURRENCIES = frozenset(_REGISTRY)


class _NoCallbacks(PaymentChannel):
    """Channels that receive no notifications from outside."""

    def parse_notification(self, notification: Notification) -> NotificationResult:
        return NotificationResult.reject("unsupported", f"{self.name} takes no notifications")

    def acknowledge(self, accepted: bool, message: str = "") -> HttpReply:
        return HttpReply(404 if not accepted else 200, b"" if accepted else message.encode())


class BalanceChannel(_NoCallbacks):
    """Pays from the customer's balance at once (see the engine's internal settlement)."""

    name: ClassVar[str] = "balance"
    methods: ClassVar[frozenset[str]] = frozenset({"balance"})
    option_names: ClassVar[frozenset[str] | None] = frozenset()
    currencies: ClassVar[frozenset[str]] = _ALL_CURRENCIES
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=False, close=False, refund=True, partial_refund=True
    )
    #: Settled by the engine inside the order's transaction; create_checkout is never called.
    settles_internally: ClassVar[bool] = True

    def create_checkout(self, request: CheckoutRequest) -> Checkout:  # pragma: no cover
        raise AssertionError("balance payments are settled by the engine")


class BankTransferChannel(_NoCallbacks):
    """A transfer to the merchant's account, confirmed by an operator's review of the proof.

    Options: ``instructions`` — the text shown to the payer; ``{reference}`` and
    ``{amount}`` are filled in (the reference is the attempt's out-trade-number).
    """

    name: ClassVar[str] = "bank_transfer"
    methods: ClassVar[frozenset[str]] = frozenset({"transfer"})
    option_names: ClassVar[frozenset[str] | None] = frozenset({"instructions"})
    currencies: ClassVar[frozenset[str]] = _ALL_CURRENCIES
    capabilities: ClassVar[Capabilities] = Capabilities(
        query=False, close=True, refund=False, partial_refund=False
    )

    def create_checkout(self, request: CheckoutRequest) -> Checkout:
        template = str(
            self.config.options.get(
                "instructions",
                "Transfer {amount} to the account on your invoice, with reference {reference}, "
                "then upload the receipt.",
            )
        )
        text = template.format(amount=request.amount, reference=request.out_trade_no)
        return Checkout(
            kind="instructions",
            outcome=Outcome.PENDING,
            content=request.out_trade_no,
            message=text,
        )

    def query_payment(self, out_trade_no: str) -> PaymentQuery:
        return PaymentQuery(Outcome.PENDING, message="bank transfers are confirmed by review")

    def close(self, out_trade_no: str) -> Outcome:
        return Outcome.SUCCEEDED


@hookimpl
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    return [BalanceChannel, BankTransferChannel]
