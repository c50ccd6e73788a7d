"""The uploader in process against the local index: order, renewal, retries, stopping,
files already there, and secrets, with several workers and no real sleep.

Which file finishes last, or which calls meet at once, is arranged by waiting on what the
code logs (see tests/inprocess.py), never by timers.
"""

from __future__ import annotations

import hashlib
import secrets
import signal
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from oidc_publish.credentials import ApiToken, Credential, TrustedPublishing
from oidc_publish.dists import Distribution
from oidc_publish.errors import ActionError, Cancelled, FileChanged, Level, UploadRejected
from oidc_publish.index_urls import Index
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.reconcile import Reconciler
from oidc_publish.report import Publication
from oidc_publish.stop import Stop
from oidc_publish.upload import Uploader
from tests.inprocess import (
    PATIENCE,
    UNAVAILABLE,
    Clock,
    Journal,
    Sleeps,
    distributions,
    gated,
    http_client,
    index_client,
    policy,
    secret_lines,
    trusted_publishing,
    uploaded,
)
from tests.localindex.dists import BROKEN_RST, DEFAULT_DESCRIPTION, make_sdist, make_wheel, sha256
from tests.localindex.server import Fault, LocalIndex

T = TypeVar("T")

TAGS = ("py3-none-any", "py310-none-any", "py311-none-any", "py312-none-any")
EXPIRED = "Invalid API Token: token is expired"
GIB = 1024**3
# What an upload may allocate while its answer is a GiB: far above what reading a page
# takes, far below the GiB, and within the 150 MB of memory a run is allowed over its own.
MEMORY_BOUND = 32 * 1024 * 1024


@dataclass
class Rig:
    index: LocalIndex
    workspace: Path
    reporter: Journal
    sleeps: Sleeps
    http: httpx.Client

    def release(self, *, broken: int | None = None) -> list[Distribution]:
        """sample-project 1.0.0 as four wheels and an sdist, in that order; the file at
        `broken` has a description PyPI cannot render, so the index refuses it."""
        folder = self.workspace / "dist"
        paths = [
            make_wheel(
                folder,
                "sample-project",
                "1.0.0",
                filename=f"sample_project-1.0.0-{tag}.whl",
                description=BROKEN_RST if n == broken else DEFAULT_DESCRIPTION,
                description_content_type="text/x-rst" if n == broken else "text/markdown",
            )
            for n, tag in enumerate(TAGS)
        ]
        paths.append(make_sdist(folder, "sample-project", "1.0.0"))
        return distributions(paths, self.workspace)

    def api_token(self) -> ApiToken:
        token = f"pypi-static-{secrets.token_hex(16)}"
        self.index.api_tokens.add(token)
        return ApiToken("__token__", token)

    def trusted_publishing(self, clock: Clock | None = None) -> TrustedPublishing:
        return trusted_publishing(self.index, self.reporter, self.http, self.sleeps, clock=clock)

    def uploader(
        self,
        credential: Credential,
        *,
        workers: int = 4,
        skip_existing: bool = False,
        stop: Stop | None = None,
    ) -> Uploader:
        holdings = index_client(self.index, self.reporter, self.http, self.sleeps)
        reconciler = Reconciler(holdings, skip_existing=skip_existing, reporter=self.reporter)
        return Uploader(
            index=Index(self.index.upload_url),
            credential=credential,
            policy=policy(self.sleeps, stop=stop or Stop()),
            reporter=self.reporter,
            on_exists=reconciler.name_taken,
            ca_file=str(self.index.ca_pem),
            workers=workers,
        )


