"""The audit trail's records and its hash chain (pure: no I/O).

Each stored record carries a gapless sequence number ``seq``, the hash of the record before it
(``prev_hash``; the first record's is :data:`GENESIS`) and its own ``hash``: SHA-256 — or
HMAC-SHA-256 when an audit key is configured, so that someone who can write to the database
but does not hold the key cannot forge a consistent chain — over the canonical JSON of its
fields. :func:`verify_chain` recomputes every hash and reports the first record that was
edited, or the first gap left by a deleted one; the stored chain head catches a deleted tail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from attrs import frozen

from ordercore._actor import Actor
from ordercore._errors import InvalidField

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditRecord",
    "ChainVerdict",
    "canonical_json",
    "chain_hash",
    "verify_chain",
]

GENESIS: Final = "0" * 64


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put {type(value).__name__} in the audit trail")


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, UTF-8 text: the same input always gives the same string."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2026-11-24T08:00:00.000000+00:00``."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidField("audit times must be timezone-aware", field="at")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


@frozen
class AuditEntry:
    """A change to record: collected by aggregates and services, stored by the unit of work."""

    entity_kind: str
    entity_id: str
    action: str
    actor: Actor
    at: datetime
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    reason: str | None = None


@frozen
class AuditRecord:
    """A stored audit record, as read back (``before``/``after`` are the stored JSON text)."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str
    actor_role: str | None
    entity_kind: str
    entity_id: str
    action: str
    before: str | None
    after: str | None
    reason: str | None
    prev_hash: str
    hash: str

    @classmethod
    def from_entry(
        cls, entry: AuditEntry, seq: int, prev_hash: str, key: bytes | None
    ) -> AuditRecord:
        """Seal ``entry`` as record number ``seq`` after the record whose hash is ``prev_hash``."""
        unsealed = cls(
            seq=seq,
            at=entry.at,
            actor_kind=entry.actor.kind.value,
            actor_id=entry.actor.id,
            actor_role=entry.actor.role,
            entity_kind=entry.entity_kind,
            entity_id=entry.entity_id,
            action=entry.action,
            before=None if entry.before is None else canonical_json(entry.before),
            after=None if entry.after is None else canonical_json(entry.after),
            reason=entry.reason,
            prev_hash=prev_hash,
            hash="",
        )
        return cls(**{**_fields(unsealed), "hash": chain_hash(unsealed, key)})


def _fields(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "at": record.at,
        "actor_kind": record.actor_kind,
        "actor_id": record.actor_id,
        "actor_role": record.actor_role,
        "entity_kind": record.entity_kind,
        "entity_id": record.entity_id,
        "action": record.action,
        "before": record.before,
        "after": record.after,
        "reason": record.reason,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def chain_hash(record: AuditRecord, key: bytes | None) -> str:
    """The hash a record must carry: over every field but ``hash`` itself."""
    content = _fields(record)
    del content["hash"]
    content["at"] = iso_utc(record.at)
    payload = canonical_json(content).encode("utf-8")
    if key:
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


@frozen
class ChainVerdict:
    """The result of :func:`verify_chain`: ``ok``, how many records were checked and, when
    broken, the ``seq`` of the first bad record and what is wrong with it."""

    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None


def verify_chain(
    records: Iterable[AuditRecord], key: bytes | None, head: tuple[int, str] | None
) -> ChainVerdict:
    """Check records given in ``seq`` order against each other and the stored chain ``head``
    (``(last_seq, last_hash)``, or None when nothing was ever recorded)."""
    expected_seq = 1
    prev = GENESIS
    checked = 0
    for record in records:
        if record.seq != expected_seq:
            return ChainVerdict(
                False,
                checked,
                expected_seq,
                f"record {expected_seq} is missing (next present is {record.seq})",
            )
        if record.prev_hash != prev:
            return ChainVerdict(False, checked, record.seq, "link to the previous record is broken")
        if not hmac.compare_digest(chain_hash(record, key), record.hash):
            return ChainVerdict(False, checked, record.seq, "content does not match its hash")
        prev = record.hash
        expected_seq += 1
        checked += 1
    last_seq = expected_seq - 1
    if head is None:
        if checked:
            return ChainVerdict(False, checked, 1, "records exist but the chain head is missing")
        return ChainVerdict(True, 0)
    head_seq, head_hash = head
    if head_seq != last_seq or not hmac.compare_digest(head_hash, prev):
        first_bad = last_seq + 1 if head_seq > last_seq else head_seq + 1
        if head_seq == last_seq:
            first_bad = last_seq
        return ChainVerdict(
            False, checked, first_bad, f"chain head says {head_seq} records, {last_seq} found"
        )
    return ChainVerdict(True, checked)
