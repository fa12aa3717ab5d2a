"""The :class:`OrderCore` application object a host creates once and shares."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from ._config import Settings
from ._errors import ConfigurationError
from ._money import Money, to_decimal
from ._permissions import Authorizer
from ._pricing import FeeRule
from ._services import (
    AuditService,
    CouponService,
    CustomerService,
    OrderService,
    ProductService,
    WalletService,
    utcnow,
)
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
        authorizer: Authorizer | None = None,
    ) -> None:
        self.engine = engine
        self.authorizer = authorizer or Authorizer()
        self.settings = settings or Settings(database_url=str(engine.url))
        self.clock = clock
        self.tables: Tables = build_tables(self.settings.table_prefix, self.settings.schema)
        self.customers = CustomerService(self)
        self.products = ProductService(self)
        self.orders = OrderService(self)
        self.audit = AuditService(self)
        self.wallet = WalletService(self)
        self.coupons = CouponService(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        authorizer: Authorizer | None = None,
        **settings: Any,
    ) -> OrderCore:
        """Create an engine for ``url`` with ordercore's per-backend settings; keyword
        arguments are :class:`Settings` fields."""
        config = Settings(database_url=url, **settings)
        return cls(make_engine(url), config, clock=clock, authorizer=authorizer)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        authorizer: Authorizer | None = None,
    ) -> OrderCore:
        return cls(make_engine(settings.database_url), settings, clock=clock, authorizer=authorizer)

    def fee_rule(self, channel: str) -> FeeRule | None:
        """The fee rule configured for ``channel`` (``[channels.NAME]`` ``fee_percent``,
        ``fee_fixed``, ``fee_currency``, ``fee_borne_by``), or None when it has none."""
        config = self.settings.channels.get(channel)
        if config is None:
            raise ConfigurationError(f"channel {channel!r} is not configured", channel=channel)
        percent = config.get("fee_percent")
        fixed = config.get("fee_fixed")
        if percent is None and fixed is None:
            return None
        fixed_money = None
        if fixed is not None:
            currency = config.get("fee_currency")
            if not currency:
                raise ConfigurationError(f"channel {channel}: fee_fixed needs fee_currency")
            fixed_money = Money.of(str(fixed), str(currency))
        return FeeRule(
            percent=to_decimal(str(percent)) if percent is not None else to_decimal(0),
            fixed=fixed_money,
            borne_by=str(config.get("fee_borne_by", "merchant")),
        )

    def upgrade(self) -> None:
        """Create or migrate ordercore's tables (the shipped Alembic migrations)."""
        migrate.upgrade(self.engine, prefix=self.settings.table_prefix, schema=self.settings.schema)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.tables, self.settings.audit_key)

    def close(self) -> None:
        self.engine.dispose()
