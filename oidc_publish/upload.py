"""Putting the files on the index, several at a time, with the form twine sends.

The first file goes alone, so the release exists before the others arrive; then a small
pool of workers uploads the rest. Each file is retried on its own under the shared policy;
retrying is safe because PyPI answers 200 for a byte-identical file, and where an index
answers "already exists" instead, reconciliation with the index decides (`reconcile.py`).
Each request leases a token from the credential, which renews it, once for all workers, when
it would expire before the upload ends.

What goes out is exactly what was hashed, checked and attested: the file is hashed again as
it is sent, and a file that changed since is cut off before its last bytes, so no index
stores it. What comes back is read only as far as a reason needs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import requests
import requests.adapters
import requests.auth
import requests_toolbelt
from twine.repository import Repository

from oidc_publish.diagnosis import upload_refusal
from oidc_publish.errors import PYPI_STATUS_PAGE, ActionError, FileChanged, Stopped
from oidc_publish.network import (
    REQUEST_DEADLINE,
    SLOW_BYTES_PER_SECOND,
    RetryPolicy,
    Transient,
    persist,
    raise_for_transient,
    transport_failure,
    within,
)
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.runner import md_code

if TYPE_CHECKING:
    from oidc_publish.credentials import Credential
    from oidc_publish.dists import Distribution, Release
    from oidc_publish.index_urls import Index
    from oidc_publish.reconcile import Reconciler
    from oidc_publish.report import Reporter
    from oidc_publish.run import Run
    from oidc_publish.stop import Stop

# Seconds to connect, and to wait for the index's answer once the body is sent: PyPI checks
# big files slowly.
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
# Uploads at once after the first: enough to hide each file's round trips, few enough that
# PyPI's CDN sees an ordinary client.
WORKERS = 4
# Bytes handed to the socket per write; urllib3's 16 KiB means a system call per block.
SEND_BLOCK = 1024 * 1024
# Bytes of an upload's answer that are read. The index's verdict is its status line, where
# PyPI puts its reason; the page below is read only for the "already exists" that twine
# looks for there (pypiserver writes it in the first lines), and an error page is a few KiB.
MAX_ANSWER_BYTES = 64 * 1024
ANSWER_STEP = 16 * 1024

# The index's answer to an upload that it did not store, but holds a file of that name for.
OnExists = Callable[["Distribution", bool], FileResult]


def publish_releases(
    run: Run,
    credential: Credential,
    releases: Sequence[Release],
    attestations: Mapping[str, object],
    reconciler: Reconciler,
) -> ActionError | None:
    """The run's uploads: every release, in order, its results in the publication with
    their URLs. The credential is closed (its token burned) once the last upload is done,
    whatever the outcome. The index's refusal is returned, not raised, so that what the
    index took can still be stored in GitHub; a cancellation says what may be on the index.
    """
    from oidc_publish.network import ca_bundle
    from oidc_publish.report import advisory

    publication, reporter, index = run.publication, run.reporter, run.index
    uploader = Uploader(
        index=index,
        credential=credential,
        policy=run.policy,
        reporter=reporter,
        on_exists=reconciler.name_taken,
        ca_file=ca_bundle(run.environ),
    )
    files = sum(len(release.files) for release in releases)
    of = f" of {len(releases)} releases" if len(releases) > 1 else ""
    try:
        with reporter.group(f"Uploading {files} file(s){of} to {index.upload_url}"):
            publication.results = uploader.publish(releases, attestations)
    except Stopped as stopped:
        # A file the uploads had not taken stock of when they stopped may be on the index.
        known = {r.dist.filename: r for r in stopped.results}
        stopped.results = [
            known.get(d.filename) or FileResult(d, Outcome.IN_FLIGHT)
            for release in releases
            for d in release.files
        ]
        raise
    except ActionError as refused:
        publication.results = refused.results
        return refused
    finally:
        credential.close()
    with advisory(reporter, "Reading the files' URLs from the index"):
        publication.results = reconciler.with_urls(publication.results)
    return None


class Uploader:
    """Releases one after another, each file through a `_Batch` of workers, each attempt of
    a file under the retry policy with a token leased from the credential."""

    def __init__(
        self,
        *,
        index: Index,
        credential: Credential,
        policy: RetryPolicy,
        reporter: Reporter,
        on_exists: OnExists,
        ca_file: str | None = None,
        workers: int = WORKERS,
    ) -> None:
        self._index = index
        self._credential = credential
        self._policy = policy
        self._reporter = reporter
        self._on_exists = on_exists
        self._workers = workers
        self._speed = _Speed()
        self._sessions = _Sessions(index.upload_url, credential.username, ca_file)

    def publish(
        self, releases: Sequence[Release], attestations: Mapping[str, object] | None = None
    ) -> list[FileResult]:
        """Every release, one after another: a refusal stops every new upload, so a release
        not yet started stays untouched and one already finished stays whole.

        The error raised then carries every file's result, in the releases' order.
        """
        done: list[FileResult] = []
        for position, release in enumerate(releases):
            if len(releases) > 1:
                self._reporter.log(f"{release.label}: {len(release.files)} file(s)")
            try:
                done += self.upload_all(release.files, attestations)
            except ActionError as error:
                later = releases[position + 1 :]
                error.results = [
                    *done,
                    *error.results,
                    *(FileResult(d, Outcome.NOT_ATTEMPTED) for r in later for d in r.files),
                ]
                raise
        return done

    def upload_all(
        self, dists: Sequence[Distribution], attestations: Mapping[str, object] | None = None
    ) -> list[FileResult]:
        """Every file, in the release's order; on a permanent failure, no new file starts.

        The error raised then carries each file's result. So does the stop's error (a
        cancellation, the run's deadline) once the run's stop is set: no new file starts, and
        the uploads under way are not waited for (their files may or may not reach the index).
        """
        attested = attestations or {}
        batch = _Batch(
            dists,
            lambda dist: self._upload(dist, attested.get(dist.filename)),
            stop=self._policy.stop,
            reporter=self._reporter,
            workers=self._workers,
        )
        try:
            return batch.run()
        finally:
            self._sessions.close()

    def _upload(self, dist: Distribution, attestation: object | None) -> FileResult:
        """One file, attempted under the retry policy: uploaded, found already there, or the
        index's refusal raised."""
        if attestation is not None:
            dist.package.attestations = [attestation]  # type: ignore[list-item]
        attempts = 0
        renewed = False

        def attempt() -> _Answer:
            nonlocal attempts, renewed
            attempts += 1
            response, expired = self._attempt(dist, attested=attestation is not None)
            if expired is not None and not renewed:
                renewed = True
                # However many uploads meet an expired token at once, one of them mints and
                # says so (the credential logs it); each of them retries.
                if self._credential.renew(expired) is not None:
                    raise Transient(
                        "the upload token expired; retrying with the renewed token", retry_after=0
                    )
            raise_for_transient(response.status_code, response.reason, response.headers)
            return response

        response = persist(
            attempt,
            self._policy,
            self._reporter,
            label=dist.filename,
            what=f"Uploading {md_code(dist.filename)} to {self._index.display_name}",
            fix=f"This is on the index's side; check {PYPI_STATUS_PAGE} and re-run the job. "
            "Files already on the index are recognised and not uploaded twice.",
            file=dist.display,
            deadline=self._policy.deadline
            + self._policy.attempts * dist.size / SLOW_BYTES_PER_SECOND,
        )
        if response.status_code == 200:
            return FileResult(dist, Outcome.UPLOADED, attested=attestation is not None)
        if _already_exists(response, dist):
            return self._on_exists(dist, attempts > 1)
        raise upload_refusal(
            self._index,
            dist.filename,
            dist.display,
            response.status_code,
            response.reason,
            project=dist.name,
        )

    def _attempt(self, dist: Distribution, *, attested: bool) -> tuple[_Answer, str | None]:
        """One POST of the file, and the token it sent if the index said that token expired.

        The token is leased until the answer is in, so one a renewal replaces meanwhile is
        burned only once no upload still sends it.
        """
        session = self._sessions.get()
        started = time.monotonic()
        deadline = REQUEST_DEADLINE + dist.size / SLOW_BYTES_PER_SECOND
        with self._credential.lease(valid_for=self._speed.seconds_for(dist.size)) as token:
            try:
                response = within(deadline, lambda: session.upload(dist, token), dist.filename)
            except (requests.ConnectionError, requests.Timeout) as error:
                failure = transport_failure(error, self._index.upload_url)
                raise failure or Transient(f"{type(error).__name__} while sending") from None
            except Transient:
                self._sessions.discard()  # still busy with the abandoned request
                raise
            except _Changed:
                raise _changed(dist, attested=attested) from None
        seconds = time.monotonic() - started
        self._reporter.debug(
            f"POST {self._index.upload_url} {dist.filename} ({dist.size} bytes) -> "
            f"{response.status_code} {response.reason} in {seconds:.1f}s"
        )
        if response.status_code == 200:
            self._speed.learn(dist.size, seconds)
        expired = response.status_code == 403 and "expired" in response.reason.lower()
        return response, token if expired else None


class _Batch:
    """One release's files: the first alone, so the release exists before the others
    arrive, then the rest by a small pool of workers; on a failure or the run's stop, no
    new file starts, and the results say which files were started."""

    def __init__(
        self,
        dists: Sequence[Distribution],
        upload: Callable[[Distribution], FileResult],
        *,
        stop: Stop,
        reporter: Reporter,
        workers: int,
    ) -> None:
        self._dists = dists
        self._upload = upload
        self._stop = stop
        self._reporter = reporter
        self._workers = workers
        self._results: list[FileResult | None] = [None] * len(dists)
        self._started: set[int] = set()
        self._errors: dict[int, ActionError] = {}
        self._failed = threading.Event()
        # Held to start a file, and to take stock once stopped: a file is either started
        # before the stop (in flight) or not at all.
        self._starting = threading.Lock()

    def run(self) -> list[FileResult]:
        pool = None
        try:
            if self._dists:
                self._one(0)
            if len(self._dists) > 1:
                pool = ThreadPoolExecutor(self._workers, thread_name_prefix="upload")
                for _ in pool.map(self._one, range(1, len(self._dists))):
                    pass
            done = self._so_far()
            if self._errors:
                first, *others = (self._errors[p] for p in sorted(self._errors))
                for other in others:
                    for diagnostic in other.diagnostics():
                        self._reporter.add(diagnostic)
                first.results = done
                raise first
            self._stop.check()
        except Stopped as stopped:
            stopped.results = self._so_far()
            raise
        finally:
            if pool is not None:
                # Never `with`: its exit would wait for every upload under way.
                pool.shutdown(wait=False, cancel_futures=True)
        return done

    def _one(self, position: int) -> None:
        dist = self._dists[position]
        with self._starting:
            if self._failed.is_set() or self._stop.is_set():
                self._results[position] = FileResult(dist, Outcome.NOT_ATTEMPTED)
                return
            self._started.add(position)
        try:
            result = self._upload(dist)
        except Stopped:
            raise  # not this file's failure: the run's, whose stock is taken by run()
        except ActionError as error:
            self._failed.set()
            self._errors[position] = error
            self._results[position] = FileResult(dist, Outcome.FAILED)
            return
        self._results[position] = result
        self._reporter.log(f"{dist.filename}: {result.outcome}")

    def _so_far(self) -> list[FileResult]:
        with self._starting:
            return [
                result
                or FileResult(
                    dist,
                    Outcome.IN_FLIGHT if position in self._started else Outcome.NOT_ATTEMPTED,
                )
                for position, (result, dist) in enumerate(
                    zip(self._results, self._dists, strict=True)
                )
            ]


class _Sessions:
    """Each worker thread's twine session, reused for its next upload."""

    def __init__(self, url: str, username: str, ca_file: str | None) -> None:
        self._url = url
        self._username = username
        self._ca_file = ca_file
        self._local = threading.local()
        self._opened: list[_Session] = []
        self._lock = threading.Lock()

    def get(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _Session(self._url, self._username, self._ca_file)
            self._local.session = session
            with self._lock:
                self._opened.append(session)
        return session

    def discard(self) -> None:
        """Drops this thread's session after a request was abandoned at its deadline.

        It is never closed: the abandoned request still reads its socket, and closing it
        would free the descriptor for a new connection that the old read would then eat.
        """
        session = self._local.session
        self._local.session = None
        with self._lock:
            self._opened.remove(session)

    def close(self) -> None:
        with self._lock:
            for session in self._opened:
                session.close()


def _already_exists(answer: _Answer, dist: Distribution) -> bool:
    from twine.commands.upload import skip_upload

    # It reads a response's status_code, reason and text: an _Answer has the three.
    return skip_upload(cast("requests.Response", answer), skip_existing=True, package=dist.package)


def _changed(dist: Distribution, *, attested: bool) -> FileChanged:
    return FileChanged(
        f"{md_code(dist.display)} changed after it was hashed and checked: its bytes no longer "
        f"have the sha256 {md_code(dist.sha256)} that was checked"
        + (" and attested" if attested else "")
        + ". The upload was cut off before its last bytes, so the index did not take the "
        "changed file.",
        fix="Something wrote to `packages-dir` while this step ran (another step or process, "
        "a second download of the artifact). Make sure nothing touches the distributions "
        "during the upload, build them again if needed, and re-run the job; files already on "
        "the index are recognised and not uploaded twice.",
        file=dist.display,
    )


@dataclass(frozen=True)
class _Answer:
    """The index's answer to an upload, its page cut at MAX_ANSWER_BYTES."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    text: str


def _answer(response: requests.Response) -> _Answer:
    """What the upload's answer says, read no further than MAX_ANSWER_BYTES.

    Closing the response drops its connection when the page goes on past the cap; an
    answer read to its end leaves the connection to the pool, for the next upload.
    """
    page = bytearray()
    with response:
        try:
            # Decoded in bounded steps (urllib3 caps each step's output), should an index
            # compress the page although the request asked it not to.
            for piece in response.iter_content(ANSWER_STEP):
                page += piece
                if len(page) >= MAX_ANSWER_BYTES:
                    break
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            # Broken off: as when sending, another attempt may get through.
            raise requests.ConnectionError("the answer was broken off") from None
    return _Answer(
        response.status_code,
        response.reason or "",
        response.headers,
        page[:MAX_ANSWER_BYTES].decode("utf-8", errors="replace"),
    )


class _Changed(Exception):
    """The file's bytes are not those that were hashed. Not an OSError, so neither urllib3
    nor requests takes it for a network failure to retry: it ends the request as it is."""


class _Hashed:
    """The file's content as the form reads it: the `size` bytes that were checked, hashed
    on their way out.

    This pass makes the file's BLAKE2b-256, which only the form needs (`_Blake2Field`, after
    the file), and checks its SHA-256: the last block is handed over only once it matches what
    was checked and attested; otherwise (or when the file ends early) `_Changed` ends the
    request before its last bytes, so no index gets a complete request to store the changed
    file from, whether it checks the digests (as PyPI does) or not. Each block is hashed in
    `side` while it is being sent (hashlib and the socket both release the GIL): with a core
    to spare, the hashing adds no time to the upload.
    """

    def __init__(self, file: BinaryIO, dist: Distribution, side: Executor) -> None:
        self._file = file
        self._dist = dist
        self._left = dist.size
        self._sha256 = hashlib.sha256()
        self._blake2 = hashlib.blake2b(digest_size=32)
        self._side = side
        self._hashing: Future[None] | None = None

    @property
    def len(self) -> int:
        """Bytes still to send: how requests_toolbelt sizes a part and knows it is done."""
        return self._left

    def read(self, amount: int = -1) -> bytes:
        wanted = self._left if amount < 0 else min(amount, self._left)
        block = self._file.read(wanted)
        if self._hashing is not None:
            self._hashing.result()
        self._hashing = self._side.submit(self._update, block)
        self._left -= len(block)
        if len(block) < wanted:
            raise _Changed  # shorter than when it was checked
        if self._left == 0:
            self._hashing.result()
            if self._sha256.hexdigest() != self._dist.sha256:
                raise _Changed
            self._dist.blake2.record(self._blake2.hexdigest())
        return block

    def _update(self, block: bytes) -> None:
        self._sha256.update(block)
        self._blake2.update(block)


class _Blake2Field:
    """The form's `blake2_256_digest`, after the file's part: read once the file's last byte
    has been, so the pass that sends the file is the one that makes it."""

    def __init__(self, dist: Distribution) -> None:
        self._dist = dist
        self._value = b""
        self._sent = 0

    @property
    def len(self) -> int:
        return 64 - self._sent  # hexadecimal BLAKE2b-256

    def read(self, amount: int = -1) -> bytes:
        if not self._value:
            self._value = self._dist.blake2_256.encode()
        wanted = self.len if amount < 0 else min(amount, self.len)
        piece = self._value[self._sent : self._sent + wanted]
        self._sent += len(piece)
        return piece


class _Speed:
    """The upload rate seen so far, to ask for a token that outlives the next upload."""

    def __init__(self) -> None:
        self._bytes_per_second: float | None = None

    def learn(self, size: int, seconds: float) -> None:
        if seconds > 0 and size > 0:
            self._bytes_per_second = size / seconds

    def seconds_for(self, size: int) -> float:
        return size / self._bytes_per_second if self._bytes_per_second else 0.0


@dataclass
class _Session:
    """One worker's twine Repository, with its timeouts and block size."""

    url: str
    username: str
    ca_file: str | None

    def __post_init__(self) -> None:
        self._repository: Any = Repository(self.url, None, None, disable_progress_bar=True)
        self._repository.session.mount("https://", _Adapter(max_retries=0))

    def upload(self, dist: Distribution, token: str) -> _Answer:
        """One POST of the file, as twine's `Repository.upload` makes it, less its printing
        (which would share stdout with the workflow commands of other threads) and its
        progress bar; the file's bytes checked against its sha256 as they go (`_Hashed`),
        and the answer read only as far as MAX_ANSWER_BYTES."""
        package = dist.package
        fields = self._repository._convert_metadata_to_list_of_tuples(package.metadata_dictionary())
        fields += [(":action", "file_upload"), ("protocol_version", "1")]
        fields.append(("sha256_digest", dist.sha256))
        with open(package.filename, "rb") as file, ThreadPoolExecutor(1, "digests") as side:
            content = _Hashed(file, dist, side)
            fields.append(("content", (package.basefilename, content, "application/octet-stream")))
            # After the file, whose sending makes it: PyPI reads the whole form first.
            fields.append(("blake2_256_digest", _Blake2Field(dist)))
            body = requests_toolbelt.MultipartEncoder(fields)
            response: requests.Response = self._repository.session.post(
                self.url,
                data=body,
                allow_redirects=False,
                stream=True,
                headers={"Content-Type": body.content_type, "Accept-Encoding": "identity"},
                auth=requests.auth.HTTPBasicAuth(self.username, token),
                # Per request, or requests would prefer os.environ's REQUESTS_CA_BUNDLE to the
                # CA of the environment the run was handed.
                verify=self.ca_file or True,
            )
            return _answer(response)

    def close(self) -> None:
        self._repository.close()


class _Adapter(requests.adapters.HTTPAdapter):
    """requests waits forever by default, and writes in small blocks; neither suits uploads."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = SEND_BLOCK
        super().init_poolmanager(*args, **kwargs)

    def send(  # type: ignore[override]  # requests' stubs are narrower than its code
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = kwargs.get("timeout") or (CONNECT_TIMEOUT, READ_TIMEOUT)
        return super().send(request, **kwargs)
