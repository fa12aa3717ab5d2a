"""Benchmark: payment callbacks applied per second, against a hand-written plain-SQL baseline.

Each timed callback is one signed ``payment.succeeded`` notification from the fake channel
(``ordercore.testing``) handed to ``core.payments.handle_callback("fake", headers, body)`` in
this process: the inbox insert, the HMAC check, the apply transaction (order and attempt row
locks, dedupe claim, state machine, coupon consumed, activation scheduled, outbox message,
audit chain append under the head-row lock) and the inbox update, then the acknowledgement.

The baseline does the same writes by hand on the DB-API connection (``sqlite3`` or psycopg,
no SQLAlchemy, no ordercore code): verify the HMAC and the replay window, insert the inbox
row and commit; then in one transaction lock the order and the attempt, claim the event,
update the attempt, the order (status, paid amount, version), the coupon redemption and the
order's activation, insert the outbox message, append the audit records (SHA-256 chain, head
row locked) and commit; then mark the inbox row. Its audit records are hashed exactly as
ordercore hashes them: the chain is verified with ``core.audit.verify()`` at the end, and
the rows both paths wrote are compared.

Set-up is not timed: two template orders (one with a 10 % coupon) are created and given a
fake-channel payment attempt through the public API, then cloned in bulk (orders, lines,
coupon redemptions, attempts, and their audit records appended through the audit chain) —
one set of orders for ordercore, one for the baseline. The notifications of each block are
signed just before the block runs (the fake platform's replay window is five minutes).
ordercore and the baseline run alternately, in blocks of ``--block`` callbacks, so that a
change in the machine's load hits both alike; the first ``--warmup`` callbacks of each are
not counted.

    python benchmarks/callbacks.py --backend both --n 2000
    python benchmarks/callbacks.py --backend postgresql --n 500 --profile /tmp/cb.prof

PostgreSQL: a fresh schema in the database of ``--db-url`` (default
``$ORDERCORE_TEST_POSTGRESQL_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
dropped at the end unless ``--keep``. SQLite: a fresh file under /tmp. Targets (issue 4):
ordercore within 2x of the baseline's time per callback, and at least 500 callbacks/s on
PostgreSQL. This is a benchmark, not a test: it reports figures and never fails on them.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import json
import os
import pstats
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

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
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_RATIO = 2.0
TARGET_PG_RATE = 500.0
PRICE = "30.00"
CURRENCY = "CNY"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- backends
@dataclass
class Target:
    """A fresh database of one backend: ``url`` for ordercore (SQLAlchemy), ``schema`` on
    PostgreSQL, and ``connect`` opening the baseline's DB-API connection."""

    name: str
    url: str
    schema: str | None
    connect: Callable[[], Any]
    cleanup: Callable[[], None]


def sqlite_target(keep: bool) -> Target:
    path = os.path.join(tempfile.gettempdir(), f"ordercore-callbacks-{uuid.uuid4().hex[:8]}.db")

    def connect() -> sqlite3.Connection:
        # What ordercore's engine sets on each connection (adapters/sqlalchemy/engine.py).
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def cleanup() -> None:
        if keep:
            log(f"kept {path}")
            return
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)

    return Target("sqlite", f"sqlite:///{path}", None, connect, cleanup)


