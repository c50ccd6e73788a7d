"""The network layer: the retry policy on its own (bounded attempts, bounded waiting,
jitter, Retry-After), then `send` and `persist` against the local index (deadlines, size
caps, redirects, hostile reason phrases and headers)."""

from __future__ import annotations

import random
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import httpx
import pytest
import requests

from oidc_publish.errors import Cancelled, CannotConnect, IndexUnreachable, Level
from oidc_publish.network import (
    MAX_PAGE_BYTES,
    GaveUp,
    RetryNotice,
    RetryPolicy,
    TooLarge,
    Transient,
    Unreachable,
    UntrustedRedirect,
    connection_failure,
    parse_retry_after,
    persist,
    proxy_for,
    proxy_secrets,
    raise_for_transient,
    retrying,
    send,
)
from oidc_publish.report import Publication
from oidc_publish.stop import Stop
from tests.inprocess import PATIENCE, UNAVAILABLE, Clock, Journal, Sleeps, http_client, index_client
from tests.localindex.server import Fault, LocalIndex

BREAK = "\u200b"  # the zero-width space that breaks a command without hiding the text


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


def test_no_attempt_starts_once_the_run_is_stopped() -> None:
    stop = Stop()
    stop.cancel(signal.SIGTERM)
    script = Script(failures=0)

    with pytest.raises(Cancelled) as caught:
        script.run(RetryPolicy(stop=stop))

    assert script.calls == 0
    assert caught.value.exit_code == 143


def test_a_stop_during_an_attempt_ends_the_call_without_a_retry() -> None:
    stop = Stop()
    sleeps = Sleeps()
    notices: list[RetryNotice] = []

    def attempt() -> None:
        stop.cancel(signal.SIGINT)  # arrives while the request is out; it then fails
        raise Transient("HTTP 503")

    with pytest.raises(Cancelled) as caught:
        retrying(attempt, RetryPolicy(sleep=sleeps, stop=stop), notices.append)

    assert caught.value.exit_code == 130
    assert notices == []
    assert sleeps.waits == []


def test_retry_after_formats() -> None:
    assert parse_retry_after("7") == 7.0
    # str.isdigit() takes these; float() does not, and neither does the parser.
    assert parse_retry_after("\u00b2") is None
    assert parse_retry_after("\u0661\u0662") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


# `send` and `persist` against the local index.


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def http(index: LocalIndex, journal: Journal) -> Iterator[httpx.Client]:
    with http_client(index, journal) as client:
        yield client


def audience_url(index: LocalIndex) -> str:
    return f"{index.url}/_/oidc/audience"


def test_a_drip_ends_as_transient_at_the_request_deadline(
    index: LocalIndex, http: httpx.Client
) -> None:
    # Each byte arrives well within any read timeout; the whole never does.
    index.faults("audience", Fault.drip(size=10_000, every=0.05))

    url = audience_url(index)

    with pytest.raises(Transient) as caught:
        send(http, "GET", url, deadline=1.0)

    assert caught.value.reason == "no complete answer within 1s"
    assert index.count("audience", 200) == 1
    # The abandoned read goes on in its thread until the index hangs up. The client may be
    # closed only after that: closing a socket under a thread still reading it frees its
    # number for the next connection, which OpenSSL in that thread would then read from.
    reading = [t for t in threading.enumerate() if t.name == f"GET {url}"]
    assert reading
    index.reset()
    for thread in reading:
        thread.join(PATIENCE)
        assert not thread.is_alive()


def test_a_huge_answer_is_refused_without_reading_it(index: LocalIndex, http: httpx.Client) -> None:
    # A terabyte: read whole, the test would never end.
    index.faults("simple", Fault.huge(1 << 40))

    with pytest.raises(TooLarge):
        send(http, "GET", f"{index.simple_url}sample-project/", max_bytes=MAX_PAGE_BYTES)


