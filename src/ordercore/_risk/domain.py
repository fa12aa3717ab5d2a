"""Risk control values: the risk context a host passes, verdicts, the rules that fired, list
entries (with CIDR matching and expiry) and the ``[risk]`` settings. Pure: no I/O, no clock.

Precedence (docs/concepts/risk.md): ``block`` beats ``verify`` beats ``review`` beats
``allow``; a decision's verdict is the strongest verdict among the rules that fired, and
``allow`` when none did.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from attrs import field, frozen

from ordercore._errors import ConfigurationError, InvalidField
from ordercore._money import to_decimal

__all__ = [
    "BEHAVIOUR_RULES",
    "LIST_RULES",
    "VELOCITY_RULES",
    "Decision",
    "ListEntry",
    "ListKind",
    "RiskContext",
    "RiskSettings",
    "RuleHit",
    "Stage",
    "Verdict",
    "email_domain",
    "normalise_value",
    "strongest",
]


class Verdict(str, enum.Enum):
    """What a check decided. ``verify``: identity verification required before payment."""

    ALLOW = "allow"
    REVIEW = "review"
    VERIFY = "verify"
    BLOCK = "block"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.ALLOW: 0, Verdict.REVIEW: 1, Verdict.VERIFY: 2, Verdict.BLOCK: 3}


class Stage(str, enum.Enum):
    """Where a decision was taken."""

    ORDER = "order"  # order creation
    PAYMENT = "payment"  # payment start
    REVIEW = "review"  # an operator's review (approve, reject) or the review SLA

    def __str__(self) -> str:
        return self.value


class ListKind(str, enum.Enum):
    """What a block- or allow-list entry names."""

    CUSTOMER = "customer"
    EMAIL = "email"
    EMAIL_DOMAIN = "email_domain"
    IP = "ip"
    CIDR = "cidr"
    DEVICE = "device"
    PAYER = "payer"

    def __str__(self) -> str:
        return self.value


#: Rule families an allow-list entry can short-circuit (``allowlist_skips``).
LIST_RULES = "lists"
VELOCITY_RULES = "velocity"
BEHAVIOUR_RULES = "behaviour"
_SKIPPABLE = frozenset({LIST_RULES, VELOCITY_RULES, BEHAVIOUR_RULES, "limits", "identity"})


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def _text(value: object, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidField(f"{name} must be text of 1-{limit} characters", field=name)
    return value.strip()


def _ip(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise InvalidField(f"ip {value!r} is not an IPv4 or IPv6 address", field="ip") from None


def _device(value: object) -> str | None:
    return _text(value, "device_id", 128)


def _agent(value: object) -> str | None:
    return _text(value, "user_agent", 500)


def _email(value: object) -> str | None:
    return _text(value, "email", 254)


def _payer(value: object) -> str | None:
    return _text(value, "payer_account", 128)


@frozen
class RiskContext:
    """Who is behind an order or a payment, as the host's front end saw it.

    ``device_id`` is an opaque fingerprint the host computes (ordercore never fingerprints);
    ``payer_account`` is the account the channel reports paying from, when it does. Every
    field is optional; addresses are normalised (``2001:DB8::1`` → ``2001:db8::1``).
    """

    ip: str | None = field(default=None, converter=_ip)
    device_id: str | None = field(default=None, converter=_device)
    user_agent: str | None = field(default=None, converter=_agent)
    email: str | None = field(default=None, converter=_email)
    payer_account: str | None = field(default=None, converter=_payer)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "ip": self.ip,
            "device_id": self.device_id,
            "user_agent": self.user_agent,
            "email": self.email,
            "payer_account": self.payer_account,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskContext:
        return cls(
            ip=data.get("ip"),
            device_id=data.get("device_id"),
            user_agent=data.get("user_agent"),
            email=data.get("email"),
            payer_account=data.get("payer_account"),
        )


@frozen
class RuleHit:
    """One rule that fired: its name, its verdict, a sentence and the values it saw."""

    rule: str
    verdict: Verdict = field(converter=Verdict)
    reason: str
    values: Mapping[str, Any] = field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "values": dict(self.values),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleHit:
        return cls(
            rule=str(data["rule"]),
            verdict=Verdict(data["verdict"]),
            reason=str(data["reason"]),
            values=dict(data.get("values") or {}),
        )


def strongest(hits: Sequence[RuleHit]) -> Verdict:
    """The decision's verdict: the strongest among ``hits`` (``allow`` when empty)."""
    return max((h.verdict for h in hits), key=lambda v: v.rank, default=Verdict.ALLOW)


