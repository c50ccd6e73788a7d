"""Putting the files on the index, one at a time, through twine's ``Repository``.

Each file is retried on its own under the shared policy; retrying is safe because PyPI
answers 200 for a byte-identical file, and where an index answers "already exists" instead,
the simple API's sha256 tells whether an earlier attempt landed. The credential is asked
before each attempt for a token that outlives the upload about to start.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters

from oidc_publish.errors import (
    PYPI_STATUS_PAGE,
    ActionError,
    Diagnostic,
    IndexUnreachable,
    Level,
    UploadRejected,
)
from oidc_publish.network import (
    GaveUp,
    RetryNotice,
    RetryPolicy,
    Transient,
    is_certificate_failure,
    raise_for_transient,
    retrying,
    untrusted_certificate,
)

if TYPE_CHECKING:
    from oidc_publish.credentials import Credential
    from oidc_publish.dists import Distribution
    from oidc_publish.index_urls import Index
    from oidc_publish.simple_api import IndexedFile

# Seconds to wait for the index's answer once the body is sent: PyPI checks big files slowly.
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0


class Outcome(enum.StrEnum):
    UPLOADED = "uploaded"
    ALREADY_THERE = "already on the index"
    SKIPPED = "skipped: the index has other bytes"
    WOULD_UPLOAD = "would upload (dry run)"
    FAILED = "failed"
    NOT_ATTEMPTED = "not uploaded"

    @property
    def on_index(self) -> bool:
        return self in (Outcome.UPLOADED, Outcome.ALREADY_THERE)


@dataclass(frozen=True)
class FileResult:
    dist: Distribution
    outcome: Outcome
    url: str = ""


Lookup = Callable[[str], "dict[str, IndexedFile] | None"]


@dataclass
class Uploader:
    index: Index
    credential: Credential
    policy: RetryPolicy
    skip_existing: bool
    lookup: Lookup
    log: Callable[[str], None]
    debug: Callable[[str], None]
    notify: Callable[[Diagnostic], None]
    _bytes_per_second: float | None = field(default=None, init=False)

    def upload_all(self, dists: list[Distribution]) -> tuple[list[FileResult], ActionError | None]:
        """Upload in order, stopping at the first file that fails for good."""
        repository = self._repository()
        results: list[FileResult] = []
        try:
            for position, dist in enumerate(dists):
                try:
                    results.append(self._upload(repository, dist))
                except ActionError as error:
                    results.append(FileResult(dist, Outcome.FAILED))
                    results += [FileResult(d, Outcome.NOT_ATTEMPTED) for d in dists[position + 1 :]]
                    return results, error
        finally:
            repository.close()
        return results, None

    def rehearse(self, dists: list[Distribution]) -> tuple[list[FileResult], ActionError | None]:
        """A dry run: what uploading would do, judged from what the index already holds."""
        results: list[FileResult] = []
        listed = {project: self.lookup(project) or {} for project in {_project(d) for d in dists}}
        for dist in dists:
            present = listed[_project(dist)].get(dist.filename)
            if present is None:
                results.append(FileResult(dist, Outcome.WOULD_UPLOAD))
                continue
            try:
                results.append(self._name_taken(dist, present, after_retry=False))
            except ActionError as error:
                results.append(FileResult(dist, Outcome.FAILED))
                return results, error
        return results, None

    def with_urls(self, results: list[FileResult]) -> list[FileResult]:
        """Each file on the index gets its download URL; a hash that differs is reported.

        PyPI's URLs follow from the file's digest, so only other indexes are asked.
        """
        known = [
            replace(r, url=self.index.file_url(r.dist.filename, r.dist.blake2_256) or "")
            for r in results
        ]
        if all(r.url or not r.outcome.on_index for r in known):
            return known
        projects = {_project(r.dist) for r in results if r.outcome.on_index}
        listed: dict[str, IndexedFile] = {}
        for project in projects:
            listed.update(self.lookup(project) or {})
        filled = []
        for result in results:
            entry = listed.get(result.dist.filename) if result.outcome.on_index else None
            if entry and entry.sha256 and entry.sha256 != result.dist.sha256:
                self.notify(
                    Diagnostic(
                        Level.WARNING,
                        "The index lists other bytes for an uploaded file",
                        f"{self.index.display_name} lists `{result.dist.filename}` with sha256 "
                        f"{entry.sha256}, but the file uploaded has {result.dist.sha256}.",
                        fix="Compare the file on the index with the artifact before announcing "
                        "the release.",
                        file=result.dist.display,
                    )
                )
            filled.append(replace(result, url=entry.url) if entry else result)
        return filled

    def _repository(self) -> Any:
        from twine.repository import Repository

        # twine retries 5xx itself, at once and with a warning of its own; the policy here
        # replaces that, so twine is told to make one attempt and keep quiet.
        logging.getLogger("twine").addHandler(logging.NullHandler())
        logging.getLogger("twine").propagate = False
        repository = Repository(
            self.index.upload_url, self.credential.username, None, disable_progress_bar=True
        )
        repository.session.mount("https://", _TimeoutAdapter(max_retries=0))
        return repository

    def _upload(self, repository: Any, dist: Distribution) -> FileResult:
        attempts = 0
        renewed = False

        def attempt() -> requests.Response:
            nonlocal attempts, renewed
            attempts += 1
            token = self.credential.token(valid_for=self._expected_seconds(dist.size))
            repository.session.auth = (self.credential.username, token)
            started = time.monotonic()
            try:
                response: requests.Response = repository.upload(dist.package, max_redirects=1)
            except (requests.ConnectionError, requests.Timeout) as error:
                if is_certificate_failure(error):
                    raise untrusted_certificate(self.index.upload_url) from None
                raise Transient(f"{type(error).__name__} while sending") from None
            finally:
                repository.session.auth = None
            seconds = time.monotonic() - started
            self.debug(
                f"POST {self.index.upload_url} {dist.filename} ({dist.size} bytes) -> "
                f"{response.status_code} {response.reason} in {seconds:.1f}s"
            )
            if response.status_code == 200:
                self._learn_speed(dist.size, seconds)
            if response.status_code == 403 and "expired" in response.reason.lower() and not renewed:
                renewed = True
                if self.credential.renew() is not None:
                    raise Transient("the upload token expired; minted a new one", retry_after=0)
            raise_for_transient(response.status_code, response.reason, response.headers)
            return response

        def on_retry(notice: RetryNotice) -> None:
            text = (
                f"Attempt {notice.attempt} failed ({notice.reason}); "
                f"retrying in {notice.delay:.1f}s."
            )
            self.log(f"{dist.filename}: {text}")
            # Also a notice, through the report, which keeps to GitHub's ten per kind.
            self.notify(Diagnostic(Level.NOTICE, f"Retrying {dist.filename}", text))

        try:
            response = retrying(attempt, self.policy, on_retry)
        except GaveUp as gave_up:
            raise IndexUnreachable(
                f"Uploading `{dist.filename}` to {self.index.display_name} failed "
                f"{gave_up.attempts} time(s); the last: {gave_up.last.reason}.",
                fix=f"This is on the index's side; check {PYPI_STATUS_PAGE} and re-run the job. "
                "Files already on the index are recognised and not uploaded twice.",
                file=dist.display,
            ) from None
        if response.status_code == 200:
            return FileResult(dist, Outcome.UPLOADED)
        if _already_exists(response):
            present = self._indexed(dist)
            return self._name_taken(dist, present, after_retry=attempts > 1)
        raise rejection(self.index, dist, response.status_code, response.reason)

    def _indexed(self, dist: Distribution) -> IndexedFile | None:
        return (self.lookup(_project(dist)) or {}).get(dist.filename)

    def _name_taken(
        self, dist: Distribution, present: IndexedFile | None, *, after_retry: bool
    ) -> FileResult:
        if present is not None and present.sha256 == dist.sha256:
            # After a failed attempt, the identical file is most likely that attempt's.
            return FileResult(dist, Outcome.UPLOADED if after_retry else Outcome.ALREADY_THERE)
        theirs = present.sha256 if present and present.sha256 else "unknown (not listed)"
        hashes = f"the index has sha256 {theirs}, this file has {dist.sha256}"
        if self.skip_existing:
            self.notify(
                Diagnostic(
                    Level.WARNING,
                    "Skipped: the index has other bytes under this name",
                    f"`{dist.filename}` is already on {self.index.display_name} with other "
                    f"contents ({hashes}); `skip-existing` left it as it is.",
                    fix="If this build is the one to publish, release it under a new version: "
                    "a filename can never be replaced.",
                    file=dist.display,
                )
            )
            return FileResult(dist, Outcome.SKIPPED)
        raise UploadRejected(
            f"`{dist.filename}` already exists on {self.index.display_name} with other "
            f"contents: {hashes}.",
            fix="A published filename can never be replaced. Bump the version and build again; "
            "if the file on the index is the one you want, set `skip-existing: true`.",
            file=dist.display,
            title="File already exists with other contents",
        )

    def _expected_seconds(self, size: int) -> float:
        return size / self._bytes_per_second if self._bytes_per_second else 0.0

    def _learn_speed(self, size: int, seconds: float) -> None:
        if seconds > 0 and size > 0:
            self._bytes_per_second = size / seconds


def _project(dist: Distribution) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(dist.name)


def _already_exists(response: requests.Response) -> bool:
    # twine's rule for --skip-existing: 409, or a 400 that says so in its reason or body.
    if response.status_code == 409:
        return True
    return response.status_code == 400 and (
        "already exist" in response.reason.lower() or "already exist" in response.text.lower()
    )


_LIMIT_REQUEST = "https://github.com/pypi/support/issues/new?template=limit-request-file.yml"

# PyPI's refusals, recognised by words in the reason phrase: (words, title, fix).
REFUSALS: list[tuple[tuple[str, ...], str, str]] = [
    (
        ("previously used",),
        "Filename previously used",
        "PyPI never accepts a filename again, even after the file was deleted. Publish a new "
        "version (a post-release such as `1.0.0.post1` if nothing else changed).",
    ),
    (
        ("too large", "too big"),
        "File too large",
        f"PyPI's default limit is 100 MB per file. Make the file smaller, or ask for a higher "
        f"limit for the project: {_LIMIT_REQUEST}",
    ),
    (
        ("older than",),
        "Release too old for new files",
        "PyPI refuses new files for releases older than 14 days. Publish the files under a new "
        "version.",
    ),
    (
        ("non-user identities cannot create new projects",),
        "Project does not exist yet",
        "The pending publisher was used but its project name differs from the distribution's "
        "name. Make the pending publisher's project name equal the `name` in pyproject.toml.",
    ),
    (
        ("isn't allowed to upload", "not allowed to upload", "not valid for project"),
        "Token not allowed for this project",
        "The token is scoped to other projects. With trusted publishing, add the publisher to "
        "this project (its name must equal the distribution's); with an API token, create one "
        "scoped to this project.",
    ),
    (
        ("read-only", "read only"),
        "Index in read-only mode",
        f"Uploads are disabled for maintenance. Check {PYPI_STATUS_PAGE} and re-run later.",
    ),
    (
        ("expired",),
        "Upload token expired",
        "The token expired and could not be renewed. Re-run the job; with an API token, "
        "create a new one.",
    ),
    (
        (
            "username/password",
            "invalid or non-existent authentication",
            "invalid api token",
        ),
        "Credentials refused",
        "PyPI takes API tokens with `user: __token__` (the default). Check the secret passed as "
        "`password`, or remove `password` to use trusted publishing.",
    ),
    (
        ("only one sdist",),
        "A second sdist for this release",
        "The release already has an sdist; PyPI allows one. Upload only wheels for it, or "
        "publish a new version.",
    ),
    (
        ("digest",),
        "The file changed in transit",
        "The digest the index computed differs from the one sent. Re-run the job; if it "
        "persists, something between the runner and the index alters uploads.",
    ),
    (
        (
            "metadata",
            "invalid value",
            "classifier",
            "description",
            "invalid distribution",
            "filename",
        ),
        "Metadata refused",
        "Fix the field the message names in pyproject.toml and build again; `twine check "
        "--strict dist/*` shows most of these before release.",
    ),
]


def rejection(index: Index, dist: Distribution, status: int, reason: str) -> UploadRejected:
    title, fix = "Upload refused", "Read the index's reason above, fix it, and re-run the job."
    for words, known_title, known_fix in REFUSALS:
        if any(word in reason.lower() for word in words):
            title, fix = known_title, known_fix
            break
    return UploadRejected(
        f"{index.display_name} refused `{dist.filename}`: HTTP {status} {reason}",
        fix=fix,
        file=dist.display,
        title=title,
    )


class _TimeoutAdapter(requests.adapters.HTTPAdapter):
    """requests waits forever by default; a stalled upload must fail and be retried."""

    def send(  # type: ignore[override]  # requests' stubs are narrower than its code
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        kwargs["timeout"] = kwargs.get("timeout") or (CONNECT_TIMEOUT, READ_TIMEOUT)
        return super().send(request, **kwargs)
