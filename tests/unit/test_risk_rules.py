"""The built-in risk rules at their boundaries (N allowed, N+1 refused), list entries (CIDR
on IPv4 and IPv6, expiry), precedence, allow-list short-circuits and the ``[risk]`` settings.
Pure: the facts are built by hand, as the risk service builds them from its SQL counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from attrs import evolve

from ordercore import (
    ConfigurationError,
    InvalidField,
    Money,
    RiskContext,
    RiskSettings,
    RuleHit,
    Settings,
    Verdict,
)
from ordercore._risk.domain import (
    Decision,
    ListEntry,
    ListKind,
    Stage,
    normalise_value,
    strongest,
)
from ordercore._risk.rules import Facts, evaluate

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc)
IP = "203.0.113.7"


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def facts(stage: Stage = Stage.ORDER, **changes: Any) -> Facts:
    base = Facts(
        stage=stage,
        customer_id=7,
        verified=False,
        amount=cny("30.00"),
        context=RiskContext(ip=IP, device_id="dev-1", email="li@example.com"),
        prior_orders=1,
    )
    return evolve(base, **changes)


def rules(hits: list[RuleHit]) -> list[tuple[str, Verdict]]:
    return [(h.rule, h.verdict) for h in hits]


def entry(kind: ListKind, value: str, *, allow: bool = False, **kw: Any) -> ListEntry:
    return ListEntry(
        kind=kind,
        value=normalise_value(kind, value),
        allow=allow,
        reason="test",
        added_by="operator:alice",
        created_at=NOW,
        **kw,
    )


# ------------------------------------------------------------------------------ velocity
VELOCITY = [
    (f"max_orders_per_{subject}_per_{span}", subject)
    for subject in ("customer", "ip", "device", "email_domain")
    for span in ("hour", "day")
]


@pytest.mark.parametrize(("name", "subject"), VELOCITY)
@pytest.mark.parametrize("limit", [1, 3])
def test_order_velocity_boundary(name: str, subject: str, limit: int) -> None:
    settings = RiskSettings.build(**{name: limit})
    # N orders exist before this one's predecessors: the N-th order (N-1 before it) passes
    assert evaluate(facts(counts={name: limit - 1}), settings) == []
    (hit,) = evaluate(facts(counts={name: limit}), settings)
    assert (hit.rule, hit.verdict) == (name, Verdict.BLOCK)
    value = {"customer": "7", "ip": IP, "device": "dev-1", "email_domain": "example.com"}
    assert hit.reason == f"{name} ({limit}) reached for {value[subject]}"
    assert hit.values["seen"] == limit


def test_velocity_without_the_subject_does_not_fire() -> None:
    settings = RiskSettings.build(max_orders_per_ip_per_hour=1)
    assert evaluate(facts(context=RiskContext(), counts={}), settings) == []


def test_velocity_action_review_holds_instead_of_blocking() -> None:
    settings = RiskSettings.build(max_orders_per_ip_per_day=1, velocity_action="review")
    hits = evaluate(facts(counts={"max_orders_per_ip_per_day": 1}), settings)
    assert rules(hits) == [("max_orders_per_ip_per_day", Verdict.REVIEW)]


@pytest.mark.parametrize(
    ("name", "field"),
    [("max_customers_per_device", "customers_device"), ("max_customers_per_ip", "customers_ip")],
)
def test_customers_per_device_and_ip(name: str, field: str) -> None:
    settings = RiskSettings.build(**{name: 1})
    assert evaluate(facts(**{field: 1}), settings) == []
    assert rules(evaluate(facts(**{field: 2}), settings)) == [(name, Verdict.BLOCK)]
    held = RiskSettings.build(**{name: 1}, customers_action="review")
    assert rules(evaluate(facts(**{field: 2}), held)) == [(name, Verdict.REVIEW)]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("max_failed_payments_per_customer_per_day", "failed_customer"),
        ("max_failed_payments_per_ip_per_day", "failed_ip"),
    ],
)
def test_failed_payments_boundary(name: str, field: str) -> None:
    settings = RiskSettings.build(**{name: 3})
    assert evaluate(facts(Stage.PAYMENT, **{field: 2}), settings) == []
    assert rules(evaluate(facts(Stage.PAYMENT, **{field: 3}), settings)) == [(name, Verdict.BLOCK)]
    # payment counts are not order rules
    assert evaluate(facts(Stage.ORDER, **{field: 9}), settings) == []


# -------------------------------------------------------------------------------- limits
def test_max_amount_boundary() -> None:
    settings = RiskSettings.build(max_amount="100.00")
    assert evaluate(facts(amount=cny("100.00")), settings) == []
    (hit,) = evaluate(facts(amount=cny("100.01")), settings)
    assert (hit.rule, hit.verdict) == ("max_amount", Verdict.BLOCK)
    assert hit.values == {"limit": "100.00 CNY", "amount": "100.01 CNY"}
    # in another currency the setting is read in that currency
    assert rules(evaluate(facts(amount=Money.of("101", "JPY")), settings)) == [
        ("max_amount", Verdict.BLOCK)
    ]


@pytest.mark.parametrize(
    ("name", "field"),
    [("max_customer_daily_amount", "spent_day"), ("max_customer_monthly_amount", "spent_month")],
)
def test_customer_amount_limits(name: str, field: str) -> None:
    settings = RiskSettings.build(**{name: "100.00"})
    ok = facts(amount=cny("30.00"), **{field: cny("70.00")})
    assert evaluate(ok, settings) == []
    over = facts(amount=cny("30.00"), **{field: cny("70.01")})
    assert rules(evaluate(over, settings)) == [(name, Verdict.BLOCK)]


def test_review_over_is_strict() -> None:
    settings = RiskSettings.build(review_over="500.00")
    assert evaluate(facts(amount=cny("500.00")), settings) == []
    assert rules(evaluate(facts(amount=cny("500.01")), settings)) == [
        ("review_over", Verdict.REVIEW)
    ]


# ------------------------------------------------------------------------------ identity
def test_require_verification_over_is_strict_and_spares_verified_customers() -> None:
    settings = RiskSettings.build(require_verification_over="200.00")
    assert evaluate(facts(amount=cny("200.00")), settings) == []
    assert rules(evaluate(facts(amount=cny("200.01")), settings)) == [
        ("require_verification_over", Verdict.VERIFY)
    ]
    assert evaluate(facts(amount=cny("999.00"), verified=True), settings) == []


def test_first_order_verification_is_off_by_default() -> None:
    assert evaluate(facts(prior_orders=0), RiskSettings()) == []
    settings = RiskSettings.build(require_verification_first_order=True)
    assert rules(evaluate(facts(prior_orders=0), settings)) == [
        ("require_verification_first_order", Verdict.VERIFY)
    ]
    assert evaluate(facts(prior_orders=1), settings) == []


def test_payment_of_an_order_that_needs_verification() -> None:
    held = facts(Stage.PAYMENT, needs_verification=True, order_number="N1")
    assert rules(evaluate(held, RiskSettings())) == [("identity", Verdict.VERIFY)]
    assert evaluate(evolve(held, verified=True), RiskSettings()) == []


def test_payment_of_an_order_waiting_for_review() -> None:
    held = facts(Stage.PAYMENT, review_state="pending", order_number="N1")
    assert rules(evaluate(held, RiskSettings())) == [("manual_review", Verdict.REVIEW)]
    assert evaluate(evolve(held, review_state="approved"), RiskSettings()) == []


# ----------------------------------------------------------------------------- behaviour
def test_failed_or_abandoned_attempts_raise_review() -> None:
    settings = RiskSettings.build(review_failed_attempts=3)
    assert evaluate(facts(Stage.PAYMENT, failed_or_abandoned=2), settings) == []
    assert rules(evaluate(facts(Stage.PAYMENT, failed_or_abandoned=3), settings)) == [
        ("review_failed_attempts", Verdict.REVIEW)
    ]


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("max_payers_per_customer", "payers_customer"),
        ("max_customers_per_payer", "customers_payer"),
    ],
)
def test_payer_accounts(name: str, field: str) -> None:
    settings = RiskSettings.build(**{name: 2})
    assert evaluate(facts(Stage.PAYMENT, **{field: 2}), settings) == []
    assert rules(evaluate(facts(Stage.PAYMENT, **{field: 3}), settings)) == [(name, Verdict.REVIEW)]


def test_unusual_amount() -> None:
    settings = RiskSettings.build(unusual_amount_factor="5")
    usual = facts(amount=cny("150.00"), paid_count=3, average_paid=cny("30.00"))
    assert evaluate(usual, settings) == []
    odd = evolve(usual, amount=cny("150.01"))
    assert rules(evaluate(odd, settings)) == [("unusual_amount", Verdict.REVIEW)]
    # two paid orders are not a habit yet
    assert evaluate(evolve(odd, paid_count=2), settings) == []


# --------------------------------------------------------------------------------- lists
@pytest.mark.parametrize(
    ("kind", "value", "context"),
    [
        (ListKind.IP, IP, RiskContext(ip=IP)),
        (ListKind.DEVICE, "dev-9", RiskContext(device_id="dev-9")),
        (ListKind.EMAIL, "LI@Example.com", RiskContext(email="li@example.COM")),
        (ListKind.EMAIL_DOMAIN, "Example.com", RiskContext(email="x@example.com")),
        (ListKind.PAYER, "acct-1", RiskContext(payer_account="acct-1")),
        (ListKind.CUSTOMER, "7", RiskContext()),
    ],
)
def test_block_list_entries(kind: ListKind, value: str, context: RiskContext) -> None:
    hits = evaluate(facts(context=context, lists=(entry(kind, value),)), RiskSettings())
    assert rules(hits) == [(f"blocklist_{kind.value}", Verdict.BLOCK)]
    other = facts(context=RiskContext(ip="198.51.100.1"), customer_id=8)
    assert evaluate(evolve(other, lists=(entry(kind, value),)), RiskSettings()) == []


@pytest.mark.parametrize(
    ("cidr", "inside", "outside"),
    [
        ("203.0.113.0/24", "203.0.113.255", "203.0.114.0"),
        ("10.0.0.0/8", "10.255.255.255", "11.0.0.0"),
        ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"),
        ("2001:DB8:0:1::/64", "2001:db8:0:1:ffff::", "2001:db8:0:2::"),
    ],
)
def test_cidr_matching(cidr: str, inside: str, outside: str) -> None:
    block = entry(ListKind.CIDR, cidr)
    assert block.matches(ListKind.IP, RiskContext(ip=inside).ip or "")
    assert not block.matches(ListKind.IP, RiskContext(ip=outside).ip or "")
    hit = evaluate(facts(context=RiskContext(ip=inside), lists=(block,)), RiskSettings())
    assert rules(hit) == [("blocklist_cidr", Verdict.BLOCK)]


def test_cidr_never_matches_the_other_ip_version() -> None:
    assert not entry(ListKind.CIDR, "0.0.0.0/0").matches(ListKind.IP, "::1")
    assert not entry(ListKind.CIDR, "::/0").matches(ListKind.IP, "127.0.0.1")
    # an IPv4-mapped IPv6 address is an IPv6 address
    assert not entry(ListKind.CIDR, "127.0.0.0/8").matches(ListKind.IP, "::ffff:7f00:1")


def test_cidr_entries_are_normalised() -> None:
    assert normalise_value(ListKind.CIDR, "203.0.113.7/24") == "203.0.113.0/24"
    assert normalise_value(ListKind.IP, "2001:DB8::0001") == "2001:db8::1"
    for kind, bad in [
        (ListKind.CIDR, "203.0.113.0/33"),
        (ListKind.IP, "203.0.113.256"),
        (ListKind.CUSTOMER, "li"),
        (ListKind.EMAIL, "no-at-sign"),
        (ListKind.EMAIL_DOMAIN, "a@b.com"),
        (ListKind.DEVICE, "  "),
    ]:
        with pytest.raises(InvalidField):
            normalise_value(kind, bad)


def test_list_entry_expiry() -> None:
    until = NOW + timedelta(hours=1)
    temporary = entry(ListKind.IP, IP, expires_at=until)
    assert temporary.active(until - timedelta(microseconds=1))
    assert not temporary.active(until)  # expiring now is expired
    assert entry(ListKind.IP, IP).active(NOW + timedelta(days=3650))


def test_allow_list_short_circuits_chosen_rules() -> None:
    settings = RiskSettings.build(max_orders_per_ip_per_hour=1, max_amount="100.00")
    busy = facts(
        counts={"max_orders_per_ip_per_hour": 5},
        amount=cny("200.00"),
        lists=(entry(ListKind.CUSTOMER, "7", allow=True), entry(ListKind.IP, IP)),
    )
    hits = evaluate(busy, settings)
    # lists and velocity skipped; limits still apply (not in allowlist_skips by default)
    assert rules(hits) == [("allowlist_customer", Verdict.ALLOW), ("max_amount", Verdict.BLOCK)]
    everything = RiskSettings.build(
        max_orders_per_ip_per_hour=1,
        max_amount="100.00",
        allowlist_skips=["lists", "velocity", "limits"],
    )
    assert rules(evaluate(busy, everything)) == [("allowlist_customer", Verdict.ALLOW)]


# ---------------------------------------------------------------------------- precedence
def test_precedence_block_verify_review_allow() -> None:
    def hit(v: str) -> RuleHit:
        return RuleHit(f"r_{v}", v, v)

    assert strongest([]) is Verdict.ALLOW
    assert strongest([hit("allow"), hit("review")]) is Verdict.REVIEW
    assert strongest([hit("review"), hit("verify")]) is Verdict.VERIFY
    assert strongest([hit("review"), hit("block"), hit("verify")]) is Verdict.BLOCK
    settings = RiskSettings.build(
        review_over="10.00", require_verification_over="10.00", max_amount="10.00"
    )
    hits = evaluate(facts(amount=cny("10.01")), settings)
    decision = Decision(strongest(hits), Stage.ORDER, tuple(hits), RiskContext(), NOW)
    assert decision.verdict is Verdict.BLOCK
    assert decision.sentence() == "blocked: max_amount (10.00 CNY) exceeded: 10.01 CNY"


# ------------------------------------------------------------------------------ settings
def test_settings_from_toml_table(tmp_path: Any) -> None:
    path = tmp_path / "ordercore.toml"
    path.write_text(
        '[risk]\nmax_orders_per_ip_per_hour = 2\nreview_over = "1000.00"\n'
        'plugin_policy = "fail_closed"\nreview_sla_hours = 24\n',
        encoding="utf-8",
    )
    risk = Settings.load(path, environ={}).risk
    assert risk.limit("max_orders_per_ip_per_hour") == 2
    assert str(risk.amount("review_over")) == "1000.00"
    assert risk.plugin_policy == "fail_closed"
    assert risk.limit("review_sla_hours") == 24
    assert Settings.load(None, environ={}).risk == RiskSettings()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_orders_per_ip_per_hr": 2}, "unknown setting"),
        ({"max_orders_per_ip_per_hour": 0}, "whole number ≥ 1"),
        ({"max_orders_per_ip_per_hour": True}, "whole number"),
        ({"review_over": 10.5}, "write it as a string"),
        ({"review_over": "-1"}, "positive"),
        ({"plugin_policy": "maybe"}, "fail_open or fail_closed"),
        ({"velocity_action": "verify"}, "block or review"),
        ({"allowlist_skips": ["everything"]}, "rule families"),
        ({"require_verification_first_order": "yes"}, "true/false"),
        ({"plugin_timeout_seconds": 0}, "positive"),
    ],
)
def test_bad_settings_are_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RiskSettings.from_table(table)


def test_risk_context_validation() -> None:
    assert RiskContext(ip=" 2001:DB8::1 ").ip == "2001:db8::1"
    with pytest.raises(InvalidField, match="not an IPv4 or IPv6"):
        RiskContext(ip="203.0.113.999")
    with pytest.raises(InvalidField, match="device_id"):
        RiskContext(device_id="x" * 129)
    with pytest.raises(InvalidField, match="device_id"):
        RiskContext(device_id="")
