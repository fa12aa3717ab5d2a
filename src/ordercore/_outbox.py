"""What ordercore hands to the hooks that carry side effects out of the database: the
activation context and the outbox message. Both are recorded in the transaction of the state
change that causes them and delivered at least once with a stable id."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from ._actor import Actor

__all__ = ["ActivationContext", "OutboxMessage"]


@frozen
class ActivationContext:
    """Passed to the activation and revocation hooks. ``activation_id`` is stable across
    retries of the same activation: use it to make the host's side idempotent."""

    activation_id: str
    attempt: int
    actor: Actor
    at: datetime


@frozen
class OutboxMessage:
    """An event leaving ordercore, delivered at least once with a stable ``id``."""

    id: str
    kind: str
    order_number: str | None
    payload: Mapping[str, Any] = field(factory=dict)
    created_at: datetime | None = None
    #: which delivery try this is (1 for the first)
    attempt: int = 1
