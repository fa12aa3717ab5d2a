"""Unit tests of ordercore._state (the transition tables) and of the Order aggregate's
state changes in ordercore._orders.domain."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ordercore._actor import Actor
from ordercore._errors import (
    CurrencyMismatch,
    IllegalTransition,
    InvalidAmount,
    InvalidField,
    OrderCoreError,
)
from ordercore._money import Money
from ordercore._state import (
    ANOMALY_MACHINE,
    ISSUE_MACHINE,
    ORDER_MACHINE,
    PAYMENT_MACHINE,
    REFUND_MACHINE,
    AnomalyEvent,
    AnomalyStatus,
    CancelReason,
    IssueEvent,
    IssueStatus,
    OrderEvent,
    OrderStatus,
    PaymentEvent,
    PaymentStatus,
    RefundEvent,
    RefundStatus,
    StateMachine,
    Transition,
)

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
SYSTEM = Actor.system()
ALICE = Actor.operator("alice", "admin")

# The tables as the design states them, written out independently of src/ so that a change
# to a table is a deliberate change to this test too: {state: {event: target}}.
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "order": {
        "pending": {"pay": "paid", "cancel": "canceled"},
        "paid": {"complete": "completed", "refund": "refunded"},
        "completed": {"refund": "refunded"},
        "canceled": {},
        "refunded": {},
    },
    "payment": {
        "created": {
            "submit": "pending",
            "submit_proof": "awaiting_review",
            "succeed": "succeeded",
            "fail": "failed",
            "cancel": "canceled",
            "expire": "expired",
            "lose_track": "unknown",
        },
        "pending": {
            "submit_proof": "awaiting_review",
            "succeed": "succeeded",
            "fail": "failed",
            "cancel": "canceled",
            "expire": "expired",
            "lose_track": "unknown",
        },
        "awaiting_review": {"succeed": "succeeded", "fail": "failed", "cancel": "canceled"},
        "unknown": {
            "succeed": "succeeded",
            "fail": "failed",
            "cancel": "canceled",
            "expire": "expired",
            "resume": "pending",
        },
        "succeeded": {},
        "failed": {"succeed": "succeeded"},  # late money: the platform's fact wins
        "canceled": {"succeed": "succeeded"},
        "expired": {"succeed": "succeeded"},
    },
    "refund": {
        "requested": {"approve": "approved", "reject": "rejected"},
        "approved": {"start": "processing"},
        "processing": {"succeed": "succeeded", "fail": "failed", "lose_track": "unknown"},
        "unknown": {"succeed": "succeeded", "fail": "failed", "retry": "processing"},
        "failed": {"retry": "processing", "succeed": "succeeded"},  # the platform's fact wins
        "rejected": {},
        "succeeded": {},
    },
    "anomaly": {
        "open": {"investigate": "investigating", "contact": "contacting", "resolve": "resolved"},
        "investigating": {"contact": "contacting", "resolve": "resolved"},
        "contacting": {"investigate": "investigating", "resolve": "resolved"},
        "resolved": {},
    },
    "issue": {
        "open": {
            "investigate": "investigating",
            "ask_customer": "waiting_for_customer",
            "resolve": "resolved",
        },
        "investigating": {"ask_customer": "waiting_for_customer", "resolve": "resolved"},
        "waiting_for_customer": {"investigate": "investigating", "resolve": "resolved"},
        "resolved": {"reopen": "investigating"},
    },
}

MACHINES: dict[str, StateMachine[Any, Any]] = {
    "order": ORDER_MACHINE,
    "payment": PAYMENT_MACHINE,
    "refund": REFUND_MACHINE,
    "anomaly": ANOMALY_MACHINE,
    "issue": ISSUE_MACHINE,
}
ENUMS: dict[str, tuple[type[Any], type[Any]]] = {
    "order": (OrderStatus, OrderEvent),
    "payment": (PaymentStatus, PaymentEvent),
    "refund": (RefundStatus, RefundEvent),
    "anomaly": (AnomalyStatus, AnomalyEvent),
    "issue": (IssueStatus, IssueEvent),
}


def all_pairs() -> list[Any]:
    params = []
    for name, (states, events) in ENUMS.items():
        for state, event in itertools.product(states, events):
            params.append(pytest.param(name, state, event, id=f"{name}-{state}-{event}"))
    return params


# ------------------------------------------------------------------------ the tables
@pytest.mark.parametrize("name", sorted(MACHINES))
def test_table_is_exactly_the_designed_one(name: str) -> None:
    machine = MACHINES[name]
    states, events = ENUMS[name]
    assert machine.name == name
    assert {s.value for s in states} == set(EXPECTED[name])
    actual = {
        s.value: {e.value: t.value for e, t in machine.table[s].items()} for s in machine.table
    }
    assert actual == EXPECTED[name]
    for state in states:
        assert machine.allowed_events(state) == {events(e) for e in EXPECTED[name][state.value]}
        assert machine.is_final(state) == (not EXPECTED[name][state.value])


@pytest.mark.parametrize(("name", "state", "event"), all_pairs())
def test_every_state_event_pair(name: str, state: Any, event: Any) -> None:
    machine = MACHINES[name]
    target = EXPECTED[name][state.value].get(event.value)
    if target is not None:
        assert machine.next_state("E-1", state, event) == target
        assert machine.next_state("E-1", state.value, event.value) == target  # plain strings
        record = machine.transition("E-1", state, event, actor=SYSTEM, at=T0, reason="why")
        assert record == Transition(
            machine=name,
            entity="E-1",
            source=state,
            event=event,
            target=target,
            actor=SYSTEM,
            reason="why",
            at=T0,
        )
        assert type(record.source) is type(state)
        assert type(record.target) is type(state)
        return
    for call in (
        lambda: machine.next_state("E-1", state, event),
        lambda: machine.next_state("E-1", state.value, event.value),
        lambda: machine.transition("E-1", state, event, actor=SYSTEM, at=T0),
    ):
        with pytest.raises(IllegalTransition) as info:
            call()
        error = info.value
        assert error.machine == name  # type: ignore[attr-defined]
        assert error.entity == "E-1"  # type: ignore[attr-defined]
        assert error.state == state  # type: ignore[attr-defined]
        assert error.event == event  # type: ignore[attr-defined]
        message = str(error)
        assert "E-1" in message
        assert state.value in message
        assert event.value in message
        assert error.__suppress_context__  # raised "from None": no KeyError noise


def test_illegal_transition_message_lists_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition, match=r"allowed from paid: complete, refund"):
        ORDER_MACHINE.next_state("N1", "paid", "pay")
    with pytest.raises(IllegalTransition, match=r"none \(final state\)"):
        REFUND_MACHINE.next_state("R1", "succeeded", "retry")


@pytest.mark.parametrize("name", sorted(MACHINES))
@pytest.mark.parametrize("bad", ["", "PENDING", "paid ", "nope", None, 3])
def test_unknown_state_or_event_is_an_invalid_field(name: str, bad: Any) -> None:
    machine = MACHINES[name]
    states, events = ENUMS[name]
    some_state, some_event = next(iter(states)), next(iter(events))
    with pytest.raises(InvalidField, match=f"unknown {name} state") as info:
        machine.next_state("E-1", bad, some_event)
    assert info.value.field == "state"  # type: ignore[attr-defined]
    with pytest.raises(InvalidField, match=f"unknown {name} event") as info:
        machine.next_state("E-1", some_state, bad)
    assert info.value.field == "event"  # type: ignore[attr-defined]
    with pytest.raises(InvalidField):
        machine.allowed_events(bad)


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 24, 8, 0),
        datetime(2026, 11, 24, 8, 0).replace(tzinfo=None),
    ],
)
def test_transition_requires_an_aware_datetime(at: datetime) -> None:
    with pytest.raises(InvalidField, match="timezone-aware") as info:
        ORDER_MACHINE.transition("N1", "pending", "pay", actor=SYSTEM, at=at)
    assert info.value.field == "at"  # type: ignore[attr-defined]


def test_transition_accepts_any_aware_offset() -> None:
    at = datetime(2026, 11, 24, 16, 0, tzinfo=timezone(timedelta(hours=8)))
    record = ORDER_MACHINE.transition("N1", "pending", "pay", actor=ALICE, at=at)
    assert record.at == at
    assert record.actor == ALICE


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        ORDER_MACHINE.table[OrderStatus.CANCELED] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        ORDER_MACHINE.table[OrderStatus.CANCELED][OrderEvent.PAY] = OrderStatus.PAID  # type: ignore[index]


# ------------------------------------------------------------------- the Order aggregate
def make_order(price: str = "30.00", quantity: int = 2, currency: str = "CNY") -> Any:
    from ordercore._orders.amounts import AmountBreakdown
    from ordercore._orders.domain import Order, OrderLine

    line = OrderLine(
        sku="PLAN-PRO", name="Pro plan", unit_price=Money.of(price, currency), quantity=quantity
    )
    return Order(
        number="20261124080000000ABCDE",
        customer_id=7,
        lines=(line,),
        amounts=AmountBreakdown.for_lines([line]),
        created_at=T0,
    )


def snapshot(order: Any) -> dict[str, Any]:
    """Everything an order holds, deep-copied: status, amounts, timestamps, history, audit."""
    return copy.deepcopy(attrs.asdict(order, recurse=False))


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def money(text: str) -> Money:
    return Money.of(text, "CNY")


def test_new_order_is_pending_with_nothing_paid() -> None:
    order = make_order()
    assert order.status is OrderStatus.PENDING
    assert order.amounts.payable == money("60.00")
    assert order.amounts.paid == money("0")
    assert order.amounts.refunded == money("0")
    assert order.history == []
    assert order.pending_audit == []


def test_pay_complete_refund_path() -> None:
    order = make_order()
    paid = order.mark_paid(money("60.00"), Actor.channel("alipay"), at(1), "notify 1")
    assert paid.source is OrderStatus.PENDING
    assert paid.target is OrderStatus.PAID
    assert order.status is OrderStatus.PAID
    assert order.paid_at == at(1)
    assert order.amounts.paid == money("60.00")

    completed = order.complete(SYSTEM, at(2))
    assert completed.target is OrderStatus.COMPLETED
    assert order.completed_at == at(2)

    assert order.record_refund(money("60.00"), ALICE, at(3), "customer asked") is not None
    assert order.status is OrderStatus.REFUNDED
    assert order.refunded_at == at(3)
    assert order.amounts.refunded == money("60.00")

    assert [(t.source, t.event, t.target) for t in order.history] == [
        (OrderStatus.PENDING, OrderEvent.PAY, OrderStatus.PAID),
        (OrderStatus.PAID, OrderEvent.COMPLETE, OrderStatus.COMPLETED),
        (OrderStatus.COMPLETED, OrderEvent.REFUND, OrderStatus.REFUNDED),
    ]
    assert [e.action for e in order.pending_audit] == [
        "order.pay",
        "order.complete",
        "order.refunded_amount",
        "order.refund",
    ]
    first = order.pending_audit[0]
    assert first.entity_kind == "order"
    assert first.entity_id == order.number
    assert first.actor == Actor.channel("alipay")
    assert first.before == {"status": "pending"}
    assert first.after == {"status": "paid"}
    assert first.reason == "notify 1"


def test_refund_from_paid_without_completing() -> None:
    order = make_order()
    order.mark_paid(money("60.00"), SYSTEM, at(1))
    order.record_refund(money("60.00"), ALICE, at(2))
    assert order.status is OrderStatus.REFUNDED


@pytest.mark.parametrize("reason", list(CancelReason))
def test_cancel_pending_order_with_each_reason(reason: CancelReason) -> None:
    order = make_order()
    record = order.cancel(reason, ALICE, at(5))
    assert record.target is OrderStatus.CANCELED
    assert order.status is OrderStatus.CANCELED
    assert order.cancel_reason is reason
    assert order.canceled_at == at(5)
    assert record.reason == reason.value
    assert order.pending_audit[-1].action == "order.cancel"


def test_cancel_reason_as_text_and_with_a_note() -> None:
    order = make_order()
    record = order.cancel("timeout", SYSTEM, at(30), note="30 minutes unpaid")
    assert order.cancel_reason is CancelReason.TIMEOUT
    assert record.reason == "timeout: 30 minutes unpaid"


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.COMPLETED])
def test_partial_refunds_keep_the_status_and_raise_the_refunded_amount(
    status: OrderStatus,
) -> None:
    order = make_order()
    order.mark_paid(money("60.00"), SYSTEM, at(1))
    if status is OrderStatus.COMPLETED:
        order.complete(SYSTEM, at(2))
    history_before = len(order.history)

    assert order.record_refund(money("10.00"), ALICE, at(3)) is None
    assert order.status is status
    assert order.amounts.refunded == money("10.00")
    assert order.refunded_at is None
    assert len(order.history) == history_before
    audit = order.pending_audit[-1]
    assert audit.action == "order.refunded_amount"
    assert audit.before == {"refunded": "0.00"}
    assert audit.after == {"refunded": "10.00"}

    assert order.record_refund(money("49.99"), ALICE, at(4)) is None
    assert order.status is status
    assert order.amounts.refunded == money("59.99")

    final = order.record_refund(money("0.01"), ALICE, at(5))
    assert final is not None
    assert final.source is status
    assert final.target is OrderStatus.REFUNDED
    assert order.status is OrderStatus.REFUNDED
    assert order.amounts.refunded == money("60.00")
    assert order.refunded_at == at(5)


# ---- illegal calls raise and change nothing
def pending() -> Any:
    return make_order()


def paid() -> Any:
    order = make_order()
    order.mark_paid(money("60.00"), SYSTEM, at(1))
    return order


def completed() -> Any:
    order = paid()
    order.complete(SYSTEM, at(2))
    return order


def partly_refunded() -> Any:
    order = completed()
    order.record_refund(money("20.00"), ALICE, at(3))
    return order


def canceled() -> Any:
    order = make_order()
    order.cancel(CancelReason.USER, Actor.customer(7), at(1))
    return order


def refunded() -> Any:
    order = paid()
    order.record_refund(money("60.00"), ALICE, at(2))
    return order


NAIVE = datetime(2026, 11, 24, 9, 0)

ILLEGAL_CALLS = [
    # (builder, call, error, message fragment)
    pytest.param(
        pending,
        lambda o: o.complete(SYSTEM, at(9)),
        IllegalTransition,
        "cannot complete when pending",
        id="complete-pending",
    ),
    pytest.param(
        pending,
        lambda o: o.record_refund(money("1.00"), ALICE, at(9)),
        IllegalTransition,
        "cannot refund when pending",
        id="refund-pending",
    ),
    pytest.param(
        pending,
        lambda o: o.mark_paid(money("59.99"), SYSTEM, at(9)),
        InvalidAmount,
        "paid 59.99 CNY but 60.00 CNY is payable",
        id="pay-too-little",
    ),
    pytest.param(
        pending,
        lambda o: o.mark_paid(money("60.01"), SYSTEM, at(9)),
        InvalidAmount,
        "is payable",
        id="pay-too-much",
    ),
    pytest.param(
        pending,
        lambda o: o.mark_paid(Money.of("60.00", "USD"), SYSTEM, at(9)),
        OrderCoreError,
        "60.00 USD",
        id="pay-wrong-currency",
    ),
    pytest.param(
        pending,
        lambda o: o.mark_paid(money("60.00"), SYSTEM, NAIVE),
        InvalidField,
        "timezone-aware",
        id="pay-naive-time",
    ),
    pytest.param(
        pending,
        lambda o: o.cancel("bored", ALICE, at(9)),
        InvalidField,
        "cancel reason must be one of",
        id="cancel-bad-reason",
    ),
    pytest.param(
        pending,
        lambda o: o.cancel(CancelReason.USER, ALICE, NAIVE),
        InvalidField,
        "timezone-aware",
        id="cancel-naive-time",
    ),
    pytest.param(
        paid,
        lambda o: o.cancel(CancelReason.USER, ALICE, at(9)),
        IllegalTransition,
        "refund it instead",
        id="cancel-paid",
    ),
    pytest.param(
        paid,
        lambda o: o.mark_paid(money("60.00"), SYSTEM, at(9)),
        IllegalTransition,
        "cannot pay when paid",
        id="pay-paid",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(money("60.01"), ALICE, at(9)),
        InvalidAmount,
        "would exceed the paid",
        id="refund-more-than-paid",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(money("0.00"), ALICE, at(9)),
        InvalidAmount,
        "must be positive",
        id="refund-zero",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(money("-1.00"), ALICE, at(9)),
        InvalidAmount,
        "must be positive",
        id="refund-negative",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(Money.of("1.00", "USD"), ALICE, at(9)),
        CurrencyMismatch,
        "refund in USD",
        id="refund-wrong-currency",
    ),
    pytest.param(
        paid,
        lambda o: o.complete(SYSTEM, NAIVE),
        InvalidField,
        "timezone-aware",
        id="complete-naive-time",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(money("60.00"), ALICE, NAIVE),
        InvalidField,
        "timezone-aware",
        id="full-refund-naive-time",
    ),
    pytest.param(
        paid,
        lambda o: o.record_refund(money("10.00"), ALICE, NAIVE),
        InvalidField,
        "timezone-aware",
        id="partial-refund-naive-time",
    ),
    pytest.param(
        completed,
        lambda o: o.cancel(CancelReason.ADMIN, ALICE, at(9)),
        IllegalTransition,
        "refund it instead",
        id="cancel-completed",
    ),
    pytest.param(
        completed,
        lambda o: o.complete(SYSTEM, at(9)),
        IllegalTransition,
        "cannot complete when completed",
        id="complete-completed",
    ),
    pytest.param(
        completed,
        lambda o: o.mark_paid(money("60.00"), SYSTEM, at(9)),
        IllegalTransition,
        "cannot pay when completed",
        id="pay-completed",
    ),
    pytest.param(
        partly_refunded,
        lambda o: o.record_refund(money("40.01"), ALICE, at(9)),
        InvalidAmount,
        "already refunded 20.00 CNY",
        id="refund-past-paid",
    ),
    pytest.param(
        partly_refunded,
        lambda o: o.cancel(CancelReason.USER, ALICE, at(9)),
        IllegalTransition,
        "refund it instead",
        id="cancel-partly-refunded",
    ),
    pytest.param(
        canceled,
        lambda o: o.mark_paid(money("60.00"), SYSTEM, at(9)),
        IllegalTransition,
        "cannot pay when canceled",
        id="pay-canceled",
    ),
    pytest.param(
        canceled,
        lambda o: o.cancel(CancelReason.USER, ALICE, at(9)),
        IllegalTransition,
        "cannot cancel when canceled",
        id="cancel-canceled",
    ),
    pytest.param(
        canceled,
        lambda o: o.complete(SYSTEM, at(9)),
        IllegalTransition,
        "cannot complete when canceled",
        id="complete-canceled",
    ),
    pytest.param(
        canceled,
        lambda o: o.record_refund(money("1.00"), ALICE, at(9)),
        IllegalTransition,
        "cannot refund when canceled",
        id="refund-canceled",
    ),
    pytest.param(
        refunded,
        lambda o: o.record_refund(money("1.00"), ALICE, at(9)),
        IllegalTransition,
        "cannot refund when refunded",
        id="refund-refunded",
    ),
    pytest.param(
        refunded,
        lambda o: o.cancel(CancelReason.USER, ALICE, at(9)),
        IllegalTransition,
        "cannot cancel when refunded",
        id="cancel-refunded",
    ),
    pytest.param(
        refunded,
        lambda o: o.complete(SYSTEM, at(9)),
        IllegalTransition,
        "cannot complete when refunded",
        id="complete-refunded",
    ),
    pytest.param(
        refunded,
        lambda o: o.mark_paid(money("60.00"), SYSTEM, at(9)),
        IllegalTransition,
        "cannot pay when refunded",
        id="pay-refunded",
    ),
]


@pytest.mark.parametrize(("build", "call", "error", "fragment"), ILLEGAL_CALLS)
def test_illegal_calls_raise_and_leave_the_order_exactly_as_it_was(
    build: Any, call: Any, error: type[Exception], fragment: str
) -> None:
    order = build()
    before = snapshot(order)
    with pytest.raises(error) as info:
        call(order)
    assert fragment in str(info.value)
    assert snapshot(order) == before
    if isinstance(info.value, IllegalTransition):
        assert info.value.machine == "order"  # type: ignore[attr-defined]
        assert info.value.entity == order.number  # type: ignore[attr-defined]
        assert order.number in str(info.value)


def test_cancel_paid_order_error_carries_its_context() -> None:
    order = paid()
    with pytest.raises(IllegalTransition, match="cannot be cancelled, refund it instead") as info:
        order.cancel(CancelReason.ADMIN, ALICE, at(9))
    assert info.value.state == OrderStatus.PAID  # type: ignore[attr-defined]
    assert info.value.event == OrderEvent.CANCEL  # type: ignore[attr-defined]


# ---------------------------------------------------- random sequences of operations
class OrderLifecycle(RuleBasedStateMachine):
    """Drive one order with random operations and keep a model of what should happen."""

    @initialize(
        price=st.integers(min_value=0, max_value=100_000),
        quantity=st.integers(min_value=1, max_value=5),
    )
    def create(self, price: int, quantity: int) -> None:
        self.order = make_order(str(Decimal(price).scaleb(-2)), quantity)
        self.payable = self.order.amounts.payable.to_minor()
        self.status = OrderStatus.PENDING
        self.paid = 0
        self.refunded = 0
        self.changes = 0
        self.clock = 0

    def _now(self) -> datetime:
        self.clock += 1
        return at(self.clock)

    def _expect(self, legal: bool, call: Any) -> Any:
        before = snapshot(self.order)
        if legal:
            return call()
        with pytest.raises(OrderCoreError):
            call()
        assert snapshot(self.order) == before
        return None

    @rule(delta=st.sampled_from([0, 0, 0, 1, -1, 100]))
    def pay(self, delta: int) -> None:
        amount = self.payable + delta
        legal = self.status is OrderStatus.PENDING and delta == 0
        self._expect(
            legal,
            lambda: self.order.mark_paid(Money.from_minor(amount, "CNY"), SYSTEM, self._now()),
        )
        if legal:
            self.status, self.paid = OrderStatus.PAID, amount
            self.changes += 1

    @rule()
    def complete(self) -> None:
        legal = self.status is OrderStatus.PAID
        self._expect(legal, lambda: self.order.complete(SYSTEM, self._now()))
        if legal:
            self.status = OrderStatus.COMPLETED
            self.changes += 1

    @rule(reason=st.sampled_from(list(CancelReason)))
    def cancel(self, reason: CancelReason) -> None:
        legal = self.status is OrderStatus.PENDING
        self._expect(legal, lambda: self.order.cancel(reason, ALICE, self._now()))
        if legal:
            self.status = OrderStatus.CANCELED
            self.changes += 1

    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        remaining = self.paid - self.refunded
        units = data.draw(
            st.one_of(
                st.integers(min_value=-5, max_value=remaining + 5),
                st.just(remaining),
                st.integers(min_value=1, max_value=max(1, remaining)),
            )
        )
        legal = self.status in (OrderStatus.PAID, OrderStatus.COMPLETED) and 0 < units <= remaining
        self._expect(
            legal,
            lambda: self.order.record_refund(Money.from_minor(units, "CNY"), ALICE, self._now()),
        )
        if legal:
            self.refunded += units
            if self.refunded == self.paid:
                self.status = OrderStatus.REFUNDED
                self.changes += 1

    @invariant()
    def status_matches_the_model_and_the_table(self) -> None:
        assert self.order.status is self.status
        assert len(self.order.history) == self.changes
        state = OrderStatus.PENDING
        for record in self.order.history:
            assert record.source is state
            assert ORDER_MACHINE.next_state(self.order.number, state, record.event) is record.target
            state = record.target
        assert state is self.order.status

    @invariant()
    def amounts_stay_ordered(self) -> None:
        amounts = self.order.amounts
        zero = Money.zero("CNY")
        assert zero <= amounts.refunded <= amounts.paid <= amounts.payable
        assert amounts.paid.to_minor() == self.paid
        assert amounts.refunded.to_minor() == self.refunded


OrderLifecycle.TestCase.settings = settings(max_examples=60, stateful_step_count=15, deadline=None)
TestOrderLifecycle = OrderLifecycle.TestCase


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pay", "pay-wrong", "complete", "cancel", "refund"]),
            st.integers(min_value=1, max_value=60_00),
        ),
        max_size=12,
    )
)
def test_random_operation_sequences_keep_status_in_the_table(
    operations: list[tuple[str, int]],
) -> None:
    order = make_order()
    for step, (name, units) in enumerate(operations, start=1):
        status_before = order.status
        try:
            _apply_operation(order, name, units, at(step))
        except OrderCoreError:
            assert order.status is status_before
        if order.status is not status_before:
            event = order.history[-1].event
            assert ORDER_MACHINE.next_state(order.number, status_before, event) is order.status
        a = order.amounts
        assert Money.zero("CNY") <= a.refunded <= a.paid <= a.payable


def _apply_operation(order: Any, name: str, units: int, now: datetime) -> None:
    if name == "pay":
        order.mark_paid(money("60.00"), SYSTEM, now)
    elif name == "pay-wrong":
        order.mark_paid(Money.from_minor(units, "CNY"), SYSTEM, now)
    elif name == "complete":
        order.complete(SYSTEM, now)
    elif name == "cancel":
        order.cancel(CancelReason.SYSTEM, SYSTEM, now)
    else:
        order.record_refund(Money.from_minor(units, "CNY"), ALICE, now)
