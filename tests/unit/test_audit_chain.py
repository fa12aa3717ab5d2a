"""Unit tests of ordercore._audit.chain: canonical JSON, record sealing and chain verification."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordercore._actor import Actor, ActorKind
from ordercore._audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRecord,
    PendingAuditRecord,
    canonical_json,
    chain_hash,
    entry_hash,
    head_mac,
)
from ordercore._audit.chain import verify_chain as _verify_chain
from ordercore._errors import ValidationError

PROPERTY = settings(max_examples=100, deadline=None)
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
KEY = b"audit-key-for-tests"
ALICE = Actor.operator("alice", "admin")


def entry(n: int, **overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "entity_kind": "order",
        "entity_id": f"ORDER-{n}",
        "action": "order.pay",
        "actor": ALICE,
        "at": T0 + timedelta(seconds=n),
        "before": {"status": "pending"},
        "after": {"status": "paid", "amount": Decimal("30.00")},
        "reason": None,
    }
    fields.update(overrides)
    return AuditEntry(**fields)


def build_chain(
    entries: Sequence[AuditEntry], key: bytes | None
) -> tuple[list[AuditRecord], tuple[int, str] | None]:
    records: list[AuditRecord] = []
    prev = GENESIS
    for seq, e in enumerate(entries, start=1):
        record = AuditRecord.from_entry(e, seq, prev, key)
        records.append(record)
        prev = record.hash
    return records, ((len(records), prev) if records else None)


def verify_chain(
    records: Any, key: bytes | None, head: tuple[int, str] | None, **kwargs: Any
) -> Any:
    """verify_chain with the head's MAC as the sealer writes it (for the head given)."""
    mac = None if head is None else head_mac(head[0], head[1], key)
    return _verify_chain(records, key, head, mac=kwargs.pop("mac", mac), **kwargs)


def chain_of(n: int, key: bytes | None = KEY) -> tuple[list[AuditRecord], tuple[int, str] | None]:
    return build_chain([entry(i) for i in range(1, n + 1)], key)


# ------------------------------------------------------------------------- strategies
_text = st.text(min_size=1, max_size=12)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=10),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-1000, max_value=1000),
)
_mapping = st.dictionaries(st.text(min_size=1, max_size=8), _json_scalar, max_size=4)

entries = st.builds(
    AuditEntry,
    entity_kind=st.sampled_from(["order", "payment", "refund", "customer"]),
    entity_id=_text,
    action=_text,
    actor=st.builds(
        Actor,
        kind=st.sampled_from(list(ActorKind)),
        # Actor ids and roles never contain ':' (it separates them in ``kind:id:role``).
        id=_text.filter(lambda t: t.strip() and ":" not in t),
        role=st.one_of(st.none(), _text.filter(lambda t: ":" not in t)),
    ),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(timezone.utc),
    ),
    before=st.one_of(st.none(), _mapping),
    after=st.one_of(st.none(), _mapping),
    reason=st.one_of(st.none(), _text),
)

FIELDS = [f.name for f in attrs.fields(AuditRecord)]


def changed_value(draw: st.DrawFn, name: str, current: Any) -> Any:
    """A value for field ``name`` that really differs from ``current``."""
    if name == "seq":
        return draw(st.integers(min_value=0, max_value=10**6).filter(lambda v: v != current))
    if name == "at":
        delta = draw(st.integers(min_value=-(10**12), max_value=10**12).filter(lambda v: v != 0))
        return current + timedelta(microseconds=delta)
    if name in ("prev_hash", "hash"):
        return draw(
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).filter(
                lambda v: v != current
            )
        )
    nullable = name in ("actor_role", "before", "after", "reason")
    values: st.SearchStrategy[Any] = st.text(max_size=12)
    if nullable:
        values = st.one_of(st.none(), values)
    return draw(values.filter(lambda v: v != current))


