"""The inbox: every notification as received, its outcome, replays, and the rows a stopped
process left ``received`` (part of :class:`~.payments.PaymentRepository`)."""

from __future__ import annotations

import builtins
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql

from ordercore._audit.chain import canonical_json
from ordercore._errors import NotFound

from . import _driver as driver
from ._built import built

if TYPE_CHECKING:
    from .tables import Tables

__all__ = ["SUMMARY_KEY", "InboxQueries"]

#: Where the summary of the headers that were not kept is stored among the headers: not an
#: HTTP token (``@``), so no kept header can have that name.
SUMMARY_KEY = "@summary"
#: Statuses of a notification nobody is processing any more and nobody has finished.
UNFINISHED = ("received", "replaying", "stalled", "error")


def _inbox_row(
    *,
    channel: str,
    headers: dict[str, str],
    body: bytes,
    remote_addr: str | None,
    now: datetime,
    replay_of: int | None = None,
    summary: dict[str, Any] | None = None,
    status: str = "received",
    reason: str | None = None,
    out_trade_no: str | None = None,
    order_number: str | None = None,
) -> dict[str, Any]:
    """The inbox row's columns for a notification (what :meth:`InboxQueries.add_inbox`
    takes)."""
    stored: dict[str, Any] = dict(headers)
    if summary is not None:
        stored[SUMMARY_KEY] = summary
    return {
        "channel": channel,
        "received_at": now,
        "remote_addr": remote_addr,
        "headers": canonical_json(stored),
        "body": body,
        "status": status,
        "reason": reason,
        "out_trade_no": out_trade_no,
        "order_number": order_number,
        "processed_at": None if status == "received" else now,
        "replay_of": replay_of,
    }


def _store_and_claim(tables: Tables) -> Any:
    """PostgreSQL: ``WITH stored AS (INSERT INTO inbox … RETURNING id), claimed AS (INSERT
    INTO payment_events … SELECT …, stored.id … ON CONFLICT (event_key) DO NOTHING RETURNING
    id) SELECT stored.id, (SELECT id FROM claimed)`` — built once per table set."""
    inbox, events = tables.inbox, tables.payment_events

    def make() -> Any:
        stored = (
            insert(inbox)
            # every column but the key: what _inbox_row gives
            .values({c.key: bindparam(c.key, type_=c.type) for c in inbox.c if not c.primary_key})
            .returning(inbox.c.id)
            .cte("stored")
        )
        given = (
            bindparam("c_event_key", type_=events.c.event_key.type),
            bindparam("c_attempt_id", type_=events.c.attempt_id.type),
            stored.c.id,
            bindparam("c_applied_at", type_=events.c.applied_at.type),
        )
        claimed = (
            postgresql.insert(events)
            .from_select(["event_key", "attempt_id", "inbox_id", "applied_at"], select(*given))
            .on_conflict_do_nothing(index_elements=[events.c.event_key])
            .returning(events.c.id)
            .cte("claimed")
        )
        return select(stored.c.id, select(claimed.c.id).scalar_subquery().label("claimed"))

    return built(inbox, "store_and_claim_pg", make)


