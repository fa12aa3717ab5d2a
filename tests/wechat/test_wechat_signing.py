"""Our WeChat Pay v3 cryptography against wechatpayv3 (PyPI), an implementation nobody here
wrote: our request signatures are byte-identical to the ones its signing code makes for the
same timestamp and nonce; answers and notifications it signs as the platform verify with us;
it verifies and decrypts what our sandbox signs and encrypts; and a one-character change to
any signed header or body field is refused — by us and by it.

(wechatpayv3 has no AES-GCM *encryption*: its only envelope code is ``aes_decrypt``, so the
envelope is cross-checked in the direction it supports: it opens what we seal.)"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
import wechatpayv3.utils as sdk
from wechat_kit import APIV3_KEY, NOWHERE, keys, make_sandbox
from wechatpayv3.core import Core

from ordercore.channels import Notification, Outcome, PaymentEvent
from ordercore.testing import make_checkout_request, make_refund_request
from ordercore_wechat import HttpResponse, WechatChannel, _crypto
from ordercore_wechat.sandbox import WechatSandbox

MCHID = "1900000109"
SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"


class Recording:
    """A transport that records each request and answers with a canned response."""

    def __init__(self, answer: HttpResponse | None = None) -> None:
        self.answer = answer or HttpResponse(500, b"")
        self.requests: list[tuple[str, str, bytes | None, dict[str, str]]] = []

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        self.requests.append((method, url, body, dict(headers)))
        return self.answer


_OFFLINE = make_sandbox()  # never started: its keys and settings only


_CHANNELS: dict[int, WechatChannel] = {}


def offline(transport: Recording | None = None) -> WechatChannel:
    """A channel whose gateway is nowhere (or ``transport``); without one, built once."""
    if transport is None and 0 in _CHANNELS:
        return _CHANNELS[0]
    config = _OFFLINE.channel_config(
        notify_url=NOWHERE, gateway_url="http://127.0.0.1:9", transport=transport
    )
    channel = WechatChannel(config)
    if transport is None:
        _CHANNELS[0] = channel
    return channel


def platform_public_pem() -> str:
    return _crypto.public_pem(keys().platform).decode()


def sdk_signed(
    body: bytes, *, timestamp: str | None = None, nonce: str = "SDKNONCE42"
) -> dict[str, str]:
    """``Wechatpay-*`` headers for ``body``, signed by the SDK's ``rsa_sign`` holding the
    platform's key (the SDK plays WeChat Pay)."""
    stamp = timestamp or str(int(time.time()))
    message = f"{stamp}\n{nonce}\n{body.decode()}\n"
    return {
        "wechatpay-timestamp": stamp,
        "wechatpay-nonce": nonce,
        "wechatpay-signature": sdk.rsa_sign(keys().platform, message),
        "wechatpay-serial": _OFFLINE.platform_serials[0],
        "wechatpay-signature-type": "WECHATPAY2-SHA256-RSA2048",
    }


# -- our primitives --------------------------------------------------------------------------------
def test_the_signed_strings_are_exact() -> None:
    assert _crypto.request_message("GET", "/v3/x?a=1", "1", "N", b"") == b"GET\n/v3/x?a=1\n1\nN\n\n"
    assert _crypto.request_message("POST", "/v3/y", "2", "M", b'{"a":1}') == (
        b'POST\n/v3/y\n2\nM\n{"a":1}\n'
    )
    assert _crypto.answer_message("3", "K", b"") == b"3\nK\n\n"
    assert _crypto.answer_message("3", "K", '{"描述":1}'.encode()) == (
        b"3\nK\n" + '{"描述":1}'.encode() + b"\n"
    )