# ------------------------------------------------------------------------ verification
@PROPERTY
@given(st.lists(entries, max_size=5), st.sampled_from([KEY, None]))
def test_an_untouched_chain_verifies(chain_entries: list[AuditEntry], key: bytes | None) -> None:
    records, head = build_chain(chain_entries, key)
    verdict = verify_chain(records, key, head)
    assert (verdict.ok, verdict.checked, verdict.problems) == (True, len(records), ())
    assert verdict.keyed is bool(key)
    if records:
        assert records[0].prev_hash == GENESIS
        assert all(len(r.hash) == 64 for r in records)
        assert [r.seq for r in records] == list(range(1, len(records) + 1))


def test_from_entry_stores_canonical_json_and_the_actor() -> None:
    record = AuditRecord.from_entry(entry(1, reason="paid by alipay"), 1, GENESIS, KEY)
    assert record.before == '{"status":"pending"}'
    assert record.after == '{"amount":"30.00","status":"paid"}'
    assert (record.actor_kind, record.actor_id, record.actor_role) == ("operator", "alice", "admin")
    assert record.reason == "paid by alipay"
    assert record.hash == chain_hash(record, KEY)
    empty = AuditRecord.from_entry(entry(2, before=None, after=None), 2, record.hash, KEY)
    assert empty.before is None
    assert empty.after is None


@PROPERTY
@given(st.data())
def test_editing_any_field_of_any_record_breaks_the_chain_at_that_record(
    data: st.DataObject,
) -> None:
    records, head = build_chain(data.draw(st.lists(entries, min_size=1, max_size=5)), KEY)
    index = data.draw(st.integers(min_value=0, max_value=len(records) - 1), label="index")
    name = data.draw(st.sampled_from(FIELDS), label="field")
    new = changed_value(data.draw, name, getattr(records[index], name))
    tampered = list(records)
    tampered[index] = attrs.evolve(records[index], **{name: new})

    verdict = verify_chain(tampered, KEY, head)
    assert not verdict.ok
    if name == "seq":  # a renumbered record leaves a gap, a clash or a record past the head
        assert verdict.broken_seq is not None
    else:
        assert verdict.broken_seq == index + 1
    assert verdict.problem
    assert verdict.problems


def test_editing_a_record_reports_what_is_wrong() -> None:
    records, head = chain_of(5)
    edited = list(records)
    edited[2] = attrs.evolve(records[2], after='{"status":"refunded"}')
    verdict = verify_chain(edited, KEY, head)
    assert (verdict.ok, verdict.checked, verdict.broken_seq) == (False, 5, 3)
    assert verdict.problems == ("record 3: content does not match its hash",)
    relinked = list(records)
    relinked[3] = attrs.evolve(records[3], prev_hash=GENESIS)
    verdict = verify_chain(relinked, KEY, head)
    assert (verdict.ok, verdict.broken_seq) == (False, 4)
    assert "record 4: link to the previous record is broken" in verdict.problems


@pytest.mark.parametrize("index", [1, 2, 3, 4, 5, 6])
def test_deleting_a_middle_record_is_reported_at_the_gap(index: int) -> None:
    records, head = chain_of(8)
    gapped = records[:index] + records[index + 1 :]
    verdict = verify_chain(gapped, KEY, head)
    assert not verdict.ok
    assert verdict.broken_seq == index + 1
    assert verdict.problem == f"record {index + 1} is missing (next present is {index + 2})"


def test_deleting_the_first_record_is_reported() -> None:
    records, head = chain_of(3)
    verdict = verify_chain(records[1:], KEY, head)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


@pytest.mark.parametrize("removed", [1, 2, 5])
def test_deleting_the_tail_is_caught_by_the_head(removed: int) -> None:
    records, head = chain_of(5)
    verdict = verify_chain(records[: 5 - removed], KEY, head)
    assert not verdict.ok
    assert verdict.broken_seq == 5 - removed + 1
    assert verdict.problem == f"chain head says 5 records, {5 - removed} found"


