"""What ``callbacks.py`` and ``orders.py`` share: fresh databases, counting statements,
commits and round trips, diffing the whole database around one call, and medians.

Round trips on PostgreSQL are counted by a small TCP relay between the client and the
server (:class:`RoundTripRelay`): a round trip is the client sending something and the server
answering, i.e. every turn of the conversation from the client's side to the server's. That
counts everything the wire sees — statements, ``BEGIN``, ``COMMIT``, pool pre-pings,
``ROLLBACK`` on a pool return — the same way for SQLAlchemy and for a raw psycopg connection.
The relay adds latency, so it is only used in a separate, untimed counting pass.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url

from ordercore.adapters.sqlalchemy import make_engine

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        return float("nan")


# ---------------------------------------------------------------------------------- backends
@dataclass
class Target:
    """A fresh database of one backend: ``url`` for ordercore (SQLAlchemy), ``schema`` on
    PostgreSQL, ``connect`` opening a raw DB-API connection (optionally to another host and
    port: the round-trip relay)."""

    name: str
    url: str
    schema: str | None
    connect: Callable[..., Any]
    cleanup: Callable[[], None]
    host: str = ""
    port: int = 0

    def url_via(self, host: str, port: int) -> str:
        """``url`` with another host and port (the relay)."""
        return make_url(self.url).set(host=host, port=port).render_as_string(hide_password=False)


def sqlite_target(label: str, keep: bool) -> Target:
    path = os.path.join(tempfile.gettempdir(), f"ordercore-{label}-{uuid.uuid4().hex[:8]}.db")

    def connect(*_: Any) -> sqlite3.Connection:
        # What ordercore's engine sets on each connection (adapters/sqlalchemy/engine.py).
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
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


def postgresql_target(
    label: str, url: str | None, keep: bool, synchronous_commit: str | None = None
) -> Target:
    server = url or os.environ.get("ORDERCORE_TEST_POSTGRESQL_URL") or DEFAULT_PG
    schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    parsed = make_url(server)
    host, port = parsed.host or "127.0.0.1", int(parsed.port or 5432)

    def connect(via_host: str | None = None, via_port: int | None = None) -> Any:
        import psycopg

        options = f"-csearch_path={schema}"
        if synchronous_commit:
            options += f" -csynchronous_commit={synchronous_commit}"
        where = parsed.set(drivername="postgresql")
        if via_host is not None:
            where = where.set(host=via_host, port=via_port)
        conninfo = where.render_as_string(hide_password=False)
        return psycopg.connect(conninfo, options=options, autocommit=False)

    def cleanup() -> None:
        if keep:
            log(f"kept schema {schema} in {server}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return Target("postgresql", server, schema, connect, cleanup, host, port)


def target(backend: str, label: str, short: str, args: Any) -> Target:
    """A fresh SQLite file (``label``) or PostgreSQL schema (``bench_<short>_…``), from the
    benchmark's ``--keep``, ``--db-url`` and ``--synchronous-commit``."""
    if backend == "sqlite":
        return sqlite_target(label, args.keep)
    return postgresql_target(short, args.db_url, args.keep, args.synchronous_commit)


def engine_args(backend: str, synchronous_commit: str | None) -> dict[str, Any]:
    if backend == "postgresql" and synchronous_commit:
        return {"connect_args": {"options": f"-csynchronous_commit={synchronous_commit}"}}
    return {}


