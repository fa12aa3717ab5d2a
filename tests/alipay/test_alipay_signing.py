"""Our RSA2 signing against python-alipay-sdk (import name ``alipay``), an independent
implementation: notifications it signs are accepted, requests we sign verify with it (and
carry byte-identical signatures: PKCS#1 v1.5 is deterministic), answers the sandbox signs
pass its response check, certificate serial numbers agree — and a one-character change to any
signed field is refused."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
from alipay_kit import NOWHERE, keys, make_sandbox
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from alipay import AliPay, DCAliPay
from ordercore.channels import Notification, PaymentEvent
from ordercore_alipay import AlipayChannel, _sign
from ordercore_alipay.sandbox import AlipaySandbox


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def public(key: rsa.RSAPrivateKey) -> str:
    return _sign.public_pem(key).decode()


def sdk_as_alipay() -> AliPay:
    """The SDK holding Alipay's private key: its signer is Alipay's."""
    k = keys()
    return AliPay(
        appid="2021000000000001",
        app_private_key_string=pem(k.alipay),
        alipay_public_key_string=public(k.alipay),
    )


def sdk_as_gateway() -> AliPay:
    """The SDK holding the application's public key: its verifier checks our requests."""
    k = keys()
    return AliPay(
        appid="2021000000000001",
        app_private_key_string=pem(k.app),
        alipay_public_key_string=public(k.app),
    )


def sdk_as_app() -> AliPay:
    """The SDK as an application: it verifies what Alipay (the sandbox) signs."""
    k = keys()
    return AliPay(
        appid="2021000000000001",
        app_private_key_string=pem(k.app),
        alipay_public_key_string=public(k.alipay),
    )


@pytest.fixture
def offline_channel() -> AlipayChannel:
    """A channel whose gateway is nowhere: these tests make no call."""
    sandbox = make_sandbox()  # never started: only its keys and settings are used
    config = sandbox.channel_config(notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/gateway.do")
    return AlipayChannel(config)


def paid_form(**changes: str) -> dict[str, str]:
    form = {
        "gmt_create": "2026-11-24 16:30:15",
        "charset": "utf-8",
        "seller_email": "seller@sandbox.example",
        "subject": "VPN 月卡 (30 天) & more=yes",
        "buyer_id": "2088102177846880",
        "invoice_amount": "27.00",
        "notify_id": "2026112400222163016000000000000001",
        "fund_bill_list": '[{"amount":"27.00","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "27.00",
        "app_id": "2021000000000001",
        "buyer_pay_amount": "27.00",
        "seller_id": "2088000000000001",
        "gmt_payment": "2026-11-24 16:30:20",
        "notify_time": "2026-11-24 16:30:21",
        "version": "1.0",
        "out_trade_no": "20261124000001A1B2C3",
        "total_amount": "27.00",
        "trade_no": "2026112422001000000000000001",
        "auth_app_id": "2021000000000001",
        "buyer_logon_id": "buy***@sandbox.example",
        "point_amount": "0.00",
    }
    form.update(changes)
    return form


def sdk_signed_body(form: dict[str, str]) -> bytes:
    """A notification body signed by python-alipay-sdk's own routine (``sign_data``: sorted
    ``k=v`` over the dict, RSA2, then every value ``quote_plus``-ed), with ``sign_type``
    appended as Alipay sends it (not part of what a notification's signature covers)."""
    signed = sdk_as_alipay().sign_data(dict(form))
    return (signed + "&sign_type=RSA2").encode("ascii")


def parse(channel: AlipayChannel, body: bytes) -> Any:
    return channel.parse_notification(Notification("alipay", {}, body))


# -- (a) notifications the SDK signs are accepted --------------------------------------------
def test_a_notification_signed_by_the_sdk_is_accepted(offline_channel: AlipayChannel) -> None:
    result = parse(offline_channel, sdk_signed_body(paid_form()))

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, PaymentEvent)
    assert event.paid is True
    assert str(event.amount) == "27.00 CNY"
    assert event.out_trade_no == "20261124000001A1B2C3"
    assert event.event_id == "2026112400222163016000000000000001"
    assert event.channel_trade_no == "2026112422001000000000000001"
    assert event.occurred_at == dt.datetime(2026, 11, 24, 8, 30, 20, tzinfo=dt.timezone.utc)