def test_swapping_two_records_is_detected() -> None:
    records, head = chain_of(4)
    swapped = [records[0], records[2], records[1], records[3]]
    assert verify_chain(swapped, KEY, head).broken_seq == 2


def test_head_must_match_the_last_hash() -> None:
    records, head = chain_of(3)
    assert head is not None
    verdict = verify_chain(records, KEY, (3, "f" * 64))
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert verify_chain(records, KEY, head).ok


def test_missing_head_with_records_is_reported() -> None:
    records, _ = chain_of(2)
    verdict = verify_chain(records, KEY, None)
    assert (verdict.ok, verdict.broken_seq) == (False, 1)
    assert verdict.problem == "record 1 exists but the chain head is missing"


def test_empty_chain() -> None:
    assert verify_chain([], KEY, None).ok
    verdict = verify_chain([], KEY, (1, "a" * 64))
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


def test_verify_accepts_any_iterable() -> None:
    records, head = chain_of(3)

    def stream() -> Iterator[AuditRecord]:
        yield from records

    assert verify_chain(stream(), KEY, head).ok


# ------------------------------------------------------------------------------- HMAC key
def test_a_chain_rebuilt_without_the_key_fails_verification_with_the_key() -> None:
    records, head = chain_of(4)
    # Someone with database access edits record 3 and re-seals it and everything after it
    # with plain SHA-256, updating the head as well: without the key the chain is not his.
    forged = records[:2]
    prev = records[1].hash
    for seq in (3, 4):
        e = entry(seq, reason="forged") if seq == 3 else entry(seq)
        record = AuditRecord.from_entry(e, seq, prev, None)
        forged.append(record)
        prev = record.hash
    forged_head = (4, prev)
    assert forged[2].prev_hash == records[1].hash  # the links themselves are consistent
    assert forged[3].hash == chain_hash(forged[3], None)
    verdict = verify_chain(forged, KEY, forged_head)
    assert not verdict.ok
    assert verdict.broken_seq == 3
    assert verdict.problem == "record 3: content does not match its hash"
    assert verify_chain(records, KEY, head).ok


def test_keyed_chain_needs_the_same_key() -> None:
    records, head = chain_of(3, key=KEY)
    assert verify_chain(records, KEY, head).ok
    assert verify_chain(records, None, head).broken_seq == 1
    assert verify_chain(records, b"another key", head).broken_seq == 1
    unkeyed, unkeyed_head = chain_of(3, key=None)
    assert verify_chain(unkeyed, None, unkeyed_head).ok
    assert verify_chain(unkeyed, KEY, unkeyed_head).broken_seq == 1


def test_keyed_and_plain_hashes_differ() -> None:
    unsealed = AuditRecord.from_entry(entry(1), 1, GENESIS, None)
    assert chain_hash(unsealed, KEY) != chain_hash(unsealed, None)
    assert chain_hash(unsealed, KEY) != chain_hash(unsealed, b"other")


def test_hash_ignores_the_hash_field_and_the_time_zone_of_at() -> None:
    record = AuditRecord.from_entry(entry(1), 1, GENESIS, KEY)
    assert chain_hash(attrs.evolve(record, hash="x"), KEY) == record.hash
    shanghai = record.at.astimezone(timezone(timedelta(hours=8)))
    assert chain_hash(attrs.evolve(record, at=shanghai), KEY) == record.hash


@pytest.fixture
def local_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is Unix-only")

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_a_sealed_chain_verifies_whatever_the_local_time_zone(local_time_zone: Any) -> None:
    """A naive time must either be refused when sealing, or hash the same on every machine."""
    naive = entry(1, at=datetime(2026, 11, 24, 8, 0))
    local_time_zone("Asia/Shanghai")
    try:
        records, head = build_chain([naive], KEY)
    except (TypeError, ValueError, ValidationError):
        return  # refusing naive times is an acceptable answer
    local_time_zone("America/New_York")
    assert verify_chain(records, KEY, head).ok


