"""The built-in risk rules, as pure functions of :class:`Facts` (what the risk service counted
in SQL and read from the lists) and :class:`~ordercore._risk.domain.RiskSettings`.

Evaluation order (each family adds the rules that fired, in this order): lists, velocity,
limits, identity, behaviour. An allow-list entry that matches short-circuits the families
named in ``allowlist_skips`` (by default lists, velocity and behaviour): they are not
evaluated at all. Plugin rules run after these (in the service). The verdict is the strongest
of all hits (:func:`~ordercore._risk.domain.strongest`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from ordercore._money import Money

from .domain import (
    BEHAVIOUR_RULES,
    LIST_RULES,
    VELOCITY_RULES,
    VELOCITY_SETTINGS,
    ListEntry,
    ListKind,
    RiskContext,
    RiskSettings,
    RuleHit,
    Stage,
    Verdict,
    email_domain,
)

__all__ = ["BEHAVIOUR_RULE_NAMES", "Facts", "RiskRule", "evaluate", "subjects"]

#: Rules whose hit also opens an anomaly of kind ``fraud``.
BEHAVIOUR_RULE_NAMES = frozenset(
    {
        "review_failed_attempts",
        "max_payers_per_customer",
        "max_customers_per_payer",
        "unusual_amount",
    }
)


@frozen
class Facts:
    """What a check judges. Counts are of what exists *before* this order or attempt."""

    stage: Stage
    customer_id: int
    verified: bool
    amount: Money
    context: RiskContext
    lists: tuple[ListEntry, ...] = ()
    #: existing orders per velocity setting name (``max_orders_per_ip_per_hour`` → 2)
    counts: Mapping[str, int] = field(factory=dict)
    spent_day: Money | None = None
    spent_month: Money | None = None
    prior_orders: int = 0
    failed_customer: int = 0
    failed_ip: int = 0
    failed_or_abandoned: int = 0
    #: distinct customers on the device / IP, counting this one
    customers_device: int = 0
    customers_ip: int = 0
    #: distinct payer accounts of this customer / customers of this payer, counting this one
    payers_customer: int = 0
    customers_payer: int = 0
    paid_count: int = 0
    average_paid: Money | None = None
    #: the order's review state at payment (``pending``, ``approved``...) and whether its
    #: creation asked for identity verification
    review_state: str | None = None
    needs_verification: bool = False
    order_number: str | None = None

    @property
    def email(self) -> str | None:
        return self.context.email.lower() if self.context.email else None


@runtime_checkable
class RiskRule(Protocol):
    """A rule a plugin provides (``ordercore_risk_rules``): called with the :class:`Facts`
    of each check, it returns a :class:`~ordercore.RuleHit` (its verdict, a sentence, the
    values it saw) or None when it has nothing to say. ``name`` names it in decisions;
    ``stages`` (optional: ``{"order", "payment"}``) limits where it runs. It runs inside the
    check's transaction, in a thread, for at most ``plugin_timeout_seconds``; a rule that
    raises or times out follows ``plugin_policy``."""

    name: str

    def __call__(self, facts: Facts) -> RuleHit | None: ...


#: What ``stages`` may name.
STAGES: Collection[str] = ("order", "payment")


def subjects(customer_id: int, context: RiskContext) -> dict[ListKind, str]:
    """The values of a check that lists can name."""
    found: dict[ListKind, str] = {ListKind.CUSTOMER: str(customer_id)}
    if context.email:
        found[ListKind.EMAIL] = context.email.lower()
        domain = email_domain(context.email)
        if domain:
            found[ListKind.EMAIL_DOMAIN] = domain
    if context.ip:
        found[ListKind.IP] = context.ip
    if context.device_id:
        found[ListKind.DEVICE] = context.device_id
    if context.payer_account:
        found[ListKind.PAYER] = context.payer_account
    return found


def _matches(facts: Facts, allow: bool) -> list[tuple[ListEntry, ListKind, str]]:
    found = []
    for kind, value in subjects(facts.customer_id, facts.context).items():
        for entry in facts.lists:
            if entry.allow is allow and entry.matches(kind, value):
                found.append((entry, kind, value))
    return found


def _list_hits(facts: Facts) -> list[RuleHit]:
    return [
        RuleHit(
            f"blocklist_{entry.kind.value}",
            Verdict.BLOCK,
            f"{kind.value} {value} is on the block list"
            + (f" ({entry.reason})" if entry.reason else ""),
            {"type": entry.kind.value, "entry": entry.value, "value": value, "id": entry.id},
        )
        for entry, kind, value in _matches(facts, allow=False)
    ]


def _velocity_hits(facts: Facts, settings: RiskSettings) -> list[RuleHit]:
    hits: list[RuleHit] = []
    action = settings.velocity_action
    subject_values = {
        "customer": str(facts.customer_id),
        "ip": facts.context.ip,
        "device": facts.context.device_id,
        "email_domain": email_domain(facts.context.email),
    }
    if facts.stage is Stage.ORDER:
        for name, subject, hours in VELOCITY_SETTINGS:
            limit = settings.limit(name)
            value = subject_values[subject]
            if limit is None or value is None:
                continue
            seen = facts.counts.get(name, 0)
            if seen >= limit:
                hits.append(
                    RuleHit(
                        name,
                        action,
                        f"{name} ({limit}) reached for {value}",
                        {"limit": limit, "seen": seen, subject: value, "hours": hours},
                    )
                )
        for name, seen, subject, value in (
            ("max_customers_per_device", facts.customers_device, "device", facts.context.device_id),
            ("max_customers_per_ip", facts.customers_ip, "ip", facts.context.ip),
        ):
            limit = settings.limit(name)
            if limit is not None and value is not None and seen > limit:
                hits.append(
                    RuleHit(
                        name,
                        settings.customers_action,
                        f"{name} ({limit}) reached for {value}: {seen} customers",
                        {"limit": limit, "customers": seen, subject: value},
                    )
                )
    else:
        for name, seen, who in (
            (
                "max_failed_payments_per_customer_per_day",
                facts.failed_customer,
                str(facts.customer_id),
            ),
            ("max_failed_payments_per_ip_per_day", facts.failed_ip, facts.context.ip),
        ):
            limit = settings.limit(name)
            if limit is not None and who is not None and seen >= limit:
                hits.append(
                    RuleHit(
                        name,
                        action,
                        f"{name} ({limit}) reached for {who}",
                        {"limit": limit, "failed": seen, "subject": who},
                    )
                )
    return hits


def _over(settings: RiskSettings, name: str, amount: Money) -> Money | None:
    """The setting ``name`` as money in ``amount``'s currency, if set."""
    value = settings.amount(name)
    return None if value is None else Money.of(value, amount.currency)