class InboxQueries:
    """The inbox's statements. Never commits."""

    conn: Connection
    tables: Tables
    sql: Any  # the repository's prepared statements (``insert_inbox``, ``update_inbox``)

    def add_inbox(self, **fields: Any) -> int:
        """Store a notification: ``fields`` are :func:`_inbox_row`'s (``channel``,
        ``headers``, ``body``, ``remote_addr``, ``now``; ``replay_of``, ``summary``,
        ``status``, ``reason``, ``out_trade_no``, ``order_number``). Returns the row's id."""
        row = _inbox_row(**fields)
        return driver.execute(self.conn, self.sql.insert_inbox, row).inserted_id

    def add_inbox_and_claim(
        self, event_key: str, *, attempt_id: int | None, **fields: Any
    ) -> tuple[int, bool] | None:
        """On PostgreSQL, :meth:`add_inbox` (with its ``fields``) and
        ``claim_event(event_key)`` naming the new row, in one statement — one round trip
        where the two take two: ``(the row's id, whether the key was claimed now)``. None on
        the other databases (add the row, then claim)."""
        if self.conn.dialect.name != "postgresql":
            return None
        row = _inbox_row(**fields)
        row.update(c_event_key=event_key, c_attempt_id=attempt_id, c_applied_at=fields["now"])
        found = driver.execute(self.conn, _store_and_claim(self.tables), row).one()
        return int(found.id), found.claimed is not None

    def mark_inbox(
        self,
        inbox_id: int,
        *,
        status: str,
        now: datetime,
        reason: str | None = None,
        out_trade_no: str | None = None,
        order_number: str | None = None,
    ) -> None:
        driver.defer(
            self.conn,
            self.sql.update_inbox,
            {
                "b_id": inbox_id,
                "status": status,
                "reason": reason,
                "out_trade_no": out_trade_no,
                "order_number": order_number,
                "processed_at": now,
            },
        )

    def resolve_inbox(self, inbox_id: int, *, replay_id: int, now: datetime) -> bool:
        """Mark an unfinished notification (``received``, ``replaying``, ``stalled``,
        ``error``) ``replayed``, naming the replay and its outcome; a finished one keeps its
        status. True when it was resolved."""
        t = self.tables.inbox
        outcome = self.conn.execute(
            select(t.c.status, t.c.reason, t.c.out_trade_no, t.c.order_number).where(
                t.c.id == replay_id
            )
        ).one()
        reason = f"replayed as #{replay_id}: {outcome.status}"
        if outcome.reason:
            reason += f" ({outcome.reason})"
        result = self.conn.execute(
            update(t)
            .where(and_(t.c.id == inbox_id, t.c.status.in_(UNFINISHED)))
            .values(
                status="replayed",
                reason=reason[:1000],
                out_trade_no=outcome.out_trade_no,
                order_number=outcome.order_number,
                processed_at=now,
            )
        )
        return int(result.rowcount) == 1

    def claim_stalled_inbox(
        self, cutoff: datetime, *, now: datetime, limit: int
    ) -> builtins.list[tuple[int, str]]:
        """Notifications left unfinished by a process that stopped, ``limit`` at most, each
        with what to do: ``replay`` (a notification still ``received`` at ``cutoff``: marked
        ``replaying``) or ``flag`` (a replay still ``received``, or a ``replaying`` one whose
        replayer stopped too: marked ``stalled`` for an operator). Rows another runner is
        claiming are skipped on PostgreSQL."""
        t = self.tables.inbox
        rows = self.conn.execute(
            select(t.c.id, t.c.status, t.c.replay_of)
            .where(
                or_(
                    and_(t.c.status == "received", t.c.received_at < cutoff),
                    and_(t.c.status == "replaying", t.c.processed_at < cutoff),
                )
            )
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claims: list[tuple[int, str]] = []
        for row in rows:
            replay = row.status == "received" and row.replay_of is None
            action = "replay" if replay else "flag"
            reason = (
                "still received after the grace period: the process handling it stopped; replaying"
                if replay
                else "left unfinished twice (a replay's process stopped too): "
                "check it and replay it by hand"
            )
            self.conn.execute(
                update(t)
                .where(t.c.id == row.id)
                .values(
                    status="replaying" if replay else "stalled",
                    reason=reason,
                    processed_at=now,
                )
            )
            claims.append((int(row.id), action))
        return claims

    def _inbox(self, row: Row[Any]) -> dict[str, Any]:
        headers = json.loads(row.headers)
        summary = headers.pop(SUMMARY_KEY, None)
        return {
            "id": row.id,
            "channel": row.channel,
            "received_at": row.received_at,
            "remote_addr": row.remote_addr,
            "headers": headers,
            "header_summary": summary,
            "body": bytes(row.body),
            "status": row.status,
            "reason": row.reason,
            "out_trade_no": row.out_trade_no,
            "order_number": row.order_number,
            "processed_at": row.processed_at,
            "replay_of": row.replay_of,
        }

    def inbox_entry(self, inbox_id: int) -> dict[str, Any]:
        t = self.tables.inbox
        row = self.conn.execute(select(t).where(t.c.id == inbox_id)).first()
        if row is None:
            raise NotFound(f"no stored notification #{inbox_id}", inbox_id=inbox_id)
        return self._inbox(row)

    def inbox_list(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        status: str | None = None,
        order_number: str | None = None,
        channel: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        t = self.tables.inbox
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        if status is not None:
            query = query.where(t.c.status == status)
        if order_number is not None:
            query = query.where(t.c.order_number == order_number)
        if channel is not None:
            query = query.where(t.c.channel == channel)
        return [self._inbox(r) for r in self.conn.execute(query)]
