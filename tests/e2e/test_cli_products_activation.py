"""Products' activation mode, set through the API and the command line: auto (at once),
manual (an operator activates) or delayed (minutes after payment)."""

from __future__ import annotations

import pytest

from ordercore import Actor, InvalidField, Money, OrderCore

from .conftest import LI, OC
from .test_cli import create

ADMIN = Actor.operator("alice", "admin")


def test_products_add_and_update_take_the_activation_mode(shop: OC) -> None:
    added = shop.json(
        "products", "add", "--sku", "LATER", "--name", "Later", "--price", "9.00",
        "--currency", "CNY", "--activation", "delayed", "--activation-delay", "30",
    )  # fmt: skip
    assert added["activation"] == {"mode": "delayed", "delay_minutes": 30}
    manual = shop.json("products", "update", "LATER", "--activation", "manual")
    assert manual["activation"] == {"mode": "manual", "delay_minutes": None}
    assert shop.json("products", "show", "VPN-1M")["activation"]["mode"] == "auto"
    sentence = shop.fail("products", "update", "LATER", "--activation", "delayed")
    assert "needs activation_delay_minutes" in sentence
    sentence = shop.fail("products", "update", "VPN-1M", "--activation-delay", "5")
    assert "only for a delayed activation" in sentence
    # a manual product's paid order waits for an operator
    number = create(shop, "--customer", LI, "--item", "LATER:1", "--use-balance", "all")["number"]
    shop.json("jobs", "run")
    assert shop.json("orders", "show", number)["status"] == "paid"


def test_the_python_api_validates_the_activation(tmp_path: object) -> None:
    core = OrderCore.from_url("sqlite://")
    core.upgrade()
    price = Money.of("1.00", "CNY")
    product = core.products.add(
        sku="D", name="D", price=price, actor=ADMIN, activation="delayed",
        activation_delay_minutes=15,
    )  # fmt: skip
    assert (product.activation_mode, product.activation_delay_minutes) == ("delayed", 15)
    for bad in (
        {"activation": "sometimes"},
        {"activation": "delayed"},
        {"activation": "delayed", "activation_delay_minutes": 0},
        {"activation": "delayed", "activation_delay_minutes": True},
        {"activation": "auto", "activation_delay_minutes": 5},
    ):
        with pytest.raises(InvalidField):
            core.products.add(sku="X", name="X", price=price, actor=ADMIN, **bad)  # type: ignore[arg-type]
    assert core.products.update("D", activation="auto", actor=ADMIN).activation_mode == "auto"
    core.close()
