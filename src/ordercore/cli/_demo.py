"""``ordercore demo``: a fresh SQLite database and a few orders walked through their life."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from ordercore import (
    ActivationContext,
    Actor,
    CancelReason,
    ConfigurationError,
    IllegalTransition,
    InvalidAmount,
    ManualDiscount,
    Money,
    Order,
    OrderCore,
    OrderFilter,
    OutboxMessage,
    PermissionDenied,
    QuantityTier,
    Refund,
    UseAll,
    hookimpl,
    testing,
)
from ordercore.testing import FakeGateway, fake_channel_config
from ordercore.web import start_background_server

from .risk import demo_risk

__all__ = ["run_demo"]


class _DemoHost:
    """The host application's side: activation, revocation and notifications (printed by
    the demo)."""

    def __init__(self) -> None:
        self.activated: list[str] = []
        self.revoked: list[str] = []
        self.notified: list[str] = []

    @hookimpl
    def ordercore_activate_order(self, order: Order, ctx: ActivationContext) -> None:
        self.activated.append(order.number)

    @hookimpl
    def ordercore_revoke_order(self, order: Order, refund: Refund, ctx: ActivationContext) -> None:
        self.revoked.append(f"{order.number} ({order.status.value}, {ctx.activation_id})")

    @hookimpl
    def ordercore_notify(self, event: OutboxMessage) -> None:
        self.notified.append(event.kind)


def _pay_orders(
    core: OrderCore,
    gateway: FakeGateway,
    host: _DemoHost,
    li: int,
    han: int,
    say: Callable[..., None],
) -> tuple[str, str]:
    """Pay orders through the balance, bank-transfer and fake channels; the fake platform's
    notifications travel over real HTTP to the callback endpoint on loopback. Returns the
    numbers of the order paid by bank transfer and of the one paid through the fake
    platform."""
    admin = Actor.operator("alice", "admin")
    finance = Actor.operator("frank", "finance")
    server, url = start_background_server(core)
    try:
        say(f"callback endpoint listening at {url}/callbacks/{{channel}}")
        # -- balance
        core.wallet.credit(li, Money.of("100.00", "CNY"), reason="top-up", actor=admin)
        order = core.orders.create(customer_id=li, items=[("VPN-1M", 1)], actor=admin)
        core.payments.start(order.number, channel="balance", actor=Actor.customer(li))
        say(
            f"order {order.number}: paid from balance (left: {core.wallet.balance(li, 'CNY')})",
            order=order.number,
        )
        # -- bank transfer, reviewed by finance
        order = core.orders.create(customer_id=han, items=[("VPN-12M", 1)], actor=admin)
        started = core.payments.start(order.number, channel="bank_transfer", actor=admin)
        attempt = started.attempt.out_trade_no
        core.payments.submit_proof(
            attempt, reference="ICBC-20261124-0042", actor=Actor.customer(han)
        )
        core.payments.approve(attempt, actor=finance, note="seen on the statement")
        say(f"order {order.number}: bank transfer proof approved by finance", order=order.number)
        transfer = order.number
        # -- the fake platform, over HTTP
        order = core.orders.create(
            customer_id=han, items=[("VPN-1M", 2)], actor=admin, channel="fake"
        )
        started = core.payments.start(order.number, channel="fake", method="qr", actor=admin)
        checkout = started.checkout.content if started.checkout else ""
        say(f"order {order.number}: QR code {checkout} (payable {order.amounts.payable})")
        notification = gateway.pay(started.attempt.out_trade_no)
        status, body = gateway.deliver(f"{url}/callbacks/fake", *notification)
        again, _ = gateway.deliver(f"{url}/callbacks/fake", *notification)
        forged, _ = gateway.deliver(
            f"{url}/callbacks/fake",
            *gateway.pay(started.attempt.out_trade_no, tamper=True, force=True),
        )
        say(
            f"order {order.number}: signed notification answered HTTP {status} "
            f"{body.decode()!r}; the same again {again} (nothing changed); "
            f"a tampered copy {forged} (refused, kept in the inbox)",
            order=order.number,
            status=core.orders.get(order.number).status.value,
        )
        through_fake = order.number
        # -- a payment of the wrong amount is an anomaly, never a payment
        order = core.orders.create(customer_id=li, items=[("VPN-1M", 1)], actor=admin)
        started = core.payments.start(order.number, channel="fake", actor=admin)
        gateway.deliver(
            f"{url}/callbacks/fake", *gateway.pay(started.attempt.out_trade_no, amount="0.01")
        )
        anomaly = core.anomalies.list(order_number=order.number)[0]
        say(
            f"order {order.number}: paid 0.01 instead of {order.amounts.payable} — anomaly "
            f"#{anomaly.id} {anomaly.kind.value}, order still "
            f"{core.orders.get(order.number).status.value}",
            order=order.number,
        )
    finally:
        server.shutdown()
        server.server_close()
    report = core.payments.run_due_jobs()
    say(
        f"jobs: activated {len(report.activated)} order(s) through the host's hook, delivered "
        f"{report.delivered} notification(s) ({', '.join(sorted(set(host.notified)))})"
    )
    return transfer, through_fake


def _refund_orders(
    core: OrderCore,
    gateway: FakeGateway,
    host: _DemoHost,
    partly: str,
    fully: str,
    say: Callable[..., None],
) -> None:
    """Refund ``partly`` in part to the customer's balance, and ``fully`` in full back
    through the fake platform, whose refund notification arrives over HTTP."""
    support = Actor.operator("bob", "support")
    finance = Actor.operator("frank", "finance")
    # -- part of a bank transfer, to the customer's balance (a transfer has no refund channel)
    refund = core.refunds.request(
        partly,
        amount=Money.of("100.00", "CNY"),
        destination="balance",
        reason="customer asked to stop after 8 months",
        actor=support,
    )
    waiting = refund.status.value
    refund = core.refunds.approve(refund.refund_no, actor=finance, note="pro rata")
    order = core.orders.get(partly)
    name = core.customers.get(order.customer_id).name
    say(
        f"order {partly}: refund {refund.refund_no} of {refund.amount} to {name}'s balance, "
        f"{waiting} by support and approved by finance ({refund.status.value}); the order "
        f"stays {order.status.value}, refunded {order.amounts.refunded} of "
        f"{order.amounts.paid} (balance now "
        f"{core.wallet.balance(order.customer_id, 'CNY')}, "
        f"{core.refunds.refundable(partly)} still refundable)",
        order=partly,
        status=order.status.value,
        refund=refund.refund_no,
        refund_status=refund.status.value,
        refunded=str(order.amounts.refunded.amount),
    )
    try:
        core.refunds.request(
            partly,
            amount=Money.of("500.00", "CNY"),
            destination="balance",
            reason="too much",
            actor=support,
        )
    except InvalidAmount as exc:
        say(f"refused as it should be — {exc}")
    # -- everything, back through the fake platform; its answer comes over HTTP
    server, url = start_background_server(core)
    gateway.refund_mode = "async"
    try:
        order = core.orders.get(fully)
        refund = core.refunds.request(
            fully,
            destination="original",
            reason="the service never worked for me",
            actor=Actor.customer(order.customer_id),
        )
        refund = core.refunds.approve(refund.refund_no, actor=finance)
        sent = refund.status.value
        status, body = gateway.deliver(
            f"{url}/callbacks/fake", *gateway.settle_refund(refund.refund_no)
        )
        refund = core.refunds.get(refund.refund_no)
        order = core.orders.get(fully)
        say(
            f"order {fully}: refund {refund.refund_no} of everything ({refund.amount}) back "
            f"through the fake platform, requested by the customer and approved by finance; "
            f"{sent} until the platform's notification came over HTTP ({status} "
            f"{body.decode()!r}): refund {refund.status.value}, order {order.status.value}, "
            f"refunded {order.amounts.refunded}",
            order=fully,
            status=order.status.value,
            refund=refund.refund_no,
            refund_status=refund.status.value,
            refunded=str(order.amounts.refunded.amount),
        )
    finally:
        gateway.refund_mode = "sync"
        server.shutdown()
        server.server_close()
    core.payments.run_due_jobs()
    say(f"jobs: the host's revoke hook took back {'; '.join(host.revoked)}")


def _pay_with_alipay(core: OrderCore, sandbox: Any, li: int, say: Callable[..., None]) -> None:
    """Pay an order through the ``alipay`` channel against its loopback sandbox gateway (real
    RSA2 signatures both ways, real HTTP), then refund part of it through Alipay."""
    admin = Actor.operator("alice", "admin")
    finance = Actor.operator("frank", "finance")
    server, url = start_background_server(core)
    try:
        order = core.orders.create(customer_id=li, items=[("VPN-1M", 1)], actor=admin)
        started = core.payments.start(order.number, channel="alipay", method="qr", actor=admin)
        checkout = started.checkout.content if started.checkout else ""
        say(
            f"order {order.number}: Alipay QR code {checkout} from the sandbox gateway "
            "(alipay.trade.precreate, RSA2-signed both ways)",
            order=order.number,
        )
        notification = sandbox.pay(started.attempt.out_trade_no, deliver=False)
        status, body = sandbox.deliver(notification, url=f"{url}/callbacks/alipay")
        say(
            f"order {order.number}: Alipay's signed notification answered HTTP {status} "
            f"{body.decode()!r}; order {core.orders.get(order.number).status.value}",
            order=order.number,
        )
        refund = core.refunds.request(
            order.number,
            amount="5.00",
            destination="original",
            reason="unused days",
            actor=Actor.customer(li),
        )
        refund = core.refunds.approve(refund.refund_no, actor=finance)
        paid = core.orders.get(order.number)
        say(
            f"refund {refund.refund_no}: 5.00 back through Alipay (out_request_no = the refund "
            f"id) {refund.status.value}; order {paid.status.value}, refunded "
            f"{paid.amounts.refunded}",
            order=order.number,
            refund=refund.refund_no,
            refund_status=refund.status.value,
            status=paid.status.value,
            refunded=str(paid.amounts.refunded.amount),
        )
    finally:
        server.shutdown()
        server.server_close()


def _alipay_sandbox() -> Any:
    """The Alipay plugin's sandbox gateway, started — or None without the plugin."""
    try:
        from ordercore_alipay.sandbox import AlipaySandbox
    except ImportError:  # pragma: no cover - the plugin ships with ordercore
        return None
    return AlipaySandbox().start()


