"""Refunds under concurrency, on PostgreSQL (row locks, READ COMMITTED): design.md guarantee 4
(never more refunded than paid; the ledger sums to the balance), 5 (one payout per refund id,
no lock held during the platform call) and 3 (a refund notification applied once).

Each worker makes its own ordercore calls (its own connection and transaction); ``race()``
releases them together with a barrier, and each race runs a few rounds on new orders to give
the workers a real chance to overlap. The one ordering a barrier cannot produce — the
platform's notification overtaking the answer of the refund call — is forced with events.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import Backend, FakeClock
from ordercore import (
    Actor,
    IllegalTransition,
    InvalidAmount,
    Money,
    OrderStatus,
    Refund,
    RefundStatus,
)
from ordercore.channels import Outcome, RefundRequest, RefundResult

from .payment_kit import ADMIN, Shop, cny, make_shop, race

POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
pytestmark = pytest.mark.parametrize("backend", [POSTGRESQL], indirect=True)

BOB = Actor.operator("bob", "admin")
ROUNDS = 5


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    built.core.products.add(sku="plan", name="Plan", price=cny("30.00"), actor=ADMIN)
    yield built
    built.core.close()


def paid_order(shop: Shop, *, deduction: str | None = None) -> tuple[str, str]:
    """A 30.00 order (less ``deduction`` taken from the wallet) paid through the fake
    channel: (order number, out_trade_no)."""
    core = shop.core
    if deduction is not None:
        core.wallet.credit(shop.customer_id, cny(deduction), reason="top-up", actor=ADMIN)
    order = core.orders.create(
        customer_id=shop.customer_id,
        items=[("plan", 1)],
        use_balance=None if deduction is None else cny(deduction),
        actor=ADMIN,
    )
    out_trade_no = shop.start(order.number).out_trade_no
    assert shop.deliver(shop.gateway.pay(out_trade_no)).status == 200
    assert core.orders.get(order.number).status is OrderStatus.PAID
    return order.number, out_trade_no


def refund_ops(shop: Shop, out_trade_no: str, refund_no: str) -> list[dict[str, Any]]:
    """The recorded ``refund`` calls to the platform for ``refund_no``."""
    return [
        op
        for op in shop.core.payments.operations(out_trade_no)
        if op["kind"] == "refund" and op["request"]["out_refund_no"] == refund_no
    ]


def outbox_for(shop: Shop, number: str, kind: str) -> list[str]:
    """The refund ids of the order's outbox messages of ``kind``."""
    return [m["payload"]["refund"] for m in shop.outbox(number) if m["kind"] == kind]


def wallet_is_consistent(shop: Shop) -> Money:
    core = shop.core
    balance = core.wallet.balance(shop.customer_id, "CNY")
    assert core.wallet.ledger_sum(shop.customer_id, "CNY") == balance.to_minor()
    assert not balance.is_negative()
    return balance


def only_errors(outcome: Any, kind: type[BaseException]) -> list[BaseException]:
    """The workers' errors, every one of them a ``kind``."""
    errors = [e for e in outcome.errors if e is not None]
    for error in errors:
        if not isinstance(error, kind):
            raise error
    return errors


# -- (a) two operators approve one channel refund ----------------------------------------------


def test_two_operators_approving_one_channel_refund_pay_it_out_once(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    for round_ in range(ROUNDS):
        number, out_trade_no = paid_order(shop)
        refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
        made_before = gateway.refunds_made

        outcome = race(
            2, lambda i, no=refund.refund_no: core.refunds.approve(no, actor=(ADMIN, BOB)[i])
        )

        errors = only_errors(outcome, IllegalTransition)
        assert len(errors) == 1, round_
        (won,) = [v for v in outcome.values if v is not None]
        assert won.status is RefundStatus.SUCCEEDED, round_
        assert gateway.refunds_made == made_before + 1, round_
        assert gateway.trade(out_trade_no).refunded == cny("30.00"), round_
        assert len(refund_ops(shop, out_trade_no, refund.refund_no)) == 1, round_
        assert outbox_for(shop, number, "refund.approved") == [refund.refund_no], round_
        assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no], round_
        order = core.orders.get(number)
        assert order.status is OrderStatus.REFUNDED, round_
        assert order.amounts.refunded == cny("30.00"), round_
    assert core.audit.verify().ok


