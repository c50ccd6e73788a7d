"""GitHub's attestation store: the release's PEP 740 attestations where `gh attestation verify`
looks for them.

With `github-attestations: true`, each file the index took with its attestation gets the same
attestation stored in the repository's attestation store: pypi-attestations converts it to a
Sigstore bundle (`Attestation.to_bundle()`), and `POST {GITHUB_API_URL}/repos/{owner}/{repo}/
attestations` takes `{"bundle": ...}` with the `github-token` as bearer, as @actions/attest
stores its own. Nothing is signed twice and nothing is written into the workspace.

The store comes after the index and never undoes or hides what is there: a missing
`attestations: write`, an outage that outlasts the retry policy or a refusal is one warning
naming the files left unstored, and the exit code stays the publication's. Requests go one at
a time, as GitHub asks of requests that create content; 5xx, 408, 429, a rate limit and
connection failures are retried under the shared policy. The token goes to GITHUB_API_URL
only, over https, in the Authorization header only, and no redirect is followed.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from oidc_publish.errors import ActionError, Cancelled, Diagnostic, Level
from oidc_publish.network import (
    Answer,
    GaveUp,
    RetryNotice,
    RetryPolicy,
    Transient,
    parse_retry_after,
    retrying,
    send,
)
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.runner import log_quoted, md_code

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Publication, Reporter
    from oidc_publish.run import Run
    from oidc_publish.runner import RunnerContext

PREDICATE_TYPE = "https://docs.pypi.org/attestations/publish/v1"
"""The in-toto predicate type of a PEP 740 publish attestation."""
API_VERSION = "2022-11-28"
PERMISSION = "attestations: write"
GITHUB_STATUS_PAGE = "https://www.githubstatus.com"
DEFAULT_API_URL = "https://api.github.com"

_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# What a link or an output may be built from: an origin with no character Markdown reads.
_ORIGIN = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
# GitHub's own words are quoted in warnings; this much of them is enough.
_MESSAGE_CHARS = 300
# An X-RateLimit-Reset longer than this is no time in seconds since the epoch.
_EPOCH_DIGITS = 12


@dataclass(frozen=True)
class Repository:
    """The repository the workflow runs for, on its GitHub: where the attestations go."""

    api: str
    """GITHUB_API_URL: https://api.github.com, or a GitHub Enterprise host's API."""
    web: str
    """GITHUB_SERVER_URL, for links; empty when it is not a plain https origin."""
    name: str
    """owner/name."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], context: RunnerContext) -> Repository | str:
        """The repository, or why the token cannot be sent (then no request is made)."""
        name = context.repository
        if not _REPOSITORY.fullmatch(name) or {".", ".."} & set(name.split("/")):
            return f"GITHUB_REPOSITORY is {md_code(name)}, not `owner/name`"
        given = environ.get("GITHUB_API_URL") or DEFAULT_API_URL
        api = _api_base(given)
        if api is None:
            return (
                f"GITHUB_API_URL is {md_code(given)}, not an https:// URL without credentials, "
                "a query, a fragment or white space, and the token goes nowhere else"
            )
        web = context.server_url if _ORIGIN.fullmatch(context.server_url) else ""
        return cls(api, web, name)

    @property
    def endpoint(self) -> str:
        return f"{self.api}/repos/{self.name}/attestations"

    def attestation_url(self, number: int) -> str:
        """Where GitHub shows a stored attestation, as @actions/attest links it."""
        return f"{self.web}/{self.name}/attestations/{number}" if self.web else ""

    def verify_command(self, filename: str) -> str:
        """What a consumer runs to check a downloaded file against the stored attestation."""
        return (
            f"gh attestation verify {filename} --repo {self.name} --predicate-type {PREDICATE_TYPE}"
        )


def _api_base(given: str) -> str | None:
    """GITHUB_API_URL parsed once, as strictly as `repository-url`, and rebuilt from its parts
    (the store's endpoint is appended to it); None for anything but a plain https:// URL.

    A `?` or `#` anywhere, even with nothing after it, would move the endpoint out of the
    path; white space or a control character is no part of a URL.
    """
    if not (given.isascii() and given.isprintable()) or any(c in given for c in " ?#\\"):
        return None
    try:
        parts = urlsplit(given)
        parts.port  # noqa: B018 - raises for a port that is no number, or out of range
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        return None
    return urlunsplit(("https", parts.netloc, parts.path.rstrip("/"), "", ""))


def store(run: Run, attestations: Mapping[str, Mapping[str, Any]]) -> None:
    """The run's step after the uploads, when `github-attestations` asks for it: whatever
    happens there is reported and leaves the verdict and the exit code alone."""
    inputs = run.inputs
    if not inputs.github_attestations or inputs.github_token is None:
        return
    from oidc_publish.report import advisory

    with advisory(run.reporter, "Storing the attestations in GitHub's attestation store"):
        store_release(
            run.publication,
            attestations,
            unsigned=run.publication.no_attestations
            if inputs.attestations
            else "`attestations: false`",
            token=inputs.github_token.get_secret_value(),
            environ=run.environ,
            context=run.context,
            http=run.http,
            policy=run.policy,
            reporter=run.reporter,
            wall=run.world.wall,
        )


def store_release(
    publication: Publication,
    attestations: Mapping[str, Mapping[str, Any]],
    *,
    unsigned: str,
    token: str,
    environ: Mapping[str, str],
    context: RunnerContext,
    http: httpx.Client,
    policy: RetryPolicy,
    reporter: Reporter,
    wall: Callable[[], float],
) -> None:
    """Stores each uploaded file's attestation in GitHub, whatever the run's verdict: a
    refused run's complete releases are attested there too. Raises only a cancellation.

    `attestations` are the signed ones by file name (sign_all's); `unsigned` says why none
    were made, "" when they were (or would be, on a dry run). The files' results gain their
    GitHub URLs, the publication the command that verifies a file; whatever is not stored is
    one notice (nothing to store, or files the index did not take) or one warning (the store
    failed).
    """
    repository = Repository.from_env(environ, context)
    if publication.dry_run:
        reporter.add(_rehearsal(publication, unsigned, repository))
        return
    if unsigned:
        reporter.add(_nothing_stored(f"no attestations were made: {unsigned}"))
        return
    due = [
        r
        for r in publication.results
        if r.outcome is Outcome.UPLOADED and r.attested and r.dist.filename in attestations
    ]
    if not due:
        reporter.add(_nothing_stored("this run uploaded no file with an attestation"))
        return
    if isinstance(repository, str):
        reporter.add(
            _unstored(
                "Attestations not stored in GitHub",
                f"Nothing was sent to GitHub's attestation store: {repository}.",
                [r.dist.filename for r in due],
                fix="The runner sets these variables; run the action as a step of a GitHub "
                "Actions job, or set `github-attestations: false`.",
            )
        )
        return
    store = _Store(repository, token, http=http, policy=policy, reporter=reporter, wall=wall)
    stored: dict[str, str] = {}
    try:
        with reporter.group(
            f"Storing {len(due)} attestation(s) in GitHub's attestation store of {repository.name}"
        ):
            problem = store.all(due, attestations, stored)
    finally:
        # Also when a cancellation ends the store: what was stored is linked.
        publication.results = [
            replace(r, github_attestation=stored.get(r.dist.filename, ""))
            for r in publication.results
        ]
        if stored:
            first = next(r.dist.filename for r in due if r.dist.filename in stored)
            publication.github_verify = repository.verify_command(first)
    if problem is not None:
        reporter.add(problem)
    missing = [
        r.dist.filename
        for r in publication.results
        if r.outcome in _NOT_ON_INDEX and r.dist.filename in attestations
    ]
    if missing:
        reporter.add(_not_taken(missing))


# A refused or stopped run's files that this run did not put on the index.
_NOT_ON_INDEX = (Outcome.FAILED, Outcome.NOT_ATTEMPTED, Outcome.IN_FLIGHT)


class _Refused(Exception):
    """GitHub answered something other than 201 that asking again cannot change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status} {message}")
        self.status = status
        self.message = message


class _Store:
    def __init__(
        self,
        repository: Repository,
        token: str,
        *,
        http: httpx.Client,
        policy: RetryPolicy,
        reporter: Reporter,
        wall: Callable[[], float],
    ) -> None:
        self._repository = repository
        self._http = http
        self._policy = policy
        self._reporter = reporter
        self._wall = wall
        self._headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": API_VERSION,
        }

    def all(
        self,
        due: Sequence[FileResult],
        attestations: Mapping[str, Mapping[str, Any]],
        stored: dict[str, str],
    ) -> Diagnostic | None:
        """Stores one file after the other; the first failure stops the rest, and so does a
        cancellation, which goes on to end the run.

        Fills `stored` with each stored file's URL (empty when GitHub gave no id) as it goes;
        returns the warning that names what was left unstored, if anything was.
        """
        for position, result in enumerate(due):
            name = result.dist.filename
            left = [r.dist.filename for r in due[position:]]
            try:
                number = self._one(name, attestations[name])
            except GaveUp as gave_up:
                return _down(name, gave_up, left)
            except _Refused as refused:
                return _refusal(name, refused, self._repository, left)
            except Cancelled:
                raise
            # The release is on the index: nothing here may change the run's exit code, not
            # even the run's own deadline passing.
            except Exception as error:
                if not isinstance(error, ActionError):
                    self._reporter.debug(traceback.format_exc())
                return _failure(name, error, left)
            url = self._repository.attestation_url(number) if number else ""
            stored[name] = url
            where = f": {url}" if url else ""
            self._reporter.log(f"{name}: stored in GitHub's attestation store{where}")
        return None

    def _one(self, name: str, attestation: Mapping[str, Any]) -> int | None:
        from pypi_attestations import Attestation

        bundle = json.loads(Attestation.model_validate(attestation).to_bundle().to_json())

        def on_retry(notice: RetryNotice) -> None:
            self._reporter.log(
                f"{name}: GitHub's attestation store, attempt {notice.attempt} failed "
                f"({log_quoted(notice.reason)}); retrying in {notice.delay:.1f}s"
            )

        return retrying(lambda: self._post(bundle), self._policy, on_retry)

    def _post(self, bundle: object) -> int | None:
        """One request; GitHub's id for the stored attestation (None if it gave none)."""
        answer = send(
            self._http,
            "POST",
            self._repository.endpoint,
            json_body={"bundle": bundle},
            headers=self._headers,
        )
        if answer.status == 201:
            body = answer.json()
            number = body.get("id") if isinstance(body, dict) else None
            valid = isinstance(number, int) and not isinstance(number, bool) and number > 0
            return number if valid else None
        message = _message(answer)
        if answer.status == 403:
            wait = self._rate_limit_wait(answer, message)
            if wait is not None:
                raise Transient(f"HTTP 403 {message}", retry_after=wait)
        raise _Refused(answer.status, message)

    def _rate_limit_wait(self, answer: Answer, message: str) -> float | None:
        """Seconds GitHub asks to wait when its 403 is a rate limit, not a refusal."""
        headers = answer.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is not None:
            return retry_after
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isascii() and reset.isdigit():
            if len(reset) > _EPOCH_DIGITS:
                return math.inf  # no time at all: as long as the policy waits
            return max(0.0, int(reset) - self._wall())
        # GitHub's advice for a secondary limit without either header: wait a minute.
        return 60.0 if "rate limit" in message.lower() else None


