"""Job leases (issue 12, item 11): a job runner claims ``job_claim_size`` items at a time
under a lease of ``job_lease_seconds`` (30 s), so a runner killed mid-batch holds a handful
of items for one short lease — not its whole batch for five minutes — and runners working
at once share the queue on PostgreSQL (``FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from helpers import Backend, FakeClock
from ordercore import OrderStatus

from .payment_kit import Shop, make_shop, race

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
ORDERS = 10
CLAIM = 3


class Killed(BaseException):
    """The runner's process dying (nothing in ordercore catches it)."""


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock, job_claim_size=CLAIM)
    yield built
    built.core.close()


def _paid_orders(shop: Shop) -> list[str]:
    numbers = []
    for _ in range(ORDERS):
        order = shop.order()
        no = shop.start(order.number).out_trade_no
        assert shop.deliver(shop.gateway.pay(no)).status == 200
        numbers.append(order.number)
    return numbers


@pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)
def test_a_killed_runner_holds_only_its_claim_and_only_for_the_lease(
    shop: Shop, clock: FakeClock
) -> None:
    core, host = shop.core, shop.host
    numbers = _paid_orders(shop)

    dying: list[str | None] = []

    def die(kind: str, number: str | None) -> None:
        if kind == "activate":
            dying.append(number)
            raise Killed

    host.probe = die
    with pytest.raises(Killed):
        core.payments.run_due_jobs()
    host.probe = None
    assert len(dying) == 1  # it died on its first activation...
    held = {dying[0]}

    # ...holding its claim of CLAIM orders; another runner takes every other one at once.
    other = core.payments.run_due_jobs()
    assert len(other.activated) == ORDERS - CLAIM
    assert not held & set(other.activated)

    clock.advance(core.settings.job_lease_seconds - 1)
    assert core.payments.run_due_jobs().activated == ()  # still leased

    clock.advance(2)  # the lease ran out: 31 s, not 5 minutes
    late = core.payments.run_due_jobs()
    assert len(late.activated) == CLAIM
    assert held <= set(late.activated)
    assert sorted(other.activated + late.activated) == sorted(numbers)
    assert Counter(host.activated) == Counter(dict.fromkeys(numbers, 1))
    assert all(core.orders.get(n).status is OrderStatus.COMPLETED for n in numbers)


@pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)
def test_two_runners_at_once_share_the_queue(shop: Shop) -> None:
    core, host = shop.core, shop.host
    numbers = _paid_orders(shop)
    together = threading.Barrier(2)
    seen: set[int] = set()
    lock = threading.Lock()

    def meet(kind: str, number: str | None) -> None:
        # Each runner's first activation waits for the other's: with the whole batch
        # claimed by one runner, the other would find nothing and the barrier would break.
        if kind != "activate":
            return
        with lock:
            first = threading.get_ident() not in seen
            seen.add(threading.get_ident())
        if first:
            together.wait(timeout=20)

    host.probe = meet
    runs = race(2, lambda i: core.payments.run_due_jobs())
    runs.raise_first()
    activated = [n for report in runs.values for n in report.activated]
    assert all(report.activated for report in runs.values)
    assert sorted(activated) == sorted(numbers)
    assert Counter(host.activated) == Counter(dict.fromkeys(numbers, 1))
