"""The audit trail's records, its hash chain and checkpoints (pure: no I/O, no clock).

A change is written as a **pending** entry (:class:`PendingAuditRecord`): its content and a
random nonce, sealed by ``entry_hash`` — SHA-256, or HMAC-SHA-256 with the audit key — and
stored at a position the database hands out, so that writers never wait for each other.
A **sealing** step (the job runner, ``ordercore audit seal``) then links pending entries, in
the order they were written, into the chain (:class:`AuditRecord`): a gapless ``seq``, the
``prev_hash`` of the record before it (the first one's is :data:`GENESIS`) and its own
``hash`` over every field. The chain head — the last ``seq`` and ``hash`` — carries a MAC
(:func:`head_mac`) when a key is configured, and a :class:`Checkpoint` is a signed copy of it
to keep elsewhere. :func:`verify_chain` recomputes everything and names every record that
does not belong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Final

from attrs import evolve, frozen

from ordercore._actor import Actor
from ordercore._errors import InvalidField

__all__ = [
    "GENESIS",
    "KEYLESS_LIMITS",
    "AuditEntry",
    "AuditRecord",
    "ChainVerdict",
    "Checkpoint",
    "PendingAuditRecord",
    "canonical_json",
    "chain_hash",
    "entry_hash",
    "head_mac",
    "verify_chain",
    "verify_pending",
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


_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
)


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, UTF-8 text: the same input always gives the same string."""
    return _CANONICAL.encode(value)


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
    return _digest(canonical_json(content).encode("utf-8"), key)


def _digest(payload: bytes, key: bytes | None) -> str:
    if key:
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


# ----------------------------------------------------------------------------- pending entries
@frozen
class PendingAuditRecord:
    """An entry written but not yet linked into the chain. ``id`` is the position the
    database handed out (None before it is stored); ``nonce`` is random and unique, so that a
    copied row is told apart; ``entry_hash`` covers every other field but ``id``."""

    id: int | None
    nonce: str
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
    entry_hash: str

    @classmethod
    def from_entry(cls, entry: AuditEntry, nonce: str, key: bytes | None) -> PendingAuditRecord:
        actor = entry.actor
        fields: dict[str, Any] = {
            "nonce": nonce,
            "at": entry.at,
            "actor_kind": actor.kind.value,
            "actor_id": actor.id,
            "actor_role": actor.role,
            "entity_kind": entry.entity_kind,
            "entity_id": entry.entity_id,
            "action": entry.action,
            "before": None if entry.before is None else canonical_json(entry.before),
            "after": None if entry.after is None else canonical_json(entry.after),
            "reason": entry.reason,
        }
        return cls(id=None, entry_hash=_entry_digest(fields, key), **fields)

    def seal(self, seq: int, prev_hash: str, key: bytes | None) -> AuditRecord:
        """This entry as chain record ``seq`` after the record whose hash is ``prev_hash``."""
        unsealed = AuditRecord(
            seq=seq,
            at=self.at,
            actor_kind=self.actor_kind,
            actor_id=self.actor_id,
            actor_role=self.actor_role,
            entity_kind=self.entity_kind,
            entity_id=self.entity_id,
            action=self.action,
            before=self.before,
            after=self.after,
            reason=self.reason,
            prev_hash=prev_hash,
            hash="",
        )
        return evolve(unsealed, hash=chain_hash(unsealed, key))


def entry_hash(record: PendingAuditRecord, key: bytes | None) -> str:
    """The hash a pending entry must carry: over every field but ``id`` and itself."""
    content = {
        "nonce": record.nonce,
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
    }
    return _entry_digest(content, key)


def _entry_digest(fields: dict[str, Any], key: bytes | None) -> str:
    """:func:`entry_hash` of a pending entry's fields (``at`` a datetime)."""
    content = {**fields, "at": iso_utc(fields["at"])}
    return _digest(canonical_json(content).encode("utf-8"), key)


