"""What can go wrong, in the user's words.

Every failure is an ``ActionError`` subclass. The class carries the catalogue entry (a stable
code, a title, and the general explanation the README's Troubleshooting section is built
from); the instance carries what happened this time and the exact fix. ``report`` renders
``diagnostics()`` once; nothing else prints errors.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from oidc_publish.outcomes import FileResult

PYPI_STATUS_PAGE = "https://status.python.org/"
# A whole run, every file and retry included; a step's `timeout-minutes` can only shorten it.
RUN_DEADLINE_MINUTES = 60


class Level(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True)
class Diagnostic:
    """One thing to tell the user: an annotation plus a section of the step summary."""

    level: Level
    title: str
    message: str
    fix: str = ""
    file: str | None = None
    # Markdown for the step summary only: tables, claims, YAML too long for an annotation.
    details: str = ""


class ActionError(Exception):
    """A failure the user can act on. Subclasses are the catalogue.

    An error raised once uploads have begun carries `results`: what happened to each file,
    so the report can say which files are on the index.
    """

    code: ClassVar[str]
    title: ClassVar[str]
    explanation: ClassVar[str]
    exit_code = 1
    """The process's exit status when this error ends the run."""

    def __init__(
        self, message: str, *, fix: str, file: str | None = None, details: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.file = file
        self.details = details
        self.results: list[FileResult] = []

    def diagnostics(self) -> list[Diagnostic]:
        return [
            Diagnostic(Level.ERROR, self.title, self.message, self.fix, self.file, self.details)
        ]


def catalogue() -> Iterator[type[ActionError]]:
    """Every concrete error class, in the order the README documents them."""
    pending: list[type[ActionError]] = [ActionError]
    while pending:
        cls = pending.pop(0)
        if "code" in vars(cls):
            yield cls
        pending.extend(cls.__subclasses__())


# Inputs and the runner.


class InvalidInput(ActionError):
    code = "invalid-input"
    title = "Invalid input"
    explanation = (
        "An input in the workflow's `with:` block has a value the action cannot use. "
        "The message names the input and the values it accepts."
    )


class MissingIdTokenPermission(ActionError):
    code = "missing-id-token-permission"
    title = "The job cannot request an identity token"
    explanation = (
        "Trusted publishing needs the job's `id-token: write` permission; without it GitHub "
        "does not give the job the `ACTIONS_ID_TOKEN_REQUEST_*` variables. Add the permission "
        "to the publishing job (not the whole workflow), or pass an API token as `password`."
    )


class ForkPullRequest(ActionError):
    code = "fork-pull-request"
    title = "Pull requests from forks cannot publish"
    explanation = (
        "GitHub never gives a workflow triggered by a pull request from a fork an identity "
        "token, whatever its permissions. Publish from `push` (of a tag), `release` or "
        "`workflow_dispatch` in the main repository."
    )


class PullRequestTarget(ActionError):
    code = "pull-request-target"
    title = "PyPI refuses `pull_request_target` workflows"
    explanation = (
        "PyPI does not mint tokens for workflows triggered by `pull_request_target`, because "
        "they run with the base repository's rights on code from anyone. Publish from `push`, "
        "`release` or `workflow_dispatch`."
    )


class EnterpriseServer(ActionError):
    code = "enterprise-server"
    title = "PyPI does not trust GitHub Enterprise Server"
    explanation = (
        "PyPI accepts identity tokens from github.com's issuer only, so a workflow on a GitHub "
        "Enterprise Server instance cannot use trusted publishing to PyPI or TestPyPI. Use an "
        "API token (`password`) or publish from github.com."
    )


class InvalidRepositoryUrl(ActionError):
    code = "invalid-repository-url"
    title = "`repository-url` is not an upload URL"
    explanation = (
        "`repository-url` must be the index's HTTPS upload endpoint, such as "
        "`https://upload.pypi.org/legacy/` or `https://test.pypi.org/legacy/` (with the "
        "trailing slash). A `/simple/` URL, a project page or `pypi.org` itself will not take "
        "uploads; the message names the URL to use."
    )


# Distributions.


class NoDistributions(ActionError):
    code = "no-distributions"
    title = "No distributions to upload"
    explanation = (
        "`packages-dir` is missing, empty, a link that loops, or holds no `*.whl` or `*.tar.gz` "
        "files (PyPI takes no `.egg`, `.zip` or other formats). The usual cause is a missing "
        "build step: build the distributions before this step (`python -m build` writes a "
        "wheel and an sdist into `dist/`), in this job or in the build job. If the build job "
        "made them, `actions/download-artifact` writes the artifact's files into its `path:`: "
        "name the same folder in `packages-dir`."
    )


@dataclass(frozen=True)
class Problem:
    """One reason one file (or the set of files) cannot be uploaded."""

    title: str
    message: str
    fix: str
    file: str | None = None


class DistributionsRejected(ActionError):
    code = "invalid-distributions"
    title = "The distributions cannot be uploaded as they are"
    explanation = (
        "Every distribution is read and checked before the first upload, so nothing is "
        "half-published: each entry named `*.whl` or `*.tar.gz` must be a file (not a named "
        "pipe, a device, or a link to nothing or in a loop), the archive must be readable and "
        "within sane sizes, the metadata must parse and render on PyPI, and each filename "
        "must match its metadata. The folder may hold several projects, each in one version "
        "(compared as PyPI compares them: `1.0` is `1.0.0`) with at most one sdist. Each "
        "problem is annotated on its file under a title of its own, with the fix; nothing was "
        "uploaded."
    )

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(
            f"{len(problems)} problem(s) found before uploading anything",
            fix="Fix each annotated file and build again; nothing was uploaded.",
        )
        self.problems = list(problems)

    def diagnostics(self) -> list[Diagnostic]:
        return [Diagnostic(Level.ERROR, p.title, p.message, p.fix, p.file) for p in self.problems]


# Trusted publishing.


class TrustedPublishingUnavailable(ActionError):
    code = "trusted-publishing-unavailable"
    title = "The index does not offer trusted publishing"
    explanation = (
        "The index's `/_/oidc/audience` endpoint answered that trusted publishing is disabled "
        "(403) or does not exist there (404). Check `repository-url`, or use an API token as "
        "`password` for indexes without trusted publishing."
    )


class ReservedAudience(ActionError):
    code = "reserved-audience"
    title = "The index asks for another service's audience"
    explanation = (
        "An index other than PyPI or TestPyPI answered its `/_/oidc/audience` endpoint with "
        "`pypi`, `testpypi` or `sigstore`. An identity token with that audience is accepted by "
        "PyPI, TestPyPI or Sigstore: whoever runs that index could use it there, in this "
        "repository's name, to mint upload tokens for its projects or to get a signing "
        "certificate. So the action asks GitHub for no such token, and stops before the "
        "token exchange. The index's operator must give it an audience of its own (Warehouse's "
        "`OIDC_AUDIENCE` setting). If you meant PyPI or TestPyPI, set `repository-url` to "
        "`https://upload.pypi.org/legacy/` or `https://test.pypi.org/legacy/`."
    )


class IdTokenUnavailable(ActionError):
    code = "id-token-unavailable"
    title = "GitHub did not issue an identity token"
    explanation = (
        "The request for the job's OIDC identity token failed for a reason that retrying does "
        "not cure. The message quotes GitHub's answer."
    )


class PublisherMismatch(ActionError):
    code = "publisher-mismatch"
    title = "PyPI refused the identity token"
    explanation = (
        "PyPI's mint endpoint answered 422: no trusted publisher on the project matches this "
        "workflow, or the token itself was refused. The step summary shows the token's claims "
        "beside the publisher PyPI would need. The usual causes: the workflow file was renamed "
        "(PyPI matches the file name), the job's `environment:` is missing or spelt "
        "differently from the publisher's, the repository was renamed or transferred (PyPI "
        "matches the owner's numeric id), or the project does not exist yet and no pending "
        "publisher was registered for it."
    )


class IndexUnreachable(ActionError):
    code = "index-unreachable"
    title = "The index did not answer"
    explanation = (
        "A request kept failing with connection errors, timeouts or 5xx answers after every "
        "retry the policy allows. This is almost always an outage on the index's side: check "
        f"its status page ({PYPI_STATUS_PAGE} for PyPI) and re-run the job; files already "
        "uploaded are recognised and not uploaded twice."
    )


class CannotConnect(ActionError):
    code = "cannot-connect"
    title = "A host could not be reached"
    explanation = (
        "A request could not even be sent, after every retry the policy allows: the host's "
        "name did not resolve, the connection was refused, or the network was unreachable. "
        "The message names the host, the error, and whether the request went through a "
        "proxy. On a GitHub-hosted runner this is an outage: re-run the job. On a "
        "self-hosted runner whose only way out is a proxy, check the proxy variables the "
        "runner passes into the container (`HTTPS_PROXY`, `NO_PROXY`), that the host is "
        "reachable through that proxy, or that it is listed in `NO_PROXY` when it should be "
        "reached directly."
    )


class ProxyRefused(ActionError):
    code = "proxy-refused"
    title = "The proxy refused the connection"
    explanation = (
        "The runner's proxy (`HTTPS_PROXY`) answered the request to open a connection with "
        "an error: 407 when it wants credentials that `HTTPS_PROXY` does not carry (or "
        "carries wrong), 403 when its policy forbids the host. The message names the host "
        "and the proxy's status. Give `HTTPS_PROXY` the credentials as "
        "`http://user:password@proxy:port` (from a secret; the action masks them), ask the "
        "proxy's operator to allow the host, or list the host in `NO_PROXY` if it should be "
        "reached directly. Nothing is retried: asking again gets the same answer."
    )


class UntrustedCertificate(ActionError):
    code = "untrusted-certificate"
    title = "The index's certificate is not trusted"
    explanation = (
        "The index's TLS certificate is not signed by a certificate authority the container "
        "trusts, as with a private index behind a company CA. Verification cannot be turned "
        "off; give the container the CA instead (the message says how). Nothing is retried: "
        "asking again cannot change the answer."
    )


class UnexpectedResponse(ActionError):
    code = "unexpected-response"
    title = "The index answered something unexpected"
    explanation = (
        "An endpoint answered with a page that is not the JSON the protocol defines, often an "
        "HTML error page from a proxy or CDN, or a URL that is not a PyPI-compatible index."
    )


class Stopped(ActionError):
    """The run was stopped from outside its steps (its deadline, a signal): nothing new
    starts, work under way is abandoned, and the error carries what is on the index."""


class RunTimedOut(Stopped):
    code = "run-timed-out"
    title = "The run took too long"
    explanation = (
        f"A run gives up after {RUN_DEADLINE_MINUTES} minutes, every file and retry included, "
        "so a server that answers a byte at a time cannot hold the job until GitHub's own "
        "six-hour limit. Each request has its own deadline as well (an upload's grows with "
        "its size). When the deadline passes no new upload starts, and the step summary says "
        "which files are on the index. Re-run the job: files already on the index are "
        "recognised and not uploaded twice."
    )


class Cancelled(Stopped):
    """SIGINT or SIGTERM: the job was cancelled. The exit status says which, as a shell would."""

    code = "cancelled"
    title = "The run was cancelled"
    explanation = (
        "The action got SIGINT or SIGTERM: the job was cancelled (by hand, by a newer run in "
        "its concurrency group, or at its `timeout-minutes`), or the runner is shutting down. "
        "No upload or signature starts after that; uploads under way are abandoned and the "
        "run ends at once, with exit status 130 (SIGINT) or 143 (SIGTERM). The step summary "
        "says which files are on the index; a file whose upload was under way may or may not "
        "be there. Re-run the job: files already on the index are recognised and not uploaded "
        "twice."
    )

    def __init__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"The run was cancelled ({name}).",
            fix="Re-run the job: it uploads the files that are not on the index and recognises "
            "those that are.",
        )
        self.signal_name = name
        self.exit_code = 128 + signum

    def diagnostics(self) -> list[Diagnostic]:
        cancelled, fix = f"The run was cancelled ({self.signal_name})", self.fix
        if not self.results:
            happened = f"{cancelled} before any upload: nothing was uploaded."
        elif all(r.outcome.on_index for r in self.results):
            happened = f"{cancelled} once every file was on the index; the step summary lists them."
            fix = "Nothing is missing from the release; a re-run would find every file there."
        else:
            happened = (
                f"{cancelled} during the uploads; none started after it. The step summary lists "
                "the files on the index, those whose upload was under way (they may be there) "
                "and those not uploaded."
            )
        return [Diagnostic(Level.ERROR, self.title, happened, fix)]


