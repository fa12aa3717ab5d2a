"""The :class:`OrderCore` application object a host creates once and shares."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from ._config import Settings
from ._services import AuditService, CustomerService, OrderService, ProductService, utcnow
from .adapters.sqlalchemy import migrate
from .adapters.sqlalchemy.engine import make_engine
from .adapters.sqlalchemy.tables import Tables, build_tables
from .adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["OrderCore"]


class OrderCore:
    """ordercore bound to one database.

    ``OrderCore.from_url("sqlite:///shop.db")`` or ``OrderCore(engine, settings)`` with the
    host's own engine. Nothing connects until a service is called. ``clock`` returns the
    current UTC time (tests pass a fixed one).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.settings = settings or Settings(database_url=str(engine.url))
        self.clock = clock
        self.tables: Tables = build_tables(self.settings.table_prefix, self.settings.schema)
        self.customers = CustomerService(self)
        self.products = ProductService(self)
        self.orders = OrderService(self)
        self.audit = AuditService(self)

    @classmethod
    def from_url(
        cls, url: str, *, clock: Callable[[], datetime] = utcnow, **settings: object
    ) -> OrderCore:
        """Create an engine for ``url`` with ordercore's per-backend settings."""
        config = Settings(database_url=url, **settings)  # type: ignore[arg-type]
        return cls(make_engine(url), config, clock=clock)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], datetime] = utcnow
    ) -> OrderCore:
        return cls(make_engine(settings.database_url), settings, clock=clock)

    def upgrade(self) -> None:
        """Create or migrate ordercore's tables (the shipped Alembic migrations)."""
        migrate.upgrade(self.engine, prefix=self.settings.table_prefix, schema=self.settings.schema)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.tables, self.settings.audit_key)

    def close(self) -> None:
        self.engine.dispose()