def test_a_redirect_to_plain_http_is_never_followed(
    index: LocalIndex, http: httpx.Client, journal: Journal
) -> None:
    url = f"{index.simple_url}sample-project/"
    index.faults("simple", Fault.redirect(302))

    with pytest.raises(UntrustedRedirect) as caught:
        send(http, "GET", url, follow_redirects=True)
    assert caught.value.target.startswith("http://127.0.0.1:")

    # The index client takes it as "the index won't say", and does not ask again.
    index.faults("simple", Fault.redirect(302))
    holdings = index_client(index, journal, http, Sleeps())
    assert holdings.project_files("sample-project") is None
    assert index.count("simple", 302) == 2
    assert index.count("simple") == 2
    assert "no usable answer (UntrustedRedirect)" in journal.text()


def test_a_command_in_a_reason_phrase_reaches_the_log_neutralised(
    index: LocalIndex, http: httpx.Client, journal: Journal
) -> None:
    index.faults(
        "audience",
        Fault.status(503, "Unavailable ##[stop-commands]x", headers={"Retry-After": "0"}),
        Fault.status(503, "::stop-commands::y", headers={"Retry-After": "0"}),
    )

    answer = persist(
        lambda: send(http, "GET", audience_url(index)),
        RetryPolicy(sleep=Sleeps(), clock=Clock(0.0)),
        journal,
        label="the audience endpoint",
        what="The audience endpoint",
        fix="Re-run.",
    )
    journal.finish(Publication(), None)

    assert answer.status == 200
    text = journal.text()
    assert "stop-commands]x" in text  # the reason is shown ...
    assert "##[" not in text  # ... but never as a command
    assert f"##{BREAK}[stop-commands]x" in text
    assert not any(line.startswith(("::stop-commands", " ::stop")) for line in text.splitlines())
    assert "::stop-commands::y" in text


def test_a_line_break_in_a_reason_phrase_stays_inside_its_retry_line(
    index: LocalIndex, journal: Journal
) -> None:
    # httpx refuses such a status line; `requests` (the upload's client, twine's) keeps the
    # line break in `reason`, and the upload raises it as it comes (raise_for_transient).
    reason = "Service Unavailable\r::error::forged"
    index.faults("audience", *[Fault.status(503, reason, headers={"Retry-After": "0"})] * 2)

    def attempt() -> int:
        answer = requests.get(audience_url(index), verify=str(index.ca_pem), timeout=PATIENCE)
        raise_for_transient(answer.status_code, answer.reason, answer.headers)
        return answer.status_code

    status = persist(
        attempt,
        RetryPolicy(sleep=Sleeps(), clock=Clock(0.0)),
        journal,
        label="the audience endpoint",
        what="The audience endpoint",
        fix="Re-run.",
    )

    assert status == 200
    shown = "Service Unavailable\\r::error::forged"
    assert journal.text().splitlines() == [
        f'the audience endpoint: Attempt {n} failed ("HTTP 503 {shown}"); retrying in 0.0s.'
        for n in (1, 2)
    ]
    # The notices keep the summary's form: a code span, on one line.
    assert [d.message for d in journal.diagnostics] == [
        f"Attempt {n} failed (`HTTP 503 Service Unavailable ::error::forged`); retrying in 0.0s."
        for n in (1, 2)
    ]


def test_a_retry_after_that_is_not_ascii_digits_falls_back_to_backoff(
    index: LocalIndex, http: httpx.Client, journal: Journal
) -> None:
    # "²" passes str.isdigit(), which float() then refuses.
    index.faults("audience", Fault.status(503, headers={"Retry-After": "\u00b2"}))
    sleeps = Sleeps()

    answer = persist(
        lambda: send(http, "GET", audience_url(index)),
        RetryPolicy(base=1.0, sleep=sleeps, clock=Clock(0.0)),
        journal,
        label="the audience endpoint",
        what="The audience endpoint",
        fix="Re-run.",
    )

    assert answer.status == 200
    assert index.count("audience", 503) == 1
    [wait] = sleeps.waits
    assert 0.0 <= wait <= 1.0  # the first backoff's ceiling, not 2 s


