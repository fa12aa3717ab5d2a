"""Read the next chunk while the caller writes this one.

An export alternates two kinds of work: waiting for the database to answer a chunk's queries
(on PostgreSQL and MariaDB, time spent in the server and on the socket, with the GIL
released) and formatting the chunk in Python. Done in turn, the two add up; with
:class:`ReadAhead` a thread runs the queries of chunk *n + 1* while the caller formats chunk
*n*, so an export takes about the longer of the two instead of their sum.

Guarantees:

* **One thread at a time on the connection.** Only the reading thread touches it while it
  runs; :meth:`ReadAhead.close` stops it and waits for it before the connection is used
  again (the reader's rollback and close come after).
* **Memory stays flat**: at most one chunk waits in the queue, one is being read and one is
  being written.
* **Errors are the caller's**: an exception in the reading thread is raised again, as is, in
  the caller's thread at the next chunk; leaving early (an error while writing, a closed
  generator) stops the reading at the end of the chunk it is on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Final, Generic, TypeVar

__all__ = ["ReadAhead"]

T = TypeVar("T")

_END: Final = object()
#: how often a reader blocked on a full queue looks whether it was told to stop (seconds)
_POLL: Final = 0.05


class ReadAhead(Generic[T]):
    """Iterate ``chunks`` in a thread, one chunk ahead of the caller:
    ``for chunk in ReadAhead(chunks): ...``, and :meth:`close` when leaving early (it is
    idempotent, and the iteration calls it at its end)."""

    def __init__(self, chunks: Iterator[T], *, name: str = "ordercore-read-ahead") -> None:
        self._chunks = chunks
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put((True, chunk)):
                    return
            self._put((False, _END))
        except BaseException as exc:  # handed to the caller's thread
            self._put((False, exc))
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()  # a generator is closed in the thread that ran it

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                ok, item = self._queue.get()
                if ok:
                    yield item
                elif item is _END:
                    return
                else:
                    raise item
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (after the chunk being read) and wait for the thread."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
