"""The run's stop: what SIGTERM, SIGINT and the run's deadline set, and what every pool and
retry loop obeys.

cli's signal handlers set it, and wake the main thread from whatever it waits on. The
workers that upload or sign, and every call made under the retry policy, look at it before
they start anything: once it is set no new upload, signature or request begins, and those
under way are abandoned rather than awaited.
"""

from __future__ import annotations

from collections.abc import Callable

from oidc_publish.errors import Cancelled, Stopped


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
