"""Signatures and number formatting, checked against code nobody here wrote: the PyPI
``epusdt`` SDK's signing-string builder, NOWPayments' published Node.js snippet run by node
itself, and BTCPay's webhook HMAC computed with ``cryptography``. Amounts never pass through
float: a number a double would round is refused, not rounded."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from decimal import Decimal
from typing import Any

import epusdt.signature as sdk  # the PyPI SDK (a test dependency in pyproject.toml)
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from ordercore.channels import Notification
from ordercore_crypto import BtcpayChannel, EpusdtChannel, NowpaymentsChannel
from ordercore_crypto._base import read_money
from ordercore_crypto._epusdt import sign as epusdt_sign
from ordercore_crypto._epusdt import signing_string
from ordercore_crypto._nowpayments import ipn_signature
from ordercore_crypto._numbers import NumberError, canonical_json, go_number, js_number, parse_json
from ordercore_crypto.sandbox import BtcpaySandbox, EpusdtSandbox, NowpaymentsSandbox

D = Decimal


@pytest.mark.parametrize(
    ("text", "go", "js"),
    [
        ("25.0", "25", "25"),
        ("3.6e-05", "0.000036", "0.000036"),
        ("1e-07", "0.0000001", "1e-7"),
        ("0.000001", "0.000001", "0.000001"),
        ("100", "100", "100"),
        ("100.00", "100", "100"),
        ("15.625", "15.625", "15.625"),
        ("-0.5", "-0.5", "-0.5"),
        ("0", "0", "0"),
        ("-0.0", "0", "0"),
        ("1e21", "1000000000000000000000", "1e+21"),
        ("123456789012345678", "123456789012345680", "123456789012345680"),
        ("0.1234567890123456789", "0.12345678901234568", "0.12345678901234568"),
        ("5077125051", "5077125051", "5077125051"),
    ],
)
def test_numbers_are_written_the_way_go_and_javascript_write_them(
    text: str, go: str, js: str
) -> None:
    assert go_number(D(text)) == go
    assert js_number(D(text)) == js


def test_json_numbers_are_read_as_decimal_and_non_numbers_refused() -> None:
    body = parse_json(b'{"a": 27.00, "b": 3, "c": 3.6e-05}')
    assert body == {"a": D("27.00"), "b": D(3), "c": D("0.000036")}
    assert all(isinstance(v, Decimal) for v in body.values())
    for bad in (b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"{"):
        with pytest.raises(NumberError):
            parse_json(bad)


def test_an_amount_a_double_would_round_is_refused_not_rounded() -> None:
    # As a float this is 27.0; as Decimal it has more decimals than CNY allows.
    with pytest.raises(NumberError):
        read_money(D("27.000000000000001"), "CNY")
    with pytest.raises(NumberError):
        read_money(27.5, "CNY")  # a float is not an amount
    assert read_money(D("0.00005625"), "BTC").amount == D("0.00005625")


# -- Epusdt against the PyPI SDK -------------------------------------------------------------
EPUSDT_CASES: list[dict[str, Any]] = [
    {"order_id": "A1", "amount": D("100.00"), "notify_url": "http://x/cb", "redirect_url": ""},
    {
        "trade_id": "T20261203",
        "order_id": "2026120312345ABCDEF",
        "amount": D("27"),
        "actual_amount": D("3.7500"),
        "token": "TQ5xY",
        "block_transaction_id": "abc",
        "status": 2,
        "signature": "ignored",
    },
    {"order_id": "x", "amount": D("15.625"), "pid": 1001, "empty": None, "z": "中文"},
    {"order_id": "y", "amount": D("0.000036"), "actual_amount": D("1e-7")},
]


@pytest.mark.parametrize("params", EPUSDT_CASES)
def test_epusdt_signing_string_matches_the_pypi_sdk(params: dict[str, Any]) -> None:
    assert signing_string(params) == sdk.build_gmpay_signing_string(params)
    token = "epusdt-token-123"
    expected_md5 = hashlib.md5((sdk.build_gmpay_signing_string(params) + token).encode())
    assert epusdt_sign(params, token, "md5") == expected_md5.hexdigest()
    assert epusdt_sign(params, token, "hmac-sha256") == sdk.generate_gmpay_signature(params, token)


def test_epusdt_callback_with_go_numbers_verifies_and_a_changed_amount_does_not() -> None:
    with EpusdtSandbox() as sandbox:
        channel = EpusdtChannel(sandbox.channel_config(notify_url="http://127.0.0.1:9/cb"))
        params = {
            "trade_id": "T1",
            "order_id": "O1",
            "amount": D("27"),
            "actual_amount": D("3.75"),
            "token": "TQ5",
            "block_transaction_id": "b",
            "status": 2,
        }
        signed = dict(params, signature=epusdt_sign(params, sandbox.token))
        # The Go gateway writes 27 and 3.75; a PHP fork writes 27.00 and "3.7500": same text.
        for body in (
            b'{"trade_id":"T1","order_id":"O1","amount":27,"actual_amount":3.75,"token":"TQ5",'
            b'"block_transaction_id":"b","status":2,"signature":"'
            + signed["signature"].encode()
            + b'"}',
            b'{"trade_id":"T1","order_id":"O1","amount":27.00,"actual_amount":3.750,"token":"TQ5",'
            b'"block_transaction_id":"b","status":2,"signature":"'
            + signed["signature"].encode()
            + b'"}',
        ):
            result = channel.parse_notification(Notification("epusdt", {}, body))
            assert result.rejection is None, result.rejection
            (event,) = result.events
            assert str(event.amount) == "27.00 CNY"
            assert event.coin_amount is not None
            assert event.coin_amount.amount == D("3.75")
        tampered = body.replace(b'"amount":27.00', b'"amount":2.70')
        result = channel.parse_notification(Notification("epusdt", {}, tampered))
        assert result.rejection is not None
        assert result.rejection.code == "bad_signature"


# -- NOWPayments against its own Node.js snippet -----------------------------------------------
NODE_SNIPPET = r"""
const crypto = require('crypto');
function sortObject(obj) {
  return Object.keys(obj).sort().reduce(
    (result, key) => {
      result[key] = (obj[key] && typeof obj[key] === 'object') ? sortObject(obj[key]) : obj[key]
      return result
    },
    {}
  )
}
let input = '';
process.stdin.on('data', (c) => input += c);
process.stdin.on('end', () => {
  const {secret, bodies} = JSON.parse(input);
  const out = bodies.map((raw) => {
    const params = JSON.parse(raw);
    const hmac = crypto.createHmac('sha512', secret);
    hmac.update(JSON.stringify(sortObject(params)));
    const old = crypto.createHmac('sha512', secret);
    old.update(JSON.stringify(params, Object.keys(params).sort()));
    return [hmac.digest('hex'), old.digest('hex')];
  });
  process.stdout.write(JSON.stringify(out));
});
"""

IPN_BODIES = [
    # flat, numbers as a Python sender writes them
    b'{"payment_id": 5077125051, "payment_status": "finished", "pay_address": "TQ5",'
    b' "price_amount": 25.0, "price_currency": "usd", "pay_amount": 3.6e-05,'
    b' "actually_paid": 3.6e-05, "pay_currency": "btc", "order_id": "O1",'
    b' "order_description": "VPN \xe6\x9c\x88\xe5\x8d\xa1", "purchase_id": "6084744717",'
    b' "outcome_amount": 1e-07, "outcome_currency": "btc", "invoice_id": null}',
    # nested: the fee object, keys out of order
    b'{"payment_status": "partially_paid", "payment_id": 1, "order_id": "O2",'
    b' "fee": {"withdrawalFee": 0.000036, "currency": "usdttrc20", "depositFee": 0,'
    b' "serviceFee": 0.01875}, "price_amount": 27.00, "price_currency": "cny",'
    b' "pay_currency": "usdttrc20", "actually_paid": 1.875, "pay_amount": 3.75}',
    # index-like keys, escapes, big and small numbers
    b'{"10": 1, "2": 2, "b": "line\\nbreak \\"q\\" \\u0001", "a": 1e21, "c": 123.4560,'
    b' "d": [1.50, {"y": 2, "x": 1}], "e": true, "f": -0.0}',
]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_nowpayments_signature_matches_their_node_snippet() -> None:
    secret = "ipn-secret-Zx9"
    run = subprocess.run(
        ["node", "-e", NODE_SNIPPET],
        input=json.dumps({"secret": secret, "bodies": [b.decode() for b in IPN_BODIES]}),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    answers = json.loads(run.stdout)
    for raw, (theirs, _old) in zip(IPN_BODIES[:2], answers[:2], strict=True):
        assert ipn_signature(secret.encode(), parse_json(raw)) == theirs, raw
    # The older snippet (a key whitelist) agrees on a flat body and drops nested keys.
    assert answers[0][1] == answers[0][0]
    assert answers[1][1] != answers[1][0]
    # Arrays: their sortObject turns an array into an object, which no IPN carries; our
    # canonical form keeps arrays (NOWPayments' Python snippet does too). Objects match.
    without_array = IPN_BODIES[2].replace(b', "d": [1.50, {"y": 2, "x": 1}]', b"")
    third = parse_json(without_array)
    assert "d" not in third
    rerun = subprocess.run(
        ["node", "-e", NODE_SNIPPET],
        input=json.dumps(
            {
                "secret": secret,
                "bodies": [IPN_BODIES[2].decode().replace(', "d": [1.50, {"y": 2, "x": 1}]', "")],
            }
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert ipn_signature(secret.encode(), third) == json.loads(rerun.stdout)[0][0]


def test_nowpayments_ipn_with_python_style_numbers_verifies() -> None:
    with NowpaymentsSandbox() as sandbox:
        channel = NowpaymentsChannel(sandbox.channel_config())
        secret = sandbox.ipn_secret.encode()
        raw = IPN_BODIES[1]
        good = ipn_signature(secret, parse_json(raw))
        result = channel.parse_notification(
            Notification("nowpayments", {"x-nowpayments-sig": good}, raw)
        )
        assert result.rejection is None
        (event,) = result.events
        assert event.paid is False
        assert event.coin_amount is not None
        assert str(event.coin_amount) == "1.875000 USDT"
        # The Python snippet's json.dumps(sort_keys=True) writes 27.0: a different text.
        naive = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
        assert naive != canonical_json(parse_json(raw))
        for headers in ({}, {"x-nowpayments-sig": good[:-2] + "00"}):
            result = channel.parse_notification(Notification("nowpayments", headers, raw))
            assert result.rejection is not None
            assert result.rejection.code == "bad_signature"


# -- BTCPay against an HMAC computed with cryptography -------------------------------------------
def _reference_btcpay_sig(secret: str, raw: bytes) -> str:
    """BTCPay's webhook sender: ``"sha256=" + hex(HMACSHA256(UTF8(secret), body bytes))``."""
    mac = crypto_hmac.HMAC(secret.encode("utf-8"), hashes.SHA256())
    mac.update(raw)
    return "sha256=" + mac.finalize().hex()


