"""ExamplePay's own tests, on ordercore's test kit (run them against the installed package)."""

import json

from hypothesis import given
from ordercore_examplepay import ExamplePayChannel, ordercore_register_channels, sign

from ordercore import Money, Settings
from ordercore.channels import ChannelConfig, Notification, Secret
from ordercore.testing import (
    assert_channel_contract,
    garbage_notifications,
    make_checkout_request,
)

SECRET = b"test-secret"
CONFIG = ChannelConfig(
    "examplepay", options={"account": "acct_1"}, secrets={"webhook_secret": Secret(SECRET)}
)
channel = ExamplePayChannel(CONFIG)

PAID = {
    "id": "ev_1",
    "account": "acct_1",
    "reference": "T1",
    "status": "paid",
    "amount": "30.00",
    "currency": "USD",
}


def signed(payload: dict[str, str], secret: bytes = SECRET) -> Notification:
    body = json.dumps(payload).encode()
    return Notification("examplepay", {"x-examplepay-signature": sign(secret, body)}, body)


def test_the_channel_keeps_the_contract():
    assert_channel_contract(channel)


@given(garbage_notifications("examplepay"))
def test_garbage_is_rejected_never_raised(notification):
    result = channel.parse_notification(notification)
    assert result.rejection is not None
    assert not result.events


def test_a_paid_notification_becomes_a_payment_event():
    (event,) = channel.parse_notification(signed(PAID)).events
    assert event.paid
    assert event.amount == Money.of("30.00", "USD")
    assert (event.out_trade_no, event.event_id, event.merchant_id) == ("T1", "ev_1", "acct_1")


def test_a_tampered_or_foreign_notification_is_refused():
    tampered = signed(PAID)
    tampered = Notification("examplepay", tampered.headers, tampered.body.replace(b"30", b"90"))
    assert channel.parse_notification(tampered).rejection.code == "bad_signature"
    assert channel.parse_notification(signed(PAID, b"other")).rejection.code == "bad_signature"
    foreign = signed({**PAID, "account": "acct_2"})
    assert channel.parse_notification(foreign).rejection.code == "wrong_merchant"
    unsigned = Notification("examplepay", {}, b"")
    assert channel.parse_notification(unsigned).rejection.code == "malformed"
    body = b'{"amount": 30.0}'  # a float amount, correctly signed
    floating = Notification("examplepay", {"x-examplepay-signature": sign(SECRET, body)}, body)
    assert channel.parse_notification(floating).rejection.code == "malformed"


def test_the_checkout_is_a_redirect_to_the_hosted_page():
    checkout = channel.create_checkout(make_checkout_request("T1", "30.00", "USD", method="page"))
    assert checkout.kind == "redirect"
    assert checkout.url.startswith("https://pay.example.com/checkout?")
    assert "reference=T1" in checkout.url
    assert "amount=30.00" in checkout.url


def test_the_hook_offers_the_channel_only_when_configured():
    assert ordercore_register_channels(Settings(channels={"examplepay": {}})) == [ExamplePayChannel]
    assert ordercore_register_channels(Settings()) == []
