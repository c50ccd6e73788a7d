"""The retry policy on its own: bounded attempts, bounded waiting, jitter, Retry-After."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from oidc_publish.network import (
    GaveUp,
    RetryNotice,
    RetryPolicy,
    Transient,
    parse_retry_after,
    retrying,
)


class Script:
    """Fails transiently `failures` times, then succeeds; records the waits."""

    def __init__(self, failures: int, retry_after: float | None = None) -> None:
        self.failures = failures
        self.retry_after = retry_after
        self.calls = 0
        self.waits: list[float] = []
        self.now = 0.0

    def attempt(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise Transient("HTTP 503", self.retry_after)
        return "ok"

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def run(self, policy: RetryPolicy) -> str:
        notices: list[RetryNotice] = []
        result = retrying(
            self.attempt,
            replace(policy, sleep=self.sleep, clock=lambda: self.now),
            notices.append,
            rng=random.Random(7),  # noqa: S311 - jitter
        )
        assert [n.delay for n in notices] == self.waits
        return result


def test_transient_failures_are_retried_until_success() -> None:
    script = Script(failures=2)
    assert script.run(RetryPolicy()) == "ok"
    assert script.calls == 3


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    script = Script(failures=5)
    script.run(RetryPolicy(attempts=6, base=1.0, cap=4.0, budget=1000))
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0.0 <= w <= c for w, c in zip(script.waits, ceilings, strict=True))
    assert len(set(script.waits)) == len(script.waits)


def test_attempts_are_bounded() -> None:
    script = Script(failures=100)
    with pytest.raises(GaveUp) as caught:
        script.run(RetryPolicy(attempts=4))
    assert script.calls == 4
    assert caught.value.attempts == 4
    assert caught.value.last.reason == "HTTP 503"


def test_total_waiting_is_bounded() -> None:
    script = Script(failures=100, retry_after=10)
    with pytest.raises(GaveUp):
        script.run(RetryPolicy(attempts=100, cap=30, budget=35))
    assert script.waits == [10, 10, 10]


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    script = Script(failures=2, retry_after=500)
    script.run(RetryPolicy(cap=30, budget=1000))
    assert script.waits == [30, 30]


def test_other_errors_are_not_retried() -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("422")

    with pytest.raises(ValueError, match="422"):
        retrying(attempt, RetryPolicy(sleep=lambda _: None), lambda _: None)
    assert calls == 1


def test_a_call_has_a_deadline_over_all_its_attempts() -> None:
    script = Script(failures=100, retry_after=10)
    with pytest.raises(GaveUp):
        script.run(RetryPolicy(attempts=100, cap=30, budget=1000, deadline=25))
    assert script.waits == [10, 10]


def test_retry_after_formats() -> None:
    assert parse_retry_after("7") == 7.0
    # str.isdigit() takes these; float() does not, and neither does the parser.
    assert parse_retry_after("\u00b2") is None
    assert parse_retry_after("\u0661\u0662") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
