"""Customers: add, find or create while ordering, look up and list.

Each public method is one unit of work: it commits everything or nothing. Every call that
changes something takes an :class:`~ordercore.Actor`, checks its permission, validates its
input before it writes, and leaves an audit record of the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from attrs import frozen

from ordercore._actor import Actor
from ordercore._audit.chain import (
    AuditEntry,
)
from ordercore._context import Service, check_limit
from ordercore._errors import (
    CustomerNotFound,
)
from ordercore._permissions import Permission

from .domain import (
    Customer,
)

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


_P = Permission


# ----------------------------------------------------------------------------- customers
@frozen
class NewCustomer:
    """A customer to find (by e-mail, then external reference, then exact name) or create
    while creating an order."""

    name: str
    email: str | None = None
    phone: str | None = None
    external_ref: str | None = None


class CustomerService(Service):
    """Customers: add, find, show."""

    def add(
        self,
        *,
        name: str,
        actor: Actor,
        email: str | None = None,
        phone: str | None = None,
        external_ref: str | None = None,
        identity_verified: bool = False,
    ) -> Customer:
        """Add a customer. E-mail and external reference must be unique."""

        def work(uow: UnitOfWork, now: datetime) -> Customer:
            self._check(actor, _P.CUSTOMERS_MANAGE, f"customer:{email or external_ref or name}")
            customer = Customer(
                name=name,
                email=email,
                phone=phone,
                external_ref=external_ref,
                identity_verified=identity_verified,
                created_at=now,
            )
            return self._insert(uow, customer, actor, now)

        return self._run(work)

    @staticmethod
    def _insert(uow: UnitOfWork, customer: Customer, actor: Actor, now: datetime) -> Customer:
        stored = uow.customers.add(customer, now)
        uow.record(
            AuditEntry(
                entity_kind="customer",
                entity_id=str(stored.id),
                action="customer.add",
                actor=actor,
                at=now,
                after={
                    "name": customer.name,
                    "email": customer.email,
                    "phone": customer.phone,
                    "external_ref": customer.external_ref,
                    "identity_verified": customer.identity_verified,
                },
            )
        )
        return stored

    @staticmethod
    def _find_or_insert(uow: UnitOfWork, new: NewCustomer, actor: Actor, now: datetime) -> Customer:
        for criteria in (
            {"email": new.email} if new.email else None,
            {"external_ref": new.external_ref} if new.external_ref else None,
            # A name alone identifies nobody when an e-mail or a reference was given.
            {"name": new.name} if not (new.email or new.external_ref) else None,
        ):
            if criteria:
                found = uow.customers.find(**criteria)
                if len(found) == 1:
                    return found[0]
        customer = Customer(
            name=new.name,
            email=new.email,
            phone=new.phone,
            external_ref=new.external_ref,
            created_at=now,
        )
        return CustomerService._insert(uow, customer, actor, now)

    def get(self, customer_id: int) -> Customer:
        return self._read(lambda uow: uow.customers.get(customer_id))

    def verify(
        self, customer_id: int, *, actor: Actor, verified: bool = True, note: str | None = None
    ) -> Customer:
        """Record that the customer's identity was verified (or, ``verified=False``, that it
        no longer is). Orders risk control held with ``verify`` can then be paid."""

        def work(uow: UnitOfWork, now: datetime) -> Customer:
            self._check(actor, _P.CUSTOMERS_MANAGE, f"customer:{customer_id}")
            before = uow.customers.get(customer_id)
            uow.customers.set_verified(customer_id, verified)
            uow.record(
                AuditEntry(
                    entity_kind="customer",
                    entity_id=str(customer_id),
                    action="customer.verify",
                    actor=actor,
                    at=now,
                    before={"identity_verified": before.identity_verified},
                    after={"identity_verified": verified},
                    reason=note,
                )
            )
            return uow.customers.get(customer_id)

        return self._run(work)

    def resolve(self, reference: str) -> Customer:
        """Find a customer by id, e-mail or external reference (as the CLI's ``--customer``)."""

        def work(uow: UnitOfWork) -> Customer:
            if reference.isdigit():
                return uow.customers.get(int(reference))
            key = "email" if "@" in reference else "external_ref"
            found = uow.customers.find(**{key: reference})
            if not found:
                raise CustomerNotFound(f"no customer with {key} {reference!r}", reference=reference)
            return found[0]

        return self._read(work)

    def find(
        self, *, email: str | None = None, external_ref: str | None = None, name: str | None = None
    ) -> list[Customer]:
        return self._read(
            lambda uow: uow.customers.find(email=email, external_ref=external_ref, name=name)
        )

    def list(self, *, limit: int = 50, after_id: int | None = None) -> list[Customer]:
        return self._read(
            lambda uow: uow.customers.list(limit=check_limit(limit), after_id=after_id)
        )