@pytest.fixture
def rig(index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    # As a job with a private index sets it: requests takes these over a session's CA file.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(index.ca_pem))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    reporter = Journal()
    with http_client(index, reporter) as http:
        yield Rig(index, tmp_path / "workspace", reporter, Sleeps(), http)


class Together:
    """A credential whose callers after the first meet before (or after) asking the real one,
    so `parties` uploads ask at the same moment (or all hold the same token)."""

    def __init__(self, inner: TrustedPublishing, parties: int, *, meet_first: bool) -> None:
        self.username = inner.username
        self._inner = inner
        self._barrier = threading.Barrier(parties, timeout=PATIENCE)
        self._meet_first = meet_first
        self._calls = 0
        self._lock = threading.Lock()

    @contextmanager
    def lease(self, valid_for: float = 0.0) -> Iterator[str]:
        with self._lock:
            self._calls += 1
            meets = 2 <= self._calls <= 1 + self._barrier.parties
        if meets and self._meet_first:
            self._barrier.wait()
        with self._inner.lease(valid_for) as token:
            if meets and not self._meet_first:
                self._barrier.wait()
            yield token

    def renew(self, stale: str) -> str | None:
        return self._inner.renew(stale)

    def close(self) -> None:
        self._inner.close()


def names(files: list[FileResult] | list[Distribution]) -> list[str]:
    return [f.dist.filename if isinstance(f, FileResult) else f.filename for f in files]


def on_index(dists: list[Distribution]) -> dict[str, str]:
    return {d.filename: sha256(d.path) for d in dists}


def test_results_keep_the_release_order_when_an_early_file_finishes_last(rig: Rig) -> None:
    dists = rig.release()
    first, late, *rest = dists
    # The second file's upload starts only when every later one is done.
    held = gated(
        late,
        lambda: rig.reporter.wait_for(
            lambda lines: all(any(uploaded(d.filename)(x) for x in lines) for d in rest)
        ),
    )

    results = rig.uploader(rig.api_token(), workers=4).upload_all([first, held, *rest])

    assert names(results) == names(dists)
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 5
    finished = [line.split(": ")[0] for line in rig.reporter.lines if ": uploaded" in line]
    assert finished[0] == first.filename
    assert finished[-1] == late.filename
    assert rig.index.files() == on_index(dists)


def test_one_renewal_serves_every_worker_when_the_token_nears_expiry(rig: Rig) -> None:
    dists = rig.release()
    clock = Clock(time.time())
    publishing = rig.trusted_publishing(clock)
    # Once the first file is up, 14.5 of the token's 15 minutes have passed.

    def later() -> None:
        clock.now += 870.0

    rig.reporter.on(uploaded(dists[0].filename), later)
    # The four other uploads ask for a token at the same moment.
    credential = Together(publishing, 4, meet_first=True)

    results = rig.uploader(credential, workers=4).upload_all(dists)

    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 5
    assert rig.index.count("mint", 200) == 2
    assert len(rig.index.minted_tokens) == 2
    assert rig.reporter.text().count("Renewing the upload token before it expires.") == 1
    # The replaced token was burned, and never sent again: the index refused nothing.
    first, second = rig.index.minted_tokens
    assert rig.index.minted_tokens[first].burned
    assert rig.index.count("upload", 403) == 0
    assert rig.index.files() == on_index(dists)
    assert rig.index.alive_tokens() == [second]
    publishing.close()
    assert rig.index.alive_tokens() == []


def peak_memory(work: Callable[[], T]) -> tuple[T, int]:
    """`work()`'s result, and the most memory it held at once (every thread's allocations
    counted, the index's own included)."""
    tracemalloc.start()
    try:
        done = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return done, peak


def test_an_expired_token_refused_under_several_workers_is_minted_again_once(rig: Rig) -> None:
    dists = rig.release()
    publishing = rig.trusted_publishing()

    def expire_every_token() -> None:
        for token, minted in list(rig.index.minted_tokens.items()):
            rig.index.minted_tokens[token] = replace(minted, expires_at=0.0)

    rig.reporter.on(uploaded(dists[0].filename), expire_every_token)
    # The four other uploads all hold the first token when they send.
    credential = Together(publishing, 4, meet_first=False)

    results = rig.uploader(credential, workers=4).upload_all(dists)

    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 5
    assert rig.index.count("upload", 403) == 4
    assert rig.index.count("mint", 200) == 2
    assert len(rig.index.minted_tokens) == 2
    # The expired token was burned once the last of the four uploads holding it was done.
    first, _ = rig.index.minted_tokens
    assert rig.index.minted_tokens[first].burned
    assert rig.index.files() == on_index(dists)
    # The retry after a renewal does not wait.
    assert rig.sleeps.waits == [0.0] * 4
    # The log says what happened: one token minted, four uploads retried with it.
    lines = rig.reporter.lines
    assert [line for line in lines if "Minted" in line] == [
        "Minted a new upload token: the index refused the last as expired."
    ]
    retried = [line for line in lines if "retrying with the renewed token" in line]
    assert sorted(line.split(": ")[0] for line in retried) == sorted(names(dists[1:]))
    assert "minted a new one" not in rig.reporter.text()


def test_a_503_on_one_file_is_retried_while_the_others_go_up(rig: Rig) -> None:
    dists = rig.release()
    rig.reporter.on(uploaded(dists[0].filename), lambda: rig.index.faults("upload", UNAVAILABLE))

    results = rig.uploader(rig.api_token(), workers=4).upload_all(dists)

    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 5
    assert rig.index.files() == on_index(dists)
    assert rig.index.count("upload", 503) == 1
    [notice] = [d for d in rig.reporter.diagnostics if d.level is Level.NOTICE]
    retried = notice.title.removeprefix("Retrying ")
    assert retried in names(results[1:])
    assert notice.file == f"dist/{retried}"
    assert "HTTP 503" in notice.message
    assert f"{retried}: Attempt 1 failed" in rig.reporter.text()
    assert rig.sleeps.waits == [0.0]


def test_an_answer_broken_off_midway_is_retried(rig: Rig) -> None:
    wheel = rig.release()[0]
    rig.index.faults("upload", Fault.cut(400, 10_000, after_bytes=100))

    results = rig.uploader(rig.api_token(), workers=1).upload_all([wheel])

    assert [r.outcome for r in results] == [Outcome.UPLOADED]
    assert rig.index.files() == on_index([wheel])
    [notice] = [d for d in rig.reporter.diagnostics if d.level is Level.NOTICE]
    assert notice.title == f"Retrying {wheel.filename}"
    assert "ConnectionError" in notice.message


def test_a_refused_file_stops_the_uploads_not_yet_started(rig: Rig) -> None:
    dists = rig.release(broken=1)

    with pytest.raises(UploadRejected) as caught:
        rig.uploader(rig.api_token(), workers=1).upload_all(dists)

    assert "description failed to render" in caught.value.message
    assert caught.value.file == f"dist/{dists[1].filename}"
    assert [(r.dist.filename, r.outcome) for r in caught.value.results] == [
        (dists[0].filename, Outcome.UPLOADED),
        (dists[1].filename, Outcome.FAILED),
        *((d.filename, Outcome.NOT_ATTEMPTED) for d in dists[2:]),
    ]
    assert rig.index.files() == on_index(dists[:1])
    assert rig.index.count("upload") == 2


def test_after_a_refusal_the_results_say_what_is_on_the_index(rig: Rig) -> None:
    dists = rig.release(broken=1)
    first, bad, flying, *rest = dists
    started = threading.Event()

    def refused(line: str) -> bool:
        return bad.filename in line and "-> 400" in line

    # The refused file is sent once the next file is under way, and that one is sent
    # once the refusal came back: it is in flight when the uploads stop.
    def once_started() -> None:
        assert started.wait(PATIENCE)

    late_bad = gated(bad, once_started)

    def when_refused() -> None:
        started.set()
        rig.reporter.wait_for(lambda lines: any(refused(x) for x in lines))

    with pytest.raises(UploadRejected) as caught:
        rig.uploader(rig.api_token(), workers=2).upload_all(
            [first, late_bad, gated(flying, when_refused), *rest]
        )

    results = caught.value.results
    assert names(results) == names(dists)
    assert results[0].outcome is Outcome.UPLOADED
    assert results[1].outcome is Outcome.FAILED
    assert results[2].outcome is Outcome.UPLOADED
    # Whatever else got through, the results say exactly which files are on the index.
    assert rig.index.files() == on_index([r.dist for r in results if r.outcome.on_index])
    assert {r.outcome for r in results[3:]} <= {Outcome.UPLOADED, Outcome.NOT_ATTEMPTED}


def test_a_refusal_with_a_gib_page_is_read_no_further_than_its_reason(rig: Rig) -> None:
    wheel = rig.release()[0]
    rig.index.faults("upload", Fault.huge(GIB, "html", 400))
    uploader = rig.uploader(rig.api_token(), workers=1)

    def refused() -> UploadRejected:
        with pytest.raises(UploadRejected) as caught:
            uploader.upload_all([wheel])
        return caught.value

    error, peak = peak_memory(refused)

    assert peak < MEMORY_BOUND, f"{peak} bytes allocated"
    assert error.file == f"dist/{wheel.filename}"
    assert f"refused `{wheel.filename}`: HTTP 400 `Bad Request`" in error.message
    assert [r.outcome for r in error.results] == [Outcome.FAILED]
    assert rig.index.count("upload") == 1
    assert rig.index.files() == {}


def test_already_exists_atop_a_gib_page_is_still_recognised(rig: Rig) -> None:
    # As pypiserver answers twine: "400 Bad Request", the reason in the page.
    rig.index.mode = "pypiserver"
    wheel = rig.release()[0]
    rig.index.add_file(wheel.path)
    heading = f"Package {wheel.filename!r} already exists!"
    rig.index.faults("upload", Fault.huge(GIB, "html", 400, heading=heading))
    uploader = rig.uploader(rig.api_token(), workers=1)

    results, peak = peak_memory(lambda: uploader.upload_all([wheel]))

    assert peak < MEMORY_BOUND, f"{peak} bytes allocated"
    assert [r.outcome for r in results] == [Outcome.LISTED]
    assert rig.index.files() == on_index([wheel])


def rewrite(path: Path) -> None:
    """Other bytes in the file, its size unchanged: as a build writing over it would."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


@pytest.mark.parametrize("change", [rewrite, truncate], ids=["rewritten", "truncated"])
def test_a_file_changed_after_hashing_is_refused_by_name_not_published(
    rig: Rig, change: Callable[[Path], None]
) -> None:
    # pypiserver stores what it is sent, checking no digest.
    rig.index.mode = "pypiserver"
    first, changed, *_ = rig.release()
    change(changed.path)

    with pytest.raises(FileChanged) as caught:
        rig.uploader(rig.api_token(), workers=1).upload_all([first, changed])

    error = caught.value
    assert error.file == f"dist/{changed.filename}"
    assert f"`dist/{changed.filename}` changed after it was hashed" in error.message
    assert changed.sha256 in error.message
    assert "did not take the changed file" in error.message
    assert [(r.dist.filename, r.outcome) for r in error.results] == [
        (first.filename, Outcome.UPLOADED),
        (changed.filename, Outcome.FAILED),
    ]
    # The request was cut off before its end, so nothing of the changed file was stored.
    assert rig.index.files() == on_index([first])
    assert rig.index.count("upload") == 1
    assert f"{changed.filename}: uploaded" not in rig.reporter.text()


def test_the_blake2_digest_is_made_while_sending_and_follows_the_file(rig: Rig) -> None:
    wheel = rig.release()[0]

    results = rig.uploader(rig.api_token(), workers=1).upload_all([wheel])

    # The index checked both digests against the bytes it got (a wrong one is refused).
    assert [r.outcome for r in results] == [Outcome.UPLOADED]
    [form] = rig.index.bodies("upload")
    expected = hashlib.blake2b(wheel.path.read_bytes(), digest_size=32).hexdigest()
    assert form.index(b'name="sha256_digest"') < form.index(b'name="content"')
    assert form.index(b'name="content"') < form.index(b'name="blake2_256_digest"')
    assert expected.encode() in form[form.index(b'name="blake2_256_digest"') :]
    assert wheel.blake2_256 == expected


def test_bytes_appended_after_hashing_are_not_sent(rig: Rig) -> None:
    rig.index.mode = "pypiserver"
    wheel = rig.release()[0]
    with wheel.path.open("ab") as file:
        file.write(b"appended after the file was checked")

    results = rig.uploader(rig.api_token(), workers=1).upload_all([wheel])

    assert [r.outcome for r in results] == [Outcome.UPLOADED]
    # What the index holds is what was hashed, checked and reported.
    assert rig.index.files() == {wheel.filename: wheel.sha256}


def test_a_stop_while_files_are_in_flight_starts_no_other_and_says_what_is_on_the_index(
    rig: Rig,
) -> None:
    dists = rig.release()
    first, second, third, *rest = dists
    stop = Stop()
    third_started = threading.Event()

    # The second and third files are both under way when the run stops, as the third starts.
    def stop_the_run() -> None:
        stop.cancel(signal.SIGTERM)
        third_started.set()

    def after_the_third() -> None:
        assert third_started.wait(PATIENCE)

    late_second = gated(second, after_the_third)
    uploader = rig.uploader(rig.api_token(), workers=2, stop=stop)

    with pytest.raises(Cancelled) as caught:
        uploader.upload_all([first, late_second, gated(third, stop_the_run), *rest])

    # Nothing interrupted this thread, so the uploads under way were waited for; no other
    # file started.
    assert [(r.dist.filename, r.outcome) for r in caught.value.results] == [
        *((d.filename, Outcome.UPLOADED) for d in (first, second, third)),
        *((d.filename, Outcome.NOT_ATTEMPTED) for d in rest),
    ]
    assert rig.index.count("upload") == 3
    assert rig.index.files() == on_index([first, second, third])


def test_files_already_there_are_judged_by_their_hash(rig: Rig) -> None:
    rig.index.mode = "pypiserver"  # answers "already exists" even for identical bytes
    dists = rig.release()
    for dist in dists:
        rig.index.add_file(dist.path)

    results = rig.uploader(rig.api_token(), workers=4).upload_all(dists)

    assert names(results) == names(dists)
    assert [r.outcome for r in results] == [Outcome.LISTED] * 5
    assert rig.index.count("upload", 400) == 5
    assert rig.index.files() == on_index(dists)


def other_bytes_under_the_name(rig: Rig, dist: Distribution) -> str:
    """Puts a file with other contents on the index under `dist`'s name; its sha256."""
    theirs = make_wheel(
        rig.workspace / "elsewhere",
        "sample-project",
        "1.0.0",
        filename=dist.filename,
        payload_size=64,
    )
    rig.index.add_file(theirs)
    assert sha256(theirs) != dist.sha256
    return sha256(theirs)


def test_other_bytes_under_the_same_name_are_refused_naming_both_hashes(rig: Rig) -> None:
    rig.index.mode = "pypiserver"
    dists = rig.release()
    taken = dists[2]
    theirs = other_bytes_under_the_name(rig, taken)

    with pytest.raises(UploadRejected) as caught:
        rig.uploader(rig.api_token(), workers=4).upload_all(dists)

    error = caught.value
    [shown] = error.diagnostics()
    assert shown.title == "File already exists with other contents"
    assert theirs in error.message
    assert taken.sha256 in error.message
    assert error.file == f"dist/{taken.filename}"
    outcomes = {r.dist.filename: r.outcome for r in error.results}
    assert outcomes[taken.filename] is Outcome.FAILED
    assert rig.index.files()[taken.filename] == theirs
    assert rig.index.files() == {
        taken.filename: theirs,
        **on_index([r.dist for r in error.results if r.outcome.on_index]),
    }


def test_other_bytes_under_the_same_name_are_skipped_with_skip_existing(rig: Rig) -> None:
    rig.index.mode = "pypiserver"
    dists = rig.release()
    taken = dists[2]
    theirs = other_bytes_under_the_name(rig, taken)

    results = rig.uploader(rig.api_token(), workers=4, skip_existing=True).upload_all(dists)

    outcomes = {r.dist.filename: r.outcome for r in results}
    assert outcomes.pop(taken.filename) is Outcome.SKIPPED
    assert set(outcomes.values()) == {Outcome.UPLOADED}
    [warning] = [d for d in rig.reporter.diagnostics if d.level is Level.WARNING]
    assert warning.file == f"dist/{taken.filename}"
    assert theirs in warning.message
    assert taken.sha256 in warning.message
    assert rig.index.files() == {**on_index(dists), taken.filename: theirs}


def test_no_secret_reaches_the_log_but_to_mask_it(rig: Rig) -> None:
    rig.reporter.verbose = True  # debug lines go to the log as plain lines
    dists = rig.release(broken=3)
    publishing = rig.trusted_publishing()

    def expire_every_token() -> None:
        for token, minted in list(rig.index.minted_tokens.items()):
            rig.index.minted_tokens[token] = replace(minted, expires_at=0.0)
        rig.index.faults("upload", UNAVAILABLE)

    rig.reporter.on(uploaded(dists[0].filename), expire_every_token)
    rig.index.faults("mint", UNAVAILABLE)

    with pytest.raises(ActionError) as caught:
        rig.uploader(publishing, workers=2).upload_all(dists)
    rig.reporter.finish(Publication(results=caught.value.results), caught.value)

    text = rig.reporter.text()
    assert len(rig.index.minted_tokens) == 2
    assert rig.index.issued_id_tokens
    for token in rig.index.minted_tokens:
        assert f"::add-mask::{token}" in text
    assert secret_lines(text, rig.index.secrets()) == []
    assert "Retrying" in text  # the log says a good deal; none of it is a secret


def test_a_refusal_on_the_second_release_leaves_the_first_whole_and_the_second_untouched(
    rig: Rig,
) -> None:
    from oidc_publish.dists import load
    from tests.localindex.oidc import default_publisher

    folder = rig.workspace / "dist"
    needs_core = {"Requires-Dist": "core>=2"}
    paths = [
        make_wheel(folder, "a-plugin", "0.3.0", metadata_overrides=needs_core),
        make_sdist(folder, "a-plugin", "0.3.0", metadata_overrides=needs_core),
        make_wheel(folder, "core", "2.0.0", filename="core-2.0.0-py3-none-any.whl"),
        make_wheel(folder, "core", "2.0.0", filename="core-2.0.0-py312-none-any.whl"),
        make_sdist(folder, "core", "2.0.0"),
    ]
    releases = load(
        paths, workspace=rig.workspace, verify_metadata=False, pypi_rules=False, reporter=Journal()
    )
    # The publisher is registered on core only: the minted token does not reach the plugin,
    # which exists.
    rig.index.publishers = [replace(default_publisher(), projects={"core"})]
    rig.index.projects.add("a-plugin")

    with pytest.raises(UploadRejected) as caught:
        rig.uploader(rig.trusted_publishing(), workers=4).publish(releases)

    core, plugin = releases
    assert [r.label for r in releases] == ["core 2.0.0", "a-plugin 0.3.0"]
    assert caught.value.specific_title == "No trusted publisher on a-plugin"
    assert "`a-plugin` has none" in caught.value.fix
    assert "to `a-plugin` in its settings on 127.0.0.1" in caught.value.fix
    assert [(r.dist.filename, r.outcome) for r in caught.value.results] == [
        *((d.filename, Outcome.UPLOADED) for d in core.files),
        (plugin.files[0].filename, Outcome.FAILED),
        (plugin.files[1].filename, Outcome.NOT_ATTEMPTED),
    ]
    assert rig.index.files() == on_index(list(core.files))
    # The plugin's first file was the only one of its release sent.
    assert rig.index.count("upload") == len(core.files) + 1