def test_approve_racing_reject_decides_one_way(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    seen: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        number, out_trade_no = paid_order(shop)
        refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
        made_before = gateway.refunds_made

        def work(i: int, no: str = refund.refund_no) -> Refund:
            if i == 0:
                return core.refunds.approve(no, actor=ADMIN)
            return core.refunds.reject(no, actor=BOB, reason="not eligible")

        outcome = race(2, work)

        assert len(only_errors(outcome, IllegalTransition)) == 1, round_
        final = core.refunds.get(refund.refund_no)
        order = core.orders.get(number)
        if final.status is RefundStatus.SUCCEEDED:
            seen["approved"] += 1
            assert gateway.refunds_made == made_before + 1, round_
            assert order.amounts.refunded == cny("30.00"), round_
            assert outbox_for(shop, number, "refund.rejected") == [], round_
        else:
            seen["rejected"] += 1
            assert final.status is RefundStatus.REJECTED, round_
            assert gateway.refunds_made == made_before, round_
            assert refund_ops(shop, out_trade_no, refund.refund_no) == [], round_
            assert order.amounts.refunded == cny("0.00"), round_
            assert outbox_for(shop, number, "refund.succeeded") == [], round_
            assert core.refunds.refundable(number) == cny("30.00"), round_
    assert sum(seen.values()) == ROUNDS


# -- (b) two operators approve one wallet refund -----------------------------------------------


def test_two_operators_approving_one_balance_refund_credit_the_wallet_once(shop: Shop) -> None:
    core = shop.core
    expected = cny("0.00")
    for round_ in range(ROUNDS):
        number, _ = paid_order(shop)
        refund = core.refunds.request(
            number, amount="12.34", destination="balance", reason="r", actor=ADMIN
        )

        outcome = race(
            2, lambda i, no=refund.refund_no: core.refunds.approve(no, actor=(ADMIN, BOB)[i])
        )

        assert len(only_errors(outcome, IllegalTransition)) == 1, round_
        expected = expected + cny("12.34")
        assert wallet_is_consistent(shop) == expected, round_
        credits = [
            e
            for e in core.wallet.ledger(shop.customer_id, limit=200)
            if e.reason == "order.refund" and e.order_number == number
        ]
        assert len(credits) == 1, round_
        assert credits[0].delta == 1234, round_
        assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED, round_
        assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no], round_
        assert core.orders.get(number).amounts.refunded == cny("12.34"), round_
    assert shop.gateway.refunds_made == 0  # a wallet refund never reaches the platform
    assert core.audit.verify().ok


# -- (c) a timeout, then retries ---------------------------------------------------------------


def test_a_timeout_then_a_retry_pays_out_once(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    number, out_trade_no = paid_order(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)

    refund = core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert refund.status is RefundStatus.UNKNOWN
    refund = core.refunds.retry(refund.refund_no, actor=ADMIN)

    assert refund.status is RefundStatus.SUCCEEDED
    assert (gateway.refund_calls, gateway.refunds_made) == (2, 1)
    ops = refund_ops(shop, out_trade_no, refund.refund_no)
    assert [op["state"] for op in ops] == ["unknown", "succeeded"]
    assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no]
    assert core.orders.get(number).amounts.refunded == cny("30.00")