def postgresql_target(url: str | None, keep: bool, synchronous_commit: str | None) -> Target:
    server = url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
    schema = f"bench_cb_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    conninfo = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)

    def connect() -> Any:
        import psycopg

        options = f"-csearch_path={schema}"
        if synchronous_commit:
            options += f" -csynchronous_commit={synchronous_commit}"
        return psycopg.connect(conninfo, options=options, autocommit=False)

    def cleanup() -> None:
        if keep:
            log(f"kept schema {schema} in {server}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return Target("postgresql", server, schema, connect, cleanup)


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
    core: OrderCore, gateway: FakeGateway, templates: Sequence[tuple[str, str]], label: str, n: int
) -> list[Payable]:
    """``n`` copies of the templates (alternating), each with its lines, coupon redemption,
    payment attempt, audit records and a trade on the fake platform."""
    tb = core.tables
    o, lines_t, red, att, audit = (
        tb.orders,
        tb.order_lines,
        tb.coupon_redemptions,
        tb.payment_attempts,
        tb.audit_log,
    )
    rows: dict[str, dict[str, Any]] = {}
    with core.engine.connect() as conn:
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
                "audit": [
                    r._asdict()
                    for r in conn.execute(
                        select(audit)
                        .where(audit.c.entity_kind == "order", audit.c.entity_id == number)
                        .order_by(audit.c.seq)
                    )
                ],
            }
    payables: list[Payable] = []
    entries: list[AuditEntry] = []
    with core.engine.begin() as conn:
        for i in range(n):
            template_number, template_trade = templates[i % len(templates)]
            t = rows[template_number]
            number = f"{label}{i:07d}"
            out_trade_no = f"{number}T1"
            order_row = {k: v for k, v in t["order"].items() if k != "id"}
            order_row.update(number=number, idempotency_key=None, request_hash=None)
            pk = conn.execute(o.insert().values(**order_row)).inserted_primary_key
            assert pk is not None
            order_id = int(pk[0])
            for line in t["lines"]:
                conn.execute(
                    lines_t.insert().values(
                        **{**{k: v for k, v in line.items() if k != "id"}, "order_id": order_id}
                    )
                )
            for redemption in t["redemptions"]:
                conn.execute(
                    red.insert().values(
                        **{
                            **{k: v for k, v in redemption.items() if k != "id"},
                            "order_id": order_id,
                        }
                    )
                )
            attempt = {k: v for k, v in t["attempt"].items() if k != "id"}
            attempt.update(order_id=order_id, out_trade_no=out_trade_no)
            conn.execute(att.insert().values(**attempt))
            for record in t["audit"]:
                entries.append(
                    AuditEntry(
                        entity_kind="order",
                        entity_id=number,
                        action=record["action"],
                        actor=Actor(
                            ActorKind(record["actor_kind"]),
                            record["actor_id"],
                            record["actor_role"],
                        ),
                        at=record["at"],
                        before=_swap(record["before"], template_trade, out_trade_no),
                        after=_swap(record["after"], template_trade, out_trade_no),
                        reason=record["reason"],
                    )
                )
            amount = Money.from_minor(attempt["amount_minor"], attempt["currency"])
            payables.append(Payable(number, out_trade_no, amount))
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
_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_OPEN = ("created", "pending", "unknown")


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Baseline:
    """The callback by hand: the same writes as ordercore, on one DB-API connection.

    Handles what the benchmark sends (a successful payment of the right amount, a
    duplicate); a mismatch or a paid order would be an anomaly in ordercore and raises
    here (the benchmark never sends one).
    """

    def __init__(self, conn: Any, backend: str, secret: bytes, merchant_id: str) -> None:
        self.conn = conn
        self.sqlite = backend == "sqlite"
        self.secret = secret
        self.merchant_id = merchant_id
        lock = "" if self.sqlite else " FOR UPDATE"
        statements = {
            "inbox": "INSERT INTO inbox (channel, received_at, remote_addr, headers, body, "
            "status, replay_of) VALUES (%s, %s, %s, %s, %s, 'received', NULL) RETURNING id",
            "find": "SELECT order_id, channel FROM payment_attempts WHERE out_trade_no = %s",
            "order": "SELECT id, number, customer_id, status, version, currency, payable_minor, "
            f"activation_mode, activation_due_at FROM orders WHERE id = %s{lock}",
            "attempt": "SELECT id, status, currency, amount_minor, channel_trade_no "
            f"FROM payment_attempts WHERE out_trade_no = %s{lock}",
            "claim": "INSERT INTO payment_events (event_key, attempt_id, inbox_id, applied_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            "paid_attempt": "UPDATE payment_attempts SET status = 'succeeded', "
            "channel_trade_no = %s, received_minor = %s, paid_at = %s, next_check_at = NULL, "
            "updated_at = %s WHERE id = %s",
            "paid_order": "UPDATE orders SET status = 'paid', paid_minor = %s, paid_at = %s, "
            "version = version + 1 WHERE id = %s AND version = %s",
            "coupon": "UPDATE coupon_redemptions SET status = 'consumed', updated_at = %s "
            "WHERE order_id = %s AND status = 'reserved'",
            "activation": "UPDATE orders SET activation_mode = %s, activation_due_at = %s, "
            "activation_attempts = 0, activation_error = NULL WHERE id = %s",
            "outbox": "INSERT INTO outbox (event_id, kind, order_number, payload, created_at, "
            "available_at, attempts) VALUES (%s, 'order.paid', %s, %s, %s, %s, 0)",
            "others": "SELECT id, out_trade_no, status FROM payment_attempts "
            "WHERE order_id = %s AND id <> %s AND status IN ('created', 'pending', 'unknown') "
            "ORDER BY id",
            "cancel": "UPDATE payment_attempts SET status = 'canceled', next_check_at = NULL, "
            "updated_at = %s WHERE id = %s",
            "head": f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}",
            "audit": "INSERT INTO audit_log (seq, at, actor_kind, actor_id, actor_role, "
            "entity_kind, entity_id, action, before, after, reason, prev_hash, hash) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            "set_head": "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1",
            "mark": "UPDATE inbox SET status = %s, reason = %s, out_trade_no = %s, "
            "order_number = %s, processed_at = %s WHERE id = %s",
        }
        if self.sqlite:
            statements = {k: v.replace("%s", "?") for k, v in statements.items()}
        self.sql = statements

    # -- plumbing ------------------------------------------------------------------------
    def _time(self, moment: datetime) -> Any:
        # SQLite: what SQLAlchemy's DateTime stores (naive UTC text with microseconds).
        if self.sqlite:
            return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment

    def _begin(self) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        if self.sqlite:
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def _one(self, name: str, params: Sequence[Any]) -> Any:
        return self.conn.execute(self.sql[name], params).fetchone()

    # -- the callback --------------------------------------------------------------------
    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        now = datetime.now(UTC)
        self._begin()
        stored = {k: ("[redacted]" if k in _REDACTED else v) for k, v in lowered.items()}
        row = self._one("inbox", ("fake", self._time(now), None, _json(stored), bytes(body)))
        inbox_id = row[0]
        self._commit()

        signature = lowered.get("x-fake-signature", "")
        stamp = lowered.get("x-fake-timestamp", "")
        if not _SIG.match(signature) or not _TS.match(stamp):
            return self._reject(inbox_id, "malformed: headers")
        expected = hmac.new(self.secret, stamp.encode("ascii") + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest().encode("ascii"), signature.encode()):
            return self._reject(inbox_id, "bad_signature: the signature does not match")
        if abs(int(time.time()) - int(stamp)) > 300:
            return self._reject(inbox_id, "stale")
        try:
            payload = json.loads(body)
            exponent = _EXPONENTS[payload["currency"]]
            received = int(Decimal(payload["amount"]).scaleb(exponent))
            out_trade_no = str(payload["out_trade_no"])
            trade_no = str(payload["trade_no"])
            ok = payload["merchant_id"] == self.merchant_id
            ok = ok and payload["type"] == "payment.succeeded"
        except (ValueError, KeyError, TypeError):
            return self._reject(inbox_id, "malformed: body")
        if not ok:
            return self._reject(inbox_id, "unsupported")

        now = datetime.now(UTC)
        at = self._time(now)
        self._begin()
        found = self._one("find", (out_trade_no,))
        if found is None or found[1] != "fake":
            self._commit()
            return self._reject(inbox_id, "no such payment attempt", out_trade_no)
        order = self._one("order", (found[0],))
        order_id, number, customer_id, status, version = order[:5]
        attempt = self._one("attempt", (out_trade_no,))
        attempt_id, attempt_status, currency, amount_minor = attempt[:4]
        if currency != payload["currency"] or received != amount_minor:
            raise NotImplementedError("amount or currency mismatch: an anomaly in ordercore")
        claimed = attempt_status != "succeeded" and (
            self._one("claim", (f"fake:paid:{out_trade_no}", attempt_id, inbox_id, at)) is not None
        )
        if not claimed:
            self._commit()
            self._mark(inbox_id, "duplicate", "already applied", out_trade_no, number)
            return 200, b"OK"
        if status != "pending":
            raise NotImplementedError(f"order {number} is {status}: an anomaly in ordercore")
        actor = ("channel", "fake", None)
        audit = [
            (actor, "order.pay", {"status": "pending"}, {"status": "paid"},
             f"attempt {out_trade_no}"),
            (actor, "payment.succeed", {"attempt": out_trade_no, "status": attempt_status},
             {"attempt": out_trade_no, "status": "succeeded"}, "notification: payment.succeeded"),
        ]  # fmt: skip
        self.conn.execute(self.sql["paid_attempt"], (trade_no, received, at, at, attempt_id))
        cur = self.conn.execute(self.sql["paid_order"], (amount_minor, at, order_id, version))
        if cur.rowcount != 1:
            raise RuntimeError(f"order {number} changed under its lock")
        self.conn.execute(self.sql["coupon"], (at, order_id))
        mode, due = order[7], None
        if mode == "auto":
            due = at
        elif mode == "delayed":
            due = order[8] or at
        self.conn.execute(self.sql["activation"], (mode, due, order_id))
        body_out = {
            "order": number,
            "customer_id": customer_id,
            "amount": payload["amount"],
            "currency": currency,
            "channel": "fake",
            "out_trade_no": out_trade_no,
        }
        self.conn.execute(self.sql["outbox"], (str(uuid.uuid4()), number, _json(body_out), at, at))
        for other_id, other_no, other_status in self.conn.execute(
            self.sql["others"], (order_id, attempt_id)
        ).fetchall():
            self.conn.execute(self.sql["cancel"], (at, other_id))
            audit.append(
                (
                    ("system", "payments", None),
                    "payment.cancel",
                    {"attempt": other_no, "status": other_status},
                    {"attempt": other_no, "status": "canceled"},
                    "order paid by another attempt",
                )
            )
        self._append_audit(number, now, audit)
        self._commit()
        self._mark(inbox_id, "applied", None, out_trade_no, number)
        return 200, b"OK"

    def _append_audit(self, number: str, now: datetime, entries: list[Any]) -> None:
        seq, prev = self._one("head", ())
        iso = now.isoformat(timespec="microseconds")
        at = self._time(now)
        rows = []
        for (kind, actor_id, role), action, before, after, reason in entries:
            seq += 1
            content = {
                "seq": seq,
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
                "prev_hash": prev,
            }
            digest = hashlib.sha256(_json(content).encode("utf-8")).hexdigest()
            rows.append(
                (seq, at, kind, actor_id, role, "order", number, action, content["before"],
                 content["after"], reason, prev, digest)
            )  # fmt: skip
            prev = digest
        cur = self.conn.cursor()
        cur.executemany(self.sql["audit"], rows)
        self.conn.execute(self.sql["set_head"], (seq, prev))

    def _mark(
        self,
        inbox_id: int,
        status: str,
        reason: str | None,
        out_trade_no: str | None = None,
        number: str | None = None,
    ) -> None:
        self._begin()
        self.conn.execute(
            self.sql["mark"],
            (status, reason, out_trade_no, number, self._time(datetime.now(UTC)), inbox_id),
        )
        self._commit()

    def _reject(
        self, inbox_id: int, reason: str, out_trade_no: str | None = None
    ) -> tuple[int, bytes]:
        self._mark(inbox_id, "rejected", reason, out_trade_no)
        return 400, _json({"code": "FAIL", "message": reason}).encode()


