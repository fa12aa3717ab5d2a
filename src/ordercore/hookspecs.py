"""Every pluggy hook ordercore calls, typed and documented.

Plugins implement them with :data:`hookimpl`::

    from ordercore import hookimpl

    @hookimpl
    def ordercore_activate_order(order, ctx):
        grant_access(order.customer_id, order.lines)

Built-in plugins are registered exactly like third-party ones; third-party plugins are found
through the ``ordercore`` entry-point group; ``ORDERCORE_DISABLE_PLUGINS`` (comma-separated
names) blocks named plugins; a hook implementation whose name is not below fails loudly at
start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._audit.chain import Checkpoint
    from ._config import Settings
    from ._orders.domain import Order
    from ._outbox import ActivationContext, OutboxMessage
    from .channels import PaymentChannel

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("ordercore")
hookimpl = pluggy.HookimplMarker("ordercore")


@hookspec
def ordercore_register_channels(settings: Settings) -> Sequence[type[PaymentChannel]]:
    """Return the payment channel classes this plugin provides.

    :param settings: the running configuration; a plugin may return nothing when its
        channel is not configured.
    :return: channel classes (subclasses of :class:`ordercore.channels.PaymentChannel`);
        ordercore instantiates each configured one with its ``[channels.NAME]`` settings.
    """
    raise NotImplementedError


@hookspec
def ordercore_activate_order(order: Order, ctx: ActivationContext) -> None:
    """Deliver what a paid order bought (the host's "activate service").

    Called once per activation attempt, outside any database transaction. Return normally
    when the service is active; raise to report a failure: the order stays ``paid``, the
    error is recorded and the activation is retried with backoff. Implementations must be
    idempotent on ``ctx.activation_id`` — a retry after a crash may repeat a call whose
    success was not recorded.

    :param order: the paid order, with its lines (product snapshots).
    :param ctx: the activation id, attempt number, actor and time.
    """
    raise NotImplementedError


@hookspec
def ordercore_revoke_order(order: Order, refund: Any, ctx: ActivationContext) -> None:
    """Take back what a refunded order gave (the host's "revoke service").

    Called after every succeeded refund of the order's payment, outside any transaction,
    from the outbox: at least once, with ``ctx.activation_id`` = ``revoke:<refund id>``
    stable across retries (raise to have it retried). A full refund leaves the order
    ``refunded``; after a partial one the order keeps its status and ``refund.amount`` says
    how much went back, so the host can decide. Refunds of a payment the order never took
    (a duplicate payment) do not call it.

    :param order: the order after the refund (``order.amounts.refunded``, status).
    :param refund: the :class:`~ordercore.Refund` that succeeded.
    :param ctx: the revocation id, attempt, actor and time.
    """
    raise NotImplementedError


@hookspec
def ordercore_audit_checkpoint(checkpoint: Checkpoint) -> None:
    """Keep a copy of an audit checkpoint outside ordercore's database (object storage with
    retention, another system's log, a notary): with it, ``ordercore audit verify
    --since-checkpoint`` proves that nothing the checkpoint covers was removed or rewritten.

    Called by ``core.audit.checkpoint()`` (``ordercore audit checkpoint``), after sealing,
    outside any transaction. Raise to make the command fail.

    :param checkpoint: the chain's ``seq`` and ``hash``, the time, and an HMAC with the audit
        key when one is configured; ``checkpoint.to_json()`` is the text to keep.
    """
    raise NotImplementedError


@hookspec
def ordercore_notify(event: OutboxMessage) -> None:
    """Deliver a notification (e-mail, chat, webhook) about ``event``.

    Delivered at least once per event from the outbox, after the transaction that produced
    it committed; ``event.id`` is stable across retries, so receivers can drop repeats.
    Raise to have the delivery retried later.

    :param event: the outbox message: ``id``, ``kind`` (``order.paid``, ``anomaly.opened``,
        ...), ``order_number`` and a JSON-ready ``payload``.
    """
    raise NotImplementedError


@hookspec
def ordercore_risk_rules() -> Sequence[Any]:
    """Return risk rules to evaluate before an order is created or paid (the risk issue).

    :return: rule objects; ordercore calls each with the order being checked.
    """
    raise NotImplementedError