def analyze(engine: Engine, tables: Any) -> None:
    """Fresh planner statistics for every table, as a running database has them (autovacuum
    analyzes the tables that changed). Without them, tables filled in bulk by the set-up
    can be planned as nearly empty — a sequential scan where an index serves — for whichever
    path the planner happens to see first."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(
                conn.dialect.identifier_preparer.format_table(t)
                for t in tables.metadata.sorted_tables
            )
            conn.execute(text(f"ANALYZE {names}"))
        else:
            conn.exec_driver_sql("ANALYZE")


# ---------------------------------------------------------------------------------- counting
@dataclass
class Counts:
    """What one side sent to the database over ``calls`` calls."""

    calls: int = 0
    statements: int = 0  # SQL statements (not BEGIN / COMMIT / ROLLBACK)
    commits: int = 0
    round_trips: int | None = None  # PostgreSQL only (the relay)

    def per(self, what: str) -> str:
        value = getattr(self, what)
        if value is None or not self.calls:
            return "n/a"
        return f"{value / self.calls:.1f}"


def counted(counts: Mapping[str, Counts]) -> str:
    """One line: statements, commits and round trips per call of each side."""
    return ", ".join(
        f"{k} {c.per('statements')} statements, {c.per('commits')} commits, "
        f"{c.per('round_trips')} round trips"
        for k, c in counts.items()
    )


def report(args: Any, run: Callable[[Any, str], tuple[str, str]], script: str) -> int:
    """Run ``run(args, backend)`` for each backend asked for and print the reports (after
    the command that made them) and their summary lines."""
    args.backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    reports, summary = [], []
    for backend in args.backends:
        text_, line = run(args, backend)
        reports.append(text_)
        summary.append(line)
    print(f"\n`python benchmarks/{os.path.basename(script)} {' '.join(sys.argv[1:])}`\n")
    print("\n\n".join(reports))
    print("\n" + "\n".join(summary))
    return 0


_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


class EngineCounter:
    """Statements and commits an SQLAlchemy engine sends (its events), while ``active``.

    ``remove()`` takes its listeners off the engine once the counting is done, so that the
    timed runs afterwards do not pay for them (a listener on ``before_cursor_execute``
    costs every statement its dispatch, counting or not)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements = 0
        self.commits = 0
        self.active = False
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "commit", self._commit)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._execute)
        event.remove(self.engine, "commit", self._commit)

    def _execute(self, *args: Any) -> None:
        statement = str(args[2]).lstrip().upper()
        if self.active and not statement.startswith(_CONTROL):
            self.statements += 1

    def _commit(self, *_: Any) -> None:
        if self.active:
            self.commits += 1

    @contextmanager
    def counting(self, counts: Counts) -> Iterator[None]:
        self.statements = self.commits = 0
        self.active = True
        try:
            yield
        finally:
            self.active = False
            counts.statements += self.statements
            counts.commits += self.commits


class RoundTripRelay:
    """A TCP relay to the PostgreSQL server that counts round trips: each time the server
    starts answering after the client has sent something is one. Runs in threads of this
    process; used only for untimed counting passes."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.round_trips = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"asked": False}
            threading.Thread(
                target=self._pump, args=(client, server, state, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, state, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, bool], up: bool
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if up:
                        state["asked"] = True
                    elif state["asked"]:
                        state["asked"] = False
                        self.round_trips += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def take(self) -> int:
        """Round trips since the last call."""
        with self._lock:
            taken, self.round_trips = self.round_trips, 0
        return taken

    def close(self) -> None:
        self._closed = True
        self.listener.close()


# ---------------------------------------------------------------------------------- diffing
Snapshot = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True)
class Delta:
    """An updated column: its value before and after."""

    old: Any
    new: Any


def snapshot(engine: Engine, tables: Sequence[Any]) -> Snapshot:
    """Every row of every table, by primary key."""
    out: Snapshot = {}
    with engine.connect() as conn:
        for table in tables:
            pk = [c.name for c in table.primary_key.columns]
            rows: dict[tuple[Any, ...], dict[str, Any]] = {}
            for row in conn.execute(select(table)):
                values = row._asdict()
                key = tuple(values[k] for k in pk) if pk else tuple(sorted(values.items()))
                rows[key] = values
            out[table.name] = rows
    return out


def changes(before: Snapshot, after: Snapshot) -> list[tuple[str, str, dict[str, Any]]]:
    """``(table, "insert" | "update" | "delete", row or changed columns)`` between two
    snapshots."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for name, rows in after.items():
        old = before.get(name, {})
        for key, row in rows.items():
            if key not in old:
                found.append((name, "insert", row))
            elif old[key] != row:
                found.append(
                    (name, "update", {c: Delta(old[key][c], v) for c, v in row.items()
                                      if old[key][c] != v})
                )  # fmt: skip
        found += [(name, "delete", old[key]) for key in old if key not in rows]
    return found