def test_the_sdk_form_with_an_empty_value_is_accepted_too(offline_channel: AlipayChannel) -> None:
    # The SDK (like the official Java SDK's getSignCheckContentV1) signs "body=" along; the
    # spec's form leaves empty values out. Both verify; the empty field is then ignored.
    result = parse(offline_channel, sdk_signed_body(paid_form(body="")))

    assert result.rejection is None
    assert result.events[0].paid is True


# -- (b) requests we sign verify with the SDK ------------------------------------------------
def test_request_signatures_verify_with_the_sdk_and_equal_its_own(
    offline_channel: AlipayChannel,
) -> None:
    biz = {"out_trade_no": "T1", "total_amount": "27.00", "subject": 'VPN 月卡 "quoted" {x}'}
    params = offline_channel.signed_params(
        "alipay.trade.precreate", biz, notify_url=NOWHERE, return_url="https://shop.example/r?a=1"
    )
    signature = params.pop("sign")
    gateway = sdk_as_gateway()
    content = "&".join(f"{k}={v}" for k, v in gateway._ordered_data(dict(params)))

    assert params["sign_type"] == "RSA2"  # part of what is signed
    assert "sign_type=RSA2" in content
    assert gateway._verify(content, signature)
    # The SDK signing the same parameters with the same key gives the same bytes.
    sdk_signed = dict(urllib.parse.parse_qsl(gateway.sign_data(dict(params))))
    assert sdk_signed["sign"] == signature


@pytest.mark.parametrize("method", ["page", "h5"])
def test_checkout_urls_verify_with_the_sdk(offline_channel: AlipayChannel, method: str) -> None:
    from ordercore.testing import make_checkout_request

    checkout = offline_channel.create_checkout(make_checkout_request(method=method))
    assert checkout.url is not None
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(checkout.url).query))
    signature = params.pop("sign")
    gateway = sdk_as_gateway()
    content = "&".join(f"{k}={v}" for k, v in gateway._ordered_data(dict(params)))

    assert gateway._verify(content, signature)
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == (
        "FAST_INSTANT_TRADE_PAY" if method == "page" else "QUICK_WAP_WAY"
    )
    params["biz_content"] = params["biz_content"].replace('"30.00"', '"0.01"')
    tampered = "&".join(f"{k}={v}" for k, v in gateway._ordered_data(dict(params)))
    assert not gateway._verify(tampered, signature)


# -- the sandbox signs answers as Alipay does -------------------------------------------------
def test_sandbox_answers_pass_the_sdks_response_check(sandbox: AlipaySandbox) -> None:
    channel = AlipayChannel(sandbox.channel_config(notify_url=NOWHERE))
    out_trade_no = "T-sdk-check"
    reply = channel.call(
        "alipay.trade.precreate",
        {"out_trade_no": out_trade_no, "total_amount": "9.90", "subject": '含 "引号" 的 {标题}'},
    )
    assert reply.succeeded
    sandbox.pay(out_trade_no, deliver=False)
    params = channel.signed_params("alipay.trade.query", {"out_trade_no": out_trade_no})
    import urllib.request

    raw = urllib.request.urlopen(
        f"{sandbox.gateway_url}?{urllib.parse.urlencode(params)}", timeout=10
    ).read()
    text = raw.decode("utf-8")

    checked = sdk_as_app()._verify_and_return_sync_response(text, "alipay_trade_query_response")

    assert checked["trade_status"] == "TRADE_SUCCESS"
    assert checked["total_amount"] == "9.90"
    # Our cut of the signed object is the SDK's.
    ours = _sign.split_response(text).raw("alipay_trade_query_response")
    assert ours == sdk_as_app()._get_string_to_be_signed(text, "alipay_trade_query_response")


# -- certificate serial numbers ---------------------------------------------------------------
def _certificate(algorithm: hashes.SHA256, serial: int) -> bytes:
    key = keys().stranger
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Root {serial}"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, algorithm)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyOpenSSL APIs the SDK uses
def test_cert_serial_numbers_match_the_sdk() -> None:
    sandbox = make_sandbox(cert_mode=True)
    certs = sandbox.certificates
    for name in ("app_cert", "alipay_cert"):
        assert _sign.cert_sn(certs[name]) == DCAliPay.get_cert_sn(certs[name].decode())
    root = certs["alipay_root_cert"]
    assert _sign.root_cert_sn(root) == DCAliPay.get_root_cert_sn(root.decode())
    assert root.count(b"BEGIN CERTIFICATE") == 2  # the EC root is left out of the SN
    assert "_" not in _sign.root_cert_sn(root)


