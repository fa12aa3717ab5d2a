"""The callback pipeline: a notification is verified and parsed by its channel (outside any
transaction), its fields checked against the database, then stored raw in the inbox — its
body, and of its headers only those the channel reads (secret ones redacted) with a summary
of the rest — applied and marked with its outcome in **one transaction**, and answered the way
the platform expects. A refusal is stored in one transaction too. If applying fails, the
transaction rolls back and the notification is stored alone, marked ``error``, in another
(the platform is answered with a failure, so it delivers again).

A notification carrying several events is stored first (committed), then each event is
applied in its own transaction. Replays of stored notifications go through the same path and
resolve the row they replay; notifications a stopped process left ``received`` are replayed
by the job runner.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import frozen

from ordercore._actor import Actor
from ordercore._context import check_limit
from ordercore._errors import ChannelError, OrderCoreError
from ordercore._permissions import Permission
from ordercore.channels import (
    ChannelRejection,
    HttpReply,
    Notification,
    PaymentChannel,
    RefundEvent,
    RefundResult,
)
from ordercore.channels import PaymentEvent as ChannelPaymentEvent

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

from .applying import ApplyResult, InboxRef, PaymentCore
from .intake import event_problem, keep_headers

__all__ = ["CallbackPipeline"]

_P = Permission
logger = logging.getLogger("ordercore.payments")


_UNKNOWN_CHANNEL = HttpReply(
    404, b'{"code":"FAIL","message":"unknown channel"}', {"content-type": "application/json"}
)


@frozen
class _Outcome:
    """What the inbox records for a processed notification."""

    status: str
    reason: str | None
    out_trade_no: str | None
    order_number: str | None

    def row(self) -> dict[str, Any]:
        """The inbox row's columns that hold it."""
        return {
            "status": self.status[:16],
            "reason": self.reason,
            "out_trade_no": None if self.out_trade_no is None else self.out_trade_no[:64],
            "order_number": self.order_number,
        }


_RECEIVED = _Outcome("received", None, None, None)


class _LateInbox:
    """The inbox row of a notification applied in the transaction that stores it (an
    :class:`~.applying.InboxRow`): stored when applying first needs its id, marked with the
    outcome expected then (or received); :meth:`finish` stores it with the outcome if nothing
    needed it, or marks the outcome if it differs from what was stored."""

    def __init__(
        self,
        store: Callable[[_Outcome], int],
        mark: Callable[[int, _Outcome], None],
        store_and_claim: Callable[[_Outcome, str, int | None], tuple[int, bool] | None],
    ) -> None:
        self._store, self._mark, self._store_and_claim = store, mark, store_and_claim
        self._id: int | None = None
        self._stored: _Outcome | None = None

    def id(self, expected: ApplyResult | None) -> int:
        if self._id is None:
            self._stored = _RECEIVED if expected is None else _outcome([expected])
            self._id = self._store(self._stored)
        return self._id

    def claim(self, event_key: str, attempt_id: int | None, expected: ApplyResult) -> bool | None:
        if self._id is not None:
            return None  # stored already: a claim of its own
        outcome = _outcome([expected])
        done = self._store_and_claim(outcome, event_key, attempt_id)
        if done is None:
            return None
        self._id, claimed = done
        self._stored = outcome
        return claimed

    def finish(self, outcome: _Outcome) -> int:
        if self._id is None:
            self._stored = outcome
            self._id = self._store(outcome)
        elif outcome != self._stored:
            self._mark(self._id, outcome)
        return self._id


def _outcome(results: list[ApplyResult]) -> _Outcome:
    if not results:
        return _Outcome("ignored", "no event to apply", None, None)
    first = results[0]
    statuses = sorted({r.status for r in results})
    status = statuses[0] if len(statuses) == 1 else "+".join(statuses)
    if any(r.status == "unknown_payment" for r in results):
        status = "rejected"  # answered with the platform's failure acknowledgement
    reason = "; ".join(r.reason for r in results if r.reason) or None
    return _Outcome(status, reason, first.out_trade_no, first.order_number)


