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
from ._risk.domain import RiskSettings

if sys.version_info >= (3, 11):  # pragma: no cover
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["DEFAULT_DATABASE_URL", "REDACTED_HEADERS", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///ordercore.db"
#: Request headers the inbox always stores as ``[redacted]`` (``redact_headers`` adds more).
REDACTED_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "set-cookie",
        "x-access-token",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-webhook-secret",
    }
)
#: The whole-number settings: name -> (default, smallest allowed value).
_COUNTS = {
    "pool_size": (5, 1),
    "pool_max_overflow": (10, 0),
    "pool_timeout_seconds": (5, 1),
    "callback_grace_seconds": (300, 1),
    "job_lease_seconds": (30, 1),
    "job_claim_size": (10, 1),
}


def _redact_names(value: object) -> frozenset[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError("redact_headers must be a list of header names")
    names = set()
    for name in value:
        if not isinstance(name, str) or not name.strip() or any(c in name for c in " :\r\n"):
            raise ConfigurationError(f"redact_headers: {name!r} is not a header name")
        names.add(name.strip().lower())
    return frozenset(names)


def _check_count(instance: object, attribute: Any, value: object) -> None:
    low = _COUNTS[attribute.name][1]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(f"{attribute.name} must be a whole number ≥ {low}")


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

    Callback intake and jobs: ``pool_size`` + ``pool_max_overflow`` database connections
    (``pool_timeout_seconds`` to wait for one) bound ``ordercore serve``'s worker threads;
    ``redact_headers`` adds header names the inbox stores as ``[redacted]`` to
    :data:`REDACTED_HEADERS`; a notification still ``received`` ``callback_grace_seconds``
    after it arrived is taken by the job runner (its process stopped); job runners claim
    ``job_claim_size`` items at a time under a lease of ``job_lease_seconds``.
    ``pdf_font`` is the TrueType font (.ttf/.ttc) PDF exports and reports draw with, for
    Chinese text (``ORDERCORE_PDF_FONT``; see docs/concepts/export.md).
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
    pdf_font: str | None = None
    channels: Mapping[str, Mapping[str, Any]] = field(factory=dict, repr=False)
    #: rules for approving refund requests without an operator; None (the default) = off
    refund_auto_approve: AutoApproval | None = None
    #: the folder of the configuration file: relative ``*_file`` paths are read from there
    config_dir: str | None = None
    #: risk control: the ``[risk]`` table (every rule off unless set)
    risk: RiskSettings = field(factory=RiskSettings)
    pool_size: int = field(default=5, validator=_check_count)
    pool_max_overflow: int = field(default=10, validator=_check_count)
    pool_timeout_seconds: int = field(default=5, validator=_check_count)
    redact_headers: frozenset[str] = field(default=frozenset(), converter=_redact_names)
    callback_grace_seconds: int = field(default=300, validator=_check_count)
    job_lease_seconds: int = field(default=30, validator=_check_count)
    job_claim_size: int = field(default=10, validator=_check_count)

    reporting_database_url: str | None = field(default=None, repr=False)

    @property
    def redacted_headers(self) -> frozenset[str]:
        """Every header name the inbox redacts: the built-in ones and ``redact_headers``."""
        return REDACTED_HEADERS | self.redact_headers

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
            "pdf_font",
            "channels",
            "refunds",
            "risk",
            "redact_headers",
            *_COUNTS,
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
        pdf_font = env.get("ORDERCORE_PDF_FONT") or section.get("pdf_font")
        if pdf_font is not None and (not isinstance(pdf_font, str) or not pdf_font.strip()):
            raise ConfigurationError("pdf_font must be the path of a .ttf/.ttc font file")
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
            pdf_font=pdf_font,
            channels=dict(section.get("channels", {})),
            refund_auto_approve=_auto_approve(section.get("refunds")),
            config_dir=str(Path(config_path).resolve().parent) if config_path else None,
            risk=RiskSettings.from_table(section.get("risk", {})),
            redact_headers=section.get("redact_headers", ()),
            **{name: section.get(name, default) for name, (default, _) in _COUNTS.items()},
            reporting_database_url=reporting,
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
