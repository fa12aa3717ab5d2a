"""The audit trail's use cases: verify the chain, read an entity's records, count them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordercore._audit.chain import (
    AuditRecord,
    ChainVerdict,
    verify_chain,
)
from ordercore._context import Service

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork


# --------------------------------------------------------------------------------- audit
class AuditService(Service):
    """The audit trail: verify the chain, read records."""

    def verify(self) -> ChainVerdict:
        """Recompute the whole chain; the verdict names the first broken record."""
        key = self._ctx.settings.audit_key

        def work(uow: UnitOfWork) -> ChainVerdict:
            # Read the head first and stop there: records past it were committed after it was
            # read (every append moves the head in its own transaction), not tampered with.
            head = uow.audit.head()
            upto = None if head is None else head[0]
            return verify_chain(uow.audit.records(upto=upto), key, head)

        return self._read(work)

    def records(self, entity_kind: str, entity_id: str) -> list[AuditRecord]:
        return self._read(lambda uow: uow.audit.for_entity(entity_kind, entity_id))

    def count(self) -> int:
        return self._read(lambda uow: uow.audit.count())
