"""The one error hierarchy of ordercore.

Every error the library raises on purpose is an :class:`OrderCoreError`. Catch the branch you
can act on; each exception carries the context it was raised in (order number, entity, field)
as attributes, and a message a person can act on.

::

    OrderCoreError
    ├── ValidationError            bad input; nothing was written
    │   ├── MoneyError
    │   │   ├── InvalidAmount      float, NaN, infinity, too many decimals, not a number
    │   │   ├── UnknownCurrency
    │   │   └── CurrencyMismatch   arithmetic or comparison across currencies
    │   ├── InvalidQuantity
    │   ├── InvalidEmail
    │   ├── InvalidField           any other field that breaks a rule
    │   ├── ProductInactive        the product is not for sale
    │   ├── OutOfStock             not enough stock for the quantity asked
    │   ├── CouponUnusable         expired, exhausted, foreign, below its minimum... (``code``)
    │   ├── DiscountTooLarge       a discount larger than the amount it applies to
    │   └── InsufficientFunds      more balance or points than the customer holds
    ├── NotFound
    │   ├── CustomerNotFound
    │   ├── ProductNotFound
    │   ├── OrderNotFound
    │   ├── CouponNotFound
    │   ├── PaymentNotFound
    │   ├── RefundNotFound
    │   └── IssueNotFound          no after-sales issue with that id
    ├── Conflict
    │   ├── DuplicateSku
    │   ├── DuplicateCustomer
    │   ├── DuplicateCoupon
    │   ├── IdempotencyConflict    same idempotency key, different request
    │   └── ConcurrentModification optimistic version check failed; reload and retry
    ├── PermissionDenied           the actor's role does not grant the permission
    ├── ChannelError               a channel is unknown, disabled or cannot do what was asked
    ├── RefundError                a refund cannot be made (``code``: a RefundFailure value,
    │   │                          ``retryable``)
    │   ├── RefundDeadlinePassed   past the channel's refund window: refund to balance instead
    │   └── RefundUnavailable      the channel is not configured for (this kind of) refund
    ├── IllegalTransition          the state machine refused an event; nothing changed
    ├── AuditChainError            the audit chain shows tampering: it will not be extended
    └── ConfigurationError
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuditChainError",
    "ChannelError",
    "ConcurrentModification",
    "ConfigurationError",
    "Conflict",
    "CurrencyMismatch",
    "CustomerNotFound",
    "DiscountTooLarge",
    "DuplicateCoupon",
    "DuplicateCustomer",
    "DuplicateSku",
    "IdempotencyConflict",
    "IllegalTransition",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidEmail",
    "InvalidField",
    "InvalidQuantity",
    "IssueNotFound",
    "MoneyError",
    "NotFound",
    "OrderCoreError",
    "OrderNotFound",
    "OutOfStock",
    "PaymentNotFound",
    "PermissionDenied",
    "ProductInactive",
    "ProductNotFound",
    "RefundDeadlinePassed",
    "RefundError",
    "RefundNotFound",
    "RefundUnavailable",
    "UnknownCurrency",
    "ValidationError",
]


class OrderCoreError(Exception):
    """Base class of every error ordercore raises on purpose.

    ``context`` holds the keyword arguments given at raise time (order number, field, ...),
    and each of them is also an attribute of the exception.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ValidationError(OrderCoreError):
    """Input that breaks a rule. Nothing was written."""


class MoneyError(ValidationError):
    """An amount or a currency that cannot be used."""


class InvalidAmount(MoneyError):
    """Not an exact decimal amount: a float, NaN, infinity, garbage, or too many decimals."""


class UnknownCurrency(MoneyError):
    """A currency code ordercore does not know (register it with ``register_currency``)."""


class CurrencyMismatch(MoneyError):
    """Two amounts in different currencies were combined or compared."""


class InvalidQuantity(ValidationError):
    """A quantity that is not a positive whole number."""


class InvalidEmail(ValidationError):
    """A string that is not an e-mail address."""


class InvalidField(ValidationError):
    """A field whose value breaks a rule; ``field`` names it."""


class ProductInactive(ValidationError):
    """The product exists but is not for sale."""


class OutOfStock(ValidationError):
    """Not enough stock for the quantity asked; nothing was reserved."""


class CouponUnusable(ValidationError):
    """The coupon cannot be used for this order; ``code`` says why (``expired``,
    ``not_yet_valid``, ``inactive``, ``exhausted``, ``customer_limit``, ``below_minimum``,
    ``not_applicable``, ``currency``)."""


class DiscountTooLarge(ValidationError):
    """A discount larger than the amount it applies to."""


class InsufficientFunds(ValidationError):
    """The customer holds less balance or fewer points than asked for."""


class NotFound(OrderCoreError):
    """The thing asked for does not exist."""


class CustomerNotFound(NotFound):
    """No customer with that id or reference."""


class ProductNotFound(NotFound):
    """No product with that sku."""


class OrderNotFound(NotFound):
    """No order with that number."""


class CouponNotFound(NotFound):
    """No coupon with that code."""


class PaymentNotFound(NotFound):
    """No payment attempt with that out-trade-number."""


class RefundNotFound(NotFound):
    """No refund with that id."""


class IssueNotFound(NotFound):
    """No after-sales issue with that id."""


class Conflict(OrderCoreError):
    """The request collides with what is already stored."""


class DuplicateSku(Conflict):
    """A product with that sku exists already."""


class DuplicateCustomer(Conflict):
    """A customer with that external reference or e-mail exists already."""


class DuplicateCoupon(Conflict):
    """A coupon with that code exists already."""


class IdempotencyConflict(Conflict):
    """The idempotency key was used before for a different request."""


class ConcurrentModification(Conflict):
    """Somebody else changed the row since it was read; reload and try again."""


class IllegalTransition(OrderCoreError):
    """The state machine has no such transition from the current state. Nothing changed.

    Attributes: ``machine`` (``order``, ``payment`` or ``refund``), ``entity`` (its number or
    id), ``state`` (the current state) and ``event`` (the event that was refused).
    """


class PermissionDenied(OrderCoreError):
    """The actor may not do this (insufficient permissions). Only the refusal was recorded."""


class ChannelError(OrderCoreError):
    """A payment channel is unknown, disabled, or cannot do what was asked (method,
    currency, amount limits); ``channel`` names it."""


class RefundError(OrderCoreError):
    """A refund cannot be made as asked. ``code`` is a
    :class:`~ordercore.RefundFailure` value and ``retryable`` says whether asking again
    later, unchanged, can work. Nothing was written."""

    code: str
    retryable: bool


class RefundDeadlinePassed(RefundError):
    """The payment is older than its channel's refund window (``refund_deadline_days``);
    refund to the customer's balance instead."""


class RefundUnavailable(RefundError):
    """The payment's channel is not configured here, or cannot refund (or not partially)."""


class AuditChainError(OrderCoreError):
    """The audit chain cannot be extended as it stands: its head does not match its last
    record, records lie past it, or its MAC is wrong. ``ordercore audit verify`` says what."""


class ConfigurationError(OrderCoreError):
    """The configuration file or a setting is wrong."""