# Guardrails.


class VersionTagMismatch(ActionError):
    code = "version-tag-mismatch"
    title = "The tag and the version differ"
    explanation = (
        "The workflow runs for a tag that names another version than the distributions'. The "
        "tag's version is what follows an optional project name and separator (`<project>-`, "
        "`<project>_`, `<project>.`, `<project>/` or `<project>@`, the name compared as PyPI "
        "normalises it) and whatever comes before the first digit (`v`, `release-`), compared "
        "as versions: `v1.2`, `release-1.2`, `mylib-v1.2`, `mylib/1.2` and `mylib@1.2` all "
        "match `1.2.0`. A tag that names a project is checked against that project's version, "
        "one that names none against every release's; a tag that reads several ways (`lib-2.0` "
        "with projects `lib` and `lib-2`) passes when one reading matches. Most often the tag "
        "was pushed before the version was bumped, or the build used a stale `dist/` folder. "
        "Bump the version and build again, or tag the commit that has the version. A tag "
        "without a version in it (such as `nightly`) is not checked; `verify-tag: false` turns "
        "the check off."
    )


class ProjectNotAcceptingUploads(ActionError):
    code = "project-not-accepting-uploads"
    title = "The project does not accept uploads"
    explanation = (
        "The index marks the project as archived or quarantined (PEP 792 project status), and "
        "an index refuses new files for such projects. An archived project can be unarchived "
        "by an owner in the project's settings on PyPI; a quarantine is set and lifted by "
        "PyPI's administrators, usually after a malware report. The message links the project's "
        "page."
    )


