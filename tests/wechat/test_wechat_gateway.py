"""The channel against the sandbox over real HTTP on loopback: checkout, query, close, refunds
and refund queries, platform certificates (download, refresh on an unknown serial, pinning,
rotation), and every way an answer can go missing, be forged or be wrong."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from wechat_kit import NOWHERE, keys, make_sandbox

from helpers import FakeClock
from ordercore.channels import CheckoutRequest, Outcome, RefundRequest
from ordercore.testing import make_checkout_request, make_refund_request
from ordercore_wechat import WechatChannel
from ordercore_wechat.sandbox import WechatSandbox

FORGED = ["unsigned", "bad_signature", "signtest", "stale", "unknown_serial"]
NO_ANSWER = ["timeout", "disconnect", "500"]


def native(channel: WechatChannel, amount: str = "27.00") -> CheckoutRequest:
    request = make_checkout_request(amount=amount, subject="VPN 月卡", method="native")
    checkout = channel.create_checkout(request)
    assert checkout.outcome is Outcome.PENDING, checkout.message
    assert checkout.kind == "qr"
    assert checkout.content
    return request


def paid(channel: WechatChannel, sandbox: WechatSandbox) -> str:
    request = native(channel)
    sandbox.pay(request.out_trade_no, deliver=False)
    return request.out_trade_no


def refund_of(no: str, amount: str, out_refund_no: str = "R-1") -> RefundRequest:
    return make_refund_request(no, amount, total="27.00", out_refund_no=out_refund_no)


# -- checkout --------------------------------------------------------------------------------------
def test_native_checkout_sends_fen_and_the_deadline(
    channel: WechatChannel, sandbox: WechatSandbox
) -> None:
    request = native(channel, "27.01")
    trade = sandbox.trade(request.out_trade_no)
    assert (str(trade.total), trade.state, trade.trade_type) == ("27.01 CNY", "NOTPAY", "NATIVE")
    assert trade.notify_url == "http://127.0.0.1/callbacks/fake"  # the request's own
    assert trade.description == "VPN 月卡"
    again = channel.create_checkout(request)  # the same order again: the same code_url
    assert again.outcome is Outcome.PENDING
    assert sandbox.calls["native"] == 2
    sandbox.pay(request.out_trade_no, deliver=False)
    after = channel.create_checkout(request)
    assert after.outcome is Outcome.FAILED
    assert "ORDERPAID" in (after.message or "")


def test_checkout_refusals_before_any_call(sandbox: WechatSandbox) -> None:
    channel = WechatChannel(sandbox.channel_config())  # no notify_url configured
    cases = [
        make_checkout_request(amount="5.00", currency="USD", method="native"),
        make_checkout_request(amount="0.00", method="native"),
        make_checkout_request(method="qr"),
        make_checkout_request("T1", method="native"),  # out_trade_no shorter than 6
        make_checkout_request("T2026112400000001/1", method="native"),
        make_checkout_request(method="native", notify_url=None),
        make_checkout_request(method="native", notify_url="https://shop.example/cb?x=1"),
        make_checkout_request(method="native", notify_url="http://shop.example/cb"),
        make_checkout_request(method="h5", client_ip=None),
        make_checkout_request(method="h5", client_ip="not an ip"),
    ]
    for request in cases:
        checkout = channel.create_checkout(request)
        assert checkout.outcome is Outcome.FAILED, request
        assert (checkout.content, checkout.url) == (None, None)
    assert sandbox.calls == {}


@pytest.mark.parametrize("fault", [*FORGED, *NO_ANSWER])
def test_a_checkout_without_a_verified_answer_shows_nothing(
    channel: WechatChannel, sandbox: WechatSandbox, fault: str
) -> None:
    sandbox.fail_next("native", fault)
    checkout = channel.create_checkout(make_checkout_request(method="native"))
    assert checkout.outcome is Outcome.UNKNOWN  # maybe created: a query will tell
    assert (checkout.content, checkout.url) == (None, None)


def test_a_checkout_refused_with_a_4xx_fails(
    channel: WechatChannel, sandbox: WechatSandbox
) -> None:
    sandbox.fail_next("h5", "error", code="NO_AUTH")
    checkout = channel.create_checkout(make_checkout_request(method="h5", client_ip="::1"))
    assert checkout.outcome is Outcome.FAILED
    assert "NO_AUTH" in (checkout.message or "")


# -- query and close -------------------------------------------------------------------------------
def test_query_through_the_trades_life(channel: WechatChannel, sandbox: WechatSandbox) -> None:
    never = channel.query_payment("T2099010100000001")
    assert never.outcome is Outcome.PENDING  # ORDER_NOT_EXIST: never created, not paid
    request = native(channel)
    no = request.out_trade_no
    assert channel.query_payment(no).outcome is Outcome.PENDING
    sandbox.pay(no, deliver=False)
    answer = channel.query_payment(no)
    assert answer.outcome is Outcome.SUCCEEDED
    assert answer.event is not None
    assert str(answer.event.amount) == "27.00 CNY"
    assert answer.event.channel_trade_no == sandbox.trade(no).transaction_id
    assert channel.refund(refund_of(no, "1.00")).outcome is Outcome.SUCCEEDED
    refunded = channel.query_payment(no)
    assert (refunded.outcome, refunded.message) == (Outcome.SUCCEEDED, "REFUND")  # was paid

    closed = native(channel).out_trade_no
    assert channel.close(closed) is Outcome.SUCCEEDED
    assert sandbox.trade(closed).state == "CLOSED"
    assert channel.query_payment(closed).outcome is Outcome.FAILED
    assert sandbox.calls["query"] == 5


@pytest.mark.parametrize("fault", [*FORGED, *NO_ANSWER])
def test_a_query_without_a_verified_answer_is_unknown(
    channel: WechatChannel, sandbox: WechatSandbox, fault: str
) -> None:
    no = paid(channel, sandbox)
    sandbox.fail_next("query", fault)
    assert channel.query_payment(no).outcome is Outcome.UNKNOWN


def test_an_unsigned_order_not_exist_is_no_verdict(
    channel: WechatChannel, sandbox: WechatSandbox
) -> None:
    sandbox.fail_next("query", "unsigned")
    assert channel.query_payment("T2099010100000001").outcome is Outcome.UNKNOWN


def test_close(channel: WechatChannel, sandbox: WechatSandbox) -> None:
    assert channel.close("T2099010100000001") is Outcome.SUCCEEDED  # nothing can be paid
    assert channel.close(paid(channel, sandbox)) is Outcome.FAILED  # ORDERPAID
    for fault in [*FORGED, "500", "disconnect"]:
        open_trade = native(channel).out_trade_no
        sandbox.fail_next("close", fault, apply=False)
        assert channel.close(open_trade) is Outcome.UNKNOWN, fault
        assert sandbox.trade(open_trade).state == "NOTPAY"


# -- refunds ---------------------------------------------------------------------------------------
def test_partial_refunds_repeats_and_refusals(
    channel: WechatChannel, sandbox: WechatSandbox
) -> None:
    no = paid(channel, sandbox)
    first = channel.refund(refund_of(no, "10.00", "R-1"))
    assert (first.outcome, first.message) == (Outcome.SUCCEEDED, "SUCCESS")
    assert first.channel_refund_no
    repeat = channel.refund(refund_of(no, "10.00", "R-1"))
    assert (repeat.outcome, repeat.channel_refund_no) == (
        Outcome.SUCCEEDED,
        first.channel_refund_no,
    )
    assert channel.refund(refund_of(no, "17.00", "R-2")).outcome is Outcome.SUCCEEDED
    assert sandbox.refunds_made == 2
    assert str(sandbox.trade(no).refunded) == "27.00 CNY"
    over = channel.refund(refund_of(no, "0.01", "R-3"))
    assert (over.outcome, over.code, over.retryable) == (Outcome.FAILED, "INVALID_REQUEST", False)
    changed = channel.refund(refund_of(no, "9.00", "R-1"))
    assert (changed.outcome, changed.code) == (Outcome.FAILED, "INVALID_REQUEST")
    usd = make_refund_request(no, "1.00", "USD", out_refund_no="R-4")
    assert channel.refund(usd).code == "unsupported_currency"
    assert sandbox.calls["refund"] == 5
    assert sandbox.refunds_made == 2


def test_processing_refunds_are_pending_until_settled(
    channel: WechatChannel, sandbox: WechatSandbox
) -> None:
    no = paid(channel, sandbox)
    sandbox.refund_processing = True
    request = refund_of(no, "10.00")
    assert channel.refund(request).outcome is Outcome.PENDING
    assert channel.query_refund(request).outcome is Outcome.PENDING
    sandbox.settle_refund("R-1", "ABNORMAL", deliver=False)
    failed = channel.query_refund(request)
    assert (failed.outcome, failed.code, failed.retryable) == (Outcome.FAILED, "ABNORMAL", False)
    assert str(sandbox.trade(no).refunded) == "0.00 CNY"  # the money went back


@pytest.mark.parametrize("fault", [*FORGED, *NO_ANSWER])
def test_a_lost_refund_answer_is_unknown_never_a_result(sandbox: WechatSandbox, fault: str) -> None:
    channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=0.25))
    no = paid(channel, sandbox)
    request = refund_of(no, "5.00")
    sandbox.fail_next("refund", fault, apply=True)

    answer = channel.refund(request)

    assert (answer.outcome, answer.retryable) == (Outcome.UNKNOWN, True)
    assert sandbox.refunds_made == 1  # it was made; only the answer was lost
    # What follows needs real answers: a patient channel, so a loaded machine cannot time out.
    patient = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=10))
    assert patient.query_refund(request).outcome is Outcome.SUCCEEDED
    assert patient.refund(request).outcome is Outcome.SUCCEEDED  # the retry: no second refund
    assert sandbox.refunds_made == 1


@pytest.mark.parametrize(
    ("code", "outcome", "retryable"),
    [
        ("NOT_ENOUGH", Outcome.FAILED, True),
        ("FREQUENCY_LIMITED", Outcome.FAILED, True),
        ("USER_ACCOUNT_ABNORMAL", Outcome.FAILED, False),
        ("PARAM_ERROR", Outcome.FAILED, False),
        ("SYSTEM_ERROR", Outcome.UNKNOWN, True),  # a 500: no verdict
    ],
)
def test_signed_refusals(
    channel: WechatChannel, sandbox: WechatSandbox, code: str, outcome: Outcome, retryable: bool
) -> None:
    no = paid(channel, sandbox)
    sandbox.fail_next("refund", "error", code=code)
    answer = channel.refund(refund_of(no, "5.00"))
    assert (answer.outcome, answer.retryable) == (outcome, retryable)
    if outcome is Outcome.FAILED:
        assert answer.code == code
    assert sandbox.refunds_made == 0


def test_refund_queries(channel: WechatChannel, sandbox: WechatSandbox) -> None:
    no = paid(channel, sandbox)
    request = refund_of(no, "5.00")
    missing = channel.query_refund(request)
    assert (missing.outcome, missing.code, missing.retryable) == (Outcome.FAILED, "not_found", True)
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    assert channel.query_refund(request).outcome is Outcome.SUCCEEDED
    other_amount = channel.query_refund(refund_of(no, "6.00"))
    assert other_amount.outcome is Outcome.UNKNOWN
    for fault in [*FORGED, "500"]:
        sandbox.fail_next("refund_query", fault)
        assert channel.query_refund(request).outcome is Outcome.UNKNOWN, fault
    sandbox.fail_next("refund_query", "unsigned")  # an unsigned 404 is no verdict either
    assert channel.query_refund(refund_of(no, "1.00", "R-none")).outcome is Outcome.UNKNOWN


# -- request signatures as the gateway sees them ---------------------------------------------------
def test_a_request_the_gateway_cannot_verify_is_refused(sandbox: WechatSandbox) -> None:
    stranger = make_sandbox(merchant_private_key=keys().stranger)
    config = stranger.channel_config(notify_url=NOWHERE, gateway_url=sandbox.url)
    channel = WechatChannel(config)  # signs with another merchant key
    refused = channel.create_checkout(make_checkout_request(method="native"))
    assert refused.outcome is Outcome.FAILED
    assert "SIGN_ERROR" in (refused.message or "")
    assert channel.query_payment("T2099010100000001").outcome is Outcome.UNKNOWN  # 401 unsigned
    assert sandbox.trades() == []


def test_a_request_stamped_ten_minutes_ago_is_refused(sandbox: WechatSandbox) -> None:
    clock = FakeClock()  # 2026-11-24, days before the sandbox's wall clock
    channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, clock=clock))
    checkout = channel.create_checkout(make_checkout_request(method="native"))
    assert checkout.outcome is Outcome.FAILED
    assert "SIGN_ERROR" in (checkout.message or "")


# -- platform keys ---------------------------------------------------------------------------------
def test_certificate_mode_downloads_once_and_refreshes_on_a_new_serial() -> None:
    clock = FakeClock()
    with make_sandbox(mode="certificate", clock=clock) as sandbox:
        channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, clock=clock))
        assert "certificate" in repr(channel)
        no = native(channel).out_trade_no
        assert channel.query_payment(no).outcome is Outcome.PENDING
        assert sandbox.calls["certificates"] == 1  # downloaded on first use, then cached
        old = sandbox.notification(no)
        clock.advance(61)

        new_serial = sandbox.rotate()  # WeChat signs with a new certificate from now on

        assert channel.query_payment(no).outcome is Outcome.PENDING
        assert sandbox.calls["certificates"] == 2
        assert new_serial in channel.keys.serials()
        fresh = sandbox.notification(no)
        assert fresh.headers["Wechatpay-Serial"] == new_serial
        for sent in (old, fresh):  # both certificates stay valid during the rotation
            assert channel.parse_notification(sent.to_notification()).rejection is None
        written = fresh.to_notification()  # the serial with leading zeros, in lower case
        headers = {**written.headers, "wechatpay-serial": "00" + new_serial.lower()}
        again = attrs.evolve(written, headers=headers)
        assert channel.parse_notification(again).rejection is None


def test_unknown_serials_refresh_at_most_once_a_minute() -> None:
    clock = FakeClock()
    with make_sandbox(mode="certificate", clock=clock) as sandbox:
        channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, clock=clock))
        no = native(channel).out_trade_no
        for _ in range(5):
            forged = sandbox.notification(no, fault="unknown_serial")
            assert channel.parse_notification(forged.to_notification()).rejection is not None
        assert sandbox.calls["certificates"] == 1  # first use; within the minute, no more
        clock.advance(61)
        for _ in range(3):
            forged = sandbox.notification(no, fault="unknown_serial")
            assert channel.parse_notification(forged.to_notification()).rejection is not None
        assert sandbox.calls["certificates"] == 2  # one refresh for the three


@pytest.mark.parametrize("fault", ["bad_signature", "unsigned", "unknown_serial", "500"])
def test_a_certificate_list_that_does_not_verify_is_not_trusted(fault: str) -> None:
    with make_sandbox(mode="certificate") as sandbox:
        channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        sandbox.fail_next("certificates", fault)
        checkout = channel.create_checkout(make_checkout_request(method="native"))
        assert checkout.outcome is Outcome.UNKNOWN  # created, but the answer is unverified
        assert channel.keys.last_problem
        assert channel.keys.serials() == ()


def test_certificates_sealed_with_another_apiv3_key_are_not_trusted() -> None:
    with make_sandbox(mode="certificate") as sandbox:
        config = sandbox.channel_config(notify_url=NOWHERE)
        from ordercore.channels import Secret

        secrets = {**config.secrets, "apiv3_key": Secret(b"Z" * 32)}
        channel = WechatChannel(attrs.evolve(config, secrets=secrets))
        assert channel.create_checkout(make_checkout_request(method="native")).outcome is (
            Outcome.UNKNOWN
        )
        assert "no certificate could be opened" in (channel.keys.last_problem or "")


def test_pinned_certificates_need_no_download(tmp_path: Path) -> None:
    with make_sandbox(mode="certificate") as sandbox:
        pem = tmp_path / "wechatpay_platform.pem"
        pem.write_bytes(sandbox.platform_certificates_pem)
        channel = WechatChannel(
            sandbox.channel_config(notify_url=NOWHERE, platform_cert_files=[str(pem)])
        )
        native(channel)
        assert sandbox.calls["certificates"] == 0
        sandbox.rotate()  # not pinned: refused, and no download either
        refused = channel.create_checkout(make_checkout_request(method="native"))
        assert refused.outcome is Outcome.UNKNOWN
        assert sandbox.calls["certificates"] == 0


def test_public_key_rotation_keeps_both_keys_valid() -> None:
    with make_sandbox() as sandbox:
        before = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        no = native(before).out_trade_no
        old = sandbox.notification(no)
        sandbox.rotate()  # a new PUB_KEY_ID signs from now on
        fresh = sandbox.notification(no)
        assert old.headers["Wechatpay-Serial"] != fresh.headers["Wechatpay-Serial"]
        both = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        assert len(both.settings.public_keys) == 2

        for sent in (old, fresh):
            assert both.parse_notification(sent.to_notification()).rejection is None
        assert before.parse_notification(old.to_notification()).rejection is None
        outdated = before.parse_notification(fresh.to_notification())
        assert outdated.rejection is not None
        assert outdated.rejection.code == "bad_signature"


def test_migrating_from_certificates_to_the_public_key() -> None:
    with make_sandbox(mode="certificate") as sandbox:
        channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        no = native(channel).out_trade_no
        by_certificate = sandbox.notification(no)
        sandbox.rotate("public_key")
        by_public_key = sandbox.notification(no)
        migrated = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        assert migrated.settings.download  # both ways at once
        assert migrated.settings.public_keys

        for sent in (by_certificate, by_public_key):
            assert migrated.parse_notification(sent.to_notification()).rejection is None
        assert native(migrated)


def test_the_cashier_pays_by_hand(sandbox: WechatSandbox) -> None:
    import urllib.request

    channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
    request = make_checkout_request(method="h5", client_ip="203.0.113.7", notify_url=None)
    checkout = channel.create_checkout(request)
    assert checkout.url is not None
    with urllib.request.urlopen(checkout.url, timeout=10) as page:
        assert "WeChat Pay sandbox" in page.read().decode("utf-8")
    pay = urllib.request.Request(f"{checkout.url.split('?')[0]}/pay", data=b"", method="POST")
    with urllib.request.urlopen(pay, timeout=10) as paid_page:
        assert paid_page.status == 200
    assert sandbox.trade(request.out_trade_no).state == "SUCCESS"  # delivery failed: no matter
    assert channel.query_payment(request.out_trade_no).outcome is Outcome.SUCCEEDED
    with pytest.raises(urllib.error.HTTPError) as again:
        urllib.request.urlopen(
            urllib.request.Request(f"{checkout.url.split('?')[0]}/pay", data=b"", method="POST"),
            timeout=10,
        )
    assert again.value.code == 409  # a paid trade is not paid twice


def test_requests_name_the_newest_public_key() -> None:
    with make_sandbox() as sandbox:
        sandbox.rotate()
        channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
        headers = channel.request_headers("GET", "/v3/x", b"", timestamp="1", nonce="N")
        assert headers["Wechatpay-Serial"] == sandbox.platform_serials[-1]
        assert channel.query_payment("T2099010100000001").outcome is Outcome.PENDING
