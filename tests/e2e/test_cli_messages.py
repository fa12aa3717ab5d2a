"""What the command line says when it refuses: one sentence that names the real problem."""

from __future__ import annotations

from .conftest import LI, OC
from .test_cli import create


def test_cancelling_an_order_that_does_not_exist_says_so(shop: OC) -> None:
    assert shop.fail("orders", "cancel", "NOPE") == "no order 'NOPE'"
    assert shop.fail("orders", "cancel", "NOPE", "--note", "typo") == "no order 'NOPE'"


def test_refunding_an_unpaid_order_says_it_is_not_paid(shop: OC) -> None:
    number = create(shop, "--customer", LI, "--item", "VPN-1M:1")["number"]
    sentence = shop.fail("refunds", "request", number, "--destination", "balance", "--reason", "x")
    assert sentence == f"order {number} is not paid (it is pending): there is nothing to refund"
    shop.ok("orders", "cancel", number, "--note", "customer changed their mind")
    sentence = shop.fail("refunds", "request", number, "--destination", "balance", "--reason", "x")
    assert "is not paid (it is canceled)" in sentence


def test_a_wrong_cancel_reason_reads_well(shop: OC) -> None:
    number = create(shop, "--customer", LI, "--item", "VPN-1M:1")["number"]
    sentence = shop.fail("orders", "cancel", number, "--reason", "user", "--note", "n")
    assert sentence == "an operator cancels with reason admin, not user"
    sentence = shop.fail(
        "orders", "cancel", number, "--reason", "admin", "--actor", f"customer:{LI}"
    )
    assert sentence == "a customer cancels with reason user, not admin"
    assert shop.fail("orders", "cancel", number) == "an operator's cancellation needs a reason text"


def test_orders_list_never_cuts_the_number_at_80_columns(shop: OC) -> None:
    numbers = [create(shop, "--customer", LI, "--item", "VPN-1M:1")["number"] for _ in range(2)]
    text = shop.ok("orders", "list", env={"COLUMNS": "80"})
    assert max(len(line) for line in text.splitlines()) <= 80
    for number in numbers:
        assert number in text


def test_orders_show_prints_payments_activation_and_the_operation_log(shop: OC) -> None:
    number = create(shop, "--customer", LI, "--item", "VPN-1M:1", "--channel", "fakepay")["number"]
    shop.ok("orders", "pay", number, "--channel", "bank_transfer")
    attempt = shop.json("orders", "show", number)["payments"][0]
    text = shop.ok("orders", "show", number, env={"COLUMNS": "200"})
    assert attempt["out_trade_no"] in text
    assert "bank_transfer" in text
    assert "operation log" in text
    assert "order.create" in text
    assert "payment.submit" in text