def _limit_hits(facts: Facts, settings: RiskSettings) -> list[RuleHit]:
    if facts.stage is not Stage.ORDER:
        return []
    hits: list[RuleHit] = []
    amount = facts.amount
    top = _over(settings, "max_amount", amount)
    if top is not None and amount > top:
        hits.append(
            RuleHit(
                "max_amount",
                Verdict.BLOCK,
                f"max_amount ({top}) exceeded: {amount}",
                {"limit": str(top), "amount": str(amount)},
            )
        )
    for name, spent, span in (
        ("max_customer_daily_amount", facts.spent_day, "day"),
        ("max_customer_monthly_amount", facts.spent_month, "month"),
    ):
        limit = _over(settings, name, amount)
        if limit is not None and spent is not None and spent + amount > limit:
            hits.append(
                RuleHit(
                    name,
                    Verdict.BLOCK,
                    f"{name} ({limit}) exceeded for customer {facts.customer_id}: "
                    f"{spent} already this {span}, {amount} more",
                    {"limit": str(limit), "spent": str(spent), "amount": str(amount)},
                )
            )
    review = _over(settings, "review_over", amount)
    if review is not None and amount > review:
        hits.append(
            RuleHit(
                "review_over",
                Verdict.REVIEW,
                f"review_over ({review}): {amount} needs a manual review",
                {"limit": str(review), "amount": str(amount)},
            )
        )
    return hits


