"""The :class:`OrderCore` application object a host creates once and shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pluggy
from sqlalchemy import Engine

from ._anomalies.anomaly_service import AnomalyService
from ._audit.audit_service import AuditService
from ._config import Settings
from ._context import utcnow
from ._errors import ChannelError, ConfigurationError
from ._money import Money, to_decimal
from ._orders.coupon_service import CouponService
from ._orders.customer_service import CustomerService
from ._orders.order_service import OrderService
from ._orders.pricing import FeeRule
from ._orders.product_service import ProductService
from ._orders.wallet_service import WalletService
from ._payments.channel_config import channel_config
from ._payments.payment_service import PaymentService
from ._payments.registry import ChannelStatus, build_channels, disabled_error
from ._permissions import Authorizer
from ._plugins import make_plugin_manager
from ._refunds.after_sales_service import AfterSalesService
from ._refunds.domain import RefundFailure
from ._refunds.refund_service import RefundService
from ._reports.export_service import ExportService
from ._reports.stats_service import StatsService
from ._risk.risk_service import RiskService
from .adapters.sqlalchemy import migrate
from .adapters.sqlalchemy.engine import make_engine
from .adapters.sqlalchemy.export import ExportReader
from .adapters.sqlalchemy.stats import ReportingReader
from .adapters.sqlalchemy.tables import Tables, build_tables
from .adapters.sqlalchemy.uow import UnitOfWork
from .channels import PaymentChannel

__all__ = ["OrderCore"]


_REFUND_FAILURES = frozenset(f.value for f in RefundFailure)


def _pool(settings: Settings) -> dict[str, Any]:
    """The connection-pool arguments of ``make_engine`` from ``settings``."""
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.pool_max_overflow,
        "pool_timeout": settings.pool_timeout_seconds,
    }


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
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
    ) -> None:
        self.engine = engine
        self.authorizer = authorizer or Authorizer()
        self._plugin_args = (tuple(plugins), load_entry_points)
        self._plugins: pluggy.PluginManager | None = None
        self._channels: dict[str, PaymentChannel] | None = None
        self._statuses: dict[str, ChannelStatus] = {}
        self._reporting_engine: Engine | None = None
        self.settings = settings or Settings(database_url=str(engine.url))
        self.clock = clock
        self.tables: Tables = build_tables(self.settings.table_prefix, self.settings.schema)
        self.customers = CustomerService(self)
        self.products = ProductService(self)
        self.orders = OrderService(self)
        self.audit = AuditService(self)
        self.wallet = WalletService(self)
        self.coupons = CouponService(self)
        self.payments = PaymentService(self)
        self.anomalies = AnomalyService(self)
        self.refunds = RefundService(self)
        self.after_sales = AfterSalesService(self)
        self.risk = RiskService(self)
        self.export = ExportService(self)
        self.stats = StatsService(self)

    # -- plugins and channels -------------------------------------------------------------
    @property
    def plugins(self) -> pluggy.PluginManager:
        """The plugin manager (built on first use: built-ins, given plugins, entry points)."""
        if self._plugins is None:
            extra, load = self._plugin_args
            self._plugins = make_plugin_manager(extra, load_entry_points=load)
        return self._plugins

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module (hook implementations) at run time."""
        self.plugins.register(plugin, name=name)
        self.plugins.check_pending()
        self._channels = None
        self._statuses = {}

    @property
    def channels(self) -> Mapping[str, PaymentChannel]:
        """Enabled channels by name: every class a plugin registers whose channel is
        configured (``balance`` and ``bank_transfer`` need no configuration). A channel whose
        configuration is broken is left out alone: :meth:`channel_statuses` says why."""
        if self._channels is None:
            self._channels, self._statuses = build_channels(self.plugins, self.settings)
        return self._channels

    def channel_statuses(self) -> list[ChannelStatus]:
        """Every channel a plugin offers or the settings configure: enabled or not, its
        methods, limits and fees, and why it is off (``ordercore channels list``)."""
        _ = self.channels  # building the channels builds their statuses
        return list(self._statuses.values())

    def channel(self, name: str) -> PaymentChannel:
        """The enabled channel ``name``. ConfigurationError when it is configured but broken
        (with the reason), ChannelError when it is unknown or not configured."""
        try:
            return self.channels[name]
        except KeyError:
            pass
        status = self._statuses.get(name)
        if status is not None and status.configured and status.plugin is not None:
            raise disabled_error(name, status)
        if status is not None and status.configured:
            why = "it is configured but no installed plugin provides it"
        else:
            why = "it is not configured (add a [channels.NAME] table)"
        raise ChannelError(
            f"no payment channel {name!r}: {why}; available: "
            f"{', '.join(sorted(self.channels)) or 'none'}",
            channel=name,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        authorizer: Authorizer | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
        **settings: Any,
    ) -> OrderCore:
        """Create an engine for ``url`` with ordercore's per-backend settings; keyword
        arguments are :class:`Settings` fields."""
        config = Settings(database_url=url, **settings)
        return cls(
            make_engine(url, **_pool(config)),
            config,
            clock=clock,
            authorizer=authorizer,
            plugins=plugins,
            load_entry_points=load_entry_points,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        authorizer: Authorizer | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = True,
    ) -> OrderCore:
        return cls(
            make_engine(settings.database_url, **_pool(settings)),
            settings,
            clock=clock,
            authorizer=authorizer,
            plugins=plugins,
            load_entry_points=load_entry_points,
        )

    def fee_rule(self, channel: str) -> FeeRule | None:
        """The fee rule configured for ``channel`` (``fee_percent``, ``fee_fixed`` with
        ``fee_currency``, ``fee_borne_by``), or None when it has none."""
        table = self.settings.channels.get(channel)
        base = Path(self.settings.config_dir) if self.settings.config_dir else None
        config = None if table is None else channel_config(channel, table, base_dir=base)
        if config is None:
            raise ConfigurationError(f"channel {channel!r} is not configured", channel=channel)
        if config.fee_percent is None and config.fee_fixed is None:
            return None
        fixed = None
        if config.fee_fixed is not None:
            if not config.fee_currency:
                raise ConfigurationError(f"channel {channel}: fee_fixed needs fee_currency")
            fixed = Money.of(config.fee_fixed, config.fee_currency)
        return FeeRule(
            percent=to_decimal(config.fee_percent or "0"), fixed=fixed, borne_by=config.fee_borne_by
        )

    def upgrade(self) -> None:
        """Create or migrate ordercore's tables (the shipped Alembic migrations)."""
        migrate.upgrade(self.engine, prefix=self.settings.table_prefix, schema=self.settings.schema)

    @property
    def reporting_engine(self) -> Engine:
        """The engine statistics and exports read: ``reporting_database_url`` (a read
        replica; created on first use) or, when it is not set, the main engine."""
        url = self.settings.reporting_database_url
        if not url:
            return self.engine
        if self._reporting_engine is None:
            self._reporting_engine = make_engine(url)
        return self._reporting_engine

    def reporting_reader(self) -> ReportingReader:
        """A read-only transaction on :attr:`reporting_engine` (statistics, exports)."""
        return ReportingReader(self.reporting_engine, self.tables)

    def export_reader(self) -> ExportReader:
        """A read-only snapshot on :attr:`reporting_engine` for an order export."""
        return ExportReader(self.reporting_engine, self.tables)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.tables, self.settings.audit_key)

    def close(self) -> None:
        self.engine.dispose()
        if self._reporting_engine is not None:
            self._reporting_engine.dispose()