def mask_value(column: str, value: Any, varying: frozenset[str], names: Mapping[str, str]) -> Any:
    """A value with what legitimately differs between two calls masked: ids, times, nonces,
    hashes, platform ids, and the order numbers / trade numbers (replaced by placeholders)."""
    if isinstance(value, Delta):
        old, new = value.old, value.new
        if isinstance(old, int) and isinstance(new, int) and not isinstance(new, bool):
            # a counter shared by both paths (stock, uses): what the call changed it by
            return f"{new - old:+d}"
        return mask_value(column, new, varying, names)
    if value is None:
        return None
    if column in varying or column == "id" or (column.endswith("_id") and isinstance(value, int)):
        return "<varies>"
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, (bytes, memoryview)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        for real, placeholder in names.items():
            value = value.replace(real, placeholder)
    return value


def masked_changes(
    found: Sequence[tuple[str, str, dict[str, Any]]],
    varying: frozenset[str],
    names: Mapping[str, str],
) -> Counter[str]:
    """The changes as a multiset of comparable lines."""
    lines: Counter[str] = Counter()
    for table, kind, row in found:
        shown = {c: mask_value(c, v, varying, names) for c, v in sorted(row.items())}
        lines[f"{kind} {table} {shown!r}"] += 1
    return lines


def compare_changes(label_a: str, a: Counter[str], label_b: str, b: Counter[str]) -> list[str]:
    """What one side wrote and the other did not (empty: identical)."""
    problems = [f"only {label_a}: {line}" for line in sorted((a - b).elements())]
    problems += [f"only {label_b}: {line}" for line in sorted((b - a).elements())]
    return problems


def probe_row(case: str, ours: Sequence[Any], baseline: Sequence[Any], diff: list[str]) -> str:
    """A row of the probe's table: what ordercore wrote, how many changes the baseline made,
    and whether the two were the same."""
    return (
        f"| {case} | {summarize(ours)} | {len(baseline)} changes | "
        f"{'yes' if not diff else '**NO**'} |"
    )


def probe_verdict(unit: str, masked: str, problems: list[str]) -> str:
    """The line under the probe's table."""
    return (
        f"Changes of every table around one {unit} of each path, compared column by column "
        f"({masked} masked): "
        + ("identical" if not problems else "DIFFERENT:\n  " + "\n  ".join(problems))
    )


def audit_verdict(core: Any, sealed: int) -> str:
    """Verify the audit trail (its pending entries ``sealed`` before) and say how it went."""
    verdict = core.audit.verify()
    return (
        f"Audit trail: {sealed:,} pending entries sealed, then "
        f"{'verified' if verdict.ok else 'BROKEN'} with the audit key: {verdict.checked:,} "
        "records" + ("" if verdict.ok else f" ({verdict.problem})")
    )


