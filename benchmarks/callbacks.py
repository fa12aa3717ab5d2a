"""Benchmark: payment callbacks applied per second, against a hand-written plain-SQL baseline.

Each timed callback is one signed ``payment.succeeded`` notification from the fake channel
(``ordercore.testing``) handed to ``core.payments.handle_callback("fake", headers, body)`` in
this process: the inbox row, the HMAC check, the apply (order and attempt row locks, dedupe
claim, state machines, coupon use consumed, activation scheduled, ``order.paid`` outbox
message, pending audit entries) and the acknowledgement.

The baseline does it by hand on one DB-API connection (``sqlite3`` or psycopg, no
SQLAlchemy, no ordercore code), writing exactly the rows ordercore writes, in the fewest
statements a careful implementation needs: verify the HMAC, the replay window and the body
in memory, then ONE transaction — lock the attempt and its order with one ``SELECT … FOR
UPDATE`` (which also says whether a coupon use is reserved and whether other attempts are
open), insert the inbox row with its outcome, claim the event (``INSERT … ON CONFLICT DO
NOTHING``), update the attempt, update the order (payment and activation in one statement),
consume the coupon use (only when there is one), insert the outbox message, insert the
pending audit entries (one statement; nonce, ``entry_hash`` HMAC-SHA-256 with the audit key,
as ordercore computes it) — and commit. A refusal (bad signature, stale, malformed) is one
transaction too: the inbox row with its reason.

The benchmark checks they write the same: before anything is timed, it snapshots every table
around one ordercore callback and one baseline callback (with and without a coupon, a
duplicate delivery and a bad signature) and compares the changes column by column (ids,
times, nonces, hashes, event ids and the numbers that differ per order masked); after the run
it counts what each path wrote, compares one order's rows of each path, seals the audit
trail and verifies it with ``core.audit.verify()`` (the baseline's entries included).

Statements and commits per callback are counted in a separate untimed pass (SQLAlchemy's
``before_cursor_execute`` and ``commit`` events for ordercore, counters in the baseline);
on PostgreSQL the round trips too, by a TCP relay between client and server that counts
every turn of the conversation (statements, BEGIN, COMMIT, pool pre-pings: see
``_writebench.RoundTripRelay``), the same way for both paths.

Set-up is not timed: two template orders (one with a 10 % coupon) are created and given a
fake-channel payment attempt through the public API, then cloned in bulk (orders, lines,
coupon redemptions, attempts, audit entries) — separate orders for each path and each pass.
ordercore and the baseline run alternately in blocks of ``--block`` callbacks, so that a
change in the machine's load hits both alike; the first ``--warmup`` callbacks of each are
not counted. The ratio is ordercore's median time per callback over the baseline's.

``--workers N`` (PostgreSQL) then runs ``--workers-n`` callbacks per path with one worker
process and with N worker processes (each with its own engine or connection, distinct
orders) and reports the throughput of each.

    python benchmarks/callbacks.py --backend both --n 2000
    python benchmarks/callbacks.py --backend postgresql --n 1000 --workers 4
    python benchmarks/callbacks.py --backend postgresql --n 500 --profile /tmp/cb.prof

PostgreSQL: a fresh schema in the database of ``--db-url`` (default
``$ORDERCORE_TEST_POSTGRESQL_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
dropped at the end unless ``--keep``. SQLite: a fresh file under /tmp. Targets (issue 13):
ordercore's median within 1.5x of the baseline's on PostgreSQL and 3x on SQLite; 4 workers
at least 1.5x one worker's throughput on PostgreSQL. This is a benchmark, not a test: it
reports figures and never fails on them.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import hmac
import json
import multiprocessing
import os
import pstats
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _writebench as wb

import ordercore.testing
from ordercore import Actor, ActorKind, AuditEntry, Money, OrderCore, Settings
from ordercore.adapters.sqlalchemy import make_engine
from ordercore.channels import CheckoutRequest
from ordercore.testing import (
    DEFAULT_MERCHANT_ID,
    DEFAULT_SECRET,
    FakeGateway,
    SignedNotification,
    fake_channel_config,
)

UTC = timezone.utc
TARGET_RATIO = {"postgresql": 1.5, "sqlite": 3.0}
TARGET_WORKERS = 1.5
PRICE = "30.00"
CURRENCY = "CNY"
AUDIT_KEY = b"benchmark audit key"
log = wb.log


def make_core(url: str, schema: str | None, gateway: FakeGateway, **engine: Any) -> OrderCore:
    return OrderCore(
        make_engine(url, **engine),
        Settings(
            database_url=url,
            schema=schema,
            audit_key=AUDIT_KEY,
            channels={"fake": fake_channel_config(gateway=gateway)},
        ),
        plugins=[ordercore.testing],
        load_entry_points=False,
    )


# ------------------------------------------------------------------------------------ set-up
@dataclass
class Payable:
    """One order waiting for its payment notification."""

    number: str
    out_trade_no: str
    amount: Money


def make_templates(core: OrderCore) -> list[tuple[str, str]]:
    """Two pending orders with a fake-channel attempt each, through the public API:
    ``(order number, out_trade_no)``; the second uses a 10 % coupon."""
    admin = Actor.operator("bench", "admin")
    core.products.add(sku="plan-1", name="Plan", price=Money.of(PRICE, CURRENCY), actor=admin)
    core.coupons.add(code="TEN", actor=admin, currency=CURRENCY, percent="10")
    customer = core.customers.add(name="Bench customer", actor=admin)
    assert customer.id is not None
    templates = []
    for coupon in (None, "TEN"):
        order = core.orders.create(
            items=[("plan-1", 1)],
            actor=admin,
            customer_id=customer.id,
            coupon=coupon,
            payment_timeout=timedelta(days=2),
        )
        started = core.payments.start(order.number, channel="fake", actor=admin)
        templates.append((order.number, started.attempt.out_trade_no))
    return templates


def _swap(value: str | None, old: str, new: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    loaded: dict[str, Any] = json.loads(value.replace(old, new))
    return loaded


def clone_orders(
    core: OrderCore, templates: Sequence[tuple[str, str]], label: str, n: int
) -> list[Payable]:
    """``n`` copies of the templates (alternating), each with its lines, coupon redemption,
    payment attempt, audit entries and a trade on the fake platform."""
    tb = core.tables
    o, lines_t, red, att = tb.orders, tb.order_lines, tb.coupon_redemptions, tb.payment_attempts
    rows: dict[str, dict[str, Any]] = {}
    with core.unit_of_work() as uow:
        conn = uow.conn
        for number, out_trade_no in templates:
            order = conn.execute(select(o).where(o.c.number == number)).one()._asdict()
            rows[number] = {
                "order": order,
                "lines": [
                    r._asdict()
                    for r in conn.execute(select(lines_t).where(lines_t.c.order_id == order["id"]))
                ],
                "redemptions": [
                    r._asdict()
                    for r in conn.execute(select(red).where(red.c.order_id == order["id"]))
                ],
                "attempt": conn.execute(select(att).where(att.c.out_trade_no == out_trade_no))
                .one()
                ._asdict(),
                "audit": uow.audit.for_entity("order", number),
            }
    payables: list[Payable] = []
    entries: list[AuditEntry] = []
    clones = []
    for i in range(n):
        template_number, template_trade = templates[i % len(templates)]
        number = f"{label}{i:07d}"
        clones.append((rows[template_number], template_trade, number, f"{number}T1"))
    with core.engine.begin() as conn:
        order_rows = []
        for t, _, number, _ in clones:
            order_row = {k: v for k, v in t["order"].items() if k != "id"}
            order_row.update(number=number, idempotency_key=None, request_hash=None)
            order_rows.append(order_row)
        ids = (
            conn.execute(o.insert().returning(o.c.id, sort_by_parameter_order=True), order_rows)
            .scalars()
            .all()
        )
        line_rows, redemption_rows, attempt_rows = [], [], []
        for order_id, (t, template_trade, number, out_trade_no) in zip(ids, clones, strict=True):
            for line in t["lines"]:
                line_rows.append(
                    {**{k: v for k, v in line.items() if k != "id"}, "order_id": order_id}
                )
            for redemption in t["redemptions"]:
                values = {k: v for k, v in redemption.items() if k != "id"}
                redemption_rows.append({**values, "order_id": order_id})
            attempt = {k: v for k, v in t["attempt"].items() if k != "id"}
            attempt.update(order_id=order_id, out_trade_no=out_trade_no)
            attempt_rows.append(attempt)
            for record in t["audit"]:
                entries.append(
                    AuditEntry(
                        entity_kind="order",
                        entity_id=number,
                        action=record.action,
                        actor=Actor(
                            ActorKind(record.actor_kind), record.actor_id, record.actor_role
                        ),
                        at=record.at,
                        before=_swap(record.before, template_trade, out_trade_no),
                        after=_swap(record.after, template_trade, out_trade_no),
                        reason=record.reason,
                    )
                )
            amount = Money.from_minor(attempt["amount_minor"], attempt["currency"])
            payables.append(Payable(number, out_trade_no, amount))
        for table, batch in ((lines_t, line_rows), (red, redemption_rows), (att, attempt_rows)):
            if batch:
                conn.execute(table.insert(), batch)
    with core.unit_of_work() as uow:
        for entry in entries:
            uow.record(entry)
        uow.commit()
    chan = core.channel("fake")
    for p in payables:
        chan.create_checkout(
            CheckoutRequest(
                out_trade_no=p.out_trade_no,
                amount=p.amount,
                subject=f"Order {p.number}",
                method="qr",
                notify_url=None,
                expires_at=datetime.now(UTC) + timedelta(days=1),
            )
        )
    return payables


# ---------------------------------------------------------------------------------- baseline
_TS = re.compile(r"^[0-9]{1,12}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
_EXPONENTS = {"CNY": 2, "USD": 2, "JPY": 0}
_KEPT = ("content-type", "x-fake-signature", "x-fake-timestamp")  # the channel's headers
_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_OPEN = ("created", "pending", "unknown")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Baseline:
    """The callback by hand: the same rows as ordercore, one transaction, on one DB-API
    connection. Counts its statements and commits.

    Handles what a careful service must (a payment of the right amount, a duplicate, a
    refusal, other open attempts of the order, the three activation modes); an amount or
    currency mismatch or a payment of a paid or cancelled order is an anomaly in ordercore
    and raises here (the benchmark never sends one).
    """

    def __init__(self, conn: Any, backend: str, secret: bytes, merchant_id: str) -> None:
        self.conn = conn
        self.sqlite = backend == "sqlite"
        self.secret = secret
        self.merchant_id = merchant_id
        self.statements = 0
        self.commits = 0
        lock = "" if self.sqlite else " FOR UPDATE"
        conflict = "ON CONFLICT DO NOTHING RETURNING nonce" if not self.sqlite else ""
        open_list = ", ".join(f"'{s}'" for s in _OPEN)
        statements = {
            "lock": "SELECT a.id, a.channel, a.status, a.currency, a.amount_minor, o.id, "
            "o.number, o.customer_id, o.status, o.version, o.activation_mode, "
            "o.activation_due_at, EXISTS (SELECT 1 FROM coupon_redemptions r "
            "WHERE r.order_id = o.id AND r.status = 'reserved'), "
            "EXISTS (SELECT 1 FROM payment_attempts x WHERE x.order_id = o.id "
            f"AND x.id <> a.id AND x.status IN ({open_list})) "
            "FROM payment_attempts a JOIN orders o ON o.id = a.order_id "
            f"WHERE a.out_trade_no = %s{lock}",
            "inbox": "INSERT INTO inbox (channel, received_at, remote_addr, headers, body, "
            "status, reason, out_trade_no, order_number, processed_at, replay_of) "
            "VALUES (%s, %s, NULL, %s, %s, %s, %s, %s, %s, %s, NULL) RETURNING id",
            "claim": "INSERT INTO payment_events (event_key, attempt_id, inbox_id, applied_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            "unclaimed": "UPDATE inbox SET status = 'duplicate', reason = 'already applied' "
            "WHERE id = %s",
            "paid_attempt": "UPDATE payment_attempts SET status = 'succeeded', "
            "channel_trade_no = %s, received_minor = %s, paid_at = %s, next_check_at = NULL, "
            "settles_order = TRUE, updated_at = %s WHERE id = %s",
            "paid_order": "UPDATE orders SET status = 'paid', paid_minor = %s, paid_at = %s, "
            "version = version + 1, activation_due_at = %s, activation_attempts = 0, "
            "activation_error = NULL WHERE id = %s AND version = %s",
            "delay": "SELECT MAX(COALESCE(p.activation_delay_minutes, 0)) FROM order_lines l "
            "JOIN products p ON p.sku = l.sku WHERE l.order_id = %s",
            "coupon": "UPDATE coupon_redemptions SET status = 'consumed', updated_at = %s "
            "WHERE order_id = %s AND status = 'reserved'",
            "outbox": "INSERT INTO outbox (event_id, kind, order_number, payload, created_at, "
            "available_at, attempts) VALUES (%s, 'order.paid', %s, %s, %s, %s, 0)",
            "others": "SELECT id, out_trade_no, status FROM payment_attempts "
            f"WHERE order_id = %s AND id <> %s AND status IN ({open_list}) ORDER BY id{lock}",
            "cancel": "UPDATE payment_attempts SET status = 'canceled', next_check_at = %s, "
            "updated_at = %s WHERE id = %s",
            "audit": "INSERT INTO audit_pending (nonce, at, actor_kind, actor_id, actor_role, "
            "entity_kind, entity_id, action, before, after, reason, entry_hash) VALUES {rows} "
            + conflict,
        }
        if self.sqlite:
            statements = {k: v.replace("%s", "?") for k, v in statements.items()}
        self.sql = statements
        self.audit_row = "(" + ", ".join(["?" if self.sqlite else "%s"] * 12) + ")"

    # -- plumbing ------------------------------------------------------------------------
    def _time(self, moment: datetime) -> Any:
        # SQLite: what SQLAlchemy's DateTime stores (naive UTC text with microseconds).
        if self.sqlite:
            return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment

    def _begin(self) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
        # psycopg opens the transaction itself before the first statement

    def _commit(self) -> None:
        self.commits += 1
        if self.sqlite:
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def _rollback(self) -> None:
        if self.sqlite:
            self.conn.execute("ROLLBACK")
        else:
            self.conn.rollback()

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        self.statements += 1
        return self.conn.execute(sql, params)

    def _one(self, name: str, params: Sequence[Any]) -> Any:
        return self._run(self.sql[name], params).fetchone()

    # -- the callback --------------------------------------------------------------------
    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        received = datetime.now(UTC)
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        stored = _json(
            {k: ("[redacted]" if k in _REDACTED else lowered[k]) for k in _KEPT if k in lowered}
        )
        inbox = (stored, bytes(body))
        signature = lowered.get("x-fake-signature", "")
        stamp = lowered.get("x-fake-timestamp", "")
        if not _SIG.match(signature):
            return self._refuse(received, inbox, "malformed: missing or garbled "
                                "x-fake-signature header")  # fmt: skip
        if not _TS.match(stamp):
            return self._refuse(received, inbox, "malformed: missing or garbled "
                                "x-fake-timestamp header")  # fmt: skip
        expected = hmac.new(self.secret, stamp.encode("ascii") + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest().encode("ascii"), signature.encode()):
            return self._refuse(
                received, inbox, "bad_signature: the signature does not match the body"
            )
        if abs(int(received.timestamp()) - int(stamp)) > 300:
            return self._refuse(
                received, inbox, f"stale: signed at {stamp}, more than 300s from now"
            )
        try:
            payload = json.loads(body)
            exponent = _EXPONENTS[payload["currency"]]
            received_minor = int(Decimal(payload["amount"]).scaleb(exponent))
            out_trade_no = str(payload["out_trade_no"])
            trade_no = str(payload["trade_no"])
            ok = payload["merchant_id"] == self.merchant_id
            ok = ok and payload["type"] == "payment.succeeded"
        except (ValueError, KeyError, TypeError):
            return self._refuse(received, inbox, "malformed: body")
        if not ok:
            raise NotImplementedError("only payment.succeeded from our merchant is benchmarked")
        try:
            return self._apply(received, inbox, payload, out_trade_no, trade_no, received_minor)
        except Exception:
            self._rollback()
            raise

    def _refuse(self, received: datetime, inbox: tuple[str, bytes], reason: str) -> Any:
        """A refusal: the inbox row with its reason, one transaction."""
        self._begin()
        at = self._time(datetime.now(UTC))
        self._one("inbox", (*self._inbox(received, inbox), "rejected", reason, None, None, at))
        self._commit()
        return 400, _json({"code": "FAIL", "message": reason.split(": ", 1)[-1]}).encode()

    def _inbox(self, received: datetime, inbox: tuple[str, bytes]) -> tuple[Any, ...]:
        return ("fake", self._time(received), inbox[0], inbox[1])

    def _apply(
        self,
        received: datetime,
        inbox: tuple[str, bytes],
        payload: Mapping[str, Any],
        out_trade_no: str,
        trade_no: str,
        received_minor: int,
    ) -> tuple[int, bytes]:
        self._begin()
        now = datetime.now(UTC)
        at = self._time(now)
        row = self._one("lock", (out_trade_no,))
        if row is None or row[1] != "fake":
            self._one(
                "inbox",
                (*self._inbox(received, inbox), "rejected", "unknown payment", out_trade_no,
                 None, at),
            )  # fmt: skip
            self._commit()
            return 400, _json({"code": "FAIL", "message": "unknown payment"}).encode()
        (attempt_id, _, attempt_status, currency, amount_minor, order_id, number, customer_id,
         order_status, version, mode, due_at, has_coupon, has_others) = row  # fmt: skip
        if currency != payload["currency"] or received_minor != amount_minor:
            raise NotImplementedError("amount or currency mismatch: an anomaly in ordercore")
        if attempt_status == "succeeded":
            self._one(
                "inbox",
                (*self._inbox(received, inbox), "duplicate", "already applied", out_trade_no,
                 number, at),
            )  # fmt: skip
            self._commit()
            return 200, b"OK"
        if order_status != "pending":
            raise NotImplementedError(f"order {number} is {order_status}: an anomaly")
        inbox_id = self._one(
            "inbox",
            (*self._inbox(received, inbox), "applied", None, out_trade_no, number, at),
        )[0]
        event_key = f"fake:paid:{out_trade_no}"
        if self._one("claim", (event_key, attempt_id, inbox_id, at)) is None:
            self._run(self.sql["unclaimed"], (inbox_id,))
            self._commit()
            return 200, b"OK"
        actor = ("channel", "fake", None)
        audit: list[Any] = [
            (actor, "order.pay", {"status": "pending"}, {"status": "paid"},
             f"attempt {out_trade_no}"),
            (actor, "payment.succeed", {"attempt": out_trade_no, "status": attempt_status},
             {"attempt": out_trade_no, "status": "succeeded"}, "notification: payment.succeeded"),
        ]  # fmt: skip
        self._run(self.sql["paid_attempt"], (trade_no, received_minor, at, at, attempt_id))
        due: Any = None
        if mode == "auto":
            due = at
        elif mode == "delayed":
            if due_at is not None:
                due = due_at
            else:
                minutes = self._one("delay", (order_id,))[0] or 0
                due = self._time(now + timedelta(minutes=int(minutes)))
        cur = self._run(self.sql["paid_order"], (amount_minor, at, due, order_id, version))
        if cur.rowcount != 1:
            raise RuntimeError(f"order {number} changed under its lock")
        if has_coupon:
            self._run(self.sql["coupon"], (at, order_id))
        amount = str(Decimal(amount_minor).scaleb(-_EXPONENTS[currency]))
        message = {
            "order": number,
            "customer_id": customer_id,
            "amount": amount,
            "currency": currency,
            "channel": "fake",
            "out_trade_no": out_trade_no,
        }
        self._run(self.sql["outbox"], (str(uuid.uuid4()), number, _json(message), at, at))
        if has_others:
            for other_id, other_no, other_status in self._run(
                self.sql["others"], (order_id, attempt_id)
            ).fetchall():
                self._run(self.sql["cancel"], (at, at, other_id))
                audit.append(
                    (("system", "payments", None), "payment.cancel",
                     {"attempt": other_no, "status": other_status},
                     {"attempt": other_no, "status": "canceled"},
                     "order paid by another attempt")
                )  # fmt: skip
        self._append_audit(number, now, audit)
        self._commit()
        return 200, b"OK"

    def _append_audit(self, number: str, now: datetime, entries: list[Any]) -> None:
        """Pending audit entries, sealed by their own HMAC-SHA-256 (ordercore's
        ``entry_hash``): no shared row is touched."""
        iso = now.isoformat(timespec="microseconds")
        at = self._time(now)
        params: list[Any] = []
        for (kind, actor_id, role), action, before, after, reason in entries:
            nonce = secrets.token_hex(16)
            content = {
                "nonce": nonce,
                "at": iso,
                "actor_kind": kind,
                "actor_id": actor_id,
                "actor_role": role,
                "entity_kind": "order",
                "entity_id": number,
                "action": action,
                "before": _json(before),
                "after": _json(after),
                "reason": reason,
            }
            digest = hmac.new(AUDIT_KEY, _json(content).encode("utf-8"), hashlib.sha256)
            params += [nonce, at, kind, actor_id, role, "order", number, action,
                       content["before"], content["after"], reason, digest.hexdigest()]  # fmt: skip
        sql = self.sql["audit"].replace("{rows}", ", ".join([self.audit_row] * len(entries)))
        stored = self._run(sql, params)
        if not self.sqlite and len(stored.fetchall()) != len(entries):
            raise RuntimeError("an audit position was taken: retry (never seen here)")


# ---------------------------------------------------------------------------------- measuring
def run_block(
    handle: Callable[[dict[str, str], bytes], Any],
    notes: Sequence[SignedNotification],
    timing: wb.Timing | None,
    profiler: cProfile.Profile | None = None,
) -> None:
    cpu = time.process_time()
    for headers, body in notes:
        start, start_cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        answer = handle(headers, body)
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - start
        used = time.process_time() - start_cpu
        status = answer[0] if isinstance(answer, tuple) else answer.status
        if status != 200:
            raise RuntimeError(f"callback refused: {answer!r}")
        if timing is not None:
            timing.wall.append(elapsed)
            timing.cpu_calls.append(used)
    if timing is not None:
        timing.cpu += time.process_time() - cpu


_VARYING = frozenset({"nonce", "entry_hash", "hash", "prev_hash", "seq", "event_id"})


def _names(p: Payable, note: SignedNotification) -> dict[str, str]:
    """What differs between two orders' notifications, with its placeholder."""
    body = json.loads(note.body)
    return {
        p.out_trade_no: "<out_trade_no>",
        p.number: "<number>",
        note.headers["x-fake-signature"]: "<signature>",
        note.headers["x-fake-timestamp"]: "<timestamp>",
        body["id"]: "<event>",
        body["trade_no"]: "<trade_no>",
    }


