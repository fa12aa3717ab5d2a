"""What every use case is handed instead of the application object.

A service (``CustomerService``, ``PaymentService``, ...) is built with a :class:`Context`: the
unit-of-work factory, the clock, the settings, the authorizer, the channel registry, the plugin
hooks and the sibling use cases it calls. :class:`~ordercore.OrderCore` is the one object that
provides it, so a service never imports ``OrderCore`` and ``_core`` stays the only module that
knows every capability. The sibling services are named for type checking only: at run time
this module imports none of them.

:class:`Service` is the base of every use case: one unit of work per public method, permission
checks, and the record of a refused permission.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, TypeVar

from ordercore._actor import Actor
from ordercore._audit.chain import AuditEntry
from ordercore._errors import InvalidField, PermissionDenied, RiskBlocked

if TYPE_CHECKING:
    import pluggy

    from ordercore._audit.audit_service import AuditService
    from ordercore._config import Settings
    from ordercore._orders.order_service import OrderService
    from ordercore._orders.pricing import FeeRule
    from ordercore._payments.payment_service import PaymentService
    from ordercore._permissions import Authorizer
    from ordercore._refunds.refund_service import RefundService
    from ordercore._reports.stats_service import StatsService
    from ordercore._risk.risk_service import RiskService
    from ordercore.adapters.sqlalchemy.export import ExportReader
    from ordercore.adapters.sqlalchemy.stats import ReportingReader
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork
    from ordercore.channels import PaymentChannel

__all__ = ["MAX_ID", "Clock", "Context", "Service", "check_id", "check_limit", "utcnow"]

T = TypeVar("T")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock: the current time in UTC."""
    return datetime.now(timezone.utc)


def check_limit(limit: int) -> int:
    """A page size: a whole number from 1 to 1000."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidField("limit must be a whole number from 1 to 1000", field="limit")
    return limit


#: The largest id a database integer column holds (signed 64-bit).
MAX_ID = 2**63 - 1


def check_id(value: object, field: str) -> int:
    """An id as every table stores it: a whole number from 1 to :data:`MAX_ID`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(
            f"{field} must be a whole number (an id), not {type(value).__name__} {value!r}",
            field=field,
        )
    if not 1 <= value <= MAX_ID:
        raise InvalidField(f"{field} {value} is not an id (1 to {MAX_ID})", field=field)
    return value


class Context(Protocol):
    """What a use case may reach. ``OrderCore`` provides it."""

    settings: Settings
    authorizer: Authorizer
    clock: Clock
    orders: OrderService
    payments: PaymentService
    refunds: RefundService
    audit: AuditService
    risk: RiskService
    stats: StatsService

    def reporting_reader(self) -> ReportingReader:
        """A read-only transaction on the reporting engine (a replica, or the main one)."""
        ...

    def export_reader(self) -> ExportReader:
        """A read-only snapshot on the reporting engine, for an order export."""
        ...

    @property
    def plugins(self) -> pluggy.PluginManager: ...

    @property
    def channels(self) -> Mapping[str, PaymentChannel]: ...

    def channel(self, name: str) -> PaymentChannel: ...

    def fee_rule(self, channel: str) -> FeeRule | None: ...

    def unit_of_work(self) -> UnitOfWork: ...


class Service:
    """The base of every use case."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _uow(self) -> UnitOfWork:
        return self._ctx.unit_of_work()

    def _now(self) -> datetime:
        return self._ctx.clock()

    def _check(
        self, actor: Actor, permission: str, target: str, *, owner_id: int | None = None
    ) -> None:
        self._ctx.authorizer.check(actor, permission, owner_id=owner_id, target=target)

    def _run(self, work: Callable[[UnitOfWork, datetime], T]) -> T:
        """Run ``work`` in one unit of work and commit. A PermissionDenied or a RiskBlocked
        raised inside rolls the work back and is recorded, alone, in a transaction of its
        own (the refusal's audit record; the risk decision and its audit record)."""
        now = self._now()
        try:
            with self._uow() as uow:
                result = work(uow, now)
                uow.commit()
                return result
        except PermissionDenied as exc:
            self._record_refusal(exc, now)
            raise
        except RiskBlocked as exc:
            self._ctx.risk.record_refusal(exc, now)
            raise

    def _read(self, work: Callable[[UnitOfWork], T]) -> T:
        with self._uow() as uow:
            return work(uow)

    def _record_refusal(self, exc: PermissionDenied, now: datetime) -> None:
        actor = exc.context.get("actor")
        if not isinstance(actor, Actor):  # pragma: no cover - always set by Authorizer.check
            return
        with self._uow() as uow:
            uow.record(
                AuditEntry(
                    entity_kind="permission",
                    entity_id=str(exc.context.get("target") or "-")[:64],
                    action="permission.denied",
                    actor=actor,
                    at=now,
                    after={"permission": exc.context.get("permission")},
                    reason=str(exc),
                )
            )
            uow.commit()