def _identity_hits(facts: Facts, settings: RiskSettings) -> list[RuleHit]:
    if facts.verified:
        return []
    who = f"customer {facts.customer_id}"
    if facts.stage is Stage.PAYMENT:
        if not facts.needs_verification:
            return []
        return [
            RuleHit(
                "identity",
                Verdict.VERIFY,
                f"{who} must verify their identity before order {facts.order_number} is paid",
                {"customer_id": facts.customer_id},
            )
        ]
    hits = []
    over = _over(settings, "require_verification_over", facts.amount)
    if over is not None and facts.amount > over:
        hits.append(
            RuleHit(
                "require_verification_over",
                Verdict.VERIFY,
                f"require_verification_over ({over}): {who} is not verified",
                {"limit": str(over), "amount": str(facts.amount)},
            )
        )
    if settings.require_verification_first_order and facts.prior_orders == 0:
        hits.append(
            RuleHit(
                "require_verification_first_order",
                Verdict.VERIFY,
                f"require_verification_first_order: {who}'s first order needs a verified identity",
                {"customer_id": facts.customer_id},
            )
        )
    return hits


def _behaviour_hits(facts: Facts, settings: RiskSettings) -> list[RuleHit]:
    hits: list[RuleHit] = []
    if facts.stage is Stage.PAYMENT:
        for name, seen, what in (
            ("review_failed_attempts", facts.failed_or_abandoned, "failed or abandoned attempts"),
            ("max_payers_per_customer", facts.payers_customer, "payer accounts"),
            ("max_customers_per_payer", facts.customers_payer, "customers of one payer"),
        ):
            limit = settings.limit(name)
            if limit is None:
                continue
            if seen >= limit if name == "review_failed_attempts" else seen > limit:
                hits.append(
                    RuleHit(
                        name,
                        Verdict.REVIEW,
                        f"{name} ({limit}): {seen} {what} for customer {facts.customer_id}",
                        {"limit": limit, "seen": seen, "payer": facts.context.payer_account},
                    )
                )
    factor = settings.unusual_amount_factor
    if (
        facts.stage is Stage.ORDER
        and factor is not None
        and facts.average_paid is not None
        and facts.paid_count >= 3
        and facts.average_paid.currency == facts.amount.currency
        and facts.amount.amount > facts.average_paid.amount * factor
    ):
        hits.append(
            RuleHit(
                "unusual_amount",
                Verdict.REVIEW,
                f"unusual_amount: {facts.amount} is over {factor}× customer "
                f"{facts.customer_id}'s average paid order ({facts.average_paid})",
                {
                    "amount": str(facts.amount),
                    "average": str(facts.average_paid),
                    "factor": str(factor),
                    "paid_orders": facts.paid_count,
                },
            )
        )
    return hits


def _hold_hits(facts: Facts) -> list[RuleHit]:
    if facts.stage is not Stage.PAYMENT or facts.review_state != "pending":
        return []
    return [
        RuleHit(
            "manual_review",
            Verdict.REVIEW,
            f"order {facts.order_number} waits for a risk review (ordercore risk review)",
            {"order": facts.order_number},
        )
    ]


def evaluate(facts: Facts, settings: RiskSettings) -> list[RuleHit]:
    """The built-in rules that fire for ``facts``, in evaluation order."""
    allowed = _matches(facts, allow=True)
    skipped = settings.allowlist_skips if allowed else frozenset()
    hits = [
        RuleHit(
            f"allowlist_{entry.kind.value}",
            Verdict.ALLOW,
            f"{kind.value} {value} is on the allow list; skipped: {', '.join(sorted(skipped))}",
            {"type": entry.kind.value, "entry": entry.value, "value": value, "id": entry.id},
        )
        for entry, kind, value in allowed
    ]
    hits += _hold_hits(facts)
    if LIST_RULES not in skipped:
        hits += _list_hits(facts)
    if VELOCITY_RULES not in skipped:
        hits += _velocity_hits(facts, settings)
    if "limits" not in skipped:
        hits += _limit_hits(facts, settings)
    if "identity" not in skipped:
        hits += _identity_hits(facts, settings)
    if BEHAVIOUR_RULES not in skipped:
        hits += _behaviour_hits(facts, settings)
    return hits