def _message(answer: Answer) -> str:
    """GitHub's JSON `message`, else the reason phrase; short, never a header."""
    body = answer.json()
    said = body.get("message") if isinstance(body, dict) else None
    text = said if isinstance(said, str) and said.strip() else answer.reason
    return " ".join(text.split())[:_MESSAGE_CHARS]


def _rehearsal(publication: Publication, unsigned: str, repository: Repository | str) -> Diagnostic:
    if unsigned:
        said = f"no attestations would be made: {unsigned}"
    elif isinstance(repository, str):
        said = f"the token would not be sent: {repository}"
    else:
        count = sum(1 for r in publication.results if r.outcome is Outcome.WOULD_UPLOAD)
        said = (
            f"publishing would store the attestation of each file it uploads ({count} now) in "
            f"{md_code(repository.name)}'s attestation store"
        )
    return Diagnostic(
        Level.NOTICE,
        "Dry run: nothing stored in GitHub's attestation store",
        f"Nothing was sent to GitHub's attestation store; {said}.",
    )


def _not_taken(names: Sequence[str]) -> Diagnostic:
    files = ", ".join(md_code(name) for name in names)
    return Diagnostic(
        Level.NOTICE,
        "Not stored in GitHub: files the index did not take",
        "GitHub's attestation store got the attestations of the files this run put on the "
        f"index; not those of {files}, which are not on the index.",
        fix="The run that uploads them stores their attestations too.",
    )