def probe(
    core: OrderCore,
    gateway: FakeGateway,
    handlers: Mapping[str, Callable[[dict[str, str], bytes], Any]],
    sets: Mapping[str, Sequence[Payable]],
) -> list[str]:
    """Snapshot every table around one callback of each path, for each case, and compare
    the changes column by column."""
    tables = core.tables.metadata.sorted_tables
    out = [
        "| case | ordercore writes | baseline | same rows |",
        "|---|---|---|---|",
    ]
    problems: list[str] = []
    cases = [
        ("paid, no coupon", 0, "pay"),
        ("paid, with coupon", 1, "pay"),
        ("duplicate delivery", 1, "again"),
        ("bad signature", 0, "tamper"),
    ]
    sent: dict[tuple[str, int], SignedNotification] = {}
    for case, index, how in cases:
        found = {}
        for name, handle in handlers.items():
            p = sets[name][index]
            if how == "again":
                note = sent[(name, index)]
            elif how == "tamper":
                p = sets[name][2]
                good = gateway.pay(p.out_trade_no)
                note = SignedNotification({**good.headers, "x-fake-signature": "0" * 64}, good.body)
            else:
                note = gateway.pay(p.out_trade_no)
                sent[(name, index)] = note
            before = wb.snapshot(core.engine, tables)
            answer = handle(dict(note.headers), note.body)
            after = wb.snapshot(core.engine, tables)
            status = answer[0] if isinstance(answer, tuple) else answer.status
            changes = wb.changes(before, after)
            found[name] = (status, changes, wb.masked_changes(changes, _VARYING, _names(p, note)))
        (s1, c1, m1), (s2, c2, m2) = found["ordercore"], found["baseline"]
        diff = wb.compare_changes("ordercore", m1, "baseline", m2)
        if s1 != s2:
            diff.append(f"answer {s1} vs {s2}")
        problems += [f"{case}: {d}" for d in diff]
        out.append(wb.probe_row(case, c1, c2, diff))
    out.append("")
    out.append(
        wb.probe_verdict(
            "callback", "ids, times, nonces, hashes, event ids and per-order numbers", problems
        )
    )
    return out


