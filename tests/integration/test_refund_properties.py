"""Refund money invariants under random sequences of operations (hypothesis, stateful).

A :class:`RefundMachine` pays orders (through the fake channel, from the wallet through the
``balance`` channel, or by hand), asks for refunds of random amounts (some more than is
refundable: refused, nothing written) to the balance or the original channel, approves and
rejects them, injects platform faults before each call (a timeout after or before the
platform did the work, ``NOT_ENOUGH_BALANCE``, ``SYSTEM_ERROR``), retries, reconciles, lets
the job runner query after the call's lease, switches the platform to asynchronous refunds
settled by (duplicated, replayed) notifications. After every step (design.md guarantee 4):

* for every order ``0 ≤ refunded ≤ paid ≤ payable``; ``refunded`` status iff refunded == paid
  > 0; the succeeded refunds sum to the order's refunded amount; each succeeded refund has one
  ``refund.succeeded`` outbox message, no other refund has one;
* for every payment at the platform: each platform refund is one of ours (its
  ``out_refund_no``), of the same amount and payment, and ours is ``succeeded`` or still
  being found out (``processing``/``unknown``) — never requested, approved, rejected or
  failed; each of our succeeded channel refunds is a succeeded platform refund; so the
  platform's refunded total is our succeeded total plus only what we have not confirmed yet;
* the platform refunded once per refund id (``refunds_made`` == distinct ids);
* the wallet: ledger sum == balance, never negative, and equal to what the model expects
  (top-ups − deductions − balance payments + wallet refunds + deductions given back).

When the example ends everything is settled (pending refunds settled and notified, open ones
reconciled): the platform's totals equal our succeeded totals exactly, and the audit chain
verifies.

One database and one core serve every example (a new customer and new orders per example):
building a database per example would cost more than the example.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from helpers import Backend, FakeClock
from ordercore import (
    IllegalTransition,
    InvalidAmount,
    Money,
    OrderStatus,
    Refund,
    RefundDestination,
    RefundFailure,
    RefundStatus,
    RefundUnavailable,
)
from ordercore.channels import Outcome
from ordercore.testing import SignedNotification

from .payment_kit import ADMIN, Shop, make_shop

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

CNY = "CNY"
PRICE_MINOR = 3000
OPEN = frozenset({RefundStatus.PROCESSING, RefundStatus.UNKNOWN})
#: Our refund states that may have a refund at the platform behind them.
MAY_BE_AT_PLATFORM = frozenset(
    {RefundStatus.PROCESSING, RefundStatus.UNKNOWN, RefundStatus.SUCCEEDED}
)
#: Faults injected before a call to the platform: (outcome, lose_answer_after_apply, code).
FAULTS: list[tuple[Outcome, bool, str | None] | None] = [
    None,
    (Outcome.UNKNOWN, True, None),
    (Outcome.UNKNOWN, False, None),
    (Outcome.FAILED, False, "NOT_ENOUGH_BALANCE"),
    (Outcome.FAILED, False, "SYSTEM_ERROR"),
]
#: How an order is paid: mostly through the fake channel, whose refunds go to a platform.
HOW = st.sampled_from(["fake", "fake", "fake", "balance", "hand"])
#: Where a refund goes: mostly back where the money came from.
WHERE = st.sampled_from(
    [RefundDestination.ORIGINAL, RefundDestination.ORIGINAL, RefundDestination.BALANCE]
)
_customers = itertools.count(1)


def cents(minor: int) -> Money:
    return Money.from_minor(minor, CNY)


@dataclass
class PaidOrder:
    number: str
    how: str  # "fake", "balance" or "hand"
    payable: int  # minor units
    deduction: int  # balance used at pricing, minor units
    out_trade_no: str | None


@dataclass
class Model:
    """What the test itself knows, independently of the engine."""

    customer_id: int
    orders: list[PaidOrder] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)
    topped_up: int = 0
    #: Notifications already delivered once (replayed later).
    sent: list[SignedNotification] = field(default_factory=list)


class RefundMachine(RuleBasedStateMachine):
    """Random refund histories on one shop (set as ``SHOP`` by the test)."""

    SHOP: ClassVar[Shop]

    def __init__(self) -> None:
        super().__init__()
        self.shop = self.SHOP
        self.core = self.shop.core
        self.gateway = self.shop.gateway
        self.gateway.reset_faults()
        self.gateway.refund_mode = "sync"
        n = next(_customers)
        customer = self.core.customers.add(
            name=f"Buyer {n}", email=f"buyer{n}@example.com", actor=ADMIN
        )
        assert customer.id is not None
        self.model = Model(customer.id)
        #: Each refund's status as the last invariant check read it (for preconditions).
        self.seen: dict[str, RefundStatus] = {}

    def having(self, *statuses: RefundStatus) -> list[str]:
        return [no for no, status in self.seen.items() if status in statuses]

    # -- reading ----------------------------------------------------------------------------
    def refunds(self, number: str | None = None) -> list[Refund]:
        if number is not None:
            return self.core.refunds.for_order(number)
        return [r for o in self.model.orders for r in self.core.refunds.for_order(o.number)]

    def refunds_in(self, *statuses: RefundStatus) -> list[Refund]:
        return [r for r in self.refunds() if r.status in statuses]

    def left(self, number: str) -> int:
        """What may still be refunded, by the model: paid minus the refunds that hold money
        (every refund but the rejected and failed ones)."""
        order = self.core.orders.get(number)
        if order.status not in (OrderStatus.PAID, OrderStatus.COMPLETED):
            return 0
        held = sum(
            r.amount.to_minor()
            for r in self.refunds(number)
            if r.status not in (RefundStatus.REJECTED, RefundStatus.FAILED)
        )
        return order.amounts.paid.to_minor() - held

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a refused or repeated command must leave as it was."""
        orders = [
            (o.status, o.amounts.paid, o.amounts.refunded)
            for o in (self.core.orders.get(p.number) for p in self.model.orders)
        ]
        refunds = [(r.refund_no, r.status, r.amount, r.failure) for r in self.refunds()]
        outbox = len(self.shop.outbox())
        wallet = self.core.wallet.ledger_sum(self.model.customer_id, CNY)
        return orders, refunds, outbox, wallet, len(self.gateway.refunds())

    def gateway_refund(self, refund_no: str) -> Any:
        return next((g for g in self.gateway.refunds() if g.out_refund_no == refund_no), None)

    # -- paying -----------------------------------------------------------------------------
    @initialize(
        first=st.tuples(st.integers(1, 3), st.sampled_from([0, 0, 1, 550, 2999])),
        second=st.tuples(HOW, st.integers(1, 3), st.sampled_from([0, 0, 1, 550, 2999])),
        mode=st.sampled_from(["sync", "sync", "async"]),
    )
    def two_paid_orders(
        self, first: tuple[int, int], second: tuple[str, int, int], mode: str
    ) -> None:
        self.gateway.refund_mode = mode  # type: ignore[assignment]
        self.pay_an_order("fake", *first)
        self.pay_an_order(*second)

    @precondition(lambda self: len(self.model.orders) < 4)
    @rule(how=HOW, qty=st.integers(1, 3), deduction=st.sampled_from([0, 0, 1, 550, 2999]))
    def pay_an_order(self, how: str, qty: int, deduction: int) -> None:
        model, core = self.model, self.core
        payable = PRICE_MINOR * qty - deduction
        top_up = deduction + (payable if how == "balance" else 0)
        if top_up:
            core.wallet.credit(model.customer_id, cents(top_up), reason="top-up", actor=ADMIN)
            model.topped_up += top_up
        order = core.orders.create(
            customer_id=model.customer_id,
            items=[("plan", qty)],
            use_balance=cents(deduction) if deduction else None,
            actor=ADMIN,
        )
        assert order.amounts.payable == cents(payable)
        out_trade_no = None
        if how == "fake":
            out_trade_no = self.shop.start(order.number).out_trade_no
            reply = self.shop.deliver(self.gateway.pay(out_trade_no))
            assert reply.status == 200
        elif how == "balance":
            started = self.shop.start(order.number, channel="balance", method="balance")
            out_trade_no = started.out_trade_no
        else:
            core.orders.mark_paid(order.number, actor=ADMIN)
        paid = core.orders.get(order.number)
        assert paid.status is OrderStatus.PAID
        assert paid.amounts.paid == cents(payable)
        model.orders.append(PaidOrder(order.number, how, payable, deduction, out_trade_no))

    # -- asking -----------------------------------------------------------------------------
    @precondition(lambda self: self.model.orders)
    @rule(
        pick=st.integers(0, 100),
        kind=st.sampled_from(["all", "some", "some", "exact", "over", "zero"]),
        fraction=st.integers(1, 100),
        destination=WHERE,
    )
    def request(self, pick: int, kind: str, fraction: int, destination: RefundDestination) -> None:
        paid = self.model.orders[pick % len(self.model.orders)]
        left = self.left(paid.number)
        assert self.core.refunds.refundable(paid.number) == cents(max(left, 0))
        amount: Money | None
        if kind == "all":
            amount, expected = None, left
        elif kind == "some":
            expected = max(1, left * fraction // 100)
            amount = cents(expected)
        elif kind == "exact":
            amount, expected = cents(left), left
        elif kind == "over":
            amount, expected = cents(left + fraction), left + fraction
        else:
            amount, expected = cents(0), 0
        before = self.snapshot()
        refused: type[Exception] | None = None
        if expected <= 0 or expected > left:
            refused = InvalidAmount
        elif destination is RefundDestination.ORIGINAL and paid.how == "hand":
            refused = RefundUnavailable
        if refused is not None:
            with pytest.raises(refused):
                self.core.refunds.request(
                    paid.number, amount=amount, destination=destination, reason="p", actor=ADMIN
                )
            assert self.snapshot() == before, "a refused request wrote something"
            return
        refund = self.core.refunds.request(
            paid.number, amount=amount, destination=destination, reason="p", actor=ADMIN
        )
        assert refund.status is RefundStatus.REQUESTED
        assert refund.amount == cents(expected)
        assert refund.out_trade_no == paid.out_trade_no
        self.model.refunds.append(refund.refund_no)
        assert self.left(paid.number) == left - expected

    # -- deciding ---------------------------------------------------------------------------
    def _goes_to_platform(self, refund: Refund) -> bool:
        return refund.destination is RefundDestination.ORIGINAL and refund.channel == "fake"

    def _inject(self, fault: tuple[Outcome, bool, str | None] | None) -> None:
        if fault is not None:
            outcome, applies, code = fault
            self.gateway.fail_next("refund", outcome, code=code, lose_answer_after_apply=applies)

    def _expect_after_call(
        self,
        refund: Refund,
        fault: tuple[Outcome, bool, str | None] | None,
        had: Any,
        *,
        uncertain: bool,
    ) -> None:
        """The refund's state after a call to the platform, from the fault, from what the
        platform held before the call (``had``) and from whether an earlier call's answer
        was lost (``uncertain``: then a refusal is no verdict, the refund stays unknown)."""
        now = self.gateway_refund(refund.refund_no)
        if fault is not None and fault[0] is Outcome.UNKNOWN:
            assert refund.status is RefundStatus.UNKNOWN
            assert refund.uncertain
            if fault[1] and had is None:
                assert now is not None  # the platform did it
                assert now.amount == refund.amount
            if not fault[1]:
                assert now == had  # nothing happened at the platform
            return
        if fault is not None:
            assert now == had  # a refusal: nothing happened at the platform
            if uncertain:
                assert refund.status is RefundStatus.UNKNOWN, refund
                return
            expected = {
                "NOT_ENOUGH_BALANCE": RefundFailure.MERCHANT_BALANCE_INSUFFICIENT,
                "SYSTEM_ERROR": RefundFailure.CHANNEL_ERROR,
            }[fault[2] or ""]
            assert refund.status is RefundStatus.FAILED, refund
            assert refund.failure is expected
            assert refund.retryable
            return
        assert now is not None
        assert now.amount == refund.amount
        assert now.out_trade_no == refund.out_trade_no
        status = {
            Outcome.SUCCEEDED: RefundStatus.SUCCEEDED,
            Outcome.PENDING: RefundStatus.PROCESSING,
            Outcome.FAILED: RefundStatus.UNKNOWN if uncertain else RefundStatus.FAILED,
        }[now.outcome]
        assert refund.status is status, (refund, now)

    @precondition(lambda self: self.having(RefundStatus.REQUESTED))
    @rule(pick=st.integers(0, 100), fault=st.sampled_from(FAULTS))
    def approve(self, pick: int, fault: tuple[Outcome, bool, str | None] | None) -> None:
        requested = self.having(RefundStatus.REQUESTED)
        self._approve(requested[pick % len(requested)], fault)

    def _approve(self, refund_no: str, fault: tuple[Outcome, bool, str | None] | None) -> None:
        refund = self.core.refunds.get(refund_no)
        assert refund.status is RefundStatus.REQUESTED
        platform = self._goes_to_platform(refund)
        if platform:
            self._inject(fault)
        had = self.gateway_refund(refund_no)
        try:
            refund = self.core.refunds.approve(refund_no, actor=ADMIN)
        finally:
            self.gateway.reset_faults()
        if platform:
            self._expect_after_call(refund, fault, had, uncertain=False)
        else:
            assert refund.status is RefundStatus.SUCCEEDED

    @precondition(lambda self: self.model.orders)
    @rule(
        pick=st.integers(0, 100),
        fraction=st.integers(1, 100),
        destination=WHERE,
        fault=st.sampled_from(FAULTS),
    )
    def request_and_approve(
        self,
        pick: int,
        fraction: int,
        destination: RefundDestination,
        fault: tuple[Outcome, bool, str | None] | None,
    ) -> None:
        """A request that fits, approved at once (the common path, to reach deeper states)."""
        paid = self.model.orders[pick % len(self.model.orders)]
        left = self.left(paid.number)
        if left <= 0 or (destination is RefundDestination.ORIGINAL and paid.how == "hand"):
            return
        amount = cents(max(1, left * fraction // 100))
        refund = self.core.refunds.request(
            paid.number, amount=amount, destination=destination, reason="p", actor=ADMIN
        )
        self.model.refunds.append(refund.refund_no)
        self._approve(refund.refund_no, fault)

    @precondition(lambda self: self.having(RefundStatus.REQUESTED))
    @rule(pick=st.integers(0, 100))
    def reject(self, pick: int) -> None:
        requested = self.having(RefundStatus.REQUESTED)
        refund = self.core.refunds.get(requested[pick % len(requested)])
        left = self.left(refund.order_number)
        rejected = self.core.refunds.reject(refund.refund_no, actor=ADMIN, reason="no")
        assert rejected.status is RefundStatus.REJECTED
        assert self.left(refund.order_number) == left + refund.amount.to_minor()

    @precondition(
        lambda self: [no for no, st_ in self.seen.items() if st_ is not RefundStatus.REQUESTED]
    )
    @rule(pick=st.integers(0, 100), command=st.sampled_from(["approve", "reject", "retry"]))
    def decide_a_decided_refund(self, pick: int, command: str) -> None:
        """Approving or rejecting a refund that is no longer requested, or retrying one that
        is neither failed nor unknown, is refused and writes nothing."""
        decided = [no for no, status in self.seen.items() if status is not RefundStatus.REQUESTED]
        refund_no = decided[pick % len(decided)]
        status = self.seen[refund_no]
        before = self.snapshot()
        refunds = self.core.refunds
        if command == "approve":
            with pytest.raises(IllegalTransition):
                refunds.approve(refund_no, actor=ADMIN)
        elif command == "reject":
            with pytest.raises(IllegalTransition):
                refunds.reject(refund_no, actor=ADMIN, reason="no")
        elif status in (RefundStatus.FAILED, RefundStatus.UNKNOWN):
            return  # retried by the retry rule
        else:
            with pytest.raises(IllegalTransition):
                refunds.retry(refund_no, actor=ADMIN)
        assert self.snapshot() == before

    # -- trying again -----------------------------------------------------------------------
    @precondition(lambda self: self.having(RefundStatus.FAILED, RefundStatus.UNKNOWN))
    @rule(pick=st.integers(0, 100), fault=st.sampled_from(FAULTS))
    def retry(self, pick: int, fault: tuple[Outcome, bool, str | None] | None) -> None:
        retryable = self.having(RefundStatus.FAILED, RefundStatus.UNKNOWN)
        refund_no = retryable[pick % len(retryable)]
        refund = self.core.refunds.get(refund_no)
        before = self.snapshot()
        if refund.status is RefundStatus.FAILED and refund.amount.to_minor() > self.left(
            refund.order_number
        ):
            with pytest.raises(InvalidAmount):
                self.core.refunds.retry(refund_no, actor=ADMIN)
            assert self.snapshot() == before
            return
        self._inject(fault)
        had = self.gateway_refund(refund_no)
        try:
            after = self.core.refunds.retry(refund_no, actor=ADMIN)
        finally:
            self.gateway.reset_faults()
        self._expect_after_call(after, fault, had, uncertain=refund.uncertain)

    @precondition(lambda self: self.model.refunds)
    @rule(
        pick=st.integers(0, 100),
        query_fault=st.sampled_from([None, None, "no answer", "error"]),
        open_only=st.booleans(),
    )
    def reconcile(self, pick: int, query_fault: str | None, open_only: bool) -> None:
        """Ask the platform about a refund (open ones mostly). A query that gets no answer,
        or fails, is no answer about the refund: nothing changes."""
        candidates = (open_only and self.having(*OPEN)) or self.model.refunds
        refund_no = candidates[pick % len(candidates)]
        refund = self.core.refunds.get(refund_no)
        if query_fault == "no answer":
            self.gateway.fail_next("query_refund", Outcome.UNKNOWN)
        elif query_fault == "error":
            self.gateway.fail_next("query_refund", Outcome.FAILED, code="SYSTEM_ERROR")
        before = self.snapshot()
        try:
            after = self.core.refunds.reconcile(refund_no)
        finally:
            self.gateway.reset_faults()
        if refund.status not in OPEN or query_fault is not None:
            assert after.status is refund.status
            assert self.snapshot() == before
            return
        at_platform = self.gateway_refund(refund_no)
        if at_platform is None:  # never made: failed, and a retry may send it again
            assert after.status is RefundStatus.FAILED
            assert after.retryable
            assert not after.uncertain
        else:
            expected = {
                Outcome.SUCCEEDED: RefundStatus.SUCCEEDED,
                Outcome.PENDING: refund.status,
                Outcome.FAILED: RefundStatus.FAILED,
            }[at_platform.outcome]
            assert after.status is expected, (after, at_platform)

    @rule(minutes=st.sampled_from([6, 6, 31, 24 * 60 + 1]))
    def job_runner_later(self, minutes: int) -> None:
        """The job runner, some minutes on: every refund whose check is due is asked about;
        only those the platform has not decided stay open."""
        self.shop.clock.advance(minutes * 60)
        now = self.shop.clock.now
        due = {r.refund_no for r in self.refunds_in(*OPEN) if r.next_check_at <= now}
        self.core.payments.run_due_jobs()
        for refund in self.refunds_in(*OPEN):
            if refund.refund_no in due:
                at_platform = self.gateway_refund(refund.refund_no)
                assert at_platform is not None, refund
                assert at_platform.outcome is Outcome.PENDING, refund

    # -- the platform's own pace ----------------------------------------------------------
    @rule(mode=st.sampled_from(["sync", "async"]))
    def platform_refund_mode(self, mode: str) -> None:
        self.gateway.refund_mode = mode  # type: ignore[assignment]

    @precondition(
        lambda self: any(
            g.outcome is Outcome.PENDING
            for g in self.gateway.refunds()
            if g.out_refund_no in self.model.refunds
        )
    )
    @rule(pick=st.integers(0, 100), succeeded=st.booleans(), copies=st.integers(1, 3))
    def platform_settles(self, pick: int, succeeded: bool, copies: int) -> None:
        pending = [
            g
            for g in self.gateway.refunds()
            if g.outcome is Outcome.PENDING and g.out_refund_no in self.model.refunds
        ]
        chosen = pending[pick % len(pending)]
        signed = self.gateway.settle_refund(chosen.out_refund_no, succeeded=succeeded)
        replies = [self.shop.deliver(signed) for _ in range(copies)]
        assert {r.status for r in replies} == {200}
        after = self.core.refunds.get(chosen.out_refund_no)
        expected = RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED
        assert after.status is expected, after
        self.model.sent.append(signed)

    @precondition(lambda self: self.model.sent)
    @rule(pick=st.integers(0, 100))
    def platform_repeats_a_notification(self, pick: int) -> None:
        before = self.snapshot()
        self.shop.deliver(self.model.sent[pick % len(self.model.sent)])
        assert self.snapshot() == before

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def money_adds_up(self) -> None:
        self.check(settled=False)

    def check(self, *, settled: bool) -> None:
        core, gateway, model = self.core, self.gateway, self.model
        ours_by_no: dict[str, Refund] = {}
        wallet_refunds = returned = 0
        at_platform = {g.out_refund_no: g for g in gateway.refunds()}
        assert gateway.refunds_made == len(at_platform)
        for paid in model.orders:
            order = core.orders.get(paid.number)
            amounts = order.amounts
            refunded = amounts.refunded.to_minor()
            paid_minor = amounts.paid.to_minor()
            assert 0 <= refunded <= paid_minor <= amounts.payable.to_minor(), order.number
            assert paid_minor == paid.payable
            assert (order.status is OrderStatus.REFUNDED) == (refunded == paid_minor > 0)
            refunds = self.refunds(paid.number)
            succeeded = [r for r in refunds if r.status is RefundStatus.SUCCEEDED]
            assert all(r.counts_toward_order for r in refunds)
            assert sum(r.amount.to_minor() for r in succeeded) == refunded
            held = sum(
                r.amount.to_minor()
                for r in refunds
                if r.status not in (RefundStatus.REJECTED, RefundStatus.FAILED)
            )
            assert held <= paid_minor, f"{order.number}: refunds hold {held} of {paid_minor}"
            outbox = Counter(
                m["payload"]["refund"]
                for m in self.shop.outbox(paid.number)
                if m["kind"] == "refund.succeeded"
            )
            assert outbox == Counter({r.refund_no: 1 for r in succeeded}), order.number
            for r in refunds:
                ours_by_no[r.refund_no] = r
                self.seen[r.refund_no] = r.status
                if r.status is RefundStatus.SUCCEEDED and (
                    r.destination is RefundDestination.BALANCE or r.channel == "balance"
                ):
                    wallet_refunds += r.amount.to_minor()
            if order.status is OrderStatus.REFUNDED:
                returned += paid.deduction
            if paid.how == "fake":
                self.check_platform(paid, refunds, at_platform, settled=settled)
        for no, g in at_platform.items():
            if no in ours_by_no:
                assert g.amount == ours_by_no[no].amount
        # The wallet.
        cid = model.customer_id
        ledger = core.wallet.ledger_sum(cid, CNY)
        assert core.wallet.balance(cid, CNY).to_minor() == ledger >= 0
        spent = sum(o.deduction + (o.payable if o.how == "balance" else 0) for o in model.orders)
        assert ledger == model.topped_up - spent + wallet_refunds + returned

    def check_platform(
        self, paid: PaidOrder, refunds: list[Refund], at_platform: dict[str, Any], *, settled: bool
    ) -> None:
        assert paid.out_trade_no is not None
        ours = {r.refund_no: r for r in refunds if r.out_trade_no == paid.out_trade_no}
        theirs = {no: g for no, g in at_platform.items() if g.out_trade_no == paid.out_trade_no}
        assert set(theirs) <= set(ours), f"platform refunds that are not ours: {theirs}"
        unconfirmed = 0
        for no, g in theirs.items():
            r = ours[no]
            assert g.amount == r.amount
            assert r.destination is RefundDestination.ORIGINAL
            if g.outcome is Outcome.FAILED:
                assert r.status in (RefundStatus.FAILED, *OPEN), (r, g)
                continue
            assert r.status in MAY_BE_AT_PLATFORM, (
                f"refund {no} is {r.status.value} here but {g.outcome.value} at the platform"
            )
            if r.status is RefundStatus.SUCCEEDED:
                assert g.outcome is Outcome.SUCCEEDED, (r, g)
            else:
                unconfirmed += g.amount.to_minor()
        for r in ours.values():
            if r.status is RefundStatus.SUCCEEDED and r.destination is RefundDestination.ORIGINAL:
                assert r.refund_no in theirs, f"{r.refund_no} succeeded, the platform has none"
        succeeded = sum(
            r.amount.to_minor()
            for r in ours.values()
            if r.status is RefundStatus.SUCCEEDED and r.destination is RefundDestination.ORIGINAL
        )
        total = self.gateway.trade(paid.out_trade_no).refunded.to_minor()
        assert total == succeeded + unconfirmed
        if settled:
            assert unconfirmed == 0
            assert total == succeeded

    # -- the end ----------------------------------------------------------------------------
    def teardown(self) -> None:
        """Let the platform finish and the engine find out, then check that nothing is left
        unconfirmed."""
        self.gateway.reset_faults()
        for _ in range(4):
            open_refunds = self.refunds_in(*OPEN)
            if not open_refunds:
                break
            for refund in open_refunds:
                g = self.gateway_refund(refund.refund_no)
                if g is not None and g.outcome is Outcome.PENDING:
                    reply = self.shop.deliver(self.gateway.settle_refund(refund.refund_no))
                    assert reply.status == 200
                else:
                    self.core.refunds.reconcile(refund.refund_no)
        assert self.refunds_in(*OPEN) == []
        self.check(settled=True)
        self.core.payments.run_due_jobs()
        for paid in self.model.orders:
            revokes = Counter(
                m["payload"]["refund"]
                for m in self.shop.outbox(paid.number)
                if m["kind"] == "order.revoke"
            )
            succeeded = [
                r.refund_no for r in self.refunds(paid.number) if r.status is RefundStatus.SUCCEEDED
            ]
            assert revokes == Counter(succeeded)
        verdict = self.core.audit.verify()
        assert verdict.ok, verdict


@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    built.core.products.add(sku="plan", name="Plan", price=cents(PRICE_MINOR), actor=ADMIN)
    yield built
    built.core.close()


def test_refund_money_invariants_hold_over_random_histories(shop: Shop) -> None:
    class Machine(RefundMachine):
        SHOP = shop

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# -- the histories the machine found, kept as plain tests --------------------------------------


def _paid_through_the_platform(shop: Shop) -> tuple[str, str]:
    order = shop.core.orders.create(customer_id=shop.customer_id, items=[("plan", 1)], actor=ADMIN)
    out_trade_no = shop.start(order.number).out_trade_no
    assert shop.deliver(shop.gateway.pay(out_trade_no)).status == 200
    return order.number, out_trade_no


@pytest.mark.parametrize(
    "second_answer",
    ["retry: SYSTEM_ERROR", "retry: NOT_ENOUGH_BALANCE", "query: SYSTEM_ERROR"],
)
def test_an_error_after_a_lost_answer_never_frees_money_the_platform_paid_out(
    shop: Shop, second_answer: str
) -> None:
    """The refund call times out after the platform paid; then a retry, or the query that
    should find out, answers with an error. That error says nothing about the first call:
    the refund's amount stays held (no second refund of the same money, to the wallet or
    anywhere), and once the platform answers, the refund is succeeded, once."""
    core, gateway = shop.core, shop.gateway
    number, out_trade_no = _paid_through_the_platform(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    gateway.fail_next("refund", Outcome.UNKNOWN, lose_answer_after_apply=True)
    refund = core.refunds.approve(refund.refund_no, actor=ADMIN)
    assert refund.status is RefundStatus.UNKNOWN
    assert gateway.trade(out_trade_no).refunded == cents(PRICE_MINOR)  # the money is out

    where, code = second_answer.split(": ")
    if where == "retry":
        gateway.fail_next("refund", Outcome.FAILED, code=code)
        core.refunds.retry(refund.refund_no, actor=ADMIN)
    else:
        gateway.fail_next("query_refund", Outcome.FAILED, code=code)
        core.refunds.reconcile(refund.refund_no)

    assert core.refunds.refundable(number) == cents(0)
    before = core.refunds.for_order(number)
    with pytest.raises(InvalidAmount):
        core.refunds.request(number, destination="balance", reason="again", actor=ADMIN)
    assert core.refunds.for_order(number) == before
    # The platform answers at last: succeeded, once, with one wallet-free payout.
    if core.refunds.get(refund.refund_no).status in OPEN:
        core.refunds.reconcile(refund.refund_no)
    if core.refunds.get(refund.refund_no).status is not RefundStatus.SUCCEEDED:
        core.refunds.retry(refund.refund_no, actor=ADMIN)
    final = core.refunds.get(refund.refund_no)
    assert final.status is RefundStatus.SUCCEEDED
    assert gateway.refunds_made == 1
    order = core.orders.get(number)
    assert order.status is OrderStatus.REFUNDED
    assert order.amounts.refunded == cents(PRICE_MINOR)
    assert core.wallet.balance(shop.customer_id, CNY) == cents(0)
    kinds = Counter(m["kind"] for m in shop.outbox(number))
    assert kinds["refund.succeeded"] == 1