# ---------------------------------------------------------------------------------- measuring
def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        return float("nan")


@dataclass
class Timing:
    name: str
    wall: list[float] = field(default_factory=list)  # seconds per callback
    cpu: float = 0.0  # this process's CPU seconds (the database server's are not in it)

    @property
    def count(self) -> int:
        return len(self.wall)

    @property
    def total(self) -> float:
        return sum(self.wall)

    @property
    def rate(self) -> float:
        return self.count / self.total if self.total else 0.0

    def ms(self, q: float) -> float:
        ordered = sorted(self.wall)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_block(
    handle: Callable[[dict[str, str], bytes], Any],
    notes: Sequence[SignedNotification],
    timing: Timing | None,
    profiler: cProfile.Profile | None = None,
) -> None:
    cpu = time.process_time()
    for headers, body in notes:
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        answer = handle(headers, body)
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - start
        status = answer[0] if isinstance(answer, tuple) else answer.status
        if status != 200:
            raise RuntimeError(f"callback refused: {answer!r}")
        if timing is not None:
            timing.wall.append(elapsed)
    if timing is not None:
        timing.cpu += time.process_time() - cpu


_VARYING = frozenset(
    {
        "id",
        "seq",
        "hash",
        "prev_hash",
        "event_id",
        "order_id",
        "attempt_id",
        "inbox_id",
        "channel_trade_no",
        "headers",
        "body",
        "number",
        "out_trade_no",
        "order_number",
        "entity_id",
        "event_key",
    }
)


