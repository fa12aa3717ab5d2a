"""Fuzzing the callback pipeline (design.md guarantee 7): random headers and bodies thrown at
``handle_callback`` for every registered channel always get an ``HttpReply`` with a failure
status — never an exception, never a state change. Only the inbox grows: each refusal is
recorded there.

Three sources of bad input: the test kit's ``garbage_notifications`` (random headers and
bodies) for each channel; bodies *correctly signed* with the fake channel's secret but with
random content, which get past the signature to the parser and the engine; and genuine
notifications of a real pending attempt with bytes flipped, cut or added after signing.
SQLite only: the engine's refusals do not depend on the backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from helpers import Backend, FakeClock, snapshot
from ordercore import Actor
from ordercore.channels import HttpReply, Notification
from ordercore.testing import (
    DEFAULT_SECRET,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    fake_signature,
    garbage_notifications,
)

from .payment_kit import ADMIN, Shop, cny, make_shop

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("sqlite", id="sqlite")], indirect=True
)

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CHANNELS = ("fake", "balance", "bank_transfer")


class World:
    """A shop with something to break: a pending order with a pending fake attempt, one
    with a bank transfer waiting for review, and one paid from the balance."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        core = shop.core
        core.wallet.credit(shop.customer_id, cny("30.00"), reason="top-up", actor=ADMIN)
        self.pending = shop.order()
        self.out_trade_no = shop.start(self.pending.number).out_trade_no
        review = shop.order()
        transfer = shop.start(review.number, "bank_transfer", "transfer").out_trade_no
        core.payments.submit_proof(
            transfer, reference="REF-1", actor=Actor.customer(shop.customer_id)
        )
        paid = shop.order()
        core.payments.start(paid.number, channel="balance", actor=ADMIN)
        self.baseline = self.digest()
        self.rows = self.without_inbox()
        self.inbox = shop.count("inbox")

    def digest(self) -> tuple[Any, ...]:
        """A cheap fingerprint of everything a callback could change."""
        tables = self.shop.core.tables
        self.shop.core.audit.seal_all()  # every audit record in the chain, counted there
        with self.shop.core.engine.connect() as conn:
            counts = tuple(
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (
                    tables.payment_events,
                    tables.anomalies,
                    tables.outbox,
                    tables.audit_log,
                    tables.wallet_ledger,
                    tables.payment_operations,
                )
            )
            orders = tuple(
                conn.execute(
                    select(
                        tables.orders.c.number, tables.orders.c.status, tables.orders.c.version
                    ).order_by(tables.orders.c.id)
                ).all()
            )
            attempts = tuple(
                conn.execute(
                    select(
                        tables.payment_attempts.c.out_trade_no,
                        tables.payment_attempts.c.status,
                        tables.payment_attempts.c.received_minor,
                        tables.payment_attempts.c.updated_at,
                    ).order_by(tables.payment_attempts.c.id)
                ).all()
            )
        return counts, orders, attempts

    def without_inbox(self) -> dict[str, Any]:
        rows = snapshot(self.shop.core)
        rows.pop(self.shop.core.tables.inbox.name)
        return rows

    def throw(self, channel: str, headers: Any, body: bytes, remote_addr: str | None) -> None:
        reply = self.shop.core.payments.handle_callback(channel, headers, body, remote_addr)
        assert isinstance(reply, HttpReply)
        assert 400 <= reply.status < 500, (reply, headers, body[:200])
        assert isinstance(reply.body, bytes)
        assert self.digest() == self.baseline, (headers, body[:200])

    def check_end(self, thrown: int) -> None:
        assert self.without_inbox() == self.rows
        assert self.shop.count("inbox") == self.inbox + thrown  # each refusal recorded
        refused = self.shop.core.payments.notifications(limit=1000, status="rejected")
        assert len(refused) >= thrown


@pytest.fixture
def world(backend: Backend, clock: FakeClock) -> Iterator[World]:
    shop = make_shop(backend, clock)
    yield World(shop)
    shop.core.close()


@pytest.mark.parametrize("channel", CHANNELS)
def test_garbage_is_refused_by_every_channel(world: World, channel: str) -> None:
    assert channel in world.shop.core.channels
    thrown = []

    @FUZZ
    @given(notification=garbage_notifications(channel))
    def throw(notification: Notification) -> None:
        world.throw(channel, notification.headers, notification.body, notification.remote_addr)
        thrown.append(1)

    throw()
    world.check_end(len(thrown))


