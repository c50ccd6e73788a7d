"""The run's stop: what SIGTERM and SIGINT set, and what every pool and retry loop obeys.

cli's signal handlers set it, and wake the main thread from whatever it waits on. The
workers that upload or sign, and every call made under the retry policy, look at it before
they start anything: once it is set no new upload, signature or request begins, and those
under way are abandoned rather than awaited.
"""

from __future__ import annotations

from oidc_publish.errors import Cancelled


class Stop:
    """Set once, by the first signal; read by any thread. A plain attribute, so that the
    signal handler, which interrupts the main thread anywhere, takes no lock."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def cancel(self, signum: int) -> bool:
        """Stops the run for `signum`; True the first time."""
        if self.signal is not None:
            return False
        self.signal = signum
        return True

    def is_set(self) -> bool:
        return self.signal is not None

    def error(self) -> Cancelled:
        """The error that reports the stop; only once it is set."""
        if self.signal is None:
            raise RuntimeError("the run was not stopped")
        return Cancelled(self.signal)

    def check(self) -> None:
        """Raises ``Cancelled`` once the run is stopped: called before anything new starts."""
        if self.signal is not None:
            raise Cancelled(self.signal)
