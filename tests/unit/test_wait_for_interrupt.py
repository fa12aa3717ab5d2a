"""wait_for_interrupt: a sandbox run by hand stops on Ctrl-C even when the operating system
hands SIGINT to one of its serving threads (a long sleep in the main thread would not
wake up: the tests of the sandboxes by hand timed out that way under load)."""

from __future__ import annotations

import subprocess
import sys
import time

SCRIPT = """
import signal, threading, time
from ordercore.testing import wait_for_interrupt

def serving_thread():
    time.sleep(0.3)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # lands on this thread
    time.sleep(60)

threading.Thread(target=serving_thread, daemon=True).start()
try:
    wait_for_interrupt()
except KeyboardInterrupt:
    print("interrupted")
"""


def test_sigint_on_another_thread_still_stops_the_wait() -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "interrupted"
    assert time.monotonic() - start < 15  # a long sleep would have waited out its hour
