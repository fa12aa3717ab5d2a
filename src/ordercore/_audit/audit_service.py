"""The audit trail's use cases: seal pending entries into the chain, verify it (whole, or
against a checkpoint kept elsewhere), make checkpoints, read an entity's records."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from attrs import evolve

from ordercore._audit.chain import (
    AuditRecord,
    ChainVerdict,
    Checkpoint,
    PendingAuditRecord,
    verify_chain,
)
from ordercore._context import Service
from ordercore._errors import AuditChainError

if TYPE_CHECKING:
    from ordercore.adapters.sqlalchemy.uow import UnitOfWork

__all__ = ["AuditService"]

#: How many pending entries one seal links at most (the job runner seals every pass).
SEAL_BATCH = 1000


class AuditService(Service):
    """The audit trail: seal, verify, checkpoint, read."""

    def seal(self, *, limit: int = SEAL_BATCH) -> int:
        """Link up to ``limit`` pending entries into the chain; returns how many. Raises
        :class:`~ordercore.AuditChainError` when the chain shows tampering (sealing on top of
        it would hide it)."""

        def work(uow: UnitOfWork) -> int:
            return uow.audit.seal(limit=limit)

        with self._uow() as uow:
            sealed = work(uow)
            uow.commit()
        return sealed

    def seal_pending(self) -> tuple[int, str | None]:
        """Seal until nothing is pending: how many entries, and why sealing stopped when the
        chain shows tampering (None when it did not). The job runner's step."""
        total = 0
        try:
            while True:
                sealed = self.seal()
                total += sealed
                if sealed < SEAL_BATCH:
                    return total, None
        except AuditChainError as exc:
            return total, str(exc)

    def seal_all(self) -> int:
        """Seal until nothing is pending (what ``audit seal`` and ``audit checkpoint`` do);
        :class:`~ordercore.AuditChainError` when the chain shows tampering."""
        total, problem = self.seal_pending()
        if problem is not None:
            raise AuditChainError(problem)
        return total

    def verify(self) -> ChainVerdict:
        """Check every record of the chain, its head and the head's MAC, every pending entry
        against its own hash, and that no order has lost its every record. Reads only."""
        key = self._ctx.settings.audit_key

        def work(uow: UnitOfWork) -> ChainVerdict:
            # The head with a share lock: no seal commits while we read, so every record
            # past the head we hold is one that does not belong.
            head = uow.audit.head(lock=True)
            verdict = verify_chain(
                uow.audit.records(),
                key,
                None if head is None else (head[0], head[1]),
                mac=None if head is None else head[2],
                pending=uow.audit.pending(),
            )
            missing, first = uow.audit.unaudited_orders()
            if missing:
                problem = (
                    f"{missing} orders have no audit record at all (first: {', '.join(first)}): "
                    "their records were deleted"
                )
                return evolve(
                    verdict,
                    ok=False,
                    problem=verdict.problem or problem,
                    problems=(*verdict.problems, problem),
                )
            return verdict

        return self._read(work)

    def checkpoint(self) -> Checkpoint:
        """Seal what is pending and sign the chain head (HMAC with the audit key): a copy to
        keep outside the database. The ``ordercore_audit_checkpoint`` hook receives it."""
        self.seal_all()

        def work(uow: UnitOfWork) -> Checkpoint:
            head = uow.audit.head()
            seq, hash_ = (0, "0" * 64) if head is None else (head[0], head[1])
            return Checkpoint.of(seq, hash_, self._now(), self._ctx.settings.audit_key)

        checkpoint = self._read(work)
        self._ctx.plugins.hook.ordercore_audit_checkpoint(checkpoint=checkpoint)
        return checkpoint

    def verify_since(self, checkpoint: Checkpoint) -> ChainVerdict:
        """:meth:`verify`, and also prove the chain still holds what ``checkpoint`` covered:
        its MAC checks with the audit key (when one is configured) and record ``seq`` still
        carries ``hash`` — a record of those deleted, changed or re-chained fails."""
        verdict = self.verify()
        key = self._ctx.settings.audit_key
        problems: list[str] = []
        if key and not checkpoint.authentic(key):
            problems.append("the checkpoint is not signed by this audit key")
        if checkpoint.seq:

            def work(uow: UnitOfWork) -> list[AuditRecord]:
                return list(uow.audit.records(upto=checkpoint.seq))

            covered = self._read(work)
            last = covered[-1] if covered else None
            if len(covered) != checkpoint.seq or last is None or last.seq != checkpoint.seq:
                problems.append(
                    f"the checkpoint covers {checkpoint.seq} records; "
                    f"{len(covered)} of them are left"
                )
            elif not hmac.compare_digest(last.hash, checkpoint.hash):
                problems.append(
                    f"record {checkpoint.seq} no longer has the hash the checkpoint holds: "
                    "the chain was rewritten"
                )
        if not problems:
            return verdict
        return evolve(
            verdict,
            ok=False,
            broken_seq=verdict.broken_seq or checkpoint.seq,
            problem=verdict.problem or problems[0],
            problems=(*verdict.problems, *problems),
        )

    def records(self, entity_kind: str, entity_id: str) -> list[AuditRecord | PendingAuditRecord]:
        """An entity's records: sealed ones in chain order, then pending ones."""
        return self._read(lambda uow: uow.audit.for_entity(entity_kind, entity_id))

    def count(self) -> int:
        return self._read(lambda uow: uow.audit.count())