_SCALARS = (
    st.text(max_size=30)
    | st.integers()
    | st.none()
    | st.booleans()
    | st.sampled_from(
        ["27.00", "27", "-27.00", "0.00", "2.7e1", "27.000", "CNY", "USD", "XXX", "fake-merchant"]
    )
)
_FIELDS = {
    "id": _SCALARS,
    "type": st.sampled_from(["payment.succeeded", "payment.failed", "payment.bogus", ""])
    | _SCALARS,
    "merchant_id": st.sampled_from(["fake-merchant", "other"]) | _SCALARS,
    # Never a real attempt's number: a correctly signed event for one would be genuine.
    "out_trade_no": st.sampled_from(["NOPE", "", "0"]) | st.text(max_size=80),
    "trade_no": _SCALARS,
    "amount": _SCALARS,
    "currency": _SCALARS,
}


_GENUINE_FIELDS = {
    "id": "evt_1",
    "type": "payment.succeeded",
    "merchant_id": "fake-merchant",
    "out_trade_no": "NOPE",
    "trade_no": "FAKE000000000001",
    "amount": "27.00",
    "currency": "CNY",
}


@st.composite
def signed_bodies(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """JSON bodies correctly signed at the current time: a well-formed payment event for an
    attempt that does not exist with some fields replaced or dropped, or random fields, or
    no JSON object at all."""
    kind = draw(st.sampled_from(["near", "random", "raw"]))
    body: dict[str, Any] = {}
    if kind == "near":
        body = dict(_GENUINE_FIELDS)
        body["out_trade_no"] = draw(_FIELDS["out_trade_no"])
        body.update(draw(st.dictionaries(st.sampled_from(sorted(_FIELDS)), _SCALARS, max_size=2)))
        for key in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=2)):
            body.pop(key, None)
    elif kind == "random":
        keys = draw(st.lists(st.sampled_from(sorted(_FIELDS)), unique=True))
        body = {key: draw(_FIELDS[key]) for key in keys}
        body.update(draw(st.dictionaries(st.text(max_size=10), _SCALARS, max_size=3)))
    if kind == "raw":
        raw = draw(st.sampled_from([b"[]", b"null", b'"x"', b"{", b'{"a":1.5}', b"\xff", b""]))
    else:
        raw = json.dumps(body).encode()
    return {"content-type": "application/json"}, raw


def test_correctly_signed_nonsense_is_refused(world: World, clock: FakeClock) -> None:
    thrown = []

    @FUZZ
    @given(signed=signed_bodies())
    def throw(signed: tuple[dict[str, str], bytes]) -> None:
        headers, body = signed
        stamp = str(int(clock().timestamp()))
        headers = {
            **headers,
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: fake_signature(DEFAULT_SECRET, stamp, body),
        }
        world.throw("fake", headers, body, "203.0.113.7")
        thrown.append(1)

    throw()
    world.check_end(len(thrown))
    # Some got past the channel to the engine, which refused them too.
    reasons = [n["reason"] for n in world.shop.core.payments.notifications(limit=1000)]
    assert any("no such payment attempt" in r for r in reasons)
    assert any(r.startswith("malformed:") for r in reasons)


def test_a_genuine_notification_altered_after_signing_is_refused(world: World) -> None:
    genuine = world.shop.gateway.notification_for(world.out_trade_no)
    thrown = []

    @FUZZ
    @given(
        how=st.sampled_from(["flip", "cut", "append", "signature", "timestamp"]),
        where=st.integers(min_value=0),
        xor=st.integers(min_value=1, max_value=255),
        extra=st.binary(min_size=1, max_size=20),
    )
    def throw(how: str, where: int, xor: int, extra: bytes) -> None:
        headers, body = dict(genuine.headers), bytearray(genuine.body)
        if how == "flip":
            body[where % len(body)] ^= xor
        elif how == "cut":
            del body[where % len(body) :]
        elif how == "append":
            body += extra
        elif how == "signature":
            signature = bytearray(headers[SIGNATURE_HEADER].encode())
            signature[where % len(signature)] ^= xor
            headers[SIGNATURE_HEADER] = signature.decode("latin-1")
        else:
            headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) + 1 + where % 1000)
        world.throw("fake", headers, bytes(body), None)
        thrown.append(1)

    throw()
    world.check_end(len(thrown))
    # The genuine notification, untouched, is still accepted: the refusals were real ones.
    reply = world.shop.deliver(genuine)
    assert (reply.status, reply.body) == (200, b"OK")