def count_pass(
    core: OrderCore,
    target: wb.Target,
    gateway: FakeGateway,
    templates: Sequence[tuple[str, str]],
    args: argparse.Namespace,
    baseline_conn: Any,
) -> dict[str, wb.Counts]:
    """Statements, commits (and round trips on PostgreSQL) per callback, untimed."""
    n, warm = args.count_n, 14  # psycopg prepares a statement on its 5th use: done here
    sets = {
        "ordercore": clone_orders(core, templates, "OK", n + warm),
        "baseline": clone_orders(core, templates, "BK", n + warm),
    }
    relay = None
    counted_core, raw = core, baseline_conn
    if target.name == "postgresql":
        relay = wb.RoundTripRelay(target.host, target.port)
        counted_core = make_core(
            target.url_via("127.0.0.1", relay.port),
            target.schema,
            gateway,
            **wb.engine_args(target.name, args.synchronous_commit),
        )
        raw = target.connect("127.0.0.1", relay.port)
    baseline = Baseline(raw, target.name, DEFAULT_SECRET, DEFAULT_MERCHANT_ID)
    counter = wb.EngineCounter(counted_core.engine)
    counts = {name: wb.Counts() for name in sets}

    def ours(headers: dict[str, str], body: bytes) -> Any:
        return counted_core.payments.handle_callback("fake", headers, body)

    handlers = {"ordercore": ours, "baseline": baseline.handle}
    try:
        for name, handle in handlers.items():
            run_block(handle, [gateway.pay(p.out_trade_no) for p in sets[name][:warm]], None)
            notes = [gateway.pay(p.out_trade_no) for p in sets[name][warm:]]
            if relay is not None:
                relay.take()
            baseline.statements = baseline.commits = 0
            with counter.counting(counts[name]):
                run_block(handle, notes, None)
            if name == "baseline":
                counts[name].statements += baseline.statements
                counts[name].commits += baseline.commits
            counts[name].calls = len(notes)
            if relay is not None:
                counts[name].round_trips = relay.take()
    finally:
        counter.remove()
        if relay is not None:
            raw.close()
            counted_core.close()
            relay.close()
    return counts