def test_the_authorization_header_parses_back() -> None:
    header = _crypto.authorization(
        mchid=MCHID,
        serial_no=SERIAL,
        key=keys().merchant,
        method="GET",
        url="/v3/certificates",
        body=b"",
        timestamp="1700000000",
        nonce="ABC",
    )
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="ABC",')
    params = _crypto.parse_authorization(header)
    assert (params["timestamp"], params["serial_no"]) == ("1700000000", SERIAL)
    for broken in (
        "",
        "Bearer x",
        header.replace('mchid="1900000109",', ""),
        header + ',mchid="1"',
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - any ValueError
            _crypto.parse_authorization(broken)


def test_verify_never_raises_and_refuses_the_signtest_probe() -> None:
    key = keys().platform
    message = b"1\nN\n{}\n"
    good = _crypto.sign(message, key)
    public = key.public_key()
    assert _crypto.verify(message, good, public)
    for bad in ("", "!!!", "WECHATPAY/SIGNTEST/" + good, good[:-4], good.lower()):
        assert not _crypto.verify(message, bad, public)


def test_envelopes_refuse_every_change() -> None:
    sealed = _crypto.encrypt(APIV3_KEY, "0123456789ab", "transaction", b'{"a":1}')
    assert _crypto.decrypt(APIV3_KEY, "0123456789ab", "transaction", sealed) == b'{"a":1}'
    for args in [
        (b"X" * 32, "0123456789ab", "transaction", sealed),
        (APIV3_KEY, "0123456789ac", "transaction", sealed),
        (APIV3_KEY, "0123456789ab", "refund", sealed),
        (APIV3_KEY, "0123456789ab", "transaction", sealed[:-2] + "AA"),
        (APIV3_KEY, "short", "transaction", sealed),
    ]:
        with pytest.raises(_crypto.CryptoError):
            _crypto.decrypt(*args)


# -- requests: byte-identical to the SDK's signatures ----------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v3/pay/transactions/out-trade-no/T2026112400000001?mchid=1900000109", ""),
        ("GET", "/v3/certificates", ""),
        ("POST", "/v3/pay/transactions/native", '{"description":"VPN 月卡 \\"30 天\\"","a":1}'),
        ("POST", "/v3/pay/transactions/out-trade-no/T1/close", '{"mchid":"1900000109"}'),
    ],
)
def test_request_signatures_equal_the_sdks(
    monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: str
) -> None:
    channel = offline()
    monkeypatch.setattr(sdk.time, "time", lambda: 1764923415.75)
    expected = sdk.build_authorization(
        path, method, MCHID, SERIAL, keys().merchant, data=body or None, nonce_str="NONCE0123"
    )
    ours = channel.request_headers(
        method, path, body.encode(), timestamp="1764923415", nonce="NONCE0123"
    )["Authorization"]
    assert ours == expected


def test_what_the_channel_sends_is_signed_as_the_sdk_signs_it() -> None:
    transport = Recording()
    channel = offline(transport)
    request = make_checkout_request(
        "T2026112400000001",
        "27.01",
        method="h5",
        subject="VPN 月卡「年付」",
        client_ip="203.0.113.7",
    )
    channel.create_checkout(request)
    channel.query_payment("T2026112400000001")
    channel.refund(make_refund_request("T2026112400000001", "10.00", total="27.01"))
    channel.close("T2026112400000001")
    assert [r[0] for r in transport.requests] == ["POST", "GET", "POST", "POST"]
    for method, url, body, headers in transport.requests:
        path = url.removeprefix("http://127.0.0.1:9")
        params = _crypto.parse_authorization(headers["Authorization"])
        expected = _sdk_authorization(method, path, body, params)
        assert headers["Authorization"] == expected
        assert headers["Accept"] == headers["Content-Type"] == "application/json"
        assert headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    h5 = json.loads(transport.requests[0][2] or b"")
    assert h5["amount"] == {"total": 2701, "currency": "CNY"}  # integer fen
    assert h5["scene_info"] == {"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}}
    refund = json.loads(transport.requests[2][2] or b"")
    assert refund["amount"] == {"refund": 1000, "total": 2701, "currency": "CNY"}
    assert transport.requests[1][1].endswith("/T2026112400000001?mchid=1900000109")


def _sdk_authorization(
    method: str, path: str, body: bytes | None, params: Mapping[str, str]
) -> str:
    original = sdk.time.time
    sdk.time.time = lambda: float(params["timestamp"])  # type: ignore[assignment]
    try:
        return str(
            sdk.build_authorization(
                path,
                method,
                MCHID,
                SERIAL,
                keys().merchant,
                data=None if not body else body.decode(),
                nonce_str=params["nonce_str"],
            )
        )
    finally:
        sdk.time.time = original  # type: ignore[assignment]


# -- answers and notifications the SDK signs as the platform ---------------------------------------
def test_an_answer_the_sdk_signs_verifies() -> None:
    body = json.dumps(
        {
            "appid": "wxd678efh567hg6787",
            "mchid": MCHID,
            "out_trade_no": "T2026112400000001",
            "transaction_id": "4200000000202611240000000001",
            "trade_state": "SUCCESS",
            "amount": {"total": 2700, "payer_total": 2600, "currency": "CNY"},
        },
        ensure_ascii=False,
    ).encode()
    channel = offline(Recording(HttpResponse(200, body, sdk_signed(body))))

    answer = channel.query_payment("T2026112400000001")

    assert answer.outcome is Outcome.SUCCEEDED
    assert answer.event is not None
    assert str(answer.event.amount) == "27.00 CNY"
    empty = offline(Recording(HttpResponse(204, b"", sdk_signed(b""))))
    assert empty.close("T2026112400000001") is Outcome.SUCCEEDED  # a signed empty 204


def notification_body(**changes: Any) -> dict[str, Any]:
    resource = json.dumps(
        {
            "mchid": MCHID,
            "appid": "wxd678efh567hg6787",
            "out_trade_no": "T2026112400000001",
            "transaction_id": "4200000000202611240000000001",
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "success_time": "2026-11-24T16:30:20+08:00",
            "amount": {"total": 2700, "payer_total": 2700, "currency": "CNY"},
        }
    ).encode()
    data: dict[str, Any] = {
        "id": "EV-2026112416302000001",
        "create_time": "2026-11-24T16:30:21+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": _crypto.encrypt(APIV3_KEY, "fdasflkja484", "transaction", resource),
            "associated_data": "transaction",
            "nonce": "fdasflkja484",
        },
    }
    for dotted, value in changes.items():
        target = data
        *parents, name = dotted.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return data


