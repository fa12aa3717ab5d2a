"""Waiting for Ctrl-C in a sandbox run by hand."""

from __future__ import annotations

import time

__all__ = ["wait_for_interrupt"]


def wait_for_interrupt(poll: float = 0.2) -> None:
    """Block until SIGINT (Ctrl-C) raises :class:`KeyboardInterrupt` in this thread.

    Sleeps in short slices rather than one long sleep: the operating system may hand the
    signal to any thread of the process — a sandbox's serving thread, say — and then a
    long sleep in the main thread is not interrupted; Python runs its handler only when
    the main thread next runs. A slice of ``poll`` seconds bounds that delay."""
    while True:
        time.sleep(poll)
