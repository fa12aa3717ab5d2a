"""Callback intake (issue 12, items 7–10): what of a notification reaches the database.

* Fields a channel hands the engine that do not fit the database (NUL, control characters,
  lone surrogates, a ``trade_no`` over its column, an amount no 64-bit count holds) are
  refused before a transaction touches them: the platform's failure answer, a ``rejected``
  inbox row naming the field, nothing else written — the same on every redelivery, on every
  backend (PostgreSQL refuses NUL in text, PostgreSQL and MariaDB refuse long values).
* Headers: only those the channel reads are stored, with a bounded summary of the others;
  secret and configured headers are stored redacted; secrets do not leak through
  ``attrs.asdict``/``cattrs``.
* Rows a killed process left ``received`` are replayed by the job runner after the grace
  period (or flagged ``stalled`` when a replay is left so too); a replay resolves the row it
  replays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs
import cattrs
import pytest

from helpers import Backend, FakeClock, snapshot
from ordercore import OrderStatus
from ordercore._config import Settings
from ordercore._errors import ConfigurationError
from ordercore._payments.intake import MAX_KEPT_BYTES, keep_headers
from ordercore._state import OrderEvent
from ordercore.channels import ChannelConfig, Secret
from ordercore.testing import DEFAULT_SECRET, SIGNATURE_HEADER, TIMESTAMP_HEADER, fake_signature

from .payment_kit import ADMIN, Shop, cny, make_shop

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
on_sqlite_and_postgresql = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


def without_inbox(shop: Shop) -> dict[str, Any]:
    rows = snapshot(shop.core)
    rows.pop(shop.core.tables.inbox.name)
    return rows


# -- 7: fields that do not fit the database ---------------------------------------------------

BAD_FIELDS = [
    ({"trade_no": "T" * 129}, "channel_trade_no is 129 characters long, more than 128"),
    ({"trade_no": "T-\x00-1"}, "channel_trade_no holds the control character U+0000"),
    ({"type": "payment.failed", "trade_no": "T\x1b[31m"}, "U+001B"),
    ({"id": "e" * 129}, "event_id is 129 characters long"),
]


def test_fields_that_do_not_fit_are_refused_naming_the_field(shop: Shop) -> None:
    """Every backend: before, a NUL or a long trade_no was a 500 and a row left received."""
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    before = without_inbox(shop)
    for extra, reason in BAD_FIELDS:
        signed = shop.gateway.notification_for(no, extra=extra)
        for _delivery in range(2):  # a redelivery is refused the same way
            reply = shop.deliver(signed)
            assert (reply.status, json.loads(reply.body)["code"]) == (400, "FAIL"), extra
            entry = shop.inbox()[-1]
            assert entry["status"] == "rejected"
            assert entry["reason"].startswith("invalid_field: ")
            assert reason in entry["reason"], (extra, entry["reason"])
    assert without_inbox(shop) == before  # only the record of the refusals
    assert len(shop.inbox()) == 2 * len(BAD_FIELDS)
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    # A lone surrogate (valid JSON, "\ud800") in a correctly signed body.
    fields = {
        "id": "evt-surrogate",
        "type": "payment.succeeded",
        "merchant_id": "fake-merchant",
        "out_trade_no": no,
        "trade_no": "T-\ud800",
        "amount": "27.00",
        "currency": "CNY",
    }
    raw = json.dumps(fields).encode("ascii")
    stamp = str(int(shop.clock().timestamp()))
    signature = fake_signature(DEFAULT_SECRET, stamp, raw)
    reply = shop.core.payments.handle_callback(
        "fake", {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp}, raw, None
    )
    assert reply.status == 400
    assert "channel_trade_no holds a lone surrogate (U+D800)" in shop.inbox()[-1]["reason"]
    assert without_inbox(shop) == before
    # The genuine notification still goes through.
    assert shop.deliver(shop.gateway.pay(no)).status == 200
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID


@on_sqlite_and_postgresql
def test_an_out_trade_no_over_its_column_is_refused_before_any_lookup(shop: Shop) -> None:
    before = without_inbox(shop)
    signed = shop.gateway.notification_for("N" * 65, amount=cny("27.00"))
    reply = shop.deliver(signed)
    assert reply.status == 400
    (entry,) = shop.inbox()
    assert entry["status"] == "rejected"
    assert "out_trade_no is 65 characters long, more than 64" in entry["reason"]
    assert without_inbox(shop) == before


# -- 8 and 9: headers -------------------------------------------------------------------------


def _flood(count: int, size: int) -> dict[str, str]:
    return {f"X-Flood-{i}": "v" * size for i in range(count)}


@on_sqlite_and_postgresql
def test_only_the_headers_the_channel_reads_are_stored_with_a_bounded_summary(
    shop: Shop,
) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    headers, body = shop.gateway.pay(no)
    flood = _flood(95, 60_000)  # what the probe sent: 5.7 MB of headers
    odd = {"Bad Name": "x", "X-Nul": "a\x00b", "X-Wide": "\u4e2d"}
    reply = shop.core.payments.handle_callback(
        "fake", {**headers, **flood, **odd, "Authorization": "Bearer s3cr3t"}, body, "10.0.0.9"
    )
    assert reply.status == 200
    (entry,) = shop.inbox()
    assert entry["status"] == "applied"
    assert set(entry["headers"]) == {SIGNATURE_HEADER, TIMESTAMP_HEADER, "content-type"}
    summary = entry["header_summary"]
    assert summary["dropped"] == 95 + 3 + 1
    assert summary["bytes"] > 95 * 60_000
    assert len(summary["names"]) == 20
    assert summary["more_names"] == 95 + 3 + 1 - 20
    with shop.core.engine.connect() as conn:
        stored = conn.execute(
            shop.core.tables.inbox.select().with_only_columns(shop.core.tables.inbox.c.headers)
        ).scalar_one()
    assert len(stored) < 2_000  # not 5.7 MB
    assert "s3cr3t" not in stored


@on_sqlite_and_postgresql
def test_configured_headers_are_stored_redacted_but_seen_by_the_channel(
    backend: Backend, clock: FakeClock
) -> None:
    shop = make_shop(backend, clock, redact_headers=["X-Fake-Timestamp"])
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    signed = shop.gateway.pay(no)
    assert shop.deliver(signed).status == 200  # the channel saw the real timestamp
    (entry,) = shop.inbox()
    assert entry["headers"][TIMESTAMP_HEADER] == "[redacted]"
    assert entry["headers"][SIGNATURE_HEADER] == signed.headers[SIGNATURE_HEADER]
    # A replay cannot verify what was not stored: refused, and nothing applied twice.
    replay = shop.core.payments.replay(entry["id"], actor=ADMIN)
    assert replay.status == 400
    assert shop.inbox()[-1]["status"] == "rejected"


def test_keep_headers_redacts_secret_and_drops_unusable_ones() -> None:
    kept = keep_headers(
        {"X-Token": "t0k", "X-Sig": "s", "X-Other": "o", "X-Bad\r\n": "v", "X-Ctl": "a\nb"},
        needed=None,
        secret=frozenset({"x-token"}),
    )
    assert kept.kept == {"x-token": "t0k", "x-sig": "s", "x-other": "o"}
    assert kept.stored == {"x-token": "[redacted]", "x-sig": "s", "x-other": "o"}
    assert kept.summary == {"dropped": 2, "bytes": 16, "names": ["x-bad??", "x-ctl"]}
    flood = keep_headers(
        {f"X-F{i}": "v" * 60_000 for i in range(95)}, needed=None, secret=frozenset()
    )
    assert sum(len(n) + len(v) for n, v in flood.stored.items()) <= MAX_KEPT_BYTES
    assert len(flood.kept) == 1
    assert flood.summary is not None
    assert flood.summary["dropped"] == 94
    nothing_dropped = keep_headers({"X-Sig": "s"}, needed=frozenset({"x-sig"}), secret=frozenset())
    assert nothing_dropped.summary is None


def test_secrets_unstructure_masked() -> None:
    key = b"-----BEGIN PRIVATE KEY-----\nMIIEvQ...\n-----END PRIVATE KEY-----\n"
    config = ChannelConfig(name="alipay", secrets={"private_key": Secret(key)})
    for dumped in (
        attrs.asdict(config),
        cattrs.Converter().unstructure(config),
        cattrs.BaseConverter().unstructure(config),
    ):
        text = repr(dumped) + str(dumped) + json.dumps(dumped, default=str)
        assert "PRIVATE KEY" not in text
        assert "***" in text
    assert json.dumps(attrs.asdict(config)["secrets"], default=str) == '{"private_key": "***"}'
    assert config.secret("private_key") == key
    assert Secret(b"a") == Secret(b"a") != Secret(b"b")
    with pytest.raises(AttributeError):
        config.secrets["private_key"]._value = b"x"  # type: ignore[misc]


def test_redact_headers_setting(tmp_path: Any) -> None:
    path = tmp_path / "ordercore.toml"
    path.write_text('redact_headers = ["X-Shop-Token", "x-extra"]\n', encoding="utf-8")
    settings = Settings.load(path, environ={})
    assert {"x-shop-token", "x-extra", "x-auth-token", "authorization"} <= (
        settings.redacted_headers
    )
    for bad in ('redact_headers = "x-token"', 'redact_headers = ["a b"]', "redact_headers = [1]"):
        path.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(ConfigurationError, match="redact_headers"):
            Settings.load(path, environ={})


# -- 10: rows a killed process left received --------------------------------------------------


class Killed(BaseException):
    """The process dying mid-callback (not an Exception: nothing in the pipeline catches it)."""


def _kill_next_parse(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = shop.core.channel("fake")
    original = channel.parse_notification

    def dying(notification: Any) -> Any:
        monkeypatch.setattr(channel, "parse_notification", original)
        raise Killed

    monkeypatch.setattr(channel, "parse_notification", dying)


def _die_after_storing(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next notification carries its event twice — such a notification is stored
    (committed) before its events are applied, each in its own transaction — and the process
    dies right after storing it. (A notification with one event is stored, applied and marked
    in one transaction: there is no such moment.)"""
    channel = shop.core.channel("fake")
    payments = shop.core.payments
    parse, apply_each = channel.parse_notification, payments._apply_each

    def doubled(notification: Any) -> Any:
        monkeypatch.setattr(channel, "parse_notification", parse)
        result = parse(notification)
        return attrs.evolve(result, events=result.events * 2)

    def dying(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(payments, "_apply_each", apply_each)
        raise Killed

    monkeypatch.setattr(channel, "parse_notification", doubled)
    monkeypatch.setattr(payments, "_apply_each", dying)


@on_sqlite_and_postgresql
@pytest.mark.parametrize("where", ["verifying", "applying"])
def test_a_process_killed_before_its_one_commit_leaves_nothing_and_the_platform_retries(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    if where == "verifying":
        _kill_next_parse(shop, monkeypatch)
    else:
        payments = shop.core.payments
        original = payments._apply_payment

        def dying(*args: Any, **kwargs: Any) -> Any:
            monkeypatch.setattr(payments, "_apply_payment", original)
            raise Killed

        monkeypatch.setattr(payments, "_apply_payment", dying)
    notification = shop.gateway.pay(no)
    with pytest.raises(Killed):
        shop.deliver(notification)
    # Nothing was committed: no inbox row, the order unpaid; the platform was not answered.
    assert shop.inbox() == []
    assert shop.core.orders.get(order.number).status is OrderStatus.PENDING
    assert shop.deliver(notification).status == 200  # its next delivery
    (entry,) = shop.inbox()
    assert entry["status"] == "applied"
    assert shop.events(order.number, OrderEvent.PAY) == 1


@on_sqlite_and_postgresql
def test_a_row_left_received_is_replayed_after_the_grace_period(
    shop: Shop, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    _die_after_storing(shop, monkeypatch)
    with pytest.raises(Killed):
        shop.deliver(shop.gateway.pay(no))
    (stuck,) = shop.inbox()
    assert stuck["status"] == "received"

    clock.advance(shop.core.settings.callback_grace_seconds - 1)
    # (Not run_due_jobs: its reconciliation would find the payment by querying.)
    assert shop.core.payments.recover_stalled() == ([], [])
    assert shop.inbox()[0]["status"] == "received"

    clock.advance(2)
    report = shop.core.payments.run_due_jobs()
    assert report.replayed_callbacks == (stuck["id"],)
    original, replay = shop.inbox()
    assert replay["replay_of"] == stuck["id"]
    assert replay["status"] == "applied"
    assert original["status"] == "replayed"
    assert original["reason"] == f"replayed as #{replay['id']}: applied"
    assert original["order_number"] == order.number
    assert shop.events(order.number, OrderEvent.PAY) == 1
    again = shop.core.payments.run_due_jobs(clock.advance(1000))
    assert (again.replayed_callbacks, again.stalled_callbacks) == ((), ())


@on_sqlite_and_postgresql
def test_a_replay_left_received_is_flagged_for_an_operator_who_replays_it(
    shop: Shop, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    _die_after_storing(shop, monkeypatch)
    with pytest.raises(Killed):
        shop.deliver(shop.gateway.pay(no))
    (stuck,) = shop.inbox()
    clock.advance(shop.core.settings.callback_grace_seconds + 1)
    _die_after_storing(shop, monkeypatch)  # the job's replay dies too
    with pytest.raises(Killed):
        shop.core.payments.run_due_jobs()
    original, replay = shop.inbox()
    assert (original["status"], replay["status"]) == ("replaying", "received")

    clock.advance(shop.core.settings.callback_grace_seconds + 1)
    report = shop.core.payments.run_due_jobs()
    assert report.replayed_callbacks == ()
    assert report.stalled_callbacks == (stuck["id"], replay["id"])
    assert [e["status"] for e in shop.inbox()] == ["stalled", "stalled"]
    stalled = [m for m in shop.outbox() if m["kind"] == "inbox.stalled"]
    assert [m["payload"] for m in stalled] == [
        {"inbox_id": stuck["id"]},
        {"inbox_id": replay["id"]},
    ]
    assert shop.core.payments.notifications(status="stalled") == list(reversed(shop.inbox()))

    # The operator replays it: the stalled row is resolved (the same pass of the jobs had
    # found the payment by querying the platform: the replay is a duplicate, not applied
    # twice).
    assert shop.core.payments.replay(stuck["id"], actor=ADMIN).status == 200
    entries = {e["id"]: e for e in shop.inbox()}
    third = max(entries)
    assert entries[third]["status"] == "duplicate"
    assert entries[stuck["id"]]["status"] == "replayed"
    assert entries[stuck["id"]]["reason"].startswith(f"replayed as #{third}: duplicate")
    assert entries[replay["id"]]["status"] == "stalled"
    assert shop.events(order.number, OrderEvent.PAY) == 1
    # A replay of a finished row leaves that row's outcome as it was.
    assert shop.core.payments.replay(third, actor=ADMIN).status == 200
    assert shop.core.payments.notification(third)["status"] == "duplicate"


@on_sqlite_and_postgresql
def test_a_database_error_mid_callback_marks_the_row_error_and_a_replay_resolves_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = shop.order()
    no = shop.start(order.number).out_trade_no
    payments = shop.core.payments
    original = payments._apply_payment

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(payments, "_apply_payment", broken)
    with pytest.raises(RuntimeError):
        shop.deliver(shop.gateway.pay(no))
    (entry,) = shop.inbox()
    assert entry["status"] == "error"
    assert "the database went away" in entry["reason"]
    monkeypatch.setattr(payments, "_apply_payment", original)
    assert payments.replay(entry["id"], actor=ADMIN).status == 200
    assert payments.notification(entry["id"])["status"] == "replayed"
    assert shop.core.orders.get(order.number).status is OrderStatus.PAID


def test_event_problem_amounts_and_refund_fields() -> None:
    from ordercore._payments.intake import event_problem
    from ordercore.channels import Outcome, PaymentEvent, RefundEvent

    paid = PaymentEvent("T1", True, cny("27.00"), "X1", "SUCCESS")
    assert event_problem(paid) is None
    assert event_problem(PaymentEvent("", True, None, None, "S")) is None
    refund = RefundEvent("R1", Outcome.FAILED, None, code="E" * 65)
    assert event_problem(refund) == "code is 65 characters long, more than 64"
    multi_line = RefundEvent("R1", Outcome.FAILED, None, message="line one\nline two\t.")
    assert event_problem(multi_line) is None
    nul = RefundEvent("R1", Outcome.FAILED, None, message="a\x00b")
    assert event_problem(nul) == "message holds the control character U+0000"
