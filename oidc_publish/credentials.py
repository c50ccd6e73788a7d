"""How the uploads authenticate: an API token as given, or trusted publishing.

Upload sees only a ``Credential``: `token(valid_for)` hands out a token that stays valid for
at least that many more seconds, minting a new one when needed, and `renew()` mints one after
the index said the last one expired. Trusted publishing needs a fresh GitHub identity token
for every mint attempt, retries included: PyPI accepts each token's `jti` once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oidc_publish.claims import Claims
from oidc_publish.errors import (
    PYPI_STATUS_PAGE,
    Diagnostic,
    EnterpriseServer,
    ForkPullRequest,
    IdTokenUnavailable,
    IndexUnreachable,
    Level,
    MissingIdTokenPermission,
    PublisherMismatch,
    PullRequestTarget,
    TrustedPublishingUnavailable,
    UnexpectedResponse,
)
from oidc_publish.index_urls import Index
from oidc_publish.network import (
    GaveUp,
    RetryNotice,
    RetryPolicy,
    Transient,
    is_transient_status,
    retrying,
    send,
)
from oidc_publish.runner import RunnerContext, WorkflowCommands, workflow_filename

if TYPE_CHECKING:
    import httpx

M = TypeVar("M", bound=BaseModel)

# PyPI's tokens live 15 minutes; used when a mint answer leaves out `expires`.
DEFAULT_LIFETIME = 900.0

PERMISSION_YAML = """\
```yaml
jobs:
  publish:
    permissions:
      id-token: write   # trusted publishing
      contents: read    # only if the job checks out the repository
```"""


class Credential(Protocol):
    username: str

    def token(self, valid_for: float = 0.0) -> str: ...

    def renew(self) -> str | None:
        """A new token after the index refused the last one as expired; None if impossible."""


class ApiToken:
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    def token(self, valid_for: float = 0.0) -> str:
        return self._password

    def renew(self) -> None:
        return None


class _MintSuccess(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: str
    expires: float | None = None


class _MintErrorItem(BaseModel):
    code: str
    description: str


class _MintFailure(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: str = ""
    errors: list[_MintErrorItem] = []


class _Audience(BaseModel):
    audience: str


class TrustedPublishing:
    username = "__token__"

    def __init__(
        self,
        *,
        index: Index,
        http: httpx.Client,
        policy: RetryPolicy,
        console: WorkflowCommands,
        report: Callable[[Diagnostic], None],
        project: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._http = http
        self._policy = policy
        self._console = console
        self._report = report
        self._project = project
        self._clock = clock
        self._audience: str | None = None
        self._token: str | None = None
        self._expires = 0.0
        self._renew_margin = 60.0
        self.mints = 0
        self.claims: Claims | None = None

    def token(self, valid_for: float = 0.0) -> str:
        if self._token is None or self._expires - self._clock() < self._renew_margin + valid_for:
            if self._token is not None:
                self._console.log("Renewing the upload token before it expires.")
            return self.renew()
        return self._token

    def renew(self) -> str:
        minted_at = self._clock()
        token, expires = self._mint()
        self._token = token
        self._expires = expires if expires is not None else minted_at + DEFAULT_LIFETIME
        # Renew a minute ahead on PyPI's 15-minute tokens, proportionally on shorter ones.
        self._renew_margin = min(60.0, max(self._expires - minted_at, 0.0) / 3)
        self.mints += 1
        return token

    def audience(self) -> str:
        if self._audience is None:
            url = self._index.audience_url
            response = self._call("the audience endpoint", lambda: send(self._http, "GET", url))
            if response.status_code == 403:
                raise TrustedPublishingUnavailable(
                    f"{self._index.display_name} answered 403 at {url}: trusted publishing is "
                    "disabled there (PyPI turns it off during incidents).",
                    fix=f"Re-run later, checking {PYPI_STATUS_PAGE}, or pass an API token as "
                    "`password`.",
                )
            if response.status_code == 404:
                raise TrustedPublishingUnavailable(
                    f"{url} answered 404: {self._index.host} does not offer trusted publishing.",
                    fix="Check `repository-url`, or pass an API token for this index as "
                    "`password`.",
                )
            self._audience = _parse(response, _Audience, url).audience
        return self._audience

    def _mint(self) -> tuple[str, float | None]:
        audience = self.audience()
        url = self._index.mint_url

        def attempt() -> httpx.Response:
            identity = self._identity_token(audience)
            claims = Claims.from_jwt(identity)
            if claims is not None and self.claims is None and claims.is_reusable_workflow:
                self._report(_reusable_workflow_warning(claims))
            self.claims = claims
            return send(self._http, "POST", url, json_body={"token": identity})

        response = self._call("the mint-token endpoint", attempt)
        body = _json(response)
        # Mask before anything else touches the answer: a validation error could echo it.
        if isinstance(body, dict) and isinstance(body.get("token"), str):
            self._console.mask(body["token"])
        if response.status_code == 200:
            minted = _parse(response, _MintSuccess, url, body)
            return minted.token, minted.expires
        if response.status_code == 422:
            failure = _parse(response, _MintFailure, url, body)
            raise self._mismatch(failure)
        raise UnexpectedResponse(
            f"{url} answered HTTP {response.status_code} {response.reason_phrase}.",
            fix=f"Check `repository-url` and {PYPI_STATUS_PAGE}; re-run when the index is healthy.",
        )

    def _identity_token(self, audience: str) -> str:
        import id as oidc_id

        self._console.debug(f"Requesting a GitHub identity token for the audience {audience!r}")
        try:
            token = oidc_id.detect_credential(audience)
        except oidc_id.GitHubOidcPermissionCredentialError:
            raise missing_permission() from None
        except oidc_id.AmbientCredentialError as error:
            # `id` reports the status only in its message; pinned by the lock, and tested.
            text = str(error)
            status = re.search(r"code=(\d+)", text)
            if "timed out" in text or (status and is_transient_status(int(status.group(1)))):
                raise Transient(f"GitHub identity token: {text}") from None
            raise IdTokenUnavailable(
                f"GitHub refused the identity token request: {text}",
                fix="Re-run the job; if it fails again, check https://www.githubstatus.com/.",
            ) from None
        if token is None:
            raise IdTokenUnavailable(
                "No GitHub Actions identity provider was found (GITHUB_ACTIONS is not set).",
                fix="Run this action in a GitHub Actions job.",
            )
        self._console.mask(token)
        return token

    def _call(self, endpoint: str, attempt: Callable[[], httpx.Response]) -> httpx.Response:
        def on_retry(notice: RetryNotice) -> None:
            self._console.log(
                f"{endpoint}: attempt {notice.attempt} failed ({notice.reason}); "
                f"retrying in {notice.delay:.1f}s"
            )

        try:
            return retrying(attempt, self._policy, on_retry)
        except GaveUp as gave_up:
            raise IndexUnreachable(
                f"{endpoint} ({self._index.host}) kept failing: {gave_up.attempts} attempt(s), "
                f"the last: {gave_up.last.reason}.",
                fix=f"This is on the service's side. Check {PYPI_STATUS_PAGE} (PyPI) or "
                "https://www.githubstatus.com/ (identity tokens) and re-run the job.",
            ) from None

    def _mismatch(self, failure: _MintFailure) -> PublisherMismatch:
        reasons = [f"`{e.code}`: {e.description}" for e in failure.errors] or [failure.message]
        codes = {e.code for e in failure.errors}
        text = " ".join(e.description for e in failure.errors)
        claims = self.claims or Claims()
        needed = claims.publisher()
        fixes: list[str] = []
        if "invalid-pending-publisher" in codes:
            fixes.append(
                "The project already exists, so its pending publisher no longer applies: add "
                "this publisher on the project's own publishing page."
            )
        if "environment" in text:
            fixes.append(
                f"The publisher names an environment the job does not match: set the job's "
                f"`environment:` to the publisher's (the job has "
                f"`{claims.environment or 'none'}`), or change the publisher."
            )
        if "job_workflow_ref" in text or "workflow" in text.lower():
            fixes.append(
                f"PyPI matches the workflow file name: the publisher must name `{needed.workflow}`."
            )
        if "invalid-token" in codes:
            fixes.append(
                "The identity token itself was refused (expired, wrong audience or issuer); "
                "re-run the job, and make sure `repository-url` points at the index you mean."
            )
        if not fixes:
            fixes.append(
                "Usual causes: the workflow file was renamed, the job's `environment:` is "
                "missing or misspelt, the repository was renamed or transferred (the owner id "
                "changed), or the project does not exist yet and has no pending publisher."
            )
        environment = f"`{needed.environment}`" if needed.environment else "none"
        fixes.append(
            f"A publisher matching this run has owner `{needed.owner}`, repository "
            f"`{needed.repository}`, workflow `{needed.workflow}` and environment {environment}."
        )
        link = self._publisher_link(
            needed.owner, needed.repository, needed.workflow, needed.environment
        )
        if link:
            fixes.append(f"Configure it at {link}")
        return PublisherMismatch(
            f"{self._index.display_name} refused to mint an upload token: " + "; ".join(reasons),
            fix=" ".join(fixes),
            details=_claims_table(claims),
        )

    def _publisher_link(
        self, owner: str, repository: str, workflow: str, environment: str | None
    ) -> str | None:
        if self._project:
            return self._index.publisher_form_url(
                self._project, owner, repository, workflow, environment
            )
        return f"{self._index.web}/manage/account/publishing/" if self._index.web else None


def _claims_table(claims: Claims) -> str:
    needed = claims.publisher()
    rows = [
        ("Owner", f"`{claims.repository_owner}`", f"`{needed.owner}`"),
        ("Repository", f"`{claims.repository}`", f"`{needed.repository}`"),
        ("Owner id", f"`{claims.repository_owner_id}`", f"`{needed.owner_id}`"),
        ("Workflow", f"`{claims.job_workflow_ref}`", f"`{needed.workflow}`"),
        (
            "Environment",
            f"`{claims.environment or '(none)'}`",
            f"`{needed.environment or '(any)'}`",
        ),
        ("workflow_ref", f"`{claims.workflow_ref}`", ""),
        ("ref", f"`{claims.ref}`", ""),
        ("event_name", f"`{claims.event_name}`", ""),
    ]
    lines = ["| | This run's identity token | The publisher PyPI needs |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _reusable_workflow_warning(claims: Claims) -> Diagnostic:
    needed = claims.publisher()
    caller = workflow_filename(claims.workflow_ref)
    return Diagnostic(
        Level.WARNING,
        "Publishing from a reusable workflow",
        f"This job runs in the reusable workflow `{claims.job_workflow_ref}`, called from "
        f"`{claims.workflow_ref}`. PyPI matches the reusable workflow's file, "
        f"`{needed.workflow}`, not the caller `{caller}`, and its support for reusable "
        "workflows is limited.",
        fix=f"Name `{needed.workflow}` in the trusted publisher, or publish from the calling "
        "workflow directly.",
    )


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _parse(response: httpx.Response, model: type[M], url: str, body: Any = None) -> M:
    data = body if body is not None else _json(response)
    try:
        return model.model_validate(data)
    except ValidationError:
        kind = response.headers.get("content-type", "no content type")
        raise UnexpectedResponse(
            f"{url} answered HTTP {response.status_code} with {kind}, not the JSON the "
            "trusted-publishing protocol defines.",
            fix=f"Check that `repository-url` is the index's upload URL, and {PYPI_STATUS_PAGE} "
            "for an outage; HTML usually comes from a proxy or CDN in trouble.",
        ) from None


def check_context(context: RunnerContext, index: Index) -> None:
    """Everything that rules out trusted publishing before a single request."""
    if context.is_fork_pull_request:
        raise ForkPullRequest(
            "This run was triggered by a pull request from a fork; GitHub never gives such "
            "runs an identity token, whatever `permissions:` says.",
            fix="Publish from `push` (of a tag), `release` or `workflow_dispatch` in the main "
            "repository; use `dry-run: true` only on branches of the repository itself.",
        )
    if context.event_name == "pull_request_target":
        raise PullRequestTarget(
            "This run was triggered by `pull_request_target`; PyPI refuses to mint tokens for "
            "it because such runs execute code from anyone with the base repository's rights.",
            fix="Publish from `push` (of a tag), `release` or `workflow_dispatch`.",
        )
    if not context.on_github_com and (index.is_pypi or index.is_testpypi):
        raise EnterpriseServer(
            f"This run is on {context.server_url}; {index.display_name} trusts identity tokens "
            "from github.com only.",
            fix="Pass an API token as `password` (from a secret), or publish from github.com.",
        )
    if not context.can_request_id_token:
        raise missing_permission()


def missing_permission() -> MissingIdTokenPermission:
    return MissingIdTokenPermission(
        "Trusted publishing needs an identity token, and this job may not request one: "
        "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set.",
        fix="Give the publishing job `permissions: id-token: write` (job level; a job-level "
        "`permissions:` replaces the workflow's, so list `contents: read` too if the job "
        "checks out code). Or pass an API token as `password`.",
        details=PERMISSION_YAML,
    )


def password_notice(context: RunnerContext, index: Index, project: str) -> Diagnostic | None:
    """One notice when an API token is used where trusted publishing would work."""
    if not (index.is_pypi or index.is_testpypi) or not context.on_github_com:
        return None
    if context.is_fork_pull_request or context.event_name == "pull_request_target":
        return None
    owner, _, repository = context.repository.partition("/")
    link = index.publisher_form_url(project, owner, repository, context.workflow_filename, None)
    return Diagnostic(
        Level.NOTICE,
        "Trusted publishing would work here",
        f"This job uploads with an API token. {index.display_name} can trust this workflow "
        "instead, and then no long-lived secret is needed.",
        fix=f"Add a trusted publisher at {link} , give the job `permissions: id-token: write`, "
        "and remove `password`.",
    )