# ---------------------------------------------------------------------------------- workers
_WORK: dict[str, Any] = {}


def _worker(name: str, part: int, start_at: Any, results: Any) -> None:
    """One worker process (forked): applies its share of the notifications."""
    core: OrderCore = _WORK["core"]
    target: wb.Target = _WORK["target"]
    notes = _WORK["notes"][part]
    warm = _WORK["warm"][part]
    if name == "ordercore":
        core.engine.dispose(close=False)  # the parent's connections are not ours

        def handle(headers: dict[str, str], body: bytes) -> Any:
            return core.payments.handle_callback("fake", headers, body)
    else:
        raw = target.connect()
        handle = Baseline(raw, target.name, DEFAULT_SECRET, DEFAULT_MERCHANT_ID).handle
    run_block(handle, warm, None)
    start_at.wait()
    run_block(handle, notes, None)
    results.put((part, time.monotonic()))


def workers_pass(
    core: OrderCore,
    target: wb.Target,
    gateway: FakeGateway,
    templates: Sequence[tuple[str, str]],
    args: argparse.Namespace,
) -> list[str]:
    """Throughput of 1 and of ``--workers`` worker processes, each path, distinct orders."""
    ctx = multiprocessing.get_context("fork")
    per = args.workers_n
    warm = 3
    out = [
        f"| path | 1 worker (callbacks/s) | {args.workers} workers (callbacks/s) | "
        f"{args.workers} / 1 |",
        "|---|---|---|---|",
    ]
    label = {"ordercore": "W", "baseline": "X"}
    scaling: dict[str, float] = {}
    for name in ("ordercore", "baseline"):
        rates = []
        for count in (1, args.workers):
            payables = clone_orders(core, templates, f"{label[name]}{count}", per + warm * count)
            shares = [payables[warm * count :][i::count] for i in range(count)]
            warms = [payables[i * warm : (i + 1) * warm] for i in range(count)]
            _WORK.update(
                core=core,
                target=target,
                warm=[[gateway.pay(p.out_trade_no) for p in w] for w in warms],
                notes=[[gateway.pay(p.out_trade_no) for p in s] for s in shares],
            )
            core.engine.dispose()
            start_at = ctx.Event()
            results = ctx.Queue()
            procs = [
                ctx.Process(target=_worker, args=(name, i, start_at, results)) for i in range(count)
            ]
            for proc in procs:
                proc.start()
            time.sleep(2.0)  # let every worker connect and warm up
            began = time.monotonic()
            start_at.set()
            ends = [results.get(timeout=600)[1] for _ in procs]
            for proc in procs:
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(f"a {name} worker failed ({proc.exitcode})")
            rate = per / (max(ends) - began)
            rates.append(rate)
            log(f"workers: {name} x{count}: {rate:,.0f}/s")
        scaling[name] = rates[1] / rates[0]
        out.append(f"| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} | **{scaling[name]:.2f}x** |")
    out.append("")
    out.append(
        f"Target: {args.workers} workers ≥ {TARGET_WORKERS:g}x one worker on PostgreSQL "
        f"(ordercore: {'met' if scaling['ordercore'] >= TARGET_WORKERS else 'not met'}); "
        f"{os.cpu_count()} CPUs here, shared by the client processes and the server."
    )
    return out