@pytest.mark.parametrize("applied", [True, False], ids=["paid-out", "not-paid-out"])
def test_operators_and_the_job_runner_retrying_one_unknown_refund_pay_it_out_once(
    shop: Shop, applied: bool
) -> None:
    core, gateway, clock = shop.core, shop.gateway, shop.clock
    for round_ in range(ROUNDS):
        number, out_trade_no = paid_order(shop)
        refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
        made = gateway.refunds_made
        gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=applied)
        assert core.refunds.approve(refund.refund_no, actor=ADMIN).status is RefundStatus.UNKNOWN
        assert gateway.refunds_made == made + applied
        calls = gateway.refund_calls
        clock.advance(6 * 60)  # the job runner's check is due

        def work(i: int, no: str = refund.refund_no) -> object:
            if i == 3:
                return core.payments.run_due_jobs()
            return core.refunds.retry(no, actor=(ADMIN, BOB, ADMIN)[i])

        outcome = race(4, work)

        only_errors(outcome, IllegalTransition)
        retried = sum(1 for i in range(3) if outcome.errors[i] is None)
        # Every retry that went through made one call, recorded as one operation; the
        # platform paid out once whatever the number of calls.
        assert gateway.refund_calls - calls == retried, round_
        assert len(refund_ops(shop, out_trade_no, refund.refund_no)) == 1 + retried, round_
        final = core.refunds.get(refund.refund_no)
        if final.status is not RefundStatus.SUCCEEDED:
            # The job runner asked last and the platform had nothing: a verdict, retried.
            assert not applied, round_
            assert final.status is RefundStatus.FAILED, round_
            assert gateway.refunds_made == made, round_
            final = core.refunds.retry(refund.refund_no, actor=ADMIN)
        assert final.status is RefundStatus.SUCCEEDED, round_
        assert gateway.refunds_made == made + 1, round_
        assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no], round_
        order = core.orders.get(number)
        assert order.amounts.refunded == cny("30.00"), round_
        assert gateway.trade(out_trade_no).refunded == cny("30.00"), round_
    assert core.audit.verify().ok


# -- (d) the notification overtakes the call's answer --------------------------------------------


class HeldRefundCall:
    """Wraps the platform's refund call: the platform makes the refund, then the answer is
    held until the test releases it, and replaced by ``answer`` (None: the real one)."""

    def __init__(self, shop: Shop, answer: Outcome | None) -> None:
        self.real: Callable[..., RefundResult] = shop.gateway.refund
        self.answer = answer
        self.made = threading.Event()
        self.release = threading.Event()
        self.released_in_time = False

    def __call__(self, request: RefundRequest, **kwargs: Any) -> RefundResult:
        result = self.real(request, **kwargs)
        self.made.set()
        self.released_in_time = self.release.wait(timeout=20)
        if self.answer is None:
            return result
        if self.answer is Outcome.SUCCEEDED:
            return RefundResult(Outcome.SUCCEEDED, result.channel_refund_no)
        if self.answer is Outcome.FAILED:
            return RefundResult(Outcome.FAILED, code="SYSTEM_ERROR", message="late refusal")
        return RefundResult(self.answer, message="the answer was lost")


@pytest.mark.parametrize(
    "late_answer",
    [None, Outcome.SUCCEEDED, Outcome.UNKNOWN, Outcome.FAILED],
    ids=["pending", "succeeded", "unknown", "failed"],
)
def test_a_refund_notification_before_the_call_returns_is_applied_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, late_answer: Outcome | None
) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    number, out_trade_no = paid_order(shop, deduction="2.00")  # payable 28.00
    wallet_is_consistent(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    held = HeldRefundCall(shop, late_answer)
    monkeypatch.setattr(gateway, "refund", held)
    result: dict[str, Any] = {}

    def approve() -> None:
        try:
            result["refund"] = core.refunds.approve(refund.refund_no, actor=ADMIN)
        except BaseException as exc:
            result["error"] = exc

    caller = threading.Thread(target=approve, daemon=True)
    caller.start()
    assert held.made.wait(timeout=20), "the refund call never reached the platform"
    # The platform settles and notifies while our call is still waiting for its answer; no
    # lock is held meanwhile, so the notification goes through at once.
    reply = shop.deliver(gateway.settle_refund(refund.refund_no))
    assert (reply.status, reply.body) == (200, b"OK")
    applied = core.refunds.get(refund.refund_no)
    assert applied.status is RefundStatus.SUCCEEDED
    held.release.set()
    caller.join(timeout=30)
    assert not caller.is_alive()
    assert held.released_in_time
    assert "error" not in result, result.get("error")

    # The late answer changed nothing.
    assert result["refund"].status is RefundStatus.SUCCEEDED
    final = core.refunds.get(refund.refund_no)
    assert (final.status, final.completed_at) == (applied.status, applied.completed_at)
    assert gateway.refunds_made == 1
    refund_notes = [n for n in shop.inbox(number) if refund.refund_no.encode() in n["body"]]
    assert [n["status"] for n in refund_notes] == ["applied"]
    order = core.orders.get(number)
    assert order.status is OrderStatus.REFUNDED
    assert order.amounts.refunded == cny("28.00")
    assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no]
    assert outbox_for(shop, number, "order.revoke") == [refund.refund_no]
    assert outbox_for(shop, number, "refund.failed") == []
    # The balance deducted at pricing comes back once with the full refund.
    assert wallet_is_consistent(shop) == cny("2.00")
    returns = [e for e in core.wallet.ledger(shop.customer_id) if e.reason == "order.refund_return"]
    assert len(returns) == 1
    (op,) = refund_ops(shop, out_trade_no, refund.refund_no)
    assert op["finished_at"] is not None
    assert core.audit.verify().ok


