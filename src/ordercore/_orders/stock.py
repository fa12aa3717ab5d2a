"""Taking the stock of an order's products at creation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from ordercore._errors import CurrencyMismatch, OutOfStock, ProductInactive

from .domain import OrderLine, Product

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["reserve_stock"]


def reserve_stock(
    uow: UnitOfWork, items: Sequence[tuple[str, int]], now: datetime
) -> tuple[list[OrderLine], list[Product]]:
    """The order's lines, and its products. The products are read in one statement,
    without a lock; only a limited stock is taken — by an atomic conditional update, in
    sku order so that concurrent orders cannot deadlock. A product with unlimited stock
    is never locked: orders for it do not wait on each other."""
    skus = sorted({s for s, _ in items})
    products = uow.products.get_many(skus)
    wanted: dict[str, int] = {}
    lines: list[OrderLine] = []
    for sku, qty in items:
        product = products[sku]
        if not product.active:
            raise ProductInactive(f"product {sku} is not for sale (inactive)", sku=sku)
        wanted[sku] = wanted.get(sku, 0) + qty
        lines.append(OrderLine.from_product(product, qty))
    currencies = {line.unit_price.currency.code for line in lines}
    if len(currencies) > 1:
        raise CurrencyMismatch(
            f"an order is in one currency; these items mix {', '.join(sorted(currencies))}"
        )
    for sku in skus:
        product = products[sku]
        if product.stock is None:
            continue
        assert product.id is not None
        if not uow.products.take_stock(product.id, wanted[sku], now):
            left = uow.products.get(sku).stock
            raise OutOfStock(f"product {sku}: {wanted[sku]} wanted, {left} in stock", sku=sku)
    return lines, [products[sku] for sku in skus]