def test_persist_gives_up_as_index_unreachable_naming_the_attempts(
    index: LocalIndex, http: httpx.Client, journal: Journal
) -> None:
    index.faults("audience", *[UNAVAILABLE] * 3)
    sleeps = Sleeps()

    with pytest.raises(IndexUnreachable) as caught:
        persist(
            lambda: send(http, "GET", audience_url(index)),
            RetryPolicy(attempts=3, sleep=sleeps, clock=Clock(0.0)),
            journal,
            label="the audience endpoint",
            what="The audience endpoint",
            fix="Check the status page.",
            file="dist/x.whl",
        )

    error = caught.value
    assert error.message == (
        "The audience endpoint failed 3 time(s); the last: `HTTP 503 Service Unavailable`."
    )
    assert error.fix == "Check the status page."
    assert error.file == "dist/x.whl"
    assert index.count("audience") == 3
    assert len(sleeps.waits) == 2
    notices = [d for d in journal.diagnostics if d.level is Level.NOTICE]
    assert [n.title for n in notices] == ["Retrying the audience endpoint"] * 2


# The runner's proxy, and hosts that cannot be reached.


@pytest.mark.parametrize(
    ("environ", "url", "proxy"),
    [
        ({}, "https://upload.pypi.org/legacy/", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://upload.pypi.org/", "http://proxy:3128"),
        ({"https_proxy": "proxy:3128"}, "https://pypi.org/", "http://proxy:3128"),
        ({"ALL_PROXY": "http://all:8080"}, "https://pypi.org/", "http://all:8080"),
        # Lower case first, as curl, pip and requests read them; an empty one turns it off.
        (
            {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"},
            "https://a/",
            "http://low:1",
        ),
        ({"https_proxy": "", "HTTPS_PROXY": "http://up:2"}, "https://a/", None),
        # NO_PROXY: the host, a domain it is in (with or without a dot), host:port, `*`.
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "pypi.org"}, "https://pypi.org/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "pypi.org"}, "https://upload.pypi.org/", None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": ".pypi.org"}, "https://pypi.org/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "ypi.org"}, "https://pypi.org/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "a, b:8443"}, "https://b:8443/", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "b:8443"}, "https://b/", "http://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://anything/", None),
        # Shown without the credentials written into it.
        ({"HTTPS_PROXY": "http://u:s3cret@p:1"}, "https://a/", "http://p:1"),
    ],
)
def test_the_proxy_a_request_goes_through_is_the_runners(
    environ: dict[str, str], url: str, proxy: str | None
) -> None:
    assert proxy_for(url, environ) == proxy


def test_credentials_in_any_proxy_variable_are_secrets() -> None:
    environ = {
        "HTTPS_PROXY": "http://runner:p%40ss@proxy:3128",
        "no_proxy": "localhost",
        "ALL_PROXY": "socks5://solo@proxy:1080",
    }

    assert set(proxy_secrets(environ)) == {"runner:p%40ss", "p@ss", "p%40ss", "solo"}


@pytest.mark.parametrize(
    ("url", "error"),
    [
        pytest.param("https://127.0.0.1:{closed}/", "Connection refused", id="refused"),
        pytest.param("https://pypi.invalid/", "Name or service not known", id="no-such-name"),
    ],
)
def test_a_host_that_cannot_be_reached_is_named_with_its_error_and_the_fix(
    url: str, error: str, closed_port: int, index: LocalIndex
) -> None:
    target = url.format(closed=closed_port)
    journal = Journal()
    sleeps = Sleeps()
    with http_client(index, journal) as http, pytest.raises(CannotConnect) as caught:
        persist(
            lambda: send(http, "GET", target),
            RetryPolicy(attempts=3, sleep=sleeps, clock=Clock(0.0)),
            journal,
            label="the index",
            what="The index",
            fix="not this one",
        )

    message, fix = caught.value.message, caught.value.fix
    assert str(urlsplit(target).hostname) in message
    assert error in message
    assert "directly (no proxy applies to it)" in message
    assert "3 time(s)" in message
    assert "`HTTPS_PROXY`, `NO_PROXY`" in fix
    assert len(sleeps.waits) == 2  # retried like any transient failure


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_requests_failures_are_read_as_httpx_failures_are(closed_port: int) -> None:
    url = f"https://127.0.0.1:{closed_port}/legacy/"
    with pytest.raises(requests.ConnectionError) as caught:
        requests.post(url, timeout=PATIENCE)

    failure = connection_failure(caught.value, url)

    assert isinstance(failure, Unreachable)
    assert failure.error == "Connection refused"
    assert failure.proxy is None