# -- (e) partial requests that together exceed the payment ---------------------------------------


@pytest.mark.parametrize(
    ("workers", "amount", "fit"),
    [(2, "16.00", 1), (4, "10.00", 2)],
    ids=["2x16-of-30", "4x10-of-20-left"],
)
def test_racing_partial_requests_never_ask_for_more_than_was_paid(
    shop: Shop, workers: int, amount: str, fit: int
) -> None:
    core = shop.core
    customer = Actor.customer(shop.customer_id)
    for round_ in range(ROUNDS):
        number, _ = paid_order(shop)
        if workers == 4:  # 30.00 paid, 10.00 already asked for: four of 10.00 fit twice
            core.refunds.request(
                number, amount="10.00", destination="balance", reason="first", actor=ADMIN
            )

        def work(i: int, number: str = number) -> Refund:
            return core.refunds.request(
                number,
                amount=amount,
                destination=("original", "balance")[i % 2],
                reason=f"worker {i}",
                actor=(customer, ADMIN)[i % 2],
            )

        outcome = race(workers, work)

        errors = only_errors(outcome, InvalidAmount)
        accepted = [v for v in outcome.values if v is not None]
        assert len(accepted) == fit, round_
        assert len(errors) == workers - fit, round_
        refunds = core.refunds.for_order(number)
        asked = sum((r.amount for r in refunds), cny("0.00"))
        assert asked <= cny("30.00"), round_
        assert core.refunds.refundable(number) == cny("30.00") - asked, round_
        assert len(outbox_for(shop, number, "refund.requested")) == len(refunds), round_
        numbers = [r.refund_no for r in refunds]
        assert len(set(numbers)) == len(numbers), round_
        # Everything asked for can be paid out.
        for r in refunds:
            assert core.refunds.approve(r.refund_no, actor=ADMIN).status is (
                RefundStatus.SUCCEEDED
            ), round_
        order = core.orders.get(number)
        assert order.amounts.refunded == asked, round_
    wallet_is_consistent(shop)


# -- (f) one notification delivered by eight workers ---------------------------------------------


def test_one_refund_notification_delivered_by_8_workers_is_applied_once(shop: Shop) -> None:
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    for round_ in range(ROUNDS):
        number, _ = paid_order(shop, deduction="3.00")  # payable 27.00
        refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
        refund = core.refunds.approve(refund.refund_no, actor=ADMIN)
        assert refund.status is RefundStatus.PROCESSING, round_
        headers, body = gateway.settle_refund(refund.refund_no)

        delivered = race(
            8, lambda i, h=headers, b=body: core.payments.handle_callback("fake", h, b, "10.0.0.9")
        )

        delivered.raise_first()
        assert [(r.status, r.body) for r in delivered.values] == [(200, b"OK")] * 8, round_
        assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED, round_
        order = core.orders.get(number)
        assert order.status is OrderStatus.REFUNDED, round_
        assert order.amounts.refunded == cny("27.00"), round_
        assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no], round_
        assert outbox_for(shop, number, "order.revoke") == [refund.refund_no], round_
        returns = [
            e
            for e in core.wallet.ledger(shop.customer_id, limit=200)
            if e.reason == "order.refund_return" and e.order_number == number
        ]
        assert [e.delta for e in returns] == [300], round_
    assert wallet_is_consistent(shop) == cny("15.00")  # 5 x 3.00 given back
    assert gateway.refunds_made == ROUNDS
    assert core.audit.verify().ok