def dump(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def test_a_notification_the_sdk_signs_is_accepted() -> None:
    body = dump(notification_body())
    channel = offline()

    result = channel.parse_notification(Notification("wechat", sdk_signed(body), body))

    assert result.rejection is None
    (event,) = result.events
    assert isinstance(event, PaymentEvent)
    assert (event.paid, str(event.amount), event.event_id) == (
        True,
        "27.00 CNY",
        "EV-2026112416302000001",
    )


def _one_char_changed(value: str) -> str:
    return value[:-1] + ("B" if value[-1] != "B" else "C")


BODY_FIELDS = [
    "id",
    "create_time",
    "event_type",
    "summary",
    "resource_type",
    "resource.original_type",
    "resource.algorithm",
    "resource.ciphertext",
    "resource.associated_data",
    "resource.nonce",
]


@pytest.mark.parametrize("field", BODY_FIELDS)
def test_a_one_character_change_to_a_body_field_is_refused(field: str) -> None:
    original = notification_body()
    headers = sdk_signed(dump(original))
    value: Any = original
    for part in field.split("."):
        value = value[part]
    tampered = dump(notification_body(**{field: _one_char_changed(value)}))
    assert tampered != dump(original)
    assert len(tampered.decode()) == len(dump(original).decode())  # one character

    result = offline().parse_notification(Notification("wechat", headers, tampered))

    assert result.events == ()
    assert result.rejection is not None
    assert result.rejection.code == "bad_signature"
    key = keys().platform.public_key()
    assert not sdk.rsa_verify(
        headers["wechatpay-timestamp"],
        headers["wechatpay-nonce"],
        tampered.decode(),
        headers["wechatpay-signature"],
        key,
    )  # the SDK refuses it too


@pytest.mark.parametrize(
    "header",
    ["wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial"],
)
def test_a_one_character_change_to_a_signed_header_is_refused(header: str) -> None:
    body = dump(notification_body())
    headers = sdk_signed(body)
    value = headers[header]
    if header == "wechatpay-timestamp":
        headers[header] = str(int(value) - 1)  # still fresh, no longer what was signed
    elif header == "wechatpay-signature":
        headers[header] = value[:5] + ("B" if value[5] != "B" else "C") + value[6:]
    else:
        headers[header] = _one_char_changed(value)

    result = offline().parse_notification(Notification("wechat", headers, body))

    assert result.events == ()
    assert result.rejection is not None
    assert result.rejection.code == "bad_signature"


# -- the SDK verifies and decrypts what the sandbox sends ------------------------------------------
def sdk_core(sandbox: WechatSandbox) -> Core:
    return Core(
        mchid=MCHID,
        cert_serial_no=SERIAL,
        private_key=sandbox.merchant_private_key_pem.decode(),
        apiv3_key=APIV3_KEY.decode(),
        public_key=sandbox.platform_public_key_pem.decode(),
        public_key_id=sandbox.platform_serials[0],
    )


def test_the_sdk_verifies_and_decrypts_the_sandboxs_notifications(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    request = make_checkout_request("T2026112400000009", "27.00", method="native")
    assert channel.create_checkout(request).outcome is Outcome.PENDING
    sent = sandbox.pay(request.out_trade_no, deliver=False)
    headers = {k.lower(): v for k, v in sent.headers.items()}

    opened = sdk_core(sandbox).callback(headers, sent.body)

    assert opened is not None
    assert opened["resource"] == dict(sent.resource)
    assert opened["event_type"] == "TRANSACTION.SUCCESS"
    envelope = json.loads(sent.body)["resource"]
    plaintext = sdk.aes_decrypt(
        envelope["nonce"], envelope["ciphertext"], envelope["associated_data"], APIV3_KEY.decode()
    )
    assert json.loads(plaintext) == dict(sent.resource)
    forged = sandbox.notification(request.out_trade_no, fault="tampered")
    assert (
        sdk_core(sandbox).callback({k.lower(): v for k, v in forged.headers.items()}, forged.body)
        is None
    )


def test_the_sdk_verifies_the_sandboxs_answers(sandbox: WechatSandbox) -> None:
    from ordercore_wechat import UrllibTransport

    class Keep(UrllibTransport):
        def request(self, *args: Any, **kwargs: Any) -> HttpResponse:
            self.last = super().request(*args, **kwargs)
            return self.last

    transport = Keep()
    channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, transport=transport))
    request = make_checkout_request("T2026112400000010", "27.00", method="native")
    assert channel.create_checkout(request).outcome is Outcome.PENDING
    core = sdk_core(sandbox)
    assert core._verify_signature(transport.last.headers, transport.last.body.decode())
    assert channel.close(request.out_trade_no) is Outcome.SUCCEEDED  # 204, empty body
    assert transport.last.status == 204
    assert core._verify_signature(transport.last.headers, transport.last.body.decode())


