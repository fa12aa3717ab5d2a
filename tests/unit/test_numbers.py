"""Unit tests of ordercore._numbers: order numbers are well-formed, ordered and unique."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordercore._numbers import ORDER_NUMBER, OrderNumberGenerator, created_before

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32
SPACE = 32**5
T0 = datetime(2026, 11, 24, 16, 30, 0, 123456, tzinfo=timezone.utc)


def suffix_value(number: str) -> int:
    value = 0
    for char in number[17:]:
        value = value * 32 + ALPHABET.index(char)
    return value


@pytest.mark.parametrize(
    ("now", "stamp"),
    [
        (T0, "20261124163000123"),
        (T0.astimezone(timezone(timedelta(hours=8))), "20261124163000123"),  # same instant
        (
            datetime(2026, 1, 1, 8, 0, 0, 999, tzinfo=timezone(timedelta(hours=8))),
            "20260101000000000",
        ),
        (datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), "20261231235959999"),
    ],
)
def test_number_format(now: datetime, stamp: str) -> None:
    number = OrderNumberGenerator().next(now)
    assert ORDER_NUMBER.match(number)
    assert len(number) == 22
    assert number[:17] == stamp
    assert number.isalnum()
    assert number.isascii()
    assert not set(number[17:]) & set("ILOU")  # Crockford leaves out I, L, O, U


@pytest.mark.parametrize(
    "text",
    [
        "20261124163000123K7M2",  # too short
        "20261124163000123K7M2QQ",  # too long
        "20261124163000123K7M2I",  # I is not Crockford
        "20261124163000123k7m2q",  # lower case
        "2026112416300012AK7M2Q",  # letter in the time
        "20261124163000123K7M2Q\n",
    ],
)
def test_order_number_pattern_rejects_malformed_numbers(text: str) -> None:
    assert ORDER_NUMBER.match(text) is None


def test_numbers_in_the_same_millisecond_count_up_by_one() -> None:
    generator = OrderNumberGenerator()
    numbers = [generator.next(T0) for _ in range(2000)]
    assert all(ORDER_NUMBER.match(n) for n in numbers)
    assert {n[:17] for n in numbers} == {"20261124163000123"}
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    values = [suffix_value(n) for n in numbers]
    assert values == list(range(values[0], values[0] + len(values)))
    assert values[0] < SPACE // 2  # room was left to count up


def test_same_millisecond_different_microseconds_share_the_stamp() -> None:
    generator = OrderNumberGenerator()
    a = generator.next(T0.replace(microsecond=123000))
    b = generator.next(T0.replace(microsecond=123999))
    assert a[:17] == b[:17]
    assert suffix_value(b) == suffix_value(a) + 1


def test_numbers_are_ordered_across_milliseconds() -> None:
    generator = OrderNumberGenerator()
    numbers = [generator.next(T0 + timedelta(milliseconds=i // 3)) for i in range(300)]
    assert all(a < b for a, b in pairwise(numbers))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2999, 12, 31),
            timezones=st.just(timezone.utc),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_numbers_increase_whatever_the_clock_does(times: list[datetime]) -> None:
    """Forward, standing still or going back: each number sorts after the one before."""
    generator = OrderNumberGenerator()
    numbers = [generator.next(t) for t in times]
    assert all(ORDER_NUMBER.match(n) for n in numbers)
    assert all(a < b for a, b in pairwise(numbers))
    assert numbers[-1][:17] == max(times).strftime("%Y%m%d%H%M%S%f")[:17]


def test_clock_going_back_stays_ordered() -> None:
    generator = OrderNumberGenerator()
    first = generator.next(T0)
    second = generator.next(T0 - timedelta(seconds=5))
    third = generator.next(T0 - timedelta(hours=1))
    assert first < second < third
    assert first[:17] == second[:17] == third[:17]  # the stamp never goes back
    fourth = generator.next(T0 + timedelta(milliseconds=1))
    assert third < fourth
    assert fourth[:17] == "20261124163000124"


def test_numbers_are_unique_and_ordered_across_threads() -> None:
    generator = OrderNumberGenerator()
    per_thread: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(out: list[str]) -> None:
        start.wait()
        for _ in range(5000):
            out.append(generator.next(datetime.now(timezone.utc)))

    threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [n for out in per_thread for n in out]
    assert len(everything) == 8 * 5000
    assert len(set(everything)) == len(everything)
    assert all(ORDER_NUMBER.match(n) for n in everything)
    for out in per_thread:  # each thread sees its numbers in issue order
        assert all(a < b for a, b in pairwise(out))


def test_separate_generators_start_at_random_suffixes() -> None:
    starts = {suffix_value(OrderNumberGenerator().next(T0)) for _ in range(20)}
    assert len(starts) > 1
    assert all(s < SPACE // 2 for s in starts)


def test_running_out_of_suffixes_in_one_millisecond_stays_ordered_and_unique() -> None:
    """White-box: put the generator at the last suffix of a millisecond. The next number must
    still sort after it (e.g. by moving on to the next millisecond), not restart at random."""
    generator = OrderNumberGenerator()
    first = generator.next(T0)
    generator._last_suffix = SPACE - 1  # as if 33 million numbers were issued in this ms
    last = first[:17] + "ZZZZZ"
    following = [generator.next(T0) for _ in range(3)]
    assert last < following[0] < following[1] < following[2]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(timezone.utc),
    ),
    length=st.integers(min_value=0, max_value=22),
)
def test_a_number_prefix_bounds_the_creation_time_from_above(moment: datetime, length: int) -> None:
    """The order list relies on this: an order numbered P… was created before created_before(P)."""
    number = OrderNumberGenerator().next(moment)
    bound = created_before(number[:length])
    if bound is not None:
        assert moment < bound


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("202611", datetime(2026, 12, 1, tzinfo=timezone.utc)),
        ("202612", datetime(2027, 1, 1, tzinfo=timezone.utc)),  # the month overflows: a year
        ("20261124", datetime(2026, 11, 25, tzinfo=timezone.utc)),
        ("2026112416", datetime(2026, 11, 24, 17, tzinfo=timezone.utc)),
        ("ABC", None),
        ("", None),
        ("9999", None),  # no later stamp exists
    ],
)
def test_created_before_examples(prefix: str, expected: datetime | None) -> None:
    assert created_before(prefix) == expected