def _masked(row: Mapping[str, Any], payable: Payable) -> dict[str, Any]:
    masked: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            masked[key] = None
        elif key in _VARYING or isinstance(value, datetime):
            masked[key] = "<set>"
        elif isinstance(value, str):
            masked[key] = value.replace(payable.out_trade_no, "<T>").replace(payable.number, "<N>")
        else:
            masked[key] = value
    return masked


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
    """What each path wrote, per callback (both should write the same), and the audit chain
    verified end to end."""
    tb = core.tables
    o, a, r, ob, ib, ev, al = (
        tb.orders,
        tb.payment_attempts,
        tb.coupon_redemptions,
        tb.outbox,
        tb.inbox,
        tb.payment_events,
        tb.audit_log,
    )
    out = ["| written | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    figures: dict[str, list[str]] = {}
    with core.engine.connect() as conn:
        for label, payables in sets.items():
            like = payables[0].number[:2] + "%"
            mine = o.c.number.like(like)

            def count(query: Any) -> int:
                return int(conn.execute(query).scalar_one())

            figures[label] = [
                str(count(select(func.count()).select_from(o).where(mine, o.c.status == "paid"))),
                str(
                    count(
                        select(func.count())
                        .select_from(o)
                        .where(mine, o.c.paid_minor == o.c.payable_minor, o.c.version == 2)
                    )
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(o)
                        .where(mine, o.c.activation_due_at.is_not(None))
                    )
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(a)
                        .where(a.c.out_trade_no.like(like), a.c.status == "succeeded")
                    )
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(r.join(o, o.c.id == r.c.order_id))
                        .where(mine, r.c.status == "consumed")
                    )
                ),
                str(
                    count(select(func.count()).select_from(ob).where(ob.c.order_number.like(like)))
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(ib)
                        .where(ib.c.order_number.like(like), ib.c.status == "applied")
                    )
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(ev)
                        .where(ev.c.event_key.like(f"fake:paid:{like}"))
                    )
                ),
                str(
                    count(
                        select(func.count())
                        .select_from(al)
                        .where(
                            al.c.entity_id.like(like),
                            al.c.action.in_(["order.pay", "payment.succeed"]),
                        )
                    )
                ),
            ]
    names = [
        "orders paid",
        "  with paid = payable, version 2",
        "  with activation due",
        "attempts succeeded",
        "coupon uses consumed",
        "outbox messages",
        "inbox rows applied",
        "payment events claimed",
        "audit records order.pay + payment.succeed",
    ]
    for i, name in enumerate(names):
        out.append(f"| {name} | " + " | ".join(figures[label][i] for label in sets) + " |")
    differences = compare_rows(core, [payables[1] for payables in sets.values()])
    out.append("")
    out.append(
        "Rows of one order (with coupon) compared column by column across the paths "
        "(ids, numbers, times, hashes and platform ids masked): "
        + ("identical" if not differences else "DIFFERENT: " + "; ".join(differences))
    )
    verdict = core.audit.verify()
    out.append(
        f"Audit chain: {'verified' if verdict.ok else 'BROKEN'}, {verdict.checked:,} records"
        + ("" if verdict.ok else f" (seq {verdict.broken_seq}: {verdict.problem})")
    )
    return out


