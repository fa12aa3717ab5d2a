"""Risk control through the services, on every backend: velocity and limits at their
boundaries in SQL, lists (expiry, CIDR), identity verification, the review queue (approve,
reject, the SLA), refused payments, and that a refusal writes nothing but its decision and
the decision's audit record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from helpers import Backend, FakeClock, audit_rows, count_rows, snapshot
from ordercore import (
    Actor,
    AnomalyKind,
    CancelReason,
    Conflict,
    Customer,
    InvalidField,
    Money,
    OrderCore,
    OrderStatus,
    PermissionDenied,
    RiskBlocked,
    RiskContext,
    RiskSettings,
    Verdict,
)

ADMIN = Actor.operator("alice", "admin")
IP = "203.0.113.7"


def shop(backend: Backend, clock: FakeClock, timeout: int = 15, **risk: Any) -> OrderCore:
    core = backend.core(clock, risk=RiskSettings.build(**risk), payment_timeout_minutes=timeout)
    core.products.add(sku="VPN", name="VPN", price=Money.of("30.00", "CNY"), actor=ADMIN)
    core.products.add(sku="BOX", name="Box", price=Money.of("30.00", "CNY"), stock=5, actor=ADMIN)
    return core


def customer(core: OrderCore, n: int = 1, **kw: Any) -> Customer:
    return core.customers.add(name=f"C{n}", email=f"c{n}@example.com", actor=ADMIN, **kw)


def order(core: OrderCore, who: Customer, qty: int = 1, sku: str = "VPN", **risk: Any) -> Any:
    assert who.id is not None
    return core.orders.create(
        customer_id=who.id, items=[(sku, qty)], actor=ADMIN, risk=RiskContext(**risk)
    )


def changed_tables(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {name for name in after if before.get(name) != after[name]}


def base(core: OrderCore, name: str) -> str:
    return name.removeprefix(core.settings.table_prefix)


def test_ip_velocity_boundary_and_a_block_writes_only_its_decision(
    backend: Backend, clock: FakeClock
) -> None:
    core = shop(backend, clock, max_orders_per_ip_per_hour=2)
    li, han = customer(core, 1), customer(core, 2)
    order(core, li, ip=IP)
    order(core, han, ip=IP)
    order(core, li, ip="203.0.113.8")  # another address counts apart
    before = snapshot(core)
    with pytest.raises(RiskBlocked) as caught:
        order(core, han, ip=IP, device_id="dev-1")
    assert str(caught.value) == f"blocked: max_orders_per_ip_per_hour (2) reached for {IP}"
    after = snapshot(core)
    assert {base(core, t) for t in changed_tables(before, after)} == {
        "risk_decisions",
        "audit_log",
        "audit_head",
    }
    assert count_rows(core, core.tables.risk_decisions) == 4
    (decision,) = core.risk.decisions(verdict="block")
    assert decision.order_number is None
    assert decision.customer_id == han.id
    assert decision.context.device_id == "dev-1"
    (hit,) = decision.hits
    assert hit.values == {"limit": 2, "seen": 2, "ip": IP, "hours": 1}
    last = audit_rows(core)[-1]
    assert (last["entity_kind"], last["action"]) == ("risk_decision", "risk.order.block")
    assert last["reason"] == str(caught.value)
    # the window is the last hour, its first instant included
    clock.advance(3600)
    with pytest.raises(RiskBlocked):
        order(core, han, ip=IP)
    clock.advance(1)
    assert order(core, han, ip=IP).status is OrderStatus.PENDING
    assert core.audit.verify().ok


def test_customer_daily_amount_counts_in_sql(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, max_customer_daily_amount="90.00")
    li = customer(core)
    first = order(core, li, 2)  # 60.00
    order(core, li, 1)  # 90.00: exactly the limit
    with pytest.raises(RiskBlocked, match=r"max_customer_daily_amount \(90.00 CNY\) exceeded"):
        order(core, li, 1)
    core.orders.cancel(first.number, actor=ADMIN, reason=CancelReason.ADMIN, note="mistake")
    order(core, li, 2)  # a canceled order no longer counts


def test_customers_per_device(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, max_customers_per_device=1)
    li, han = customer(core, 1), customer(core, 2)
    order(core, li, device_id="dev-1")
    order(core, li, device_id="dev-1")  # the same customer again
    with pytest.raises(RiskBlocked, match="max_customers_per_device \\(1\\) reached for dev-1"):
        order(core, han, device_id="dev-1")
    order(core, han, device_id="dev-2")


def test_block_list_expiry_cidr_and_removal(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock)
    li = customer(core)
    entry = core.risk.add_to_list(
        "cidr",
        "2001:DB8::/32",
        actor=ADMIN,
        reason="abuse",
        expires_at=clock() + timedelta(hours=1),
    )
    assert entry.value == "2001:db8::/32"
    with pytest.raises(RiskBlocked, match=r"ip 2001:db8::7 is on the block list \(abuse\)"):
        order(core, li, ip="2001:DB8::7")
    order(core, li, ip="2001:db9::7")
    order(core, li, ip="203.0.113.7")
    clock.advance(3600)  # expired now
    order(core, li, ip="2001:db8::7")
    assert core.risk.list_entries() == []
    assert len(core.risk.list_entries(include_expired=True)) == 1
    # an IPv4 block, removed again
    core.risk.add_to_list("ip", IP, actor=ADMIN, reason="abuse")
    with pytest.raises(Conflict):
        core.risk.add_to_list("ip", IP, actor=ADMIN, allow=True)
    with pytest.raises(RiskBlocked):
        order(core, li, ip=IP)
    core.risk.remove_from_list("ip", IP, actor=ADMIN, reason="cleared")
    order(core, li, ip=IP)
    actions = [r["action"] for r in audit_rows(core) if r["entity_kind"] == "risk_list"]
    assert actions == ["risk.list.add", "risk.list.add", "risk.list.remove"]
    before = snapshot(core)
    with pytest.raises(InvalidField, match="in the future"):
        core.risk.add_to_list("ip", IP, actor=ADMIN, expires_at=clock())
    with pytest.raises(InvalidField, match="CIDR"):
        core.risk.add_to_list("cidr", "10.0.0.0/40", actor=ADMIN)
    assert snapshot(core) == before


def test_lists_need_their_permission(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock)
    support = Actor.operator("bob", "support")
    with pytest.raises(PermissionDenied):
        core.risk.add_to_list("ip", IP, actor=support)
    assert core.risk.list_entries() == []
    assert audit_rows(core)[-1]["action"] == "permission.denied"
    li = customer(core)
    held = core.risk  # review needs risk.review
    held_order = order(core, li)
    with pytest.raises(PermissionDenied):
        held.approve(held_order.number, actor=support)


def test_review_approve_then_pay(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, review_over="50.00")
    li = customer(core)
    assert li.id is not None
    core.wallet.credit(li.id, Money.of("100.00", "CNY"), reason="top-up", actor=ADMIN)
    held = order(core, li, 2, ip=IP)  # 60.00 > 50.00
    assert held.status is OrderStatus.PENDING
    (decision,) = core.risk.decisions(order=held.number)
    assert decision.verdict is Verdict.REVIEW
    assert [d.order_number for d in core.risk.review_queue()] == [held.number]
    with pytest.raises(RiskBlocked, match=r"held for review: order .* waits for a risk review"):
        core.payments.start(held.number, channel="balance", actor=ADMIN)
    assert core.payments.attempts(held.number) == []
    core.risk.approve(held.number, actor=ADMIN, note="known customer")
    assert core.risk.review_queue() == []
    core.payments.start(held.number, channel="balance", actor=ADMIN)
    assert core.orders.get(held.number).status is OrderStatus.PAID
    stages = [(d.stage.value, d.verdict.value) for d in core.risk.decisions(order=held.number)]
    assert stages == [
        ("payment", "allow"),
        ("review", "allow"),
        ("payment", "review"),
        ("order", "review"),
    ]
    with pytest.raises(InvalidField, match="not waiting for a risk review"):
        core.risk.approve(held.number, actor=ADMIN)


def test_review_reject_cancels_with_reason_rejected(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, review_over="50.00")
    li = customer(core)
    held = order(core, li, 2, sku="BOX")
    assert core.products.get("BOX").stock == 3
    with pytest.raises(InvalidField, match="needs a reason"):
        core.risk.reject(held.number, actor=ADMIN, reason=" ")
    core.risk.reject(held.number, actor=ADMIN, reason="stolen card")
    after = core.orders.get(held.number)
    assert after.status is OrderStatus.CANCELED
    assert after.cancel_reason is CancelReason.REJECTED
    assert core.products.get("BOX").stock == 5
    with pytest.raises(InvalidField):
        core.risk.reject(held.number, actor=ADMIN, reason="again")


def test_review_sla_cancels_unreviewed_orders(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, timeout=600, review_over="50.00", review_sla_hours=2)
    li = customer(core)
    held = order(core, li, 2)
    timed_out = order(core, li, 3)
    core.orders.cancel(timed_out.number, actor=Actor.system(), reason=CancelReason.TIMEOUT)
    report = core.payments.run_due_jobs(clock() + timedelta(hours=1))
    assert report.review_expired == ()
    report = core.payments.run_due_jobs(clock() + timedelta(hours=2))
    assert report.review_expired == (held.number,)
    assert core.orders.get(held.number).cancel_reason is CancelReason.REJECTED
    (last, *_) = core.risk.decisions(order=held.number)
    assert (last.stage.value, last.verdict.value, last.hits[0].rule) == (
        "review",
        "block",
        "review_sla",
    )


def test_identity_verification_blocks_payment_until_verified(
    backend: Backend, clock: FakeClock
) -> None:
    core = shop(backend, clock, require_verification_over="50.00")
    li = customer(core)
    assert li.id is not None
    core.wallet.credit(li.id, Money.of("100.00", "CNY"), reason="top-up", actor=ADMIN)
    small = order(core, li, 1)
    big = order(core, li, 2)
    assert core.risk.decisions(order=big.number)[0].verdict is Verdict.VERIFY
    with pytest.raises(RiskBlocked, match="identity verification required: customer"):
        core.payments.start(big.number, channel="balance", actor=ADMIN)
    core.payments.start(small.number, channel="balance", actor=ADMIN)
    core.customers.verify(li.id, actor=ADMIN, note="passport seen")
    assert core.customers.get(li.id).identity_verified
    core.payments.start(big.number, channel="balance", actor=ADMIN)
    assert core.orders.get(big.number).status is OrderStatus.PAID


def test_first_order_verification(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, require_verification_first_order=True)
    li = customer(core, 1)
    first, second = order(core, li), order(core, li)
    assert core.risk.decisions(order=first.number)[0].verdict is Verdict.VERIFY
    assert core.risk.decisions(order=second.number)[0].verdict is Verdict.ALLOW
    verified = customer(core, 2, identity_verified=True)
    assert core.risk.decisions(order=order(core, verified).number)[0].verdict is Verdict.ALLOW


def test_a_refused_payment_keeps_no_attempt_and_counts_as_blocked(
    backend: Backend, clock: FakeClock
) -> None:
    core = shop(backend, clock)
    li = customer(core)
    assert li.id is not None
    core.wallet.credit(li.id, Money.of("100.00", "CNY"), reason="top-up", actor=ADMIN)
    pending = order(core, li)
    core.risk.add_to_list("payer", "acct-9", actor=ADMIN, reason="chargebacks")
    before = snapshot(core)
    with pytest.raises(RiskBlocked, match="payer acct-9 is on the block list"):
        core.payments.start(
            pending.number,
            channel="balance",
            actor=ADMIN,
            client_ip=IP,
            risk=RiskContext(payer_account="acct-9"),
        )
    assert {base(core, t) for t in changed_tables(before, snapshot(core))} == {
        "risk_decisions",
        "audit_log",
        "audit_head",
    }
    (refused,) = core.risk.decisions(verdict="block")
    assert refused.context.ip == IP  # client_ip fills the context's ip
    stats = core.risk.statistics(clock() - timedelta(hours=1))
    assert stats == {"order": {"allow": 1}, "payment": {"block": 1}}
    assert core.payments.list(status="failed") == []


def test_unusual_amount_opens_a_fraud_anomaly(backend: Backend, clock: FakeClock) -> None:
    core = shop(backend, clock, unusual_amount_factor="3")
    li = customer(core)
    for _ in range(3):
        core.orders.mark_paid(order(core, li).number, actor=ADMIN)
    usual = order(core, li, 3)  # 90.00 = 3 x 30.00: not over
    assert core.risk.decisions(order=usual.number)[0].verdict is Verdict.ALLOW
    odd = order(core, li, 4)
    assert core.risk.decisions(order=odd.number)[0].verdict is Verdict.REVIEW
    (anomaly,) = core.anomalies.list()
    assert anomaly.kind is AnomalyKind.FRAUD
    assert anomaly.order_number == odd.number
    assert anomaly.evidence["rules"][0]["rule"] == "unusual_amount"
    assert [d.order_number for d in core.risk.review_queue()] == [odd.number]