@frozen
class Decision:
    """A stored risk decision: the verdict, the rules behind it and the context it judged."""

    verdict: Verdict
    stage: Stage
    hits: tuple[RuleHit, ...]
    context: RiskContext
    at: datetime
    id: int | None = None
    order_number: str | None = None
    out_trade_no: str | None = None
    customer_id: int | None = None
    actor: str | None = None

    @property
    def deciding(self) -> RuleHit | None:
        """The first rule with the decision's verdict (the one a refusal names)."""
        return next((h for h in self.hits if h.verdict is self.verdict), None)

    def sentence(self) -> str:
        """``blocked: max_orders_per_ip_per_hour (2) reached for 203.0.113.7``."""
        hit = self.deciding
        word = {
            Verdict.BLOCK: "blocked",
            Verdict.VERIFY: "identity verification required",
            Verdict.REVIEW: "held for review",
            Verdict.ALLOW: "allowed",
        }[self.verdict]
        return f"{word}: {hit.reason}" if hit else word

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verdict": self.verdict.value,
            "stage": self.stage.value,
            "order": self.order_number,
            "out_trade_no": self.out_trade_no,
            "customer_id": self.customer_id,
            "rules": [h.as_dict() for h in self.hits],
            "context": self.context.as_dict(),
            "actor": self.actor,
            "at": self.at.isoformat(),
        }


