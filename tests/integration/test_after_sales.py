"""After-sales records (issue 5): issues followed from open to resolved (and reopened), each
step with who, when and why; illegal moves refused without a trace; and the one after-sales
view of an order — refunds, communications, issues, paid, refunded, refundable — that the
order details show too.

Happy paths run on every backend; refusals on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from helpers import Backend, FakeClock
from ordercore import (
    Actor,
    AfterSalesIssue,
    IllegalTransition,
    InvalidField,
    IssueNotFound,
    IssueStatus,
    OrderNotFound,
    RefundStatus,
)

from .payment_kit import ADMIN, Shop, cny, make_shop
from .test_refunds import denied, paid, refused

SQLITE = pytest.param("sqlite", id="sqlite")
POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
on_sqlite_and_postgresql = pytest.mark.parametrize("backend", [SQLITE, POSTGRESQL], indirect=True)

SUPPORT = Actor.operator("sam", "support")


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def shop(backend: Backend, clock: FakeClock) -> Iterator[Shop]:
    built = make_shop(backend, clock)
    yield built
    built.core.close()


def opened(shop: Shop, number: str, subject: str = "VPN does not connect") -> AfterSalesIssue:
    issue = shop.core.after_sales.open(number, subject=subject, actor=SUPPORT)
    assert issue.id is not None
    return issue


def issue_records(shop: Shop, number: str) -> list[tuple[str, str, str | None]]:
    """The order's issue audit records: ``(action, status after, reason)``."""
    return [
        (r.action, json.loads(r.after or "{}")["status"], r.reason)
        for r in shop.core.audit.records("order", number)
        if r.action.startswith("issue.")
    ]


# -------------------------------------------------------------------------------- issues
def test_an_issue_moves_from_open_to_resolved_and_can_be_reopened(shop: Shop) -> None:
    core, clock = shop.core, shop.clock
    number, _no = paid(shop)
    issue = core.after_sales.open(
        number, subject="VPN does not connect", actor=SUPPORT, note="customer called"
    )
    assert issue.id is not None
    assert (issue.status, issue.opened_by) == (IssueStatus.OPEN, SUPPORT)

    moves = [
        ("investigate", "checking the server logs", IssueStatus.INVESTIGATING),
        ("ask_customer", "asked for the client version", IssueStatus.WAITING_FOR_CUSTOMER),
        ("investigate", "customer answered: 1.2", IssueStatus.INVESTIGATING),
        ("resolve", "upgrade fixed it", IssueStatus.RESOLVED),
        ("reopen", "drops again at night", IssueStatus.INVESTIGATING),
        ("resolve", "server moved", IssueStatus.RESOLVED),
    ]
    for event, note, status in moves:
        clock.advance(60)
        moved = core.after_sales.move(issue.id, event, actor=SUPPORT, note=note)
        assert moved.status is status, event
        assert (moved.resolved_at is not None) is (status is IssueStatus.RESOLVED)

    stored = core.after_sales.issue(issue.id)
    assert stored.status is IssueStatus.RESOLVED
    assert stored.resolved_at == clock()
    assert [(s.status, s.note) for s in stored.steps] == [
        (IssueStatus.OPEN, "customer called"),
        *[(status, note) for _event, note, status in moves],
    ]
    assert {s.actor for s in stored.steps} == {SUPPORT}
    assert [s.at for s in stored.steps] == sorted(s.at for s in stored.steps)
    assert issue_records(shop, number) == [
        ("issue.open", "open", "customer called"),
        *[(f"issue.{event}", status.value, note) for event, note, status in moves],
    ]
    resolutions = [m["payload"] for m in shop.outbox(number) if m["kind"] == "issue.resolved"]
    assert [(p["issue"], p["resolution"]) for p in resolutions] == [
        (issue.id, "upgrade fixed it"),
        (issue.id, "server moved"),
    ]
    assert core.audit.verify().ok


def test_an_issue_can_be_resolved_straight_from_open(shop: Shop) -> None:
    number, _no = paid(shop)
    issue = opened(shop, number)
    assert issue.id is not None

    done = shop.core.after_sales.move(issue.id, "resolve", actor=SUPPORT, note="answered by mail")

    assert done.status is IssueStatus.RESOLVED
    assert [s.status for s in done.steps] == [IssueStatus.OPEN, IssueStatus.RESOLVED]


ILLEGAL = {
    # from status: (how to get there, events refused from it)
    "open": ([], ["reopen"]),
    "investigating": (["investigate"], ["investigate", "reopen"]),
    "waiting_for_customer": (["ask_customer"], ["ask_customer", "reopen"]),
    "resolved": (["resolve"], ["resolve", "investigate", "ask_customer"]),
}


@on_sqlite_and_postgresql
def test_an_illegal_move_is_refused_and_changes_nothing(shop: Shop) -> None:
    number, _no = paid(shop)
    for status, (path, refused_events) in ILLEGAL.items():
        issue = opened(shop, number, subject=f"issue left {status}")
        assert issue.id is not None
        for event in path:
            shop.core.after_sales.move(issue.id, event, actor=SUPPORT, note="step")
        for event in refused_events:
            error = refused(
                shop,
                IllegalTransition,
                lambda i=issue.id, e=event: shop.core.after_sales.move(
                    i, e, actor=SUPPORT, note="not allowed"
                ),
            )
            assert (error.state, error.event) == (status, event), (status, event)
        assert shop.core.after_sales.issue(issue.id).status.value == status