class ReleaseTooOld(ActionError):
    code = "release-too-old"
    title = "The release is too old for new files"
    explanation = (
        "PyPI refuses new files for a release whose first file was uploaded more than 14 days "
        "ago. Re-uploading files that are already there is fine; adding one (a new wheel, a "
        "rebuilt sdist) is not. Publish the files under a new version, such as a post-release "
        "(`1.0.0.post1`) when only the packaging changed."
    )


class SecondSdist(ActionError):
    code = "second-sdist"
    title = "The release already has another sdist"
    explanation = (
        "PyPI allows one sdist per release, and the release on the index already has one under "
        "another file name than the one being uploaded. The usual cause is a build backend "
        "update that changed how the sdist is named (setuptools 69.3 and later write "
        "`my_project-1.0.tar.gz` where older versions wrote `my-project-1.0.tar.gz`). Leave the "
        "sdist out of this upload, or publish a new version."
    )


# Attestations.

SIGSTORE_STATUS_PAGE = "https://status.sigstore.dev"


class SigningFailed(ActionError):
    code = "signing-failed"
    title = "Sigstore did not sign the release"
    explanation = (
        "PEP 740 attestations are signed through Sigstore: a certificate from Fulcio for the "
        "job's identity token, then one Rekor transparency log entry per file. One of them "
        "(or the fetch of Sigstore's trust root) kept failing after every retry the policy "
        "allows, refused the request, or sent an answer over its size limit; or signing ran "
        "past its deadline; or `OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG` names no usable file. The "
        "message names which. Nothing was uploaded. "
        f"Check {SIGSTORE_STATUS_PAGE} and re-run the job, or publish without attestations "
        "with `attestations: false`."
    )


