"""ReadAhead: the export's next chunk read in a thread while the caller writes this one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ordercore.adapters.sqlalchemy.read_ahead import ReadAhead


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "test-read-ahead"]


def test_chunks_come_in_order_and_the_thread_ends() -> None:
    ahead = ReadAhead(iter(range(1000)), name="test-read-ahead")
    assert list(ahead) == list(range(1000))
    assert _threads() == []


def test_an_error_while_reading_reaches_the_caller_after_the_chunks_before_it() -> None:
    def chunks() -> Iterator[int]:
        yield 1
        yield 2
        raise LookupError("the database went away")

    got: list[int] = []

    def take_all() -> None:
        for chunk in ReadAhead(chunks(), name="test-read-ahead"):
            got.append(chunk)

    with pytest.raises(LookupError, match="went away"):
        take_all()
    assert got == [1, 2]
    assert _threads() == []


def test_leaving_early_stops_the_reading_one_chunk_ahead_and_closes_the_source() -> None:
    read: list[int] = []
    closed_in: list[str] = []

    def chunks() -> Iterator[int]:
        try:
            for i in range(10_000):
                read.append(i)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    ahead = ReadAhead(chunks(), name="test-read-ahead")
    for chunk in ahead:
        if chunk == 3:
            break
    ahead.close()
    ahead.close()  # idempotent
    # 0..3 taken; at most one waiting in the queue and one being read when told to stop
    assert 4 <= len(read) <= 6
    assert closed_in == ["test-read-ahead"]  # a generator is closed where it ran
    assert _threads() == []


def test_an_error_while_writing_stops_the_reader() -> None:
    def chunks() -> Iterator[int]:
        i = 0
        while True:  # endless: only close() ends it
            yield i
            i += 1

    ahead = ReadAhead(chunks(), name="test-read-ahead")

    def write_until_the_disk_is_full() -> None:
        for chunk in ahead:
            if chunk == 2:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_until_the_disk_is_full()
    ahead.close()
    assert _threads() == []


def test_close_without_iterating_waits_for_a_slow_read() -> None:
    started = threading.Event()

    def chunks() -> Iterator[int]:
        started.set()
        time.sleep(0.2)  # a query in progress when the caller gives up
        yield 1
        yield 2

    ahead = ReadAhead(chunks(), name="test-read-ahead")
    assert started.wait(5)
    ahead.close()
    assert _threads() == []