@on_sqlite_and_postgresql
def test_a_move_needs_a_known_issue_a_known_step_and_a_note(shop: Shop) -> None:
    number, _no = paid(shop)
    issue = opened(shop, number)
    assert issue.id is not None
    move = shop.core.after_sales.move

    refused(shop, IssueNotFound, lambda: move(999_999, "investigate", actor=SUPPORT, note="x"))
    refused(shop, IssueNotFound, lambda: shop.core.after_sales.issue(999_999))
    error = refused(shop, InvalidField, lambda: move(issue.id, "escalate", actor=SUPPORT, note="x"))
    assert error.field == "event"
    for note in ("", "  "):
        refused(
            shop,
            InvalidField,
            lambda n=note: move(issue.id, "investigate", actor=SUPPORT, note=n),
        )
    for subject in ("", "   "):
        refused(
            shop,
            InvalidField,
            lambda s=subject: shop.core.after_sales.open(number, subject=s, actor=SUPPORT),
        )
    refused(
        shop,
        OrderNotFound,
        lambda: shop.core.after_sales.open("NO-SUCH-ORDER", subject="x", actor=SUPPORT),
    )
    assert shop.core.after_sales.issue(issue.id).status is IssueStatus.OPEN


@on_sqlite_and_postgresql
def test_customers_may_see_their_own_after_sales_record_but_not_edit_it(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    issue = opened(shop, number)
    assert issue.id is not None
    customer = Actor.customer(str(shop.customer_id))

    assert core.after_sales.show(number, actor=customer).issues[0].id == issue.id
    denied(shop, lambda: core.after_sales.open(number, subject="x", actor=customer))
    denied(shop, lambda: core.after_sales.move(issue.id, "resolve", actor=customer, note="x"))
    assert core.after_sales.issue(issue.id).status is IssueStatus.OPEN


@on_sqlite_and_postgresql
def test_a_refused_look_at_someone_elses_after_sales_record_is_recorded(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    stranger = core.customers.add(name="Han Meimei", email="han@example.com", actor=ADMIN)

    denied(shop, lambda: core.after_sales.show(number, actor=Actor.customer(str(stranger.id))))


# ------------------------------------------------------------------- the after-sales view
def test_the_after_sales_view_gathers_refunds_communications_and_issues(shop: Shop) -> None:
    core = shop.core
    number, no = paid(shop)
    other, _ = paid(shop)
    core.orders.add_communication(
        number,
        channel="email",
        text="Your VPN drops?",
        actor=SUPPORT,
    )
    core.orders.add_communication(
        number, channel="chat", text="yes, every night", actor=SUPPORT, direction="inbound"
    )
    issue = opened(shop, number)
    assert issue.id is not None
    core.after_sales.move(issue.id, "investigate", actor=SUPPORT, note="looking")
    first = core.refunds.request(
        number, amount="5.00", destination="balance", reason="downtime", actor=SUPPORT
    )
    core.refunds.approve(first.refund_no, actor=ADMIN)
    second = core.refunds.request(
        number, amount="2.00", destination="original", reason="more downtime", actor=SUPPORT
    )
    opened(shop, other, subject="someone else's")

    view = core.after_sales.show(number)

    assert view.order_number == number
    assert [(r.refund_no, r.status) for r in view.refunds] == [
        (first.refund_no, RefundStatus.SUCCEEDED),
        (second.refund_no, RefundStatus.REQUESTED),
    ]
    assert [r.out_trade_no for r in view.refunds] == [no, no]
    assert [(c.channel, c.text, c.direction) for c in view.communications] == [
        ("email", "Your VPN drops?", "outbound"),
        ("chat", "yes, every night", "inbound"),
    ]
    assert [(i.id, i.status) for i in view.issues] == [(issue.id, IssueStatus.INVESTIGATING)]
    assert (view.paid, view.refunded, view.refundable) == (
        cny("27.00"),
        cny("5.00"),
        cny("20.00"),  # 27.00 - 5.00 refunded - 2.00 waiting for review
    )
    # The order details show the same records, and the refunds' history in the log.
    details = core.orders.details(number)
    assert [r.refund_no for r in details.refunds] == [r.refund_no for r in view.refunds]
    assert [i.id for i in details.issues] == [issue.id]
    assert [c.text for c in details.order.communications] == [c.text for c in view.communications]
    actions = [r.action for r in details.log]
    for action in ("order.communication", "issue.open", "refund.request", "refund.succeed"):
        assert action in actions, action
    assert details.order.amounts.refunded == cny("5.00")


def test_the_view_of_a_fully_refunded_order(shop: Shop) -> None:
    core = shop.core
    number, _no = paid(shop)
    refund = core.refunds.request(number, destination="original", reason="r", actor=ADMIN)
    core.refunds.approve(refund.refund_no, actor=ADMIN)

    view = core.after_sales.show(number)

    assert (view.paid, view.refunded, view.refundable) == (
        cny("27.00"),
        cny("27.00"),
        cny("0.00"),
    )
    assert core.orders.details(number).order.status.value == "refunded"


def test_an_unpaid_order_has_an_empty_after_sales_record(shop: Shop) -> None:
    order = shop.order()

    view = shop.core.after_sales.show(order.number)

    assert (view.refunds, view.communications, view.issues) == ((), (), ())
    assert (view.paid, view.refunded, view.refundable) == (
        cny("0.00"),
        cny("0.00"),
        cny("0.00"),
    )
