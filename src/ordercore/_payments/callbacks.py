"""The callback pipeline: a notification is stored raw in the inbox (committed) before
anything else, verified and parsed by its channel, applied in one transaction, and answered
the way the platform expects. Replays of stored notifications go through the same path.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
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

from .applying import ApplyResult, PaymentCore

__all__ = ["CallbackPipeline"]

_P = Permission
_REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})


_UNKNOWN_CHANNEL = HttpReply(
    404, b'{"code":"FAIL","message":"unknown channel"}', {"content-type": "application/json"}
)


def _redact(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): ("[redacted]" if k.lower() in _REDACTED_HEADERS else str(v))
        for k, v in headers.items()
    }


@frozen
class _Outcome:
    """What the inbox records for a processed notification."""

    status: str
    reason: str | None
    out_trade_no: str | None
    order_number: str | None


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
        """Store, verify, apply and acknowledge one notification. Never raises for bad
        input: every refusal is answered the platform's way and left in the inbox."""
        try:
            chan = self.channel(channel)
        except (ChannelError, OrderCoreError):
            return _UNKNOWN_CHANNEL
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        inbox_id = self._run(
            lambda uow, now: uow.payments.add_inbox(
                channel=chan.name,
                headers=_redact(lowered),
                body=bytes(body),
                remote_addr=remote_addr,
                now=now,
                replay_of=replay_of,
            )
        )
        notification = Notification(
            channel=chan.name,
            headers=lowered,
            body=bytes(body),
            remote_addr=remote_addr,
            # A replay is judged as of its first arrival (freshness windows, signed times).
            received_at=received_at or self._now(),
        )
        try:
            parsed = chan.parse_notification(notification)
        except Exception as exc:  # a channel must not raise; if it does, it is a refusal
            self._mark_inbox(inbox_id, "rejected", f"channel error: {exc!r}"[:500])
            return chan.acknowledge(False, "internal error")
        if parsed.rejection is not None:
            self._mark_inbox(
                inbox_id, "rejected", f"{parsed.rejection.code}: {parsed.rejection.message}"
            )
            return chan.refuse(parsed.rejection)
        try:
            results, marked = self._apply_events(chan, parsed.events, inbox_id)
        except OrderCoreError as exc:
            # A refusal of our own while applying (it should not happen): keep the reason with
            # the notification, answer failure so the platform retries, replay once fixed.
            self._mark_inbox(inbox_id, "error", f"{type(exc).__name__}: {exc}"[:1000])
            return chan.acknowledge(False, "not applied")
        return self._answer(chan, inbox_id, results, marked)

    def _apply_events(
        self,
        chan: PaymentChannel,
        events: tuple[ChannelPaymentEvent | RefundEvent, ...],
        inbox_id: int,
    ) -> tuple[list[ApplyResult], bool]:
        """Apply the events; ``(results, marked)`` — a lone payment event (the usual case) is
        applied and its inbox entry marked in one transaction."""
        if len(events) == 1:
            event = events[0]

            def apply_and_mark(uow: UnitOfWork, now: datetime) -> ApplyResult:
                if isinstance(event, RefundEvent):
                    result = self._refund_event(uow, chan.name, event, now)
                else:
                    result = self._apply_payment(
                        uow,
                        event,
                        channel=chan.name,
                        source="notification",
                        inbox_id=inbox_id,
                        now=now,
                    )
                self._mark(uow, inbox_id, _outcome([result]), now)
                return result

            return [self._run(apply_and_mark)], True
        results: list[ApplyResult] = []
        for each in events:
            if isinstance(each, ChannelPaymentEvent):
                results.append(
                    self._run(
                        lambda uow, now, ev=each: self._apply_payment(  # type: ignore[misc]
                            uow,
                            ev,
                            channel=chan.name,
                            source="notification",
                            inbox_id=inbox_id,
                            now=now,
                        )
                    )
                )
            elif isinstance(each, RefundEvent):
                results.append(
                    self._run(
                        lambda uow, now, ev=each: self._refund_event(uow, chan.name, ev, now)  # type: ignore[misc]
                    )
                )
        return results, False

    def _answer(
        self, chan: PaymentChannel, inbox_id: int, results: list[ApplyResult], marked: bool
    ) -> HttpReply:
        outcome = _outcome(results)
        if not marked:
            self._run(lambda uow, now: self._mark(uow, inbox_id, outcome, now))
        if outcome.status == "rejected":
            return chan.refuse(ChannelRejection("unknown_payment", "unknown payment"))
        return chan.acknowledge(True)

    @staticmethod
    def _mark(uow: UnitOfWork, inbox_id: int, outcome: _Outcome, now: datetime) -> None:
        uow.payments.mark_inbox(
            inbox_id,
            status=outcome.status[:16],
            reason=outcome.reason,
            now=now,
            out_trade_no=None if outcome.out_trade_no is None else outcome.out_trade_no[:64],
            order_number=outcome.order_number,
        )

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
        """Process a stored notification again, exactly as received (its raw bytes). What
        was applied stays applied once; the replay gets an inbox record of its own."""
        self._check(actor, _P.PAYMENTS_REVIEW, f"inbox:{inbox_id}")
        entry = self.notification(inbox_id)
        return self.handle_callback(
            entry["channel"],
            entry["headers"],
            entry["body"],
            entry["remote_addr"],
            replay_of=inbox_id,
            received_at=entry["received_at"],
        )