def _sha1_certificate(serial: int) -> bytes:
    """A sha1WithRSA certificate (cryptography no longer signs with SHA-1; pyOpenSSL, which
    python-alipay-sdk brings along, still does)."""
    import warnings

    from OpenSSL import crypto

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        key = crypto.PKey.from_cryptography_key(keys().stranger)
        cert = crypto.X509()
        subject = cert.get_subject()
        subject.C, subject.O, subject.OU, subject.CN = "CN", "Ant Financial", "CA", "Old root"
        cert.set_issuer(subject)
        cert.set_serial_number(serial)
        cert.set_pubkey(key)
        cert.gmtime_adj_notBefore(0)
        cert.gmtime_adj_notAfter(86400)
        cert.sign(key, "sha1")
        assert cert.get_signature_algorithm() == b"sha1WithRSAEncryption"
        return bytes(crypto.dump_certificate(crypto.FILETYPE_PEM, cert))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_root_sn_joins_sha1_and_sha256_rsa_certificates_in_file_order() -> None:
    sha1 = _sha1_certificate(2**70 + 12345)
    sha256 = _certificate(hashes.SHA256(), 987654321)
    chain = sha1 + b"\n" + sha256

    sn = _sign.root_cert_sn(chain)

    assert sn == DCAliPay.get_root_cert_sn(chain.decode())
    assert sn == f"{_sign.cert_sn(sha1)}_{_sign.cert_sn(sha256)}"
    # SN = md5(issuer DN as RFC 2253 + decimal serial)
    import hashlib

    expected = hashlib.md5(
        ("CN=Root 987654321,OU=Certification Authority,O=Ant Financial,C=CN" + "987654321").encode()
    ).hexdigest()
    assert _sign.cert_sn(sha256) == expected


# -- (c) one character changed anywhere is refused ---------------------------------------------
SIGNED_FIELDS = [
    "total_amount",
    "app_id",
    "out_trade_no",
    "trade_status",
    "seller_id",
    "subject",
    "notify_id",
    "trade_no",
    "gmt_payment",
    "fund_bill_list",
    "buyer_id",
    "receipt_amount",
]


def _one_char_changed(value: str) -> str:
    last = value[-1]
    return value[:-1] + ("1" if last != "1" else "2")


@pytest.mark.parametrize("field", SIGNED_FIELDS)
def test_a_one_character_change_to_a_notification_is_refused(
    offline_channel: AlipayChannel, field: str
) -> None:
    form = paid_form()
    body = sdk_signed_body(form)
    pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True)
    changed = [(k, _one_char_changed(v) if k == field else v) for k, v in pairs]
    tampered = urllib.parse.urlencode(changed).encode("ascii")
    assert tampered != body

    result = parse(offline_channel, tampered)

    assert result.events == ()
    assert result.rejection is not None
    assert result.rejection.code == "bad_signature"


def test_a_one_character_change_to_the_signature_is_refused(
    offline_channel: AlipayChannel,
) -> None:
    pairs = urllib.parse.parse_qsl(sdk_signed_body(paid_form()).decode("ascii"))

    def flip(sign: str) -> str:
        return sign[:5] + ("B" if sign[5] != "B" else "C") + sign[6:]

    changed = [(k, flip(v) if k == "sign" else v) for k, v in pairs]
    result = parse(offline_channel, urllib.parse.urlencode(changed).encode("ascii"))
    assert result.rejection is not None
    assert result.rejection.code == "bad_signature"


@pytest.mark.parametrize("field", ["biz_content", "app_id", "timestamp", "method", "notify_url"])
def test_a_one_character_change_to_a_request_fails_the_sdks_check(
    offline_channel: AlipayChannel, field: str
) -> None:
    params = offline_channel.signed_params(
        "alipay.trade.refund",
        {"out_trade_no": "T1", "refund_amount": "27.00", "out_request_no": "R1"},
        notify_url=NOWHERE,
    )
    signature = params.pop("sign")
    params[field] = _one_char_changed(params[field])
    gateway = sdk_as_gateway()
    content = "&".join(f"{k}={v}" for k, v in gateway._ordered_data(dict(params)))
    assert not gateway._verify(content, signature)