# ---------------------------------------------------------------------------------- checks
def _masked(row: Mapping[str, Any], payable: Payable) -> dict[str, Any]:
    names = {payable.out_trade_no: "<out_trade_no>", payable.number: "<number>"}
    varying = _VARYING | {"channel_trade_no", "headers", "body"}
    return {k: wb.mask_value(k, v, varying, names) for k, v in row.items()}


def compare_rows(core: OrderCore, payables: Sequence[Payable]) -> list[str]:
    """Every row the callback wrote or changed for one order of each path, masked, compared."""
    tb = core.tables
    found: list[dict[str, Any]] = []
    with core.engine.connect() as conn:
        for p in payables:
            order = conn.execute(select(tb.orders).where(tb.orders.c.number == p.number)).one()
            rows: dict[str, Any] = {"orders": [order._asdict()]}
            queries = {
                "payment_attempts": select(tb.payment_attempts).where(
                    tb.payment_attempts.c.order_id == order.id
                ),
                "coupon_redemptions": select(tb.coupon_redemptions).where(
                    tb.coupon_redemptions.c.order_id == order.id
                ),
                "outbox": select(tb.outbox).where(tb.outbox.c.order_number == p.number),
                "inbox": select(tb.inbox).where(tb.inbox.c.order_number == p.number),
                "payment_events": select(tb.payment_events).where(
                    tb.payment_events.c.event_key == f"fake:paid:{p.out_trade_no}"
                ),
                "audit_log": select(tb.audit_log)
                .where(tb.audit_log.c.entity_id == p.number)
                .order_by(tb.audit_log.c.seq),
                "audit_pending": select(tb.audit_pending)
                .where(tb.audit_pending.c.entity_id == p.number)
                .order_by(tb.audit_pending.c.id),
            }
            for name, query in queries.items():
                rows[name] = [r._asdict() for r in conn.execute(query)]
            found.append({name: [_masked(r, p) for r in items] for name, items in rows.items()})
    differences = []
    first, *others = found
    for other in others:
        for name, items in first.items():
            if len(items) != len(other[name]):
                differences.append(f"{name}: {len(items)} vs {len(other[name])} rows")
                continue
            for mine, theirs in zip(items, other[name], strict=True):
                differences += [
                    f"{name}.{k}: {mine[k]!r} vs {theirs.get(k)!r}"
                    for k in mine
                    if mine[k] != theirs.get(k)
                ]
    return differences