def test_one_refund_notification_delivered_by_8_workers_is_logged_once_applied(
    shop: Shop,
) -> None:
    """The callback log tells the one application from the seven repeats."""
    core, gateway = shop.core, shop.gateway
    gateway.refund_mode = "async"
    for round_ in range(3):
        number, _ = paid_order(shop)
        refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
        refund = core.refunds.approve(refund.refund_no, actor=ADMIN)
        headers, body = gateway.settle_refund(refund.refund_no)

        race(
            8, lambda i, h=headers, b=body: core.payments.handle_callback("fake", h, b, "10.0.0.9")
        ).raise_first()

        assert core.refunds.get(refund.refund_no).status is RefundStatus.SUCCEEDED, round_
        statuses = Counter(
            n["status"] for n in shop.inbox(number) if refund.refund_no.encode() in n["body"]
        )
        assert statuses == Counter(applied=1, duplicate=7), round_


# -- a query's answer overtaken by a retry -------------------------------------------------------


def test_a_query_answer_overtaken_by_a_retry_does_not_fail_the_retry(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job runner asks about an unknown refund and the platform says "no such refund";
    before that answer is applied, an operator's retry sends the refund again and the
    platform pays it out. The stale answer is about the earlier try: it must not fail the
    refund now in flight (that would free money the platform is paying out)."""
    core, gateway = shop.core, shop.gateway
    number, out_trade_no = paid_order(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=False)
    assert core.refunds.approve(refund.refund_no, actor=ADMIN).status is RefundStatus.UNKNOWN
    assert gateway.refunds_made == 0

    real_query = gateway.query_refund
    query_asked, query_release = threading.Event(), threading.Event()

    def held_query(request: RefundRequest, **kwargs: Any) -> RefundResult:
        answer = real_query(request, **kwargs)
        query_asked.set()
        query_release.wait(timeout=20)
        return answer

    monkeypatch.setattr(gateway, "query_refund", held_query)
    held_call = HeldRefundCall(shop, None)
    monkeypatch.setattr(gateway, "refund", held_call)
    results: dict[str, Any] = {}

    def run(name: str, work: Callable[[], Refund]) -> threading.Thread:
        def target() -> None:
            try:
                results[name] = work()
            except BaseException as exc:
                results[name] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    query = run("query", lambda: core.refunds.reconcile(refund.refund_no))
    assert query_asked.wait(timeout=20)
    call = run("retry", lambda: core.refunds.retry(refund.refund_no, actor=ADMIN))
    assert held_call.made.wait(timeout=20)
    assert gateway.refunds_made == 1  # the platform is paying it out

    query_release.set()
    query.join(timeout=30)
    assert not query.is_alive()
    assert not isinstance(results["query"], BaseException), results["query"]
    during = core.refunds.get(refund.refund_no)
    assert during.status is not RefundStatus.FAILED, "a stale 'no such refund' failed a retry"
    assert core.refunds.refundable(number) == cny("0.00")
    with pytest.raises(InvalidAmount):
        core.refunds.request(number, destination="balance", reason="again", actor=ADMIN)

    held_call.release.set()
    call.join(timeout=30)
    assert not call.is_alive()
    assert not isinstance(results["retry"], BaseException), results["retry"]
    final = core.refunds.get(refund.refund_no)
    assert final.status is RefundStatus.SUCCEEDED
    assert gateway.refunds_made == 1
    order = core.orders.get(number)
    assert order.amounts.refunded == cny("30.00")
    assert outbox_for(shop, number, "refund.succeeded") == [refund.refund_no]
    assert gateway.trade(out_trade_no).refunded == cny("30.00")
    assert shop.anomaly_kinds(number) == []
    assert wallet_is_consistent(shop) == cny("0.00")
