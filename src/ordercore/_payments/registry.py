"""The channel registry: which channels the plugins offer, which are configured, which are
enabled — and why one is not. A channel whose configuration is broken (a missing environment
variable, a key that does not load, a wrong value) is disabled alone, with its reason; every
other channel keeps working."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy
from attrs import frozen

from ordercore._config import Settings
from ordercore._errors import ConfigurationError, OrderCoreError
from ordercore._money import Money
from ordercore._refunds.domain import RefundFailure
from ordercore.channels import ChannelConfig, PaymentChannel

from .channel_config import channel_config

__all__ = ["BUILT_IN", "ChannelStatus", "build_channels"]

logger = logging.getLogger("ordercore.channels")

#: Channels that need no ``[channels.NAME]`` table to be enabled.
BUILT_IN = frozenset({"balance", "bank_transfer"})

_REFUND_FAILURES = frozenset(f.value for f in RefundFailure)


@frozen
class ChannelStatus:
    """One channel as ``ordercore channels list`` shows it. ``problem`` says why a channel
    that is offered or configured is not enabled (None when it is, or when it is switched off
    with ``enabled = false``)."""

    name: str
    #: the plugin that offers it; None when no installed plugin does
    plugin: str | None
    configured: bool
    enabled: bool
    methods: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    min_amount: Money | None = None
    max_amount: Money | None = None
    fee_percent: str | None = None
    fee_fixed: str | None = None
    fee_currency: str | None = None
    fee_borne_by: str = "merchant"
    problem: str | None = None


def _offered(pm: pluggy.PluginManager, settings: Settings) -> list[tuple[str, type[Any]]]:
    """``(plugin name, channel class)`` for every class a plugin registers, in hook order."""
    offered: list[tuple[str, type[Any]]] = []
    for impl in reversed(pm.hook.ordercore_register_channels.get_hookimpls()):
        arguments = {"settings": settings}
        try:
            classes: Any = impl.function(*(arguments[name] for name in impl.argnames))
        except Exception as exc:  # a plugin's bug must not take the other channels down
            logger.error("plugin %s failed to register its channels: %s", impl.plugin_name, exc)
            continue
        offered.extend((impl.plugin_name, cls) for cls in classes or ())
    return offered


def _class_problem(cls: type[Any]) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, PaymentChannel)):
        return f"{cls!r} is not a PaymentChannel"
    wrong = sorted(
        f"{code}: {value!r}"
        for code, value in cls.refund_failures.items()
        if value not in _REFUND_FAILURES
    )
    if wrong:
        return (
            f"refund_failures maps codes to unknown refund failures ({'; '.join(wrong)}); "
            f"use one of {', '.join(sorted(_REFUND_FAILURES))}"
        )
    return None


def _unknown_keys(cls: type[PaymentChannel], config: ChannelConfig) -> str | None:
    allowed = cls.option_names
    if allowed is None:
        return None
    unknown = sorted((set(config.options) | set(config.secrets)) - allowed)
    if not unknown:
        return None
    known = ", ".join(sorted(allowed)) or "none besides the common settings"
    return f"unknown setting(s) {', '.join(unknown)} (this channel takes {known})"


def build_channels(
    pm: pluggy.PluginManager, settings: Settings
) -> tuple[dict[str, PaymentChannel], dict[str, ChannelStatus]]:
    """Instantiate every enabled channel; describe every channel offered or configured."""
    tables: Mapping[str, Any] = settings.channels
    base = Path(settings.config_dir) if settings.config_dir else None
    channels: dict[str, PaymentChannel] = {}
    statuses: dict[str, ChannelStatus] = {}
    for plugin, cls in _offered(pm, settings):
        name = str(getattr(cls, "name", cls))
        if name in statuses:
            logger.error("plugin %s offers channel %s again: ignored", plugin, name)
            continue
        configured = name in tables
        status = ChannelStatus(name=name, plugin=plugin, configured=configured, enabled=False)
        problem = _class_problem(cls)
        config: ChannelConfig | None = None
        if problem is None and (configured or name in BUILT_IN):
            try:
                config = (
                    channel_config(name, tables[name], base_dir=base)
                    if configured
                    else ChannelConfig(name=name)
                )
                problem = _unknown_keys(cls, config)
                if problem is None and config.enabled:
                    channels[name] = cls(config)
            except OrderCoreError as exc:
                problem = str(exc)
            except Exception as exc:  # a channel's own bug in reading its settings
                problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            logger.info("channel %s is disabled: %s", name, problem)
            channels.pop(name, None)
        statuses[name] = _describe(status, cls, config, problem, name in channels)
    for name in tables:
        if name not in statuses:
            statuses[name] = ChannelStatus(
                name=name,
                plugin=None,
                configured=True,
                enabled=False,
                problem="no installed plugin provides it",
            )
    return channels, dict(sorted(statuses.items()))


def _describe(
    status: ChannelStatus,
    cls: type[Any],
    config: ChannelConfig | None,
    problem: str | None,
    enabled: bool,
) -> ChannelStatus:
    methods = tuple(sorted(getattr(cls, "methods", ())))
    currencies = tuple(sorted(getattr(cls, "currencies", ())))
    if config is None:
        return ChannelStatus(
            name=status.name,
            plugin=status.plugin,
            configured=status.configured,
            enabled=False,
            methods=methods,
            currencies=currencies,
            problem=problem or (None if status.configured else "not configured"),
        )
    return ChannelStatus(
        name=status.name,
        plugin=status.plugin,
        configured=status.configured,
        enabled=enabled,
        methods=methods,
        currencies=currencies,
        min_amount=config.min_amount,
        max_amount=config.max_amount,
        fee_percent=config.fee_percent,
        fee_fixed=config.fee_fixed,
        fee_currency=config.fee_currency,
        fee_borne_by=config.fee_borne_by,
        problem=problem,
    )


def disabled_error(name: str, status: ChannelStatus) -> ConfigurationError:
    """The error for using a channel that is offered or configured but not enabled."""
    why = status.problem or "it is switched off (enabled = false)"
    return ConfigurationError(f"channel {name} is disabled: {why}", channel=name)