# -- requests changed after signing are refused by the gateway -------------------------------------
class Tampering(Recording):
    def __init__(self, inner: Any, change: str) -> None:
        super().__init__()
        self.inner, self.change = inner, change

    def request(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        if self.change == "body" and body:
            body = body.replace(b'"total":2700', b'"total":2701')
        elif self.change == "query":
            url = url.replace("mchid=1900000109", "mchid=1900000108")
        elif self.change == "path":
            url = url.replace("T2026112400000011", "T2026112400000012")
        answer: HttpResponse = self.inner.request(method, url, body, headers, timeout)
        self.requests.append((method, url, body, dict(headers)))
        return answer


@pytest.mark.parametrize("change", ["body", "query", "path"])
def test_a_request_changed_after_signing_is_refused(sandbox: WechatSandbox, change: str) -> None:
    from ordercore_wechat import UrllibTransport

    honest = WechatChannel(sandbox.channel_config(notify_url=NOWHERE))
    request = make_checkout_request("T2026112400000011", "27.00", method="native")
    assert honest.create_checkout(request).outcome is Outcome.PENDING
    transport = Tampering(UrllibTransport(), change)
    channel = WechatChannel(sandbox.channel_config(notify_url=NOWHERE, transport=transport))
    if change == "body":
        other = make_checkout_request("T2026112400000013", "27.00", method="native")
        assert channel.create_checkout(other).outcome is Outcome.FAILED  # 401 SIGN_ERROR
        assert [t.out_trade_no for t in sandbox.trades()] == ["T2026112400000011"]
    else:
        assert channel.query_payment(request.out_trade_no).outcome is Outcome.UNKNOWN
    assert transport.requests


def test_a_stale_notification_the_sdk_accepts_is_refused_here(
    sandbox: WechatSandbox, channel: WechatChannel
) -> None:
    request = make_checkout_request("T2026112400000014", "27.00", method="native")
    assert channel.create_checkout(request).outcome is Outcome.PENDING
    sandbox.pay(request.out_trade_no, deliver=False)
    stale = sandbox.notification(request.out_trade_no, timestamp_offset=-3600)  # an hour old
    headers = {k.lower(): v for k, v in stale.headers.items()}

    assert sdk_core(sandbox).callback(headers, stale.body) is not None  # the SDK takes it
    result = channel.parse_notification(stale.to_notification())
    assert result.rejection is not None
    assert result.rejection.code == "stale"
    assert result.events == ()