def summarize(found: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """``insert inbox, update orders (status, paid_minor, …), …``"""
    parts = []
    for table, kind, row in found:
        parts.append(
            f"{kind} {table}" + (f" ({', '.join(sorted(row))})" if kind == "update" else "")
        )
    return "; ".join(parts)


# ------------------------------------------------------------------------------ breakdown
class Breakdown:
    """``--breakdown``: where ordercore's wall time goes in the timed calls — in the
    statements (``Connection.execute`` and the driver-level ``_driver.execute`` /
    ``executemany``: the driver, the server and whatever Python runs the statement), in the
    commit, and the rest (ordercore's own Python: verification, the domain objects, the
    audit entries). The wrappers add about a microsecond a statement."""

    def __init__(self) -> None:
        self.calls = 0
        self.statements = 0
        self.total = self.execute = self.commit = 0.0
        self._active = False

    @contextmanager
    def patched(self) -> Iterator[None]:
        from sqlalchemy.engine import base

        from ordercore.adapters.sqlalchemy import _driver

        execute, commit = base.Connection.execute, base.RootTransaction.commit
        on_driver, on_driver_many = _driver.execute, _driver.executemany
        depth = [0]  # a driver statement that falls back to Connection.execute counts once

        def timing(run: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                if not self._active or depth[0]:
                    return run(*args, **kwargs)
                depth[0] += 1
                start = time.perf_counter()
                try:
                    return run(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    self.execute += time.perf_counter() - start
                    self.statements += 1

            return timed

        timed_execute = timing(execute)

        def timed_commit(tx: Any) -> None:
            if not self._active:
                return commit(tx)
            start = time.perf_counter()
            try:
                return commit(tx)
            finally:
                self.commit += time.perf_counter() - start

        base.Connection.execute = timed_execute  # type: ignore[method-assign]
        base.RootTransaction.commit = timed_commit  # type: ignore[method-assign]
        _driver.execute = timing(on_driver)  # type: ignore[assignment]
        _driver.executemany = timing(on_driver_many)  # type: ignore[assignment]
        try:
            yield
        finally:
            base.Connection.execute = execute  # type: ignore[method-assign]
            base.RootTransaction.commit = commit  # type: ignore[method-assign]
            _driver.execute, _driver.executemany = on_driver, on_driver_many

    def wrap(self, handle: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any) -> Any:
            self._active = True
            start = time.perf_counter()
            try:
                return handle(*args)
            finally:
                self.total += time.perf_counter() - start
                self.calls += 1
                self._active = False

        return measured

    def line(self, unit: str) -> str:
        n = max(self.calls, 1)
        us = {
            k: 1e6 * v / n
            for k, v in (("total", self.total), ("execute", self.execute), ("commit", self.commit))
        }
        rest = us["total"] - us["execute"] - us["commit"]
        return (
            f"Breakdown of ordercore's mean {us['total']:.0f} µs a {unit} ({self.calls:,} "
            f"{unit}s, warm-up included): {us['execute']:.0f} µs in "
            f"{self.statements / n:.1f} statements (SQLAlchemy or the driver-level path, the "
            f"driver, the server), {us['commit']:.0f} µs in the commit, {rest:.0f} µs elsewhere "
            "(ordercore's Python)"
        )


# ---------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    name: str
    wall: list[float] = field(default_factory=list)  # seconds per call
    cpu: float = 0.0  # this process's CPU seconds
    cpu_calls: list[float] = field(default_factory=list)  # this process's CPU seconds per call

    @property
    def count(self) -> int:
        return len(self.wall)

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.wall) if self.wall else float("nan")

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.wall) if self.wall else float("nan")

    @property
    def cpu_median_ms(self) -> float:
        return 1000 * statistics.median(self.cpu_calls) if self.cpu_calls else float("nan")

    @property
    def rate(self) -> float:
        total = sum(self.wall)
        return self.count / total if total else 0.0

    def ms(self, q: float) -> float:
        ordered = sorted(self.wall)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timing_table(timings: Sequence[Timing], counts: Mapping[str, Counts], unit: str) -> list[str]:
    out = [
        f"| path | mean ms | median ms | p95 ms | {unit}s/s (1 / mean) | client CPU ms "
        f"(mean / median) | statements/{unit} | commits/{unit} | round trips/{unit} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        c = counts[t.name]
        out.append(
            f"| {t.name} | {t.mean_ms:.2f} | {t.median_ms:.2f} | {t.ms(0.95):.2f} | "
            f"{t.rate:,.0f} | {1000 * t.cpu / max(t.count, 1):.2f} / {t.cpu_median_ms:.2f} | "
            f"{c.per('statements')} | "
            f"{c.per('commits')} | {c.per('round_trips')} |"
        )
    return out