def check_writes(core: OrderCore, sets: Mapping[str, Sequence[Payable]]) -> list[str]:
    """What each path wrote over the timed run (both should write the same), then the audit
    trail sealed and verified end to end."""
    tb = core.tables
    o, a, r, ob, ib, ev = (
        tb.orders,
        tb.payment_attempts,
        tb.coupon_redemptions,
        tb.outbox,
        tb.inbox,
        tb.payment_events,
    )
    sealed = core.audit.seal_all()
    al = tb.audit_log
    out = ["| written | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    names = [
        "orders paid",
        "  with paid = payable, version 2, activation due",
        "attempts succeeded and settling the order",
        "coupon uses consumed",
        "outbox messages",
        "inbox rows applied",
        "payment events claimed",
        "audit records order.pay + payment.succeed (sealed)",
    ]
    figures: dict[str, list[int]] = {}
    with core.engine.connect() as conn:
        for label, payables in sets.items():
            like = payables[0].number[:2] + "%"
            mine = o.c.number.like(like)

            def count(where: Any, source: Any) -> int:
                query = select(func.count()).select_from(source).where(*where)
                return int(conn.execute(query).scalar_one())

            figures[label] = [
                count([mine, o.c.status == "paid"], o),
                count(
                    [
                        mine,
                        o.c.paid_minor == o.c.payable_minor,
                        o.c.version == 2,
                        o.c.activation_due_at.is_not(None),
                    ],
                    o,
                ),
                count(
                    [a.c.out_trade_no.like(like), a.c.status == "succeeded", a.c.settles_order],
                    a,
                ),
                count([mine, r.c.status == "consumed"], r.join(o, o.c.id == r.c.order_id)),
                count([ob.c.order_number.like(like)], ob),
                count([ib.c.order_number.like(like), ib.c.status == "applied"], ib),
                count([ev.c.event_key.like(f"fake:paid:{like}")], ev),
                count(
                    [al.c.entity_id.like(like), al.c.action.in_(["order.pay", "payment.succeed"])],
                    al,
                ),
            ]
    for i, name in enumerate(names):
        out.append(f"| {name} | " + " | ".join(f"{figures[k][i]:,}" for k in sets) + " |")
    differences = compare_rows(core, [payables[1] for payables in sets.values()])
    out.append("")
    out.append(
        "Rows of one order (with coupon) of each path after the run, compared column by column "
        "(ids, numbers, times, nonces, hashes and platform ids masked): "
        + ("identical" if not differences else "DIFFERENT: " + "; ".join(differences))
    )
    out.append(wb.audit_verdict(core, sealed))
    return out