def run(args: argparse.Namespace, backend: str) -> tuple[str, Timing, Timing]:
    target = (
        sqlite_target(args.keep)
        if backend == "sqlite"
        else postgresql_target(args.db_url, args.keep, args.synchronous_commit)
    )
    log(f"{backend}: {target.url} (schema {target.schema})")
    args.load[backend] = [_load(), 0.0]
    gateway = FakeGateway()
    engine_args: dict[str, Any] = {}
    if backend == "postgresql" and args.synchronous_commit:
        engine_args["connect_args"] = {"options": f"-csynchronous_commit={args.synchronous_commit}"}
    core = OrderCore(
        make_engine(target.url, **engine_args),
        Settings(
            database_url=target.url,
            schema=target.schema,
            channels={"fake": fake_channel_config(gateway=gateway)},
        ),
        plugins=[ordercore.testing],
        load_entry_points=False,
    )
    raw = None
    try:
        core.upgrade()
        total = args.warmup + args.n
        templates = make_templates(core)
        started = time.perf_counter()
        sets = {
            "ordercore": clone_orders(core, gateway, templates, "OC", total),
            "baseline": clone_orders(core, gateway, templates, "BL", total),
        }
        log(f"set-up: 2 x {total:,} orders in {time.perf_counter() - started:.1f}s")
        raw = target.connect()
        baseline = Baseline(raw, backend, DEFAULT_SECRET, DEFAULT_MERCHANT_ID)

        def ours(headers: dict[str, str], body: bytes) -> Any:
            return core.payments.handle_callback("fake", headers, body)

        handlers: dict[str, Callable[[dict[str, str], bytes], Any]] = {
            "ordercore": ours,
            "baseline": baseline.handle,
        }
        timings = {name: Timing(name) for name in handlers}
        profiler = cProfile.Profile() if args.profile else None
        blocks = [(0, args.warmup, False)] + [
            (s, min(s + args.block, total), True) for s in range(args.warmup, total, args.block)
        ]
        for index, (start, stop, timed) in enumerate(blocks):
            order = list(handlers) if index % 2 == 0 else list(reversed(handlers))
            for name in order:
                notes = [gateway.pay(p.out_trade_no) for p in sets[name][start:stop]]
                run_block(
                    handlers[name],
                    notes,
                    timings[name] if timed else None,
                    profiler if timed and name == "ordercore" else None,
                )
            if timed and (index % 5 == 0 or stop == total):
                log(
                    f"{backend}: {stop - args.warmup:,}/{args.n:,} — "
                    + ", ".join(f"{t.name} {t.rate:,.0f}/s" for t in timings.values())
                )
        ours_t, base_t = timings["ordercore"], timings["baseline"]
        args.load[backend][1] = _load()
        if profiler is not None:
            path = args.profile if len(args.backends) == 1 else f"{args.profile}.{backend}"
            profiler.dump_stats(path)
            log(f"profile of ordercore's callbacks: {path}")
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
        return report(backend, args, ours_t, base_t, check_writes(core, sets)), ours_t, base_t
    finally:
        if raw is not None:
            raw.close()
        core.close()
        target.cleanup()


