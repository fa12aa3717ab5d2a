"""The channel against the sandbox gateway over real HTTP on loopback: checkout, query, close,
refunds and refund queries, and every way an answer can go missing or be wrong."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request

import pytest
from alipay_kit import NOWHERE, make_sandbox

from ordercore.channels import CheckoutRequest, Outcome, RefundRequest
from ordercore.testing import make_checkout_request, make_refund_request
from ordercore_alipay import AlipayChannel, _sign
from ordercore_alipay.sandbox import AlipaySandbox

QUERY = "alipay.trade.query"
REFUND = "alipay.trade.refund"
REFUND_QUERY = "alipay.trade.fastpay.refund.query"
CLOSE = "alipay.trade.close"
PRECREATE = "alipay.trade.precreate"


def qr(channel: AlipayChannel, amount: str = "27.00") -> CheckoutRequest:
    request = make_checkout_request(amount=amount, subject="VPN 月卡", notify_url=None)
    checkout = channel.create_checkout(request)
    assert checkout.outcome is Outcome.PENDING, checkout.message
    assert checkout.kind == "qr"
    assert checkout.content
    return request


def paid(channel: AlipayChannel, sandbox: AlipaySandbox, amount: str = "27.00") -> str:
    request = qr(channel, amount)
    sandbox.pay(request.out_trade_no, deliver=False)
    return request.out_trade_no


def refund_of(no: str, amount: str, out_refund_no: str = "R-1") -> RefundRequest:
    return make_refund_request(no, amount, total="27.00", out_refund_no=out_refund_no)


# -- checkout, query, close -------------------------------------------------------------------
def test_a_qr_trade_does_not_exist_before_the_scan(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    request = qr(channel)
    no = request.out_trade_no
    trade = sandbox.trade(no)
    assert trade.status == "CREATED"
    assert str(trade.total_amount) == "27.00 CNY"
    assert trade.notify_url == NOWHERE

    before = channel.query_payment(no)
    assert before.outcome is Outcome.PENDING
    assert "ACQ.TRADE_NOT_EXIST" in (before.message or "")

    sandbox.scan(no)
    waiting = channel.query_payment(no)
    assert (waiting.outcome, waiting.message) == (Outcome.PENDING, "WAIT_BUYER_PAY")

    sandbox.pay(no, deliver=False)
    answer = channel.query_payment(no)
    assert answer.outcome is Outcome.SUCCEEDED
    assert answer.event is not None
    assert answer.event.paid is True
    assert str(answer.event.amount) == "27.00 CNY"
    assert answer.event.channel_trade_no == sandbox.trade(no).trade_no
    assert sandbox.calls[QUERY] == 3


def test_close_before_the_scan_after_the_scan_and_after_payment(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    never_scanned = qr(channel).out_trade_no
    assert channel.close(never_scanned) is Outcome.SUCCEEDED  # TRADE_NOT_EXIST: nothing to close

    scanned = qr(channel).out_trade_no
    sandbox.scan(scanned)
    assert channel.close(scanned) is Outcome.SUCCEEDED
    assert sandbox.trade(scanned).status == "TRADE_CLOSED"
    closed = channel.query_payment(scanned)
    assert (closed.outcome, closed.message) == (Outcome.FAILED, "TRADE_CLOSED")

    assert channel.close(paid(channel, sandbox)) is Outcome.FAILED  # ACQ.TRADE_STATUS_ERROR


@pytest.mark.parametrize("method", ["page", "h5"])
def test_page_and_h5_urls_open_the_sandbox_cashier(
    channel: AlipayChannel, sandbox: AlipaySandbox, method: str
) -> None:
    request = make_checkout_request(method=method, return_url="https://shop.example/back")
    checkout = channel.create_checkout(request)
    assert (checkout.kind, checkout.outcome) == ("redirect", Outcome.PENDING)
    assert checkout.url is not None
    assert sandbox.calls == {}

    with urllib.request.urlopen(checkout.url, timeout=10) as page:  # the sandbox verifies it
        assert page.status == 200
        assert "Alipay sandbox" in page.read().decode("utf-8")

    api = "alipay.trade.page.pay" if method == "page" else "alipay.trade.wap.pay"
    assert sandbox.calls[api] == 1
    assert sandbox.trade(request.out_trade_no).status == "WAIT_BUYER_PAY"
    tampered = checkout.url.replace("30.00", "0.01")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    assert refused.value.code == 400


def test_the_cashier_pays_and_redirects_to_return_url(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    request = make_checkout_request(method="page", return_url="https://shop.example/back?o=1")
    checkout = channel.create_checkout(request)
    assert checkout.url is not None
    urllib.request.urlopen(checkout.url, timeout=10).close()
    quoted = urllib.parse.quote(request.out_trade_no, safe="")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(
            urllib.request.Request(f"{sandbox.url}/cashier/{quoted}/pay", data=b"", method="POST")
        )
    assert redirect.value.code == 303
    location = redirect.value.headers["Location"]
    assert location.startswith("https://shop.example/back?o=1&")
    assert sandbox.trade(request.out_trade_no).status == "TRADE_SUCCESS"
    # the return is signed like a notification (and is no proof of payment)
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    assert params.pop("o") == "1"  # the return_url's own query is not signed
    assert params["out_trade_no"] == request.out_trade_no
    content = _sign.notification_sign_content(params)
    public = _sign.load_public_key(sandbox.alipay_public_key_pem)
    assert _sign.verify(content, params["sign"], public)


def test_checkout_refusals(channel: AlipayChannel, sandbox: AlipaySandbox) -> None:
    usd = make_checkout_request(amount="5.00", currency="USD")
    assert channel.create_checkout(usd).outcome is Outcome.FAILED
    cheap = make_checkout_request(amount="0.00")
    assert channel.create_checkout(cheap).outcome is Outcome.FAILED
    unknown = make_checkout_request(method="transfer")
    assert channel.create_checkout(unknown).outcome is Outcome.FAILED
    request = qr(channel)
    sandbox.pay(request.out_trade_no, deliver=False)
    again = channel.create_checkout(request)
    assert again.outcome is Outcome.FAILED
    assert "ACQ.TRADE_HAS_SUCCESS" in (again.message or "")
    assert sandbox.calls[PRECREATE] == 2


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        ("20000", Outcome.UNKNOWN),
        ("500", Outcome.UNKNOWN),
        ("disconnect", Outcome.UNKNOWN),
        ("bad_sign", Outcome.UNKNOWN),
        ("unsigned_error", Outcome.FAILED),  # no QR code shown: nothing can be paid
        ("40004", Outcome.FAILED),
    ],
)
def test_precreate_faults(
    channel: AlipayChannel, sandbox: AlipaySandbox, fault: str, outcome: Outcome
) -> None:
    sandbox.fail_next(PRECREATE, fault, sub_code="ACQ.TOTAL_FEE_EXCEED")
    checkout = channel.create_checkout(make_checkout_request())
    assert checkout.outcome is outcome
    assert checkout.content is None


# -- refunds ----------------------------------------------------------------------------------
def test_partial_refunds_and_a_repeat(channel: AlipayChannel, sandbox: AlipaySandbox) -> None:
    no = paid(channel, sandbox)
    first = channel.refund(refund_of(no, "10.00", "R-1"))
    assert first.outcome is Outcome.SUCCEEDED
    assert first.message == "fund_change Y"
    repeat = channel.refund(refund_of(no, "10.00", "R-1"))
    assert repeat.outcome is Outcome.SUCCEEDED  # fund_change N, confirmed by the query
    assert "fund_change N" in (repeat.message or "")
    second = channel.refund(refund_of(no, "17.00", "R-2"))
    assert second.outcome is Outcome.SUCCEEDED
    assert sandbox.refunds_made == 2
    trade = sandbox.trade(no)
    assert str(trade.refunded) == "27.00 CNY"
    assert trade.status == "TRADE_CLOSED"
    over = channel.refund(refund_of(no, "0.01", "R-3"))
    assert (over.outcome, over.retryable) == (Outcome.FAILED, False)
    assert over.code == "ACQ.TRADE_HAS_CLOSE"


def test_a_20000_then_a_retry_refunds_once(channel: AlipayChannel, sandbox: AlipaySandbox) -> None:
    no = paid(channel, sandbox)
    request = refund_of(no, "27.00", "R-retry")
    sandbox.fail_next(REFUND, "20000", apply=True)

    lost = channel.refund(request)
    assert lost.outcome is Outcome.UNKNOWN
    assert "20000" in (lost.message or "")
    retried = channel.refund(request)

    assert retried.outcome is Outcome.SUCCEEDED
    assert sandbox.refunds_made == 1
    assert sandbox.calls[REFUND] == 2
    assert [r.out_request_no for r in sandbox.trade(no).refunds] == ["R-retry"]


@pytest.mark.parametrize("fault", ["timeout", "disconnect", "500", "bad_sign", "unsigned_error"])
def test_a_lost_refund_answer_is_unknown_never_a_result(sandbox: AlipaySandbox, fault: str) -> None:
    channel = AlipayChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=0.4))
    no = paid(channel, sandbox)
    request = refund_of(no, "5.00")
    sandbox.fail_next(REFUND, fault, apply=True)

    started = time.monotonic()
    answer = channel.refund(request)

    assert answer.outcome is Outcome.UNKNOWN
    assert answer.retryable is True
    assert time.monotonic() - started < 2.5  # the client gave up; the sandbox held on (3 s)
    assert sandbox.refunds_made == 1  # it was made; only the answer was lost
    # The query needs a real answer: a patient channel, so a loaded machine cannot time out.
    patient = AlipayChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=10))
    found = patient.query_refund(request)
    assert found.outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize(
    ("sub_code", "retryable"),
    [
        ("ACQ.SELLER_BALANCE_NOT_ENOUGH", True),
        ("ACQ.SYSTEM_ERROR", True),
        ("ACQ.TRADE_HAS_FINISHED", False),
        ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", False),
        ("ACQ.DISCORDANT_REPEAT_REQUEST", False),
    ],
)
def test_signed_refusals_fail_with_their_sub_code(
    channel: AlipayChannel, sandbox: AlipaySandbox, sub_code: str, retryable: bool
) -> None:
    no = paid(channel, sandbox)
    sandbox.fail_next(REFUND, "40004", sub_code=sub_code)
    answer = channel.refund(refund_of(no, "5.00"))
    assert (answer.outcome, answer.code, answer.retryable) == (Outcome.FAILED, sub_code, retryable)
    assert sandbox.refunds_made == 0


def test_the_sandbox_refuses_what_alipay_refuses(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    no = paid(channel, sandbox)
    too_much = channel.refund(refund_of(no, "27.01", "R-big"))
    assert too_much.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    sandbox.seller_balance_insufficient = True
    poor = channel.refund(refund_of(no, "1.00", "R-poor"))
    assert (poor.code, poor.retryable) == ("ACQ.SELLER_BALANCE_NOT_ENOUGH", True)
    sandbox.seller_balance_insufficient = False
    assert channel.refund(refund_of(no, "1.00", "R-poor")).outcome is Outcome.SUCCEEDED
    changed = channel.refund(refund_of(no, "2.00", "R-poor"))
    assert changed.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    sandbox.finish(no, deliver=False)
    late = channel.refund(refund_of(no, "1.00", "R-late"))
    assert (late.code, late.retryable) == ("ACQ.TRADE_HAS_FINISHED", False)
    unpaid = qr(channel).out_trade_no
    sandbox.scan(unpaid)
    assert channel.refund(refund_of(unpaid, "1.00")).code == "ACQ.TRADE_STATUS_ERROR"
    assert sandbox.refunds_made == 1


# -- refund queries -----------------------------------------------------------------------------
def test_refund_queries(channel: AlipayChannel, sandbox: AlipaySandbox) -> None:
    no = paid(channel, sandbox)
    request = refund_of(no, "5.00", "R-q")

    missing = channel.query_refund(request)
    assert (missing.outcome, missing.code, missing.retryable) == (
        Outcome.FAILED,
        "not_found",
        True,
    )

    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    assert channel.query_refund(request).outcome is Outcome.SUCCEEDED
    sandbox.refund_query_status = False  # the older answer: refund_amount only
    assert channel.query_refund(request).outcome is Outcome.SUCCEEDED
    other_amount = refund_of(no, "6.00", "R-q")
    assert channel.query_refund(other_amount).outcome is Outcome.UNKNOWN

    nowhere = channel.query_refund(refund_of("NO-SUCH-TRADE", "5.00"))
    assert (nowhere.outcome, nowhere.code, nowhere.retryable) == (
        Outcome.FAILED,
        "ACQ.TRADE_NOT_EXIST",
        True,
    )
    for fault in ("20000", "bad_sign", "unsigned_error", "500"):
        sandbox.fail_next(REFUND_QUERY, fault)
        assert channel.query_refund(request).outcome is Outcome.UNKNOWN


def test_fund_change_n_without_a_confirming_query_is_pending(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    no = paid(channel, sandbox)
    request = refund_of(no, "5.00")
    assert channel.refund(request).outcome is Outcome.SUCCEEDED
    sandbox.fail_next(REFUND_QUERY, "20000")
    answer = channel.refund(request)  # fund_change N, and the query is not answered
    assert answer.outcome is Outcome.PENDING
    assert sandbox.refunds_made == 1


# -- queries and close that go wrong ---------------------------------------------------------------
@pytest.mark.parametrize("fault", ["20000", "500", "disconnect", "bad_sign", "unsigned_error"])
def test_query_and_close_without_a_verified_answer_are_unknown(
    channel: AlipayChannel, sandbox: AlipaySandbox, fault: str
) -> None:
    no = paid(channel, sandbox)
    sandbox.fail_next(QUERY, fault)
    assert channel.query_payment(no).outcome is Outcome.UNKNOWN
    scanned = qr(channel).out_trade_no
    sandbox.scan(scanned)
    sandbox.fail_next(CLOSE, fault, apply=False)
    assert channel.close(scanned) is Outcome.UNKNOWN
    assert sandbox.trade(scanned).status == "WAIT_BUYER_PAY"


def test_a_query_refused_for_another_reason_is_unknown(
    channel: AlipayChannel, sandbox: AlipaySandbox
) -> None:
    no = paid(channel, sandbox)
    sandbox.fail_next(QUERY, "40004", sub_code="ACQ.SYSTEM_ERROR")
    assert channel.query_payment(no).outcome is Outcome.UNKNOWN  # says nothing about payment


def test_a_timeout_is_unknown() -> None:
    with make_sandbox() as sandbox:  # holds a timed-out connection 3 s
        channel = AlipayChannel(sandbox.channel_config(notify_url=NOWHERE, timeout_seconds=0.3))
        sandbox.fail_next(PRECREATE, "timeout", apply=True)
        started = time.monotonic()
        checkout = channel.create_checkout(make_checkout_request())
        assert checkout.outcome is Outcome.UNKNOWN
        assert "no answer" in (checkout.message or "")
        assert time.monotonic() - started < 2.5


def test_an_unreachable_gateway_is_unknown() -> None:
    sandbox = make_sandbox()
    config = sandbox.channel_config(notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/gateway.do")
    channel = AlipayChannel(config)
    assert channel.query_payment("T1").outcome is Outcome.UNKNOWN
    assert channel.refund(refund_of("T1", "1.00")).outcome is Outcome.UNKNOWN
    assert channel.close("T1") is Outcome.UNKNOWN


def test_a_wrong_app_key_is_refused_by_the_gateway(sandbox: AlipaySandbox) -> None:
    import attrs
    from alipay_kit import keys
    from cryptography.hazmat.primitives import serialization

    from ordercore.channels import Secret

    config = sandbox.channel_config(notify_url=NOWHERE)
    stranger = keys().stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    secrets = dict(config.secrets, app_private_key=Secret(stranger))
    channel = AlipayChannel(attrs.evolve(config, secrets=secrets))
    checkout = channel.create_checkout(make_checkout_request())
    assert checkout.outcome is Outcome.FAILED
    assert "isv.invalid-signature" in (checkout.message or "")
    assert channel.refund(refund_of("T1", "1.00")).code == "isv.invalid-signature"


# -- certificate mode ---------------------------------------------------------------------
def test_cert_mode_end_to_end() -> None:
    with make_sandbox(cert_mode=True) as sandbox:
        channel = AlipayChannel(sandbox.channel_config(notify_url=NOWHERE))
        assert channel.cert_mode
        no = paid(channel, sandbox)
        assert channel.query_payment(no).outcome is Outcome.SUCCEEDED
        assert channel.refund(refund_of(no, "1.00")).outcome is Outcome.SUCCEEDED
        notification = sandbox.notify_refund(no, "R-1", deliver=False)
        assert channel.parse_notification(notification.to_notification()).rejection is None
