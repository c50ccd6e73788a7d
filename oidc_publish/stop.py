"""The run's stop: what SIGTERM, SIGINT and the run's deadline set, and what every pool and
retry loop obeys.

The signal handlers (`cancelled_by_signals`) and the deadline (`deadline`) set it, and wake
the main thread from whatever it waits on. The workers that upload or sign, and every call
made under the retry policy, look at it before they start anything: once it is set no new
upload, signature or request begins, and those under way are abandoned rather than awaited.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType

from oidc_publish.errors import Cancelled, RunTimedOut, Stopped


class Stop:
    """Set once, by the first signal or the deadline; read by any thread. A plain attribute,
    so that a signal handler, which interrupts the main thread anywhere, takes no lock."""

    def __init__(self) -> None:
        self._why: Callable[[], Stopped] | None = None

    def cancel(self, signum: int) -> bool:
        """Stops the run for `signum`; True the first time."""
        return self.halt(lambda: Cancelled(signum))

    def halt(self, why: Callable[[], Stopped]) -> bool:
        """Stops the run; `why` makes the error that reports it. True the first time."""
        if self._why is not None:
            return False
        self._why = why
        return True

    def is_set(self) -> bool:
        return self._why is not None

    def error(self) -> Stopped:
        """The error that reports the stop (a new one each call); only once it is set."""
        if self._why is None:
            raise RuntimeError("the run was not stopped")
        return self._why()

    def check(self) -> None:
        """Raises the stop's error once the run is stopped: called before anything new
        starts."""
        if self._why is not None:
            raise self._why()


_CANCELLING = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def cancelled_by_signals(
    stop: Stop,
) -> Iterator[Callable[[], AbstractContextManager[None]]]:
    """SIGINT and SIGTERM set `stop` until the block ends; within `interruptible()`, the
    first also raises ``Cancelled`` in the main thread, ending whatever it waits on.

    Handled explicitly, never left to the default disposition: as PID 1 in the container
    the kernel drops a SIGTERM that has no handler. Signals the entry point held (blocked)
    during its imports are delivered as soon as the handlers are in place; when the block
    ends, the mask it found is restored, so a signal after the report waits for the exit.
    """
    interrupting = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupting
        if stop.cancel(signum) and interrupting:
            interrupting = False
            raise stop.error()

    @contextmanager
    def interruptible() -> Iterator[None]:
        nonlocal interrupting
        interrupting = True
        try:
            stop.check()  # a signal that came before the steps began
            yield
        finally:
            interrupting = False

    if threading.current_thread() is not threading.main_thread():
        yield interruptible
        return
    previous = {signum: signal.signal(signum, handle) for signum in _CANCELLING}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, _CANCELLING)
    try:
        yield interruptible
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def deadline(seconds: float | None, stop: Stop) -> Iterator[None]:
    """Ends the run with ``RunTimedOut`` after `seconds`, whatever it is waiting on: the
    run's stop is set, as a cancellation sets it, so no new work starts in any thread."""
    if seconds is None or not hasattr(signal, "SIGALRM"):
        yield
        return

    def timed_out() -> RunTimedOut:
        return RunTimedOut(
            f"The run did not finish within {seconds / 60:.0f} minutes.",
            fix="Re-run the job; files already on the index are recognised and not uploaded "
            "twice. If the index is this slow every time, publish fewer files per run.",
        )

    def expire(signum: int, frame: FrameType | None) -> None:
        if stop.halt(timed_out):
            raise stop.error()

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            # Whoever set a timer before (a test runner's own) gets what is left of it.
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