class CallbackPipeline(PaymentCore):
    """Notifications from channels: intake, verification, application, the answer."""

    # -- the callback pipeline ------------------------------------------------------------
    def handle_callback(
        self,
        channel: str,
        headers: Mapping[str, str],
        body: bytes,
        remote_addr: str | None = None,
        *,
        replay_of: int | None = None,
        received_at: datetime | None = None,
    ) -> HttpReply:
        """Verify, store, apply and acknowledge one notification. Never raises for bad
        input: every refusal is answered the platform's way and left in the inbox. An
        unexpected error (the database) rolls the work back, stores the notification marked
        ``error`` (when the database allows) and is raised.

        With ``replay_of``, the stored notification of that id is resolved afterwards:
        ``replayed``, naming this one, unless it had an outcome of its own."""
        try:
            chan = self.channel(channel)
        except (ChannelError, OrderCoreError):
            return _UNKNOWN_CHANNEL
        intake = keep_headers(
            headers,
            needed=chan.notification_headers,
            secret=self._ctx.settings.redacted_headers | chan.secret_headers,
        )
        address = None if remote_addr is None else str(remote_addr)[:64]
        notification = Notification(
            channel=chan.name,
            headers=intake.kept,
            body=bytes(body),
            remote_addr=address,
            # A replay is judged as of its first arrival (freshness windows, signed times).
            received_at=received_at or self._now(),
        )

        def row(now: datetime, outcome: _Outcome) -> dict[str, Any]:
            return {
                "channel": chan.name,
                "headers": intake.stored,
                "summary": intake.summary,
                "body": bytes(body),
                "remote_addr": address,
                "now": now,
                "replay_of": replay_of,
                **outcome.row(),
            }

        def store(uow: UnitOfWork, now: datetime, outcome: _Outcome, resolve: bool) -> int:
            inbox_id = uow.payments.add_inbox(**row(now, outcome))
            if resolve:
                self._resolve(uow, replay_of, inbox_id, now)
            return inbox_id

        # Verification comes first, outside any transaction (a channel may fetch a
        # certificate): no lock is held while it runs.
        events, refusal = self._verify(chan, notification)
        if refusal is not None:
            reason, reply = refusal
            rejected = _Outcome("rejected", reason, None, None)
            self._run(lambda uow, now: store(uow, now, rejected, True))
            return reply
        if len(events) != 1:
            # Several events: stored first, each applied in its own transaction.
            inbox_id = self._run(lambda uow, now: store(uow, now, _RECEIVED, False))
            try:
                results = self._apply_each(chan, events, inbox_id)
            except OrderCoreError as exc:
                self._mark_inbox(inbox_id, "error", f"{type(exc).__name__}: {exc}"[:1000])
                return chan.acknowledge(False, "not applied")
            except Exception as exc:
                with contextlib.suppress(Exception):  # the database may be what failed
                    self._mark_inbox(inbox_id, "error", f"{type(exc).__name__}: {exc}"[:1000])
                raise
            return self._answer(chan, results, unmarked=inbox_id, replay_of=replay_of)
        # The usual case: stored, applied and marked in one transaction — one commit.
        event = events[0]

        def store_and_apply(uow: UnitOfWork, now: datetime) -> ApplyResult:
            # The inbox row is stored when applying first needs its id (the event claim
            # names it), marked with the outcome expected then; or at the end with the
            # outcome. Usually one statement, never a different row from the two-step way.
            inbox = _LateInbox(
                lambda outcome: store(uow, now, outcome, False),
                lambda inbox_id, outcome: self._mark(uow, inbox_id, outcome, now),
                lambda outcome, key, attempt_id: uow.payments.add_inbox_and_claim(
                    key, attempt_id=attempt_id, **row(now, outcome)
                ),
            )
            result = self._apply_one(uow, chan, event, inbox, now)
            self._resolve(uow, replay_of, inbox.finish(_outcome([result])), now)
            return result

        try:
            result = self._run(store_and_apply)
        except OrderCoreError as exc:
            # A refusal of our own while applying (it should not happen): keep the
            # notification with the reason, answer failure so the platform retries.
            self._store_failed(store, exc, resolve=True)
            return chan.acknowledge(False, "not applied")
        except Exception as exc:
            # The transaction was rolled back: keep the notification as ``error`` if the
            # database lets us, then let the error through.
            with contextlib.suppress(Exception):
                self._store_failed(store, exc, resolve=False)
            raise
        return self._answer(chan, [result], unmarked=None, replay_of=None)

    def _verify(
        self, chan: PaymentChannel, notification: Notification
    ) -> tuple[tuple[ChannelPaymentEvent | RefundEvent, ...], tuple[str, HttpReply] | None]:
        """The channel's verdict: the events, or why the notification is refused and the
        answer the platform gets."""
        try:
            parsed = chan.parse_notification(notification)
        except Exception as exc:  # a channel must not raise; if it does, it is a refusal
            return (), (f"channel error: {exc!r}"[:500], chan.acknowledge(False, "internal error"))
        if parsed.rejection is not None:
            reason = f"{parsed.rejection.code}: {parsed.rejection.message}"
            return (), (reason, chan.refuse(parsed.rejection))
        for event in parsed.events:
            problem = event_problem(event)
            if problem is not None:
                rejection = ChannelRejection("invalid_field", problem)
                return (), (f"invalid_field: {problem}", chan.refuse(rejection))
        return parsed.events, None

    def _store_failed(
        self,
        store: Callable[[UnitOfWork, datetime, _Outcome, bool], int],
        exc: Exception,
        *,
        resolve: bool,
    ) -> None:
        failed = _Outcome("error", f"{type(exc).__name__}: {exc}"[:1000], None, None)
        self._run(lambda uow, now: store(uow, now, failed, resolve))

    def _apply_one(
        self,
        uow: UnitOfWork,
        chan: PaymentChannel,
        event: ChannelPaymentEvent | RefundEvent,
        inbox_id: InboxRef,
        now: datetime,
    ) -> ApplyResult:
        if isinstance(event, RefundEvent):
            return self._refund_event(uow, chan.name, event, now)
        return self._apply_payment(
            uow, event, channel=chan.name, source="notification", inbox_id=inbox_id, now=now
        )

    def _apply_each(
        self,
        chan: PaymentChannel,
        events: tuple[ChannelPaymentEvent | RefundEvent, ...],
        inbox_id: int,
    ) -> list[ApplyResult]:
        """Apply several events of one notification, each in its own transaction."""
        return [
            self._run(
                lambda uow, now, ev=each: self._apply_one(uow, chan, ev, inbox_id, now)  # type: ignore[misc]
            )
            for each in events
        ]

    def _answer(
        self,
        chan: PaymentChannel,
        results: list[ApplyResult],
        *,
        unmarked: int | None,
        replay_of: int | None,
    ) -> HttpReply:
        """The platform's answer; the inbox row ``unmarked`` (if any) gets the outcome, and
        the row it replays (if any) is resolved."""
        outcome = _outcome(results)
        if unmarked is not None:

            def mark(uow: UnitOfWork, now: datetime) -> None:
                self._mark(uow, unmarked, outcome, now)
                self._resolve(uow, replay_of, unmarked, now)

            self._run(mark)
        if outcome.status == "rejected":
            return chan.refuse(ChannelRejection("unknown_payment", "unknown payment"))
        return chan.acknowledge(True)

    @staticmethod
    def _mark(uow: UnitOfWork, inbox_id: int, outcome: _Outcome, now: datetime) -> None:
        uow.payments.mark_inbox(inbox_id, now=now, **outcome.row())

    def _refund_event(
        self, uow: UnitOfWork, channel: str, event: RefundEvent, now: datetime
    ) -> ApplyResult:
        """A verified refund fact, applied by the refund engine (never as a payment)."""
        status, number, reason = self._ctx.refunds.apply_notification(
            uow,
            channel=channel,
            out_refund_no=event.out_refund_no,
            result=RefundResult(
                event.outcome, event.channel_refund_no, code=event.code, message=event.message
            ),
            amount=event.amount,
            now=now,
        )
        return ApplyResult(status, number, event.out_trade_no, reason)

    @staticmethod
    def _resolve(uow: UnitOfWork, replay_of: int | None, inbox_id: int, now: datetime) -> None:
        """A replay has its outcome: resolve the row it replays (same transaction)."""
        if replay_of is not None:
            uow.payments.resolve_inbox(replay_of, replay_id=inbox_id, now=now)

    def _mark_inbox(self, inbox_id: int, status: str, reason: str | None) -> None:
        outcome = _Outcome(status, reason, None, None)
        self._run(lambda uow, now: self._mark(uow, inbox_id, outcome, now))

    def notifications(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        status: str | None = None,
        order_number: str | None = None,
        channel: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Stored notifications, newest first (the callback log)."""
        return self._read(
            lambda uow: uow.payments.inbox_list(
                limit=check_limit(limit),
                before_id=before_id,
                status=status,
                order_number=order_number,
                channel=channel,
            )
        )

    def notification(self, inbox_id: int) -> dict[str, Any]:
        return self._read(lambda uow: uow.payments.inbox_entry(inbox_id))

    def replay(self, inbox_id: int, *, actor: Actor) -> HttpReply:
        """Process a stored notification again, exactly as stored (its raw body, the headers
        its channel reads). What was applied stays applied once; the replay gets an inbox
        record of its own, and an unfinished original (``received``, ``stalled``,
        ``error``) becomes ``replayed``, naming it."""
        self._check(actor, _P.PAYMENTS_REVIEW, f"inbox:{inbox_id}")
        return self._replay(inbox_id)

    def _replay(self, inbox_id: int) -> HttpReply:
        entry = first = self.notification(inbox_id)
        while first["replay_of"] is not None:  # a replay of a replay: judged as of the first
            first = self.notification(first["replay_of"])
        return self.handle_callback(
            entry["channel"],
            entry["headers"],
            entry["body"],
            entry["remote_addr"],
            replay_of=inbox_id,
            received_at=first["received_at"],
        )

    def recover_stalled(
        self, now: datetime | None = None, *, batch: int = 100
    ) -> tuple[builtins.list[int], builtins.list[int]]:
        """Notifications a stopped process left unfinished for ``callback_grace_seconds``:
        ``(replayed, flagged)`` ids. One still ``received`` is replayed (and resolved); a
        replay left so, or one whose replayer stopped too, becomes ``stalled`` and an
        ``inbox.stalled`` outbox message tells the host, for an operator to look at."""
        moment = now or self._now()
        cutoff = moment - timedelta(seconds=self._ctx.settings.callback_grace_seconds)
        replayed: list[int] = []
        flagged: list[int] = []
        while len(replayed) + len(flagged) < batch:
            size = min(self._ctx.settings.job_claim_size, batch - len(replayed) - len(flagged))

            def claim(uow: UnitOfWork, at: datetime, size: int = size) -> list[tuple[int, str]]:
                claims = uow.payments.claim_stalled_inbox(cutoff, now=max(at, moment), limit=size)
                for inbox_id, action in claims:
                    if action == "flag":
                        uow.payments.add_outbox(
                            "inbox.stalled", None, {"inbox_id": inbox_id}, max(at, moment)
                        )
                return claims

            claims = self._run(claim)
            for inbox_id, action in claims:
                if action == "flag":
                    flagged.append(inbox_id)
                    continue
                try:
                    self._replay(inbox_id)
                except Exception:
                    logger.exception("replaying stalled notification #%s failed", inbox_id)
                replayed.append(inbox_id)
            if len(claims) < size:
                break
        return replayed, flagged
