"""The signed part of a synchronous answer is cut out of the raw body, quote- and
escape-aware, and verified as it was received: never re-serialised."""

from __future__ import annotations

import json

import pytest
from alipay_kit import NOWHERE, keys, make_sandbox

from ordercore.channels import Outcome
from ordercore_alipay import AlipayChannel, _sign
from ordercore_alipay._transport import HttpResponse

KEY = "alipay_trade_query_response"


def R(text: str) -> str:
    """``text`` with ``@`` standing for the response's name."""
    return text.replace("@", KEY)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # plain, sign after the object
        (R('{"@":{"code":"10000"},"sign":"abc"}'), '{"code":"10000"}'),
        # sign before the object
        (R('{"sign":"abc","@":{"code":"10000"}}'), '{"code":"10000"}'),
        # nested objects and arrays
        (
            R('{"@":{"a":{"b":{"c":[1,{"d":"}"}]}},"e":[]},"sign":"x"}'),
            '{"a":{"b":{"c":[1,{"d":"}"}]}},"e":[]}',
        ),
        # braces and escaped quotes inside strings
        (
            R(r'{"@":{"subject":"a \"}\" {b} \\","x":"}}}"},"sign":"x"}'),
            r'{"subject":"a \"}\" {b} \\","x":"}}}"}',
        ),
        # whitespace and unicode escapes kept exactly
        (
            R('{ "@" : { "msg" : "\\u6210\\u529f" ,\n "code":"10000" } , "sign" : "x" }'),
            '{ "msg" : "\\u6210\\u529f" ,\n "code":"10000" }',
        ),
        # the response's name inside another member's string does not fool it
        (
            R('{"note":"\\"@\\":{\\"code\\":\\"10000\\"}","@":{"code":"40004"},"sign":"x"}'),
            '{"code":"40004"}',
        ),
    ],
)
def test_the_signed_object_is_cut_out_raw(body: str, expected: str) -> None:
    parts = _sign.split_response(body)
    assert parts.raw(KEY) == expected
    assert json.loads(parts.raw("sign") or "null") in ("abc", "x")


def test_an_error_response_without_sign() -> None:
    body = '{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.x"}}'
    parts = _sign.split_response(body)
    assert parts.raw("error_response") == (
        '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.x"}'
    )
    assert parts.raw("sign") is None


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[]",
        "not json",
        R('{"@":{"code":"10000"}'),  # not closed
        R('{"@":{"code":"10000}},"sign":"x"}'),  # a string swallows the rest
        R('{"@":{},"@":{},"sign":"x"}'),  # repeated member
        R('{"@":{}} trailing'),
        R('{"@" {}}'),
        '{"a":1 "b":2}',
    ],
)
def test_garbage_is_refused(body: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError
        _sign.split_response(body)


class Canned:
    """A transport that answers with a fixed body (and records what it was asked)."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status
        self.requests: list[tuple[str, bytes]] = []

    def post(self, url: str, body: bytes, headers: object, timeout: float) -> HttpResponse:
        self.requests.append((url, body))
        return HttpResponse(self.status, self.body)


def channel_with(body: bytes, status: int = 200) -> tuple[AlipayChannel, Canned]:
    transport = Canned(body, status)
    config = make_sandbox().channel_config(
        notify_url=NOWHERE, gateway_url="http://127.0.0.1:9/gateway.do", transport=transport
    )
    return AlipayChannel(config), transport


def signed_body(inner: str, *, sign_first: bool = False) -> bytes:
    signature = _sign.sign(inner, keys().alipay)
    if sign_first:
        return f'{{"sign":"{signature}","{KEY}":{inner}}}'.encode()
    return f'{{"{KEY}":{inner},"sign":"{signature}"}}'.encode()


ODD_INNER = (
    '{ "code":"10000", "msg":"\\u6210\\u529f", "trade_status":"TRADE_SUCCESS",'
    ' "out_trade_no":"T1", "total_amount":"27.00", "subject":"a \\"}{\\" b",'
    ' "fund_bill_list":[{"amount":"27.00","fundChannel":"ALIPAYACCOUNT"}] }'
)


@pytest.mark.parametrize("sign_first", [False, True])
def test_a_raw_object_verifies_as_received(sign_first: bool) -> None:
    channel, transport = channel_with(signed_body(ODD_INNER, sign_first=sign_first))

    answer = channel.query_payment("T1")

    assert answer.outcome is Outcome.SUCCEEDED
    assert answer.event is not None
    assert str(answer.event.amount) == "27.00 CNY"
    ((url, body),) = transport.requests
    assert "method=alipay.trade.query" in url
    assert body.startswith(b"biz_content=")
    # Re-serialised, the same object would not verify: the signature covers the raw text.
    reserialised = json.dumps(json.loads(ODD_INNER), separators=(",", ":"))
    assert reserialised != ODD_INNER
    signature = _sign.sign(ODD_INNER, keys().alipay)
    assert not _sign.verify(reserialised, signature, keys().alipay.public_key())


def test_a_tampered_object_is_an_unknown_outcome() -> None:
    body = signed_body(ODD_INNER).replace(b'"27.00", "subject"', b'"0.01", "subject"')
    channel, _ = channel_with(body)
    answer = channel.query_payment("T1")
    assert answer.outcome is Outcome.UNKNOWN
    assert "signature" in (answer.message or "")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"<html>502 Bad Gateway</html>", 502),
        (b"", 200),
        (b"\xff\xfe", 200),
        (b'{"something_else":{}}', 200),
    ],
)
def test_no_usable_answer_is_unknown(body: bytes, status: int) -> None:
    channel, _ = channel_with(body, status)
    assert channel.query_payment("T1").outcome is Outcome.UNKNOWN
    assert channel.close("T1") is Outcome.UNKNOWN