def normalise_value(kind: ListKind, value: str) -> str:
    """A list entry's value in the form it is stored and compared in."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidField("a list entry needs a value", field="value")
    text = value.strip()
    if kind is ListKind.IP:
        result = _ip(text)
        assert result is not None
        return result
    if kind is ListKind.CIDR:
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise InvalidField(f"{text!r} is not a CIDR block", field="value") from None
    if kind is ListKind.CUSTOMER:
        if not text.isdigit():
            raise InvalidField("a customer entry is a customer id", field="value")
        return str(int(text))
    if kind in (ListKind.EMAIL, ListKind.EMAIL_DOMAIN):
        text = text.lower()
        if kind is ListKind.EMAIL and "@" not in text:
            raise InvalidField(f"{text!r} is not an e-mail address", field="value")
        if kind is ListKind.EMAIL_DOMAIN and "@" in text:
            raise InvalidField("an email_domain entry is a domain, not an address", field="value")
    if len(text) > 254:
        raise InvalidField("a list value is at most 254 characters", field="value")
    return text


@frozen
class ListEntry:
    """A block-list (``allow`` false) or allow-list entry."""

    kind: ListKind
    value: str
    allow: bool
    reason: str
    added_by: str
    created_at: datetime
    expires_at: datetime | None = None
    id: int | None = None

    def active(self, now: datetime) -> bool:
        """False once ``expires_at`` has come (an entry expiring now is expired)."""
        return self.expires_at is None or now < self.expires_at

    def matches(self, kind: ListKind, value: str) -> bool:
        if self.kind is ListKind.CIDR:
            if kind is not ListKind.IP:
                return False
            address = ipaddress.ip_address(value)
            network = ipaddress.ip_network(self.value)
            return address.version == network.version and address in network
        return self.kind is kind and self.value == value

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.kind.value,
            "value": self.value,
            "list": "allow" if self.allow else "block",
            "reason": self.reason,
            "added_by": self.added_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


# ------------------------------------------------------------------------------ settings
#: Velocity settings: (name, what is counted, window in hours); all optional whole numbers.
VELOCITY_SETTINGS: tuple[tuple[str, str, int], ...] = tuple(
    (f"max_orders_per_{subject}_per_{span}", subject, hours)
    for subject in ("customer", "ip", "device", "email_domain")
    for span, hours in (("hour", 1), ("day", 24))
)
_INT_SETTINGS = (
    *(name for name, _, _ in VELOCITY_SETTINGS),
    "max_failed_payments_per_customer_per_day",
    "max_failed_payments_per_ip_per_day",
    "max_customers_per_device",
    "max_customers_per_ip",
    "customers_window_days",
    "review_failed_attempts",
    "max_payers_per_customer",
    "max_customers_per_payer",
    "review_sla_hours",
)
_AMOUNT_SETTINGS = (
    "max_amount",
    "max_customer_daily_amount",
    "max_customer_monthly_amount",
    "review_over",
    "require_verification_over",
)


def _whole(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"[risk] {name} must be a whole number ≥ {minimum}")
    return value


def _amount(name: str, value: object) -> Decimal:
    try:
        amount = to_decimal(value, what=name)
    except Exception as exc:
        raise ConfigurationError(f'[risk] {name}: {exc} (write it as a string, "500.00")') from None
    if amount <= 0:
        raise ConfigurationError(f"[risk] {name} must be positive")
    return amount


@frozen
class RiskSettings:
    """The ``[risk]`` table. Every limit is off (None) unless set.

    Amounts are decimal strings compared in the order's currency. ``velocity_action`` and
    ``customers_action`` say what a velocity or a shared-device/IP hit does (``block`` or
    ``review``). ``allowlist_skips`` names the rule families an allow-list entry
    short-circuits. ``plugin_policy`` says what a plugin rule that raises or times out
    (``plugin_timeout_seconds``) does: ``fail_open`` (allow, recorded) or ``fail_closed``
    (block). ``unusual_amount_factor``: an order over this many times the customer's
    average paid order (with at least 3 paid) goes to review.
    """

    values: Mapping[str, int] = field(factory=dict)
    amounts: Mapping[str, Decimal] = field(factory=dict)
    require_verification_first_order: bool = False
    velocity_action: Verdict = Verdict.BLOCK
    customers_action: Verdict = Verdict.BLOCK
    allowlist_skips: frozenset[str] = frozenset({LIST_RULES, VELOCITY_RULES, BEHAVIOUR_RULES})
    plugin_policy: str = "fail_open"
    plugin_timeout_seconds: float = 2.0
    unusual_amount_factor: Decimal | None = None

    def limit(self, name: str) -> int | None:
        return self.values.get(name)

    def amount(self, name: str) -> Decimal | None:
        return self.amounts.get(name)

    @classmethod
    def build(cls, **settings: Any) -> RiskSettings:
        """The settings from keyword arguments named like the TOML keys (Python hosts)."""
        return cls.from_table(settings)

    @classmethod
    def from_table(cls, table: object) -> RiskSettings:
        if not isinstance(table, Mapping):
            raise ConfigurationError("[risk] must be a table")
        known = {
            *_INT_SETTINGS,
            *_AMOUNT_SETTINGS,
            "require_verification_first_order",
            "velocity_action",
            "customers_action",
            "allowlist_skips",
            "plugin_policy",
            "plugin_timeout_seconds",
            "unusual_amount_factor",
        }
        unknown = set(table) - known
        if unknown:
            raise ConfigurationError(f"unknown setting(s) in [risk]: {', '.join(sorted(unknown))}")
        values = {
            name: _whole(name, table[name]) for name in _INT_SETTINGS if table.get(name) is not None
        }
        amounts = {
            name: _amount(name, table[name])
            for name in _AMOUNT_SETTINGS
            if table.get(name) is not None
        }
        first = table.get("require_verification_first_order", False)
        if not isinstance(first, bool):
            raise ConfigurationError("[risk] require_verification_first_order must be true/false")
        actions = {}
        for name in ("velocity_action", "customers_action"):
            value = table.get(name, "block")
            if value not in ("block", "review"):
                raise ConfigurationError(f"[risk] {name} must be block or review")
            actions[name] = Verdict(value)
        skips = table.get("allowlist_skips", sorted(cls().allowlist_skips))
        if not isinstance(skips, (list, tuple)) or not set(skips) <= _SKIPPABLE:
            raise ConfigurationError(
                f"[risk] allowlist_skips lists rule families: {', '.join(sorted(_SKIPPABLE))}"
            )
        policy = table.get("plugin_policy", "fail_open")
        if policy not in ("fail_open", "fail_closed"):
            raise ConfigurationError("[risk] plugin_policy must be fail_open or fail_closed")
        timeout = table.get("plugin_timeout_seconds", 2.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError("[risk] plugin_timeout_seconds must be a positive number")
        factor = table.get("unusual_amount_factor")
        return cls(
            values=values,
            amounts=amounts,
            require_verification_first_order=first,
            velocity_action=actions["velocity_action"],
            customers_action=actions["customers_action"],
            allowlist_skips=frozenset(skips),
            plugin_policy=policy,
            plugin_timeout_seconds=float(timeout),
            unusual_amount_factor=None
            if factor is None
            else _amount("unusual_amount_factor", factor),
        )
