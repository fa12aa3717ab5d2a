"""Building :class:`~ordercore.channels.ChannelConfig` from ``[channels.NAME]`` tables.

Keys ordercore knows (``enabled``, ``notify_url``, ``min_amount``/``max_amount`` with
``currency``, ``fee_percent``, ``fee_fixed``, ``fee_currency``, ``fee_borne_by``,
``refund_deadline_days``) become fields; a key ending in ``_file`` is read as key material
(a PEM file) and one ending in ``_env`` names an environment variable holding it — both land
in ``secrets`` under the name without the suffix, never in ``repr`` or logs; everything else
is passed to the channel in ``options``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ordercore._errors import ConfigurationError, OrderCoreError
from ordercore._money import Money
from ordercore.channels import ChannelConfig, Secret

__all__ = ["channel_config", "channel_configs"]

_FIELDS = {
    "enabled",
    "notify_url",
    "min_amount",
    "max_amount",
    "currency",
    "fee_percent",
    "fee_fixed",
    "fee_currency",
    "fee_borne_by",
    "refund_deadline_days",
}


def channel_config(
    name: str, table: Mapping[str, Any] | ChannelConfig, *, base_dir: Path | None = None
) -> ChannelConfig:
    """The channel's configuration from its table. A relative ``*_file`` path is read relative
    to ``base_dir`` (the configuration file's folder) when given."""
    if isinstance(table, ChannelConfig):
        return table
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"[channels.{name}] must be a table")
    options: dict[str, Any] = {}
    secrets: dict[str, Secret] = {}
    for key, value in table.items():
        if key in _FIELDS:
            continue
        if key.endswith("_file"):
            path = Path(str(value)).expanduser()
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            try:
                secrets[key[: -len("_file")]] = Secret(path.read_bytes())
            except OSError as exc:
                raise ConfigurationError(
                    f"[channels.{name}] {key}: cannot read {path} ({exc.strerror})", channel=name
                ) from None
        elif key.endswith("_env"):
            env_value = os.environ.get(str(value))
            if env_value is None:
                raise ConfigurationError(
                    f"[channels.{name}] {key}: environment variable {value} is not set",
                    channel=name,
                )
            secrets[key[: -len("_env")]] = Secret(env_value.encode())
        else:
            options[key] = value
    currency = table.get("currency")

    def limit(key: str) -> Money | None:
        value = table.get(key)
        if value is None:
            return None
        if not currency:
            raise ConfigurationError(f"[channels.{name}] {key} needs `currency`", channel=name)
        try:
            return Money.of(str(value), str(currency))
        except OrderCoreError as exc:
            raise ConfigurationError(f"[channels.{name}] {key}: {exc}", channel=name) from None

    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigurationError(
            f"[channels.{name}] enabled must be true or false, not {enabled!r}", channel=name
        )
    low, high = limit("min_amount"), limit("max_amount")
    if low is not None and low.amount < 0:
        raise ConfigurationError(f"[channels.{name}] min_amount must be ≥ 0", channel=name)
    if high is not None and high.amount <= 0:
        raise ConfigurationError(f"[channels.{name}] max_amount must be > 0", channel=name)
    if low is not None and high is not None and low > high:
        raise ConfigurationError(
            f"[channels.{name}] min_amount ({low}) is above max_amount ({high})", channel=name
        )
    deadline = table.get("refund_deadline_days")
    if deadline is not None and (
        not isinstance(deadline, int) or isinstance(deadline, bool) or deadline < 0
    ):
        raise ConfigurationError(f"[channels.{name}] refund_deadline_days must be days ≥ 0")
    borne_by = str(table.get("fee_borne_by", "merchant"))
    if borne_by not in ("merchant", "customer"):
        raise ConfigurationError(f"[channels.{name}] fee_borne_by must be merchant or customer")

    def text(key: str) -> str | None:
        value = table.get(key)
        return None if value is None else str(value)

    return ChannelConfig(
        name=name,
        enabled=enabled,
        notify_url=text("notify_url"),
        min_amount=low,
        max_amount=high,
        fee_percent=text("fee_percent"),
        fee_fixed=text("fee_fixed"),
        fee_currency=text("fee_currency"),
        fee_borne_by=borne_by,
        refund_deadline_days=deadline,
        options=options,
        secrets=secrets,
    )


def channel_configs(
    tables: Mapping[str, Any], *, base_dir: Path | None = None
) -> dict[str, ChannelConfig]:
    return {name: channel_config(name, table, base_dir=base_dir) for name, table in tables.items()}