def _fresh_url(database: str | Path) -> tuple[str, str]:
    """The URL to build the demo in, and how to name it. A SQLite file (a path, or a
    ``sqlite:///`` URL) is replaced; any other database must hold no orders yet."""
    text = str(database)
    if "://" not in text or text.startswith("sqlite:///"):
        path = Path(text.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}", str(path)
    url = make_url(text)
    probe = OrderCore.from_url(text, load_entry_points=False)
    try:
        probe.upgrade()
        if probe.orders.list(limit=1).items:
            raise ConfigurationError(
                f"the demo needs an empty database: {url.render_as_string(hide_password=True)} "
                "already holds orders (use a new database, or a SQLite file with --database)"
            )
    finally:
        probe.close()
    return text, url.render_as_string(hide_password=True)


def _wechat_demo() -> Any:
    """The WeChat Pay plugin's demo step (its sandbox started) — or None without it."""
    try:
        from ordercore_wechat._demo import WechatDemo
    except ImportError:  # pragma: no cover - the plugin ships with ordercore
        return None
    return WechatDemo()


def _crypto_demo() -> Any:
    """The crypto plugin's demo step (its three sandboxes started) — or None without it."""
    try:
        from ordercore_crypto._demo import CryptoDemo
    except ImportError:  # pragma: no cover - the plugin ships with ordercore
        return None
    return CryptoDemo()