def head_mac(seq: int, hash_: str, key: bytes | None) -> str | None:
    """The MAC the chain head carries when a key is configured (None without one)."""
    if not key:
        return None
    payload = canonical_json({"kind": "ordercore.audit.head", "seq": seq, "hash": hash_})
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- verification
#: Verification stops listing problems after this many (the count goes on).
MAX_PROBLEMS: Final = 100


@frozen
class ChainVerdict:
    """The result of a verification. ``ok``; how many chain records were ``checked``; when
    broken, the ``seq`` of the first bad record and what is wrong with it (``broken_seq``,
    ``problem``) and every problem found (``problems``, the first :data:`MAX_PROBLEMS`).
    ``pending`` entries are written but not sealed yet (their own hashes were checked);
    ``keyed`` says whether an audit key was used — without one, see :data:`KEYLESS_LIMITS`."""

    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    problems: tuple[str, ...] = ()
    pending: int = 0
    keyed: bool = False


#: What a chain without a key cannot detect: said by ``audit verify`` and the docs.
KEYLESS_LIMITS: Final = (
    "without an audit key the chain is plain SHA-256: it detects edits, deletions and "
    "reordering by anyone who does not recompute the hashes, but someone who can write to the "
    "database can rewrite the chain from any point (or truncate it and move the head) and it "
    "will verify; only a checkpoint kept outside the database (ordercore audit checkpoint) "
    "proves what it covered"
)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.first_seq: int | None = None
        self.count = 0

    def add(self, seq: int | None, text: str) -> None:
        self.count += 1
        if self.first_seq is None and seq is not None:
            self.first_seq = seq
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(text)


def verify_chain(
    records: Iterable[AuditRecord],
    key: bytes | None,
    head: tuple[int, str] | None,
    *,
    mac: str | None = None,
    pending: Iterable[PendingAuditRecord] = (),
) -> ChainVerdict:
    """Check every chain record (in ``seq`` order) against each other, the stored chain
    ``head`` (``(seq, hash)``, None when nothing was sealed) and its ``mac``, and every
    ``pending`` entry against its own hash. Records past the head do not belong; a gap is
    reported once with the seqs missing."""
    found = _Problems()
    expected = 1
    prev = GENESIS
    checked = 0
    last_good: tuple[int, str] = (0, GENESIS)
    head_seq = None if head is None else head[0]
    for record in records:
        if head_seq is not None and record.seq > head_seq:
            found.add(record.seq, f"record {record.seq} is past the chain head ({head_seq})")
            continue
        if head_seq is None:
            found.add(record.seq, f"record {record.seq} exists but the chain head is missing")
            continue
        if record.seq != expected:
            missing = (
                f"{expected}" if record.seq == expected + 1 else f"{expected}-{record.seq - 1}"
            )
            found.add(expected, f"record {missing} is missing (next present is {record.seq})")
            expected = record.seq
        if record.prev_hash != prev:
            found.add(record.seq, f"record {record.seq}: link to the previous record is broken")
        if not hmac.compare_digest(chain_hash(record, key), record.hash):
            found.add(record.seq, f"record {record.seq}: content does not match its hash")
        prev = record.hash
        last_good = (record.seq, record.hash)
        expected = record.seq + 1
        checked += 1
    if head is not None:
        head_seq, head_hash = head
        if last_good[0] < head_seq:
            found.add(
                last_good[0] + 1,
                f"chain head says {head_seq} records, {last_good[0]} found",
            )
        elif not hmac.compare_digest(head_hash, last_good[1]):
            found.add(head_seq, f"chain head's hash does not match record {head_seq}")
        if key and (head_seq, head_hash) != (0, GENESIS):  # the genesis head commits to nothing
            expected_mac = head_mac(head_seq, head_hash, key)
            if mac is None or expected_mac is None or not hmac.compare_digest(mac, expected_mac):
                found.add(head_seq, "chain head is not authenticated by the audit key")
    waiting = 0
    for entry in pending:
        waiting += 1
        if not hmac.compare_digest(entry_hash(entry, key), entry.entry_hash):
            found.add(None, f"pending entry {entry.id}: content does not match its hash")
    return ChainVerdict(
        ok=found.count == 0,
        checked=checked,
        broken_seq=found.first_seq,
        problem=found.items[0] if found.items else None,
        problems=tuple(found.items),
        pending=waiting,
        keyed=bool(key),
    )