# ---------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, backend: str) -> tuple[str, str]:
    target = wb.target(backend, "callbacks", "cb", args)
    log(f"{backend}: {target.url} (schema {target.schema})")
    load_start = wb.load_average()
    gateway = FakeGateway()
    core = make_core(
        target.url, target.schema, gateway, **wb.engine_args(backend, args.synchronous_commit)
    )
    raw = None
    try:
        core.upgrade()
        templates = make_templates(core)
        raw = target.connect()
        baseline = Baseline(raw, backend, DEFAULT_SECRET, DEFAULT_MERCHANT_ID)

        def ours(headers: dict[str, str], body: bytes) -> Any:
            return core.payments.handle_callback("fake", headers, body)

        handlers: dict[str, Callable[[dict[str, str], bytes], Any]] = {
            "ordercore": ours,
            "baseline": baseline.handle,
        }
        breakdown = wb.Breakdown() if args.breakdown else None
        probe_sets = {
            "ordercore": clone_orders(core, templates, "OP", 3),
            "baseline": clone_orders(core, templates, "BP", 3),
        }
        probed = probe(core, gateway, handlers, probe_sets)
        log(f"{backend}: probe: " + probed[-1][:200])
        counts = count_pass(core, target, gateway, templates, args, raw)
        log(f"{backend}: counted: " + wb.counted(counts))
        total = args.warmup + args.n
        started = time.perf_counter()
        sets = {
            "ordercore": clone_orders(core, templates, "OC", total),
            "baseline": clone_orders(core, templates, "BL", total),
        }
        wb.analyze(core.engine, core.tables)
        log(f"set-up: 2 x {total:,} orders in {time.perf_counter() - started:.1f}s, analyzed")
        timings = {name: wb.Timing(name) for name in handlers}
        profiler = cProfile.Profile() if args.profile else None
        blocks = [(0, args.warmup, False)] + [
            (s, min(s + args.block, total), True) for s in range(args.warmup, total, args.block)
        ]
        timed_handlers = dict(handlers)
        if breakdown is not None:
            timed_handlers["ordercore"] = breakdown.wrap(ours)
        with breakdown.patched() if breakdown is not None else contextlib.nullcontext():
            for index, (start, stop, timed) in enumerate(blocks):
                order = list(handlers) if index % 2 == 0 else list(reversed(handlers))
                for name in order:
                    notes = [gateway.pay(p.out_trade_no) for p in sets[name][start:stop]]
                    run_block(
                        timed_handlers[name],
                        notes,
                        timings[name] if timed else None,
                        profiler if timed and name == "ordercore" else None,
                    )
                if timed and (index % 5 == 0 or stop == total):
                    log(
                        f"{backend}: {stop - args.warmup:,}/{args.n:,} — "
                        + ", ".join(f"{t.name} {t.median_ms:.2f} ms" for t in timings.values())
                    )
        if breakdown is not None:
            log(f"{backend}: " + breakdown.line("callback"))
        load_end = wb.load_average()
        if profiler is not None:
            path = args.profile if len(args.backends) == 1 else f"{args.profile}.{backend}"
            profiler.dump_stats(path)
            log(f"profile of ordercore's callbacks: {path}")
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
        workers: list[str] = []
        if backend == "postgresql" and args.workers > 1:
            raw.close()
            raw = None
            workers = workers_pass(core, target, gateway, templates, args)
        checks = check_writes(core, sets)
        ours_t, base_t = timings["ordercore"], timings["baseline"]
        ratio = ours_t.median_ms / base_t.median_ms
        target_ratio = TARGET_RATIO[backend]
        sync = ""
        if backend == "postgresql" and args.synchronous_commit:
            sync = f", synchronous_commit={args.synchronous_commit}"
        out = [
            f"### {backend}: {args.n:,} callbacks each (after {args.warmup} warm-up), "
            f"blocks of {args.block}, alternating{sync}",
            "",
            *wb.timing_table([ours_t, base_t], counts, "callback"),
            "",
            f"Counts from a separate pass of {args.count_n} callbacks per path"
            + (
                " through the round-trip relay (BEGIN, COMMIT and pool pre-pings included)."
                if backend == "postgresql"
                else " (round trips: in-process SQLite, none)."
            ),
            "",
            f"Ratio ordercore/baseline (medians): **{ratio:.2f}x** (target ≤ {target_ratio:g}x: "
            f"{'met' if ratio <= target_ratio else 'not met'}); on means "
            f"{ours_t.mean_ms / base_t.mean_ms:.2f}x; client CPU (medians) "
            f"{ours_t.cpu_median_ms / base_t.cpu_median_ms:.2f}x",
            "",
            f"Load average (1 min) at start / end: {load_start:.1f} / {load_end:.1f} on "
            f"{os.cpu_count()} CPUs",
            "",
            *probed,
            "",
            *checks,
        ]
        if workers:
            out += ["", f"#### {args.workers} workers vs 1 ({args.workers_n:,} callbacks each)",
                    "", *workers]  # fmt: skip
        summary = (
            f"{backend}: median ordercore {ours_t.median_ms:.2f} ms, baseline "
            f"{base_t.median_ms:.2f} ms, ratio {ratio:.2f}x (means {ours_t.mean_ms:.2f} / "
            f"{base_t.mean_ms:.2f} ms)"
        )
        return "\n".join(out), summary
    finally:
        if raw is not None:
            raw.close()
        core.close()
        target.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000, help="timed callbacks per path")
    parser.add_argument("--warmup", type=int, default=100, help="untimed callbacks per path")
    parser.add_argument("--block", type=int, default=100, help="callbacks per alternation")
    parser.add_argument("--count-n", type=int, default=40, help="callbacks per path counted")
    parser.add_argument(
        "--workers", type=int, default=1, help="PostgreSQL: also compare N worker processes"
    )
    parser.add_argument("--workers-n", type=int, default=1000, help="callbacks per worker run")
    parser.add_argument("--db-url", default=None, help="PostgreSQL server URL")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default=None,
        help="PostgreSQL synchronous_commit for both paths (default: the server's); 'off' "
        "takes the WAL flush out of the figures, to see the CPU and round-trip cost alone",
    )
    parser.add_argument(
        "--profile", default=None, metavar="FILE", help="cProfile ordercore's timed callbacks"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="print where ordercore's time goes: statements, commit, the rest (Python)",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.block < 1 or args.count_n < 1 or args.workers < 1:
        parser.error("--n, --block, --count-n and --workers must be positive")
    return wb.report(args, run, __file__)


if __name__ == "__main__":
    raise SystemExit(main())
