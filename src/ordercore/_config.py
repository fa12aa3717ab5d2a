"""Settings: from Python, from a TOML file (``--config`` / ``ORDERCORE_CONFIG``) and the
environment. Secrets are never part of ``repr``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import field, frozen

from ._errors import ConfigurationError, InvalidAmount
from ._money import to_decimal
from ._refunds.domain import AutoApproval

if sys.version_info >= (3, 11):  # pragma: no cover
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["DEFAULT_DATABASE_URL", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///ordercore.db"


def _check_key(_instance: object, _attribute: object, value: bytes | None) -> None:
    if value is not None and (not isinstance(value, bytes) or not value):
        raise ConfigurationError("audit_key must be non-empty bytes (or None for plain SHA-256)")


def _check_zone(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError("timezone must be an IANA time zone name, e.g. Asia/Shanghai")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"timezone {value!r} is not an IANA time zone name (e.g. Asia/Shanghai, UTC)"
        ) from None


@frozen
class Settings:
    """Everything ordercore needs to run.

    ``audit_key`` (bytes), when set, turns the audit chain's SHA-256 into HMAC-SHA-256.
    ``table_prefix`` and ``schema`` place ordercore's tables inside a host application's
    database. ``payment_timeout_minutes`` is the default payment deadline of new orders.
    ``reporting_database_url`` is where statistics and exports read (a read replica of the
    same database); None (the default) reads the main database.
    """

    database_url: str = DEFAULT_DATABASE_URL
    table_prefix: str = ""
    schema: str | None = None
    audit_key: bytes | None = field(default=None, repr=False, validator=_check_key)
    timezone: str = field(default="UTC", validator=_check_zone)
    payment_timeout_minutes: int = 15
    points_rate: Decimal | None = None
    channels: Mapping[str, Mapping[str, Any]] = field(factory=dict, repr=False)
    #: rules for approving refund requests without an operator; None (the default) = off
    refund_auto_approve: AutoApproval | None = None
    reporting_database_url: str | None = field(default=None, repr=False)
    #: the folder of the configuration file: relative ``*_file`` paths are read from there
    config_dir: str | None = None

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        database_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read ``path`` (a TOML file, optional), then let the environment and the explicit
        ``database_url`` override it: argument > ``ORDERCORE_DATABASE_URL`` > file > default."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        config_path = path or env.get("ORDERCORE_CONFIG")
        if config_path:
            try:
                with open(config_path, "rb") as fh:
                    data = tomllib.load(fh)
            except FileNotFoundError:
                raise ConfigurationError(f"config file {config_path} does not exist") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigurationError(
                    f"config file {config_path} is not valid TOML: {exc}"
                ) from None
        section = data.get("ordercore", data)
        known = {
            "database_url",
            "table_prefix",
            "schema",
            "audit_key",
            "timezone",
            "payment_timeout_minutes",
            "points_rate",
            "channels",
            "refunds",
            "reporting_database_url",
        }
        unknown = set(section) - known - {"ordercore"}
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) in {config_path}: {', '.join(sorted(unknown))}"
            )
        url = database_url or env.get("ORDERCORE_DATABASE_URL") or section.get("database_url")
        key_text = env.get("ORDERCORE_AUDIT_KEY") or section.get("audit_key")
        if key_text is not None and not isinstance(key_text, str):
            raise ConfigurationError("audit_key must be text")
        reporting = env.get("ORDERCORE_REPORTING_DATABASE_URL") or section.get(
            "reporting_database_url"
        )
        if reporting is not None and (not isinstance(reporting, str) or not reporting.strip()):
            raise ConfigurationError("reporting_database_url must be a database URL (text)")
        timeout = section.get("payment_timeout_minutes", 15)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigurationError("payment_timeout_minutes must be a whole number ≥ 1")
        return cls(
            database_url=url or DEFAULT_DATABASE_URL,
            table_prefix=str(section.get("table_prefix", "")),
            schema=section.get("schema"),
            audit_key=key_text.encode("utf-8") if key_text else None,
            timezone=str(section.get("timezone", "UTC")),
            payment_timeout_minutes=timeout,
            points_rate=_points_rate(section.get("points_rate")),
            channels=dict(section.get("channels", {})),
            refund_auto_approve=_auto_approve(section.get("refunds")),
            reporting_database_url=reporting,
            config_dir=str(Path(config_path).resolve().parent) if config_path else None,
        )


def _auto_approve(value: object) -> AutoApproval | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"auto_approve"}:
        raise ConfigurationError("[refunds] takes one table: [refunds.auto_approve]")
    table = value.get("auto_approve")
    return None if table is None else AutoApproval.from_table(table)


def _points_rate(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        rate = to_decimal(value, what="points_rate")
    except InvalidAmount as exc:
        raise ConfigurationError(
            f'points_rate: {exc} (write it as a string, e.g. "0.01")'
        ) from None
    if rate <= 0:
        raise ConfigurationError("points_rate must be positive")
    return rate