def report(
    backend: str, args: argparse.Namespace, ours: Timing, base: Timing, checks: list[str]
) -> str:
    ratio = base.rate / ours.rate if ours.rate else float("inf")
    sync = ""
    if backend == "postgresql" and args.synchronous_commit:
        sync = f", synchronous_commit={args.synchronous_commit}"
    out = [
        f"### {backend}: {args.n:,} callbacks each (after {args.warmup} warm-up), "
        f"blocks of {args.block}, alternating{sync}",
        "",
        "| path | callbacks/s | ms/callback | p50 ms | p95 ms | client CPU ms/callback |",
        "|---|---|---|---|---|---|",
    ]
    for t in (ours, base):
        out.append(
            f"| {t.name} | {t.rate:,.0f} | {1000 * t.total / t.count:.2f} | {t.ms(0.5):.2f} | "
            f"{t.ms(0.95):.2f} | {1000 * t.cpu / t.count:.2f} |"
        )
    out += [
        "",
        f"Ratio ordercore/baseline (time per callback): **{ratio:.2f}x** "
        f"(target ≤ {TARGET_RATIO:g}x: {'met' if ratio <= TARGET_RATIO else 'not met'})",
    ]
    if backend == "postgresql":
        met = ours.rate >= TARGET_PG_RATE
        out.append(
            f"ordercore on PostgreSQL: **{ours.rate:,.0f} callbacks/s** "
            f"(target ≥ {TARGET_PG_RATE:g}/s: {'met' if met else 'not met'})"
        )
    out += [
        "",
        f"Load average (1 min) at start / end: {args.load[backend][0]:.1f} / "
        f"{args.load[backend][1]:.1f} on {os.cpu_count()} CPUs (other work slows the round "
        "trips of both paths)",
        "",
        *checks,
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000, help="timed callbacks per path")
    parser.add_argument("--warmup", type=int, default=100, help="untimed callbacks per path")
    parser.add_argument("--block", type=int, default=100, help="callbacks per alternation")
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
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.block < 1:
        parser.error("--n and --block must be positive, --warmup not negative")
    args.load = {}
    args.backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    reports = []
    summary = []
    for backend in args.backends:
        text_, ours, base = run(args, backend)
        reports.append(text_)
        summary.append(
            f"{backend}: ordercore {ours.rate:,.0f}/s, baseline {base.rate:,.0f}/s, "
            f"ratio {base.rate / ours.rate:.2f}x"
        )
    print(f"\n`python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`\n")
    print("\n\n".join(reports))
    print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