def run_demo(database: str | Path) -> list[dict[str, Any]]:
    """Build the demo at ``database`` — a SQLite file (replaced) or a database URL (which must
    hold no orders yet) — and return what happened."""
    url, path = _fresh_url(database)
    gateway = FakeGateway()
    host = _DemoHost()
    sandbox = _alipay_sandbox()
    channels: dict[str, Any] = {
        "fake": fake_channel_config(gateway=gateway, fee_percent="0.6", fee_borne_by="customer")
    }
    if sandbox is not None:
        channels["alipay"] = sandbox.channel_config(timeout_seconds=10)
    wechat = _wechat_demo()
    if wechat is not None:
        channels["wechat"] = wechat.config()
    crypto = _crypto_demo()
    channels.update(crypto.configs() if crypto is not None else {})
    core = OrderCore.from_url(
        url,
        points_rate=Decimal("0.01"),
        timezone="Asia/Shanghai",
        channels=channels,
        plugins=[testing, host],
    )
    steps: list[dict[str, Any]] = []

    def say(text: str, **data: Any) -> None:
        steps.append({"text": text, **data})

    try:
        core.upgrade()
        say(f"created {path} and ran the migrations")
        admin = Actor.operator("alice", "admin")
        support = Actor.operator("bob", "support")
        system = Actor.system("activation")

        li = core.customers.add(
            name="Li Lei", email="lilei@example.com", external_ref="u-1001", actor=admin
        )
        han = core.customers.add(
            name="Han Meimei", email="han@example.com", phone="+86 138 0000 0000", actor=admin
        )
        say(f"added customers {li.name} (#{li.id}) and {han.name} (#{han.id})")

        vpn = core.products.add(
            sku="VPN-1M",
            name="VPN, 1 month",
            price=Money.of("30.00", "CNY"),
            specs={"duration": "30d", "traffic": "200GB"},
            tiers=[QuantityTier(3, Decimal("10"))],
            actor=admin,
        )
        pro = core.products.add(
            sku="VPN-12M",
            name="VPN, 12 months",
            price=Money.of("288.00", "CNY"),
            specs={"duration": "365d", "traffic": "unlimited"},
            stock=100,
            low_stock_threshold=10,
            actor=admin,
        )
        say(
            f"added products {vpn.sku} at {vpn.price} and {pro.sku} at {pro.price} "
            f"(stock {pro.stock})"
        )

        first = core.orders.create(
            customer_id=li.id or 0, items=[("VPN-1M", 3)], actor=admin, note="demo order"
        )
        say(
            f"order {first.number}: 3 × {vpn.sku}, {first.amounts.payable} payable",
            order=first.number,
        )
        core.orders.mark_paid(first.number, actor=admin, reason="paid at the counter")
        core.orders.complete(first.number, actor=system, reason="service activated")
        say(f"order {first.number}: paid and completed", order=first.number, status="completed")

        second = core.orders.create(
            customer_id=han.id or 0, items=[("VPN-12M", 1)], actor=support, tags=["promo"]
        )
        core.orders.cancel(
            second.number,
            actor=Actor.customer(han.id or 0),
            reason=CancelReason.USER,
            note="changed my mind",
        )
        stock = core.products.get("VPN-12M").stock
        say(
            f"order {second.number}: cancelled by the customer; stock back to {stock}",
            order=second.number,
            status="canceled",
        )

        third = core.orders.create(
            customer_id=han.id or 0, items=[("VPN-12M", 1), ("VPN-1M", 1)], actor=support
        )
        core.orders.mark_paid(third.number, actor=admin)
        try:
            core.orders.cancel(
                third.number, actor=admin, reason=CancelReason.ADMIN, note="duplicate"
            )
        except IllegalTransition as exc:
            say(f"order {third.number}: refused as it should be — {exc}", order=third.number)
        core.orders.record_refund(
            third.number,
            amount=Money.of("30.00", "CNY"),
            actor=admin,
            reason="partial: 1-month part",
        )
        core.orders.record_refund(
            third.number, amount=Money.of("288.00", "CNY"), actor=admin, reason="rest"
        )
        order = core.orders.get(third.number)
        say(
            f"order {third.number}: refunded in two parts, status {order.status.value}, refunded "
            f"{order.amounts.refunded}",
            order=third.number,
            status=order.status.value,
        )
        core.orders.add_note(first.number, "customer asked for an invoice", actor=support)
        core.orders.flag(first.number, "vip", actor=support)

        # -- the order book: wallet, coupons, pricing, idempotency, cancellation, listing
        core.wallet.credit(li.id or 0, Money.of("50.00", "CNY"), reason="top-up", actor=admin)
        core.wallet.credit_points(li.id or 0, 1000, reason="welcome gift", actor=admin)
        core.coupons.add(
            code="WELCOME20",
            currency="CNY",
            percent=Decimal("20"),
            max_discount=Money.of("50.00", "CNY"),
            limit_total=100,
            limit_per_customer=1,
            actor=admin,
        )
        say(f"{li.name}: 50.00 CNY balance and 1000 points; coupon WELCOME20 (20 % off, max 50)")
        priced = core.orders.create(
            customer_id=li.id,
            items=[("VPN-1M", 3), ("VPN-12M", 1)],
            coupon="WELCOME20",
            use_balance=Money.of("20.00", "CNY"),
            use_points=500,
            channel="fake",
            idempotency_key="demo-checkout-1",
            actor=Actor.customer(li.id or 0),
        )
        parts = ", ".join(f"{k} {v}" for k, v in priced.amounts.as_dict().items())
        say(
            f"order {priced.number}: {parts}", order=priced.number, amounts=priced.amounts.as_dict()
        )
        again = core.orders.create(
            customer_id=li.id,
            items=[("VPN-1M", 3), ("VPN-12M", 1)],
            coupon="WELCOME20",
            use_balance=Money.of("20.00", "CNY"),
            use_points=500,
            channel="fake",
            idempotency_key="demo-checkout-1",
            actor=Actor.customer(li.id or 0),
        )
        say(f"the same request again (idempotency key) returns the same order: {again.number}")
        core.orders.cancel(
            priced.number,
            actor=support,
            reason=CancelReason.ADMIN,
            note="customer called to cancel",
        )
        held = core.wallet.show(li.id or 0)
        uses = core.coupons.get("WELCOME20")[1]
        say(
            f"order {priced.number}: cancelled by support; balance back to "
            f"{held.balances['CNY']}, points back to {held.points}, coupon uses {uses}",
            order=priced.number,
            status="canceled",
        )
        free = core.orders.create(
            customer_id=li.id,
            items=[("VPN-1M", 1)],
            use_balance=UseAll.ALL,
            actor=Actor.customer(li.id or 0),
        )
        say(
            f"order {free.number}: fully paid from balance, so it is {free.status.value} at once",
            order=free.number,
            status=free.status.value,
        )
        try:
            core.orders.create(
                customer_id=han.id,
                items=[("VPN-1M", 1)],
                manual_discount=ManualDiscount(Money.of("5.00", "CNY"), "goodwill"),
                actor=Actor.operator("bob", "support"),
            )
        except PermissionDenied as exc:
            say(f"refused and recorded: {exc}")
        page = core.orders.list(OrderFilter(customer_id=li.id), limit=10)
        say(
            f"{li.name} has {len(page.items)} orders: "
            + ", ".join(f"{o.number} {o.status.value}" for o in page.items)
        )

        transfer, through_fake = _pay_orders(core, gateway, host, li.id or 0, han.id or 0, say)
        _refund_orders(core, gateway, host, transfer, through_fake, say)
        if sandbox is not None:
            _pay_with_alipay(core, sandbox, li.id or 0, say)
        if wechat is not None:
            wechat.run(core, li.id or 0, "VPN-1M", say)
        demo_risk(url, (li.id or 0, han.id or 0), say)
        if crypto is not None:
            crypto.run(core, li.id or 0, "VPN-1M", say)

        from .stats import demo_summary

        demo_summary(core, say)
        from .export import demo_export

        demo_export(core, say)
        core.audit.seal_all()  # what the job runner does every pass
        verdict = core.audit.verify()
        say(
            f"audit chain: {verdict.checked} records, {'intact' if verdict.ok else 'BROKEN'}",
            audit_ok=verdict.ok,
        )
    finally:
        core.close()
        if sandbox is not None:
            sandbox.stop()
        if wechat is not None:
            wechat.stop()
        if crypto is not None:
            crypto.stop()
    return steps