def _nothing_stored(why: str) -> Diagnostic:
    return Diagnostic(
        Level.NOTICE,
        "Nothing stored in GitHub's attestation store",
        f"GitHub's attestation store got nothing, and no request was made: {why}.",
        fix="GitHub stores the PEP 740 attestations made for PyPI or TestPyPI through trusted "
        "publishing; set `github-attestations: false` to silence this notice.",
    )


def _unstored(title: str, cause: str, left: Sequence[str], *, fix: str) -> Diagnostic:
    files = ", ".join(md_code(name) for name in left)
    return Diagnostic(
        Level.WARNING,
        title,
        f"{cause} Left unstored: {files}. The release on the index is whole.",
        fix=fix,
    )


_RERUN = (
    "Re-running the job stores them: the index takes its files again unchanged, with "
    "their attestations."
)


def _down(name: str, gave_up: GaveUp, left: Sequence[str]) -> Diagnostic:
    return _unstored(
        "GitHub's attestation store did not answer",
        f"Storing the attestation of {md_code(name)} failed {gave_up.attempts} time(s); the "
        f"last: {md_code(gave_up.last.reason)}.",
        left,
        fix=f"This is on GitHub's side: check {GITHUB_STATUS_PAGE}. {_RERUN}",
    )


def _refusal(
    name: str, refused: _Refused, repository: Repository, left: Sequence[str]
) -> Diagnostic:
    said = (
        f"GitHub's attestation store answered HTTP {refused.status} {md_code(refused.message)} "
        f"for the attestation of {md_code(name)}."
    )
    if refused.status == 403:
        return _unstored(
            f"GitHub's attestation store needs `{PERMISSION}`",
            f"{said} The job's token may not write the repository's attestations.",
            left,
            fix=f"Add `{PERMISSION}` to the publishing job's `permissions:`, beside "
            "`id-token: write` (or give the token in `github-token` the repository's "
            f"Attestations permission, write). {_RERUN}",
        )
    fixes = {
        401: "GitHub did not accept `github-token`: leave it out to use the job's own token, "
        "or pass a valid one.",
        404: f"GitHub knows no repository {md_code(repository.name)} for this token, or its "
        "attestation store is closed to it: private and internal repositories need GitHub "
        "Enterprise Cloud for artifact attestations.",
        422: "GitHub could not validate the Sigstore bundle; if a re-run fails the same way, "
        "please report it with the log attached.",
    }
    return _unstored(
        "GitHub refused an attestation",
        said,
        left,
        fix=fixes.get(
            refused.status,
            "Re-run the job to store them; if it fails again, please report it with the log "
            "attached.",
        ),
    )


def _failure(name: str, error: Exception, left: Sequence[str]) -> Diagnostic:
    what = error.message if isinstance(error, ActionError) else f"{type(error).__name__}: {error}"
    return _unstored(
        "Attestations not stored in GitHub",
        f"Storing the attestation of {md_code(name)} failed: {md_code(what)}.",
        left,
        fix=f"{_RERUN} If it fails again, please report it with the log attached.",
    )