# Uploads.


class UploadRejected(ActionError):
    """The index refused a file; ``kind`` picks the explanation."""

    code = "upload-rejected"
    title = "The index refused a file"
    explanation = (
        "The index answered the upload with an error. The annotation on the file quotes the "
        "reason the index gave, is titled by it as below, and gives the fix; the step summary "
        "lists which files are on the index and which are not, so a re-run after the fix "
        "completes the release."
    )

    def __init__(self, message: str, *, fix: str, file: str, title: str) -> None:
        super().__init__(message, fix=fix, file=file)
        self.specific_title = title

    def diagnostics(self) -> list[Diagnostic]:
        return [Diagnostic(Level.ERROR, self.specific_title, self.message, self.fix, self.file)]


class FileChanged(ActionError):
    code = "file-changed"
    title = "A file changed after it was checked"
    explanation = (
        "Every distribution is hashed and checked (and attested) before the first upload, "
        "and hashed again as it is sent. A file whose bytes changed in between, because "
        "another step or process wrote to `packages-dir` while the action ran, is cut off "
        "before its last bytes: no index stores it, and the action never reports a sha256 "
        "that is not what was sent. Keep the folder untouched during the step and re-run."
    )


class InternalError(ActionError):
    code = "internal-error"
    title = "Internal error"
    explanation = (
        "Something failed that the action does not expect. The log holds the traceback; "
        "please report it with the log attached (secrets are masked)."
    )