def test_btcpay_webhook_signature_matches_the_reference_over_the_raw_bytes() -> None:
    with BtcpaySandbox() as sandbox:
        channel = BtcpayChannel(sandbox.channel_config())
        raw = json.dumps(
            {
                "deliveryId": "d1",
                "type": "InvoiceCreated",
                "storeId": sandbox.store_id,
                "invoiceId": "i1",
            },
            indent=2,
        ).encode()
        signature = _reference_btcpay_sig(sandbox.webhook_secret, raw)
        accepted = channel.parse_notification(
            Notification("btcpay", {"btcpay-sig": signature}, raw)
        )
        assert accepted.rejection is None
        assert accepted.events == ()  # InvoiceCreated: nothing to apply
        upper = "sha256=" + signature[len("sha256=") :].upper()
        assert (
            channel.parse_notification(Notification("btcpay", {"btcpay-sig": upper}, raw)).rejection
            is None
        )
        compact = json.dumps(json.loads(raw), separators=(",", ":")).encode()
        for headers, body in (
            ({"btcpay-sig": signature}, compact),  # same JSON, other bytes
            ({"btcpay-sig": signature[len("sha256=") :]}, raw),  # no sha256= prefix
            ({}, raw),
            ({"btcpay-sig": _reference_btcpay_sig("other", raw)}, raw),
        ):
            rejected = channel.parse_notification(Notification("btcpay", headers, body))
            assert rejected.rejection is not None
            assert rejected.rejection.code == "bad_signature"
            assert channel.refuse(rejected.rejection).status == 400