# ------------------------------------------------------------------------ canonical_json
class Colour(enum.Enum):
    RED = "red"


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": {"d": [2, 1], "c": None}}) == (
        '{"a":{"c":null,"d":[2,1]},"b":1}'
    )
    assert canonical_json({"name": "李雷"}) == '{"name":"李雷"}'  # UTF-8, not \\u escapes


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("30.00"), '"30.00"'),  # trailing zeros kept: the currency's precision
        (Decimal("-0.50"), '"-0.50"'),
        (Decimal("12345678901234567890.12"), '"12345678901234567890.12"'),
        (datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc), '"2026-11-24T08:00:00.000000+00:00"'),
        (
            datetime(2026, 11, 24, 16, 0, 0, 123, tzinfo=timezone(timedelta(hours=8))),
            '"2026-11-24T08:00:00.000123+00:00"',
        ),
        (date(2026, 11, 24), '"2026-11-24"'),
        (Colour.RED, '"red"'),
        (ActorKind.OPERATOR, '"operator"'),
        (frozenset({"b", "a", "c"}), '["a","b","c"]'),
        ({"z", "y"}, '["y","z"]'),
    ],
    ids=lambda v: type(v).__name__,  # stable across xdist workers (no set order, no addresses)
)
def test_canonical_json_special_values(value: object, text: str) -> None:
    assert canonical_json(value) == text
    assert canonical_json({"v": value}) == '{"v":' + text + "}"


@pytest.mark.parametrize(
    "value",
    [object(), b"bytes", Actor.system(), complex(1, 2)],
    ids=["object", "bytes", "actor", "complex"],
)
def test_canonical_json_refuses_what_it_cannot_represent(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_json({"v": value})


@PROPERTY
@given(st.dictionaries(st.text(max_size=8), _json_scalar, max_size=8))
def test_canonical_json_does_not_depend_on_insertion_order(mapping: dict[str, Any]) -> None:
    reordered = dict(reversed(list(mapping.items())))
    text = canonical_json(mapping)
    assert canonical_json(reordered) == text
    decoded = json.loads(text)
    assert list(decoded) == sorted(decoded)
    assert decoded == {k: str(v) if isinstance(v, Decimal) else v for k, v in mapping.items()}


# -------------------------------------------------------------------------- golden vectors
# Stored entries are verified with the hash as it was computed when they were written: the
# canonical form and the entry hash must never drift (these values come from the first
# implementation; a faster one must give the same).
GOLDEN_AT = datetime(2026, 12, 3, 16, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8)))


def test_canonical_json_is_pinned() -> None:
    value = {"z": [1, "é", None, True], "a": {"d": Decimal("1.50"), "t": GOLDEN_AT}}
    expected = '{"a":{"d":"1.50","t":"2026-12-03T08:30:00.123456+00:00"},"z":[1,"é",null,true]}'
    assert canonical_json(value) == expected


def test_the_entry_hash_is_pinned() -> None:
    entry = AuditEntry(
        entity_kind="order",
        entity_id="OC0000001",
        action="order.pay",
        actor=Actor.channel("fake"),
        at=GOLDEN_AT,
        before={"status": "pending", "note": "支付 ✓"},
        after={"status": "paid", "amount": Decimal("30.00"), "tags": {"b", "a"}},
        reason="attempt X",
    )
    record = PendingAuditRecord.from_entry(entry, "0123456789abcdef" * 2, b"golden key")
    assert record.before == '{"note":"支付 ✓","status":"pending"}'
    assert record.after == '{"amount":"30.00","status":"paid","tags":["a","b"]}'
    keyed = "3e828822dc0de973866d8315cc81761ebd41528af0ab20773ab24e97da403bb0"
    assert record.entry_hash == keyed == entry_hash(record, b"golden key")
    unkeyed = "a1c7aacbd74a0380f08c08cffd5670db8d72325016f7895eab25adae91d7d809"
    assert entry_hash(record, None) == unkeyed
