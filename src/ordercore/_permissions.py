"""Roles and permissions.

Every call that changes something (and every operator read) names an :class:`~ordercore.Actor`.
An operator's permissions come from its role; the host can replace or extend the default
roles. A refused call raises :class:`~ordercore.PermissionDenied` and writes only the audit
record of the refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from ._actor import Actor, ActorKind
from ._errors import InvalidField, PermissionDenied

__all__ = [
    "ALL_PERMISSIONS",
    "CUSTOMER_PERMISSIONS",
    "DEFAULT_ROLES",
    "Authorizer",
    "Permission",
]


class Permission:
    """The permission names ordercore checks (plain strings, so hosts can add their own)."""

    ORDERS_VIEW: Final = "orders.view"
    ORDERS_CREATE: Final = "orders.create"
    ORDERS_CANCEL: Final = "orders.cancel"
    ORDERS_DISCOUNT: Final = "orders.discount"
    ORDERS_EDIT: Final = "orders.edit"  # notes, flags, communications
    ORDERS_PAY: Final = "orders.pay"  # record a payment by hand
    ORDERS_ACTIVATE: Final = "orders.activate"
    CUSTOMERS_VIEW: Final = "customers.view"
    CUSTOMERS_MANAGE: Final = "customers.manage"
    PRODUCTS_MANAGE: Final = "products.manage"
    COUPONS_MANAGE: Final = "coupons.manage"
    WALLET_VIEW: Final = "wallet.view"
    WALLET_ADJUST: Final = "wallet.adjust"
    REFUNDS_REQUEST: Final = "refunds.request"
    REFUNDS_APPROVE: Final = "refunds.approve"
    PAYMENTS_REVIEW: Final = "payments.review"
    AUDIT_VIEW: Final = "audit.view"
    RISK_REVIEW: Final = "risk.review"  # approve or reject orders held for review
    RISK_LISTS: Final = "risk.lists"  # block- and allow-list entries
    EXPORT: Final = "export"
    #: an export with personal data in clear (``--no-mask``); audited like every export
    ORDERS_EXPORT_UNMASKED: Final = "orders.export_unmasked"
    BACKUP_RESTORE: Final = "backup.restore"  # load a backup into an empty database
    STATS_VIEW: Final = "stats.view"  # sales, payment and product statistics


ALL_PERMISSIONS: Final = frozenset(
    value for name, value in vars(Permission).items() if name.isupper() and isinstance(value, str)
)

_P = Permission
DEFAULT_ROLES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "admin": ALL_PERMISSIONS,
        "support": frozenset(
            {
                _P.ORDERS_VIEW,
                _P.ORDERS_CREATE,
                _P.ORDERS_CANCEL,
                _P.ORDERS_EDIT,
                _P.CUSTOMERS_VIEW,
                _P.CUSTOMERS_MANAGE,
                _P.WALLET_VIEW,
                _P.REFUNDS_REQUEST,
            }
        ),
        "finance": frozenset(
            {
                _P.ORDERS_VIEW,
                _P.ORDERS_EDIT,
                _P.ORDERS_PAY,
                _P.CUSTOMERS_VIEW,
                _P.WALLET_VIEW,
                _P.WALLET_ADJUST,
                _P.REFUNDS_REQUEST,
                _P.REFUNDS_APPROVE,
                _P.PAYMENTS_REVIEW,
                _P.AUDIT_VIEW,
                _P.EXPORT,
                _P.STATS_VIEW,
            }
        ),
        "system": ALL_PERMISSIONS,
    }
)

#: What a customer may do, always on its own orders only.
CUSTOMER_PERMISSIONS: Final = frozenset(
    {_P.ORDERS_VIEW, _P.ORDERS_CREATE, _P.ORDERS_CANCEL, _P.WALLET_VIEW, _P.REFUNDS_REQUEST}
)


class Authorizer:
    """Maps roles to permissions and decides whether an actor may do something.

    ``roles`` replaces the defaults entirely; ``extra_roles`` adds to (or overrides single
    roles of) the defaults. System actors have the ``system`` role, channels may only do what
    a channel does (record payments), customers have :data:`CUSTOMER_PERMISSIONS` on their
    own resources.
    """

    def __init__(
        self,
        roles: Mapping[str, Iterable[str]] | None = None,
        *,
        extra_roles: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        base = dict(DEFAULT_ROLES if roles is None else {k: frozenset(v) for k, v in roles.items()})
        for name, perms in (extra_roles or {}).items():
            base[name] = frozenset(perms)
        self.roles: Mapping[str, frozenset[str]] = MappingProxyType(
            {k: frozenset(v) for k, v in base.items()}
        )

    def permissions(self, actor: Actor) -> frozenset[str]:
        if actor.kind is ActorKind.SYSTEM:
            return self.roles.get("system", frozenset())
        if actor.kind is ActorKind.CHANNEL:
            return frozenset({Permission.ORDERS_PAY})
        if actor.kind is ActorKind.CUSTOMER:
            return CUSTOMER_PERMISSIONS
        if actor.role is None:
            return frozenset()
        return self.roles.get(actor.role, frozenset())

    def allows(self, actor: Actor, permission: str, *, owner_id: int | None = None) -> bool:
        if permission not in self.permissions(actor):
            return False
        if actor.kind is ActorKind.CUSTOMER and owner_id is not None:
            return actor.id == str(owner_id)
        return True

    def check(
        self, actor: Actor, permission: str, *, owner_id: int | None = None, target: str = ""
    ) -> None:
        """Raise :class:`PermissionDenied` unless ``actor`` holds ``permission`` (on ``target``,
        which the refusal's audit record names)."""
        if not isinstance(actor, Actor):
            raise InvalidField("every call needs an Actor", field="actor")
        if self.allows(actor, permission, owner_id=owner_id):
            return
        if actor.kind is ActorKind.OPERATOR and actor.role not in self.roles:
            why = f"role {actor.role!r} is not defined" if actor.role else "it has no role"
        elif actor.kind is ActorKind.CUSTOMER and permission in CUSTOMER_PERMISSIONS:
            why = "customers may act on their own orders only"
        else:
            why = "its role does not grant it"
        raise PermissionDenied(
            f"{actor} may not {permission}: {why} (insufficient permissions)",
            actor=actor,
            permission=permission,
            target=target,
        )
