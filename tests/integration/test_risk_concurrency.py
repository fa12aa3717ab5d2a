"""Risk limits under concurrency on PostgreSQL: eight order creations released together from
one IP with ``max_orders_per_ip_per_hour = 2`` → exactly two orders; the same for a
customer's daily amount. A check locks the rows of the subjects it counts (``risk_subjects``)
before counting, so concurrent checks of one subject count one after the other; checks of
unrelated subjects share no lock. Each worker buys a product of its own, so that nothing but
the risk check's lock orders them (without it these tests fail: checked by hand by making
``lock_subjects`` a no-op)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from helpers import Backend, FakeClock, count_rows
from ordercore import Actor, Money, OrderCore, RiskBlocked, RiskContext, RiskSettings

ADMIN = Actor.operator("alice", "admin")
WORKERS = 8
on_postgresql = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)


def race(work: Any) -> Counter[str]:
    barrier = threading.Barrier(WORKERS)
    results: list[str] = ["missing"] * WORKERS

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            work(i)
            results[i] = "ok"
        except RiskBlocked:
            results[i] = "blocked"
        except BaseException as exc:  # anything else is a failure of the test
            results[i] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    return Counter(results)


def shop(backend: Backend, clock: FakeClock, **risk: Any) -> tuple[OrderCore, list[int]]:
    core = backend.core(clock, risk=RiskSettings.build(**risk))
    core.engine.pool._pool.maxsize = WORKERS + 2  # type: ignore[attr-defined]
    ids = []
    for n in range(WORKERS):
        # one product per worker: the product row locks of order creation must not be what
        # serialises the workers
        core.products.add(sku=f"VPN-{n}", name="VPN", price=Money.of("30.00", "CNY"), actor=ADMIN)
        c = core.customers.add(name=f"C{n}", email=f"c{n}@example.com", actor=ADMIN)
        assert c.id is not None
        ids.append(c.id)
    return core, ids


@on_postgresql
def test_eight_orders_from_one_ip_two_allowed(backend: Backend, clock: FakeClock) -> None:
    core, ids = shop(backend, clock, max_orders_per_ip_per_hour=2)
    outcome = race(
        lambda i: core.orders.create(
            customer_id=ids[i],
            items=[(f"VPN-{i}", 1)],
            actor=ADMIN,
            risk=RiskContext(ip="203.0.113.7"),
        )
    )
    assert outcome == Counter({"ok": 2, "blocked": 6})
    assert count_rows(core, core.tables.orders) == 2
    verdicts = Counter(d.verdict.value for d in core.risk.decisions())
    assert verdicts == Counter({"allow": 2, "block": 6})
    assert core.audit.verify().ok


@on_postgresql
def test_eight_orders_of_one_customer_within_the_daily_amount(
    backend: Backend, clock: FakeClock
) -> None:
    core, ids = shop(backend, clock, max_customer_daily_amount="90.00")
    outcome = race(
        lambda i: core.orders.create(customer_id=ids[0], items=[(f"VPN-{i}", 1)], actor=ADMIN)
    )
    assert outcome == Counter({"ok": 3, "blocked": 5})
    assert count_rows(core, core.tables.orders) == 3


@on_postgresql
def test_unrelated_subjects_do_not_wait_for_each_other(backend: Backend, clock: FakeClock) -> None:
    core, ids = shop(backend, clock, max_orders_per_ip_per_hour=1)
    outcome = race(
        lambda i: core.orders.create(
            customer_id=ids[i],
            items=[(f"VPN-{i}", 1)],
            actor=ADMIN,
            risk=RiskContext(ip=f"198.51.100.{i + 1}"),
        )
    )
    assert outcome == Counter({"ok": WORKERS})