def verify_pending(entry: PendingAuditRecord, key: bytes | None) -> bool:
    """Whether a pending entry still matches its hash (the sealer checks before linking)."""
    return hmac.compare_digest(entry_hash(entry, key), entry.entry_hash)


# ----------------------------------------------------------------------------- checkpoints
@frozen
class Checkpoint:
    """A signed copy of the chain head to keep outside the database: the chain's first
    ``seq`` records hashed to ``hash`` at ``at``. ``mac`` is HMAC-SHA-256 with the audit key
    (None without one: then only where the copy is kept vouches for it)."""

    seq: int
    hash: str
    at: datetime
    mac: str | None = None

    VERSION: ClassVar[int] = 1

    @classmethod
    def of(cls, seq: int, hash_: str, at: datetime, key: bytes | None) -> Checkpoint:
        unsigned = cls(seq=seq, hash=hash_, at=at)
        return evolve(unsigned, mac=unsigned._mac(key)) if key else unsigned

    def _payload(self) -> bytes:
        body = {
            "kind": "ordercore.audit.checkpoint",
            "version": self.VERSION,
            "seq": self.seq,
            "hash": self.hash,
            "at": iso_utc(self.at),
        }
        return canonical_json(body).encode("utf-8")

    def _mac(self, key: bytes | None) -> str | None:
        return hmac.new(key, self._payload(), hashlib.sha256).hexdigest() if key else None

    def authentic(self, key: bytes | None) -> bool:
        """Whether ``mac`` was made with ``key`` (False when either is missing)."""
        expected = self._mac(key)
        return (
            self.mac is not None
            and expected is not None
            and hmac.compare_digest(self.mac, expected)
        )

    def to_json(self) -> str:
        return canonical_json(
            {
                "kind": "ordercore.audit.checkpoint",
                "version": self.VERSION,
                "seq": self.seq,
                "hash": self.hash,
                "at": iso_utc(self.at),
                "mac": self.mac,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse :meth:`to_json`'s output; InvalidField says what is wrong."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise InvalidField("the checkpoint is not JSON", field="checkpoint") from None
        if not isinstance(data, dict) or data.get("kind") != "ordercore.audit.checkpoint":
            raise InvalidField("this is not an ordercore audit checkpoint", field="checkpoint")
        if data.get("version") != cls.VERSION:
            raise InvalidField(
                f"unsupported checkpoint version {data.get('version')!r}", field="checkpoint"
            )
        seq, hash_, at, mac = data.get("seq"), data.get("hash"), data.get("at"), data.get("mac")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise InvalidField("the checkpoint's seq is not a count", field="checkpoint")
        if not isinstance(hash_, str) or not _HEX64.fullmatch(hash_):
            raise InvalidField("the checkpoint's hash is not 64 hex digits", field="checkpoint")
        if mac is not None and (not isinstance(mac, str) or not _HEX64.fullmatch(mac)):
            raise InvalidField("the checkpoint's mac is not 64 hex digits", field="checkpoint")
        try:
            moment = datetime.fromisoformat(str(at))
        except ValueError:
            raise InvalidField(
                "the checkpoint's time is not ISO 8601", field="checkpoint"
            ) from None
        if moment.tzinfo is None:
            raise InvalidField("the checkpoint's time has no offset", field="checkpoint")
        return cls(seq=seq, hash=hash_, at=moment, mac=mac)


_HEX64: Final = re.compile(r"[0-9a-f]{64}")
