"""Waiting until the index lists the uploaded files: backoff, deadline, failed looks, and the
uncached fetch. Injected clock and sleep; the index is an httpx.MockTransport."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest

from oidc_publish.index import IndexClient
from oidc_publish.index_urls import PYPI_UPLOAD, Index
from oidc_publish.installable import Waited, wait_until_installable
from oidc_publish.network import RetryPolicy
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from oidc_publish.simple_api import IndexedFile
from tests.inprocess import FakeTime

WHEEL = "pkg-1.0.0-py3-none-any.whl"
SDIST = "pkg-1.0.0.tar.gz"
EXPECTED = {WHEEL: "a" * 64, SDIST: "b" * 64}
LISTED = {name: IndexedFile(f"https://files/{name}", sha) for name, sha in EXPECTED.items()}


def wait(answers: Iterator[dict[str, IndexedFile] | None], deadline: float = 300.0) -> Waited:
    time = FakeTime()
    result = wait_until_installable(
        lambda: next(answers), EXPECTED, deadline=deadline, clock=time.clock, sleep=time.sleep
    )
    # The fake clock moved by the sleeps alone: the time reported is theirs.
    if result.seconds is not None:
        assert result.seconds == pytest.approx(sum(time.sleeps))
    return result


def test_files_listed_after_a_few_looks_give_the_seconds_it_took() -> None:
    answers = iter([{}, {WHEEL: LISTED[WHEEL]}, {WHEEL: LISTED[WHEEL]}, LISTED])
    result = wait(answers)
    assert result.seconds is not None
    assert result.seconds > 0
    assert result.missing == ()
    assert result.looks == 4
    assert result.output == str(int(result.seconds) + (result.seconds % 1 > 0))


def test_files_already_listed_take_no_wait() -> None:
    result = wait(iter([LISTED]))
    assert result.seconds == 0
    assert result.output == "0"
    assert result.looks == 1


def test_the_delay_grows_and_is_capped() -> None:
    time = FakeTime()
    wait_until_installable(lambda: {}, EXPECTED, deadline=120, clock=time.clock, sleep=time.sleep)
    assert time.sleeps[0] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(time.sleeps, time.sleeps[1:-1], strict=False))
    assert max(time.sleeps) <= 15.0
    assert sum(time.sleeps) == pytest.approx(120)


def test_files_never_listed_within_the_deadline_are_reported_missing() -> None:
    result = wait(iter(lambda: {WHEEL: LISTED[WHEEL]}, None), deadline=20)
    assert result.seconds is None
    assert result.missing == (SDIST,)
    assert result.output == ""
    warning = result.warning(20, "PyPI")
    assert warning is not None
    assert warning.level == "warning"
    assert SDIST in warning.message
    assert WHEEL not in warning.message


def test_a_file_listed_with_another_hash_is_not_the_uploaded_one() -> None:
    stale = {**LISTED, SDIST: IndexedFile("https://files/old", "c" * 64)}
    result = wait(iter(lambda: stale, None), deadline=5)
    assert result.missing == (SDIST,)


def test_an_index_without_hashes_counts_a_listed_file() -> None:
    bare = {name: IndexedFile(f"https://files/{name}", None) for name in EXPECTED}
    assert wait(iter([bare])).seconds == 0


def test_a_failed_look_does_not_end_the_wait() -> None:
    answers = iter([None, None, LISTED])
    result = wait(answers)
    assert result.seconds is not None
    assert result.looks == 3
    assert result.answered == 1


def test_an_index_that_never_answers_is_reported_as_such() -> None:
    result = wait(iter(lambda: None, 0), deadline=10)
    assert result.seconds is None
    assert result.answered == 0
    assert set(result.missing) == set(EXPECTED)
    warning = result.warning(10, "PyPI")
    assert warning is not None
    assert "did not answer" in warning.message


def test_nothing_to_wait_for_when_listed_is_no_warning() -> None:
    assert wait(iter([LISTED])).warning(300, "PyPI") is None


# The fetch.


def no_sleep(_: float) -> None:
    raise AssertionError("a single look never waits")


def fetch(
    response: httpx.Response | Exception,
) -> tuple[dict[str, IndexedFile] | None, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(response, Exception):
            raise response
        return response

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        reporter = Reporter(RunnerContext.from_env({}), io.StringIO())
        holdings = IndexClient(Index(PYPI_UPLOAD), http, RetryPolicy(sleep=no_sleep), reporter)
        return holdings.fresh_files("Pkg.Name"), seen


def test_the_fetch_asks_caches_not_to_answer_for_the_index() -> None:
    body = {
        "meta": {"api-version": "1.1"},
        "files": [{"filename": WHEEL, "url": "https://files/w", "hashes": {"sha256": "a" * 64}}],
    }
    files, [request] = fetch(
        httpx.Response(
            200, headers={"content-type": "application/vnd.pypi.simple.v1+json"}, json=body
        )
    )
    assert files is not None
    assert files[WHEEL].sha256 == "a" * 64
    assert request.headers["cache-control"] == "no-cache"
    assert request.headers["pragma"] == "no-cache"
    assert str(request.url) == "https://pypi.org/simple/pkg-name/"


def test_the_fetch_reads_an_html_only_index() -> None:
    html = f'<a href="/packages/{SDIST}#sha256={"b" * 64}">{SDIST}</a>'
    files, _ = fetch(httpx.Response(200, headers={"content-type": "text/html"}, text=html))
    assert files is not None
    assert files[SDIST].sha256 == "b" * 64


def test_no_page_yet_is_an_empty_listing() -> None:
    assert fetch(httpx.Response(404))[0] == {}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503),
        httpx.Response(
            200, headers={"content-type": "application/vnd.pypi.simple.v1+json"}, text="{"
        ),
        httpx.ConnectTimeout("slow"),
    ],
)
def test_a_failed_fetch_is_none(response: httpx.Response | Exception) -> None:
    files, seen = fetch(response)
    assert files is None
    assert len(seen) == 1  # the poll loop retries, not the fetch
