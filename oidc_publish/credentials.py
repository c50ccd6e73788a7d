"""How the uploads authenticate: an API token as given, or trusted publishing.

Upload sees only a ``Credential``: `token(valid_for)` hands out a token that stays valid for
at least that many more seconds, minting a new one when needed, and `renew(stale)` mints one
after the index said `stale` expired. Both are serialised: however many uploads run at once,
one mint serves them all. Trusted publishing needs a fresh GitHub identity token for every
mint attempt, retries included: PyPI accepts each token's `jti` once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oidc_publish.claims import Claims
from oidc_publish.diagnosis import mint_refusal, reusable_workflow_warning
from oidc_publish.errors import (
    PYPI_STATUS_PAGE,
    EnterpriseServer,
    ForkPullRequest,
    PullRequestTarget,
    TrustedPublishingUnavailable,
    UnexpectedResponse,
)
from oidc_publish.identity import IdentityTokens, github_identity_token, missing_permission
from oidc_publish.index_urls import Index
from oidc_publish.network import (
    Answer,
    Pending,
    RetryPolicy,
    TooLarge,
    Transient,
    persist,
    send,
)
from oidc_publish.runner import RunnerContext, md_code

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Reporter

# PyPI's tokens live 15 minutes; used when a mint answer leaves out `expires`, or gives a
# time no token plausibly lives to (in the past, or beyond a day).
DEFAULT_LIFETIME = 900.0
_PLAUSIBLE_LIFETIME = (1.0, 86_400.0)

M = TypeVar("M", bound=BaseModel)


class Credential(Protocol):
    username: str

    def token(self, valid_for: float = 0.0) -> str: ...

    def renew(self, stale: str) -> str | None:
        """A token to replace `stale`, which the index refused as expired; None if impossible."""


class ApiToken:
    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    def token(self, valid_for: float = 0.0) -> str:
        return self._password

    def renew(self, stale: str) -> None:
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
    """The token exchange. `http` gives the HTTP client when first needed, so the identity
    token can be asked for while the client is still being made."""

    username = "__token__"

    def __init__(
        self,
        *,
        index: Index,
        http: Callable[[], httpx.Client],
        policy: RetryPolicy,
        reporter: Reporter,
        project: str | None,
        identity: IdentityTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._http = http
        self._policy = policy
        self._reporter = reporter
        self._project = project
        self._identity = identity or github_identity_token(reporter)
        self._clock = clock
        self._lock = threading.Lock()
        self._audience: str | None = None
        self._token: str | None = None
        self._first_identity: str | None = None
        self._expires = 0.0
        self._renew_margin = 60.0
        self.claims: Claims | None = None

    def token(self, valid_for: float = 0.0) -> str:
        with self._lock:
            if self._token is None:
                return self._mint()
            if self._expires - self._clock() < self._renew_margin + valid_for:
                self._reporter.log("Renewing the upload token before it expires.")
                return self._mint()
            return self._token

    def renew(self, stale: str) -> str:
        with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # another upload renewed it meanwhile
            token = self._mint()
            self._reporter.log("Minted a new upload token: the index refused the last as expired.")
            return token

    def _speculate(self) -> str | None:
        """The identity token for the audience PyPI (or TestPyPI) names, asked for while the
        index is asked which audience it names: the two round trips overlap. If the index
        names another, the token goes unused (it was masked) and another is asked for."""
        guess = "testpypi" if self._index.is_testpypi else "pypi"
        early = Pending(lambda: self._identity(guess), "identity token")
        if self.audience() != guess:
            return None
        try:
            return early.result()
        except Transient:
            return None

    def _identity_token(self) -> str:
        token, self._first_identity = self._first_identity, None
        return token or self._identity(self.audience())

    def audience(self) -> str:
        if self._audience is None:
            url = self._index.audience_url
            answer = persist(
                lambda: _send(self._http(), "GET", url),
                self._policy,
                self._reporter,
                label="the audience endpoint",
                what=f"The audience endpoint ({self._index.host})",
                fix=_OUTAGE_FIX,
            )
            if answer.status == 403:
                raise TrustedPublishingUnavailable(
                    f"{self._index.display_name} answered 403 at {url}: trusted publishing is "
                    "disabled there (PyPI turns it off during incidents).",
                    fix=f"Re-run later, checking {PYPI_STATUS_PAGE}, or pass an API token as "
                    "`password`.",
                )
            if answer.status == 404:
                raise TrustedPublishingUnavailable(
                    f"{url} answered 404: {self._index.host} does not offer trusted publishing.",
                    fix="Check `repository-url`, or pass an API token for this index as "
                    "`password`.",
                )
            self._audience = _parse(answer, _Audience, url).audience
        return self._audience

    def _mint(self) -> str:
        if self._audience is None:
            self._first_identity = self._speculate()
        url = self._index.mint_url

        def attempt() -> Answer:
            identity = self._identity_token()
            claims = Claims.from_jwt(identity)
            if claims is not None and self.claims is None and claims.is_reusable_workflow:
                self._reporter.add(reusable_workflow_warning(claims))
            self.claims = claims
            return _send(self._http(), "POST", url, json_body={"token": identity})

        minted_at = self._clock()
        answer = persist(
            attempt,
            self._policy,
            self._reporter,
            # An attempt asks GitHub for an identity token, then the index to mint: either
            # can be what kept failing, and the reason quoted says which.
            label="the token exchange",
            what=f"The token exchange with {self._index.host} (GitHub's identity token, then "
            "the mint-token endpoint)",
            fix=_OUTAGE_FIX,
        )
        body = answer.json()
        # Mask before anything else touches the answer: a validation error could echo it.
        if isinstance(body, dict) and isinstance(body.get("token"), str):
            self._reporter.mask(body["token"])
        if answer.status == 200:
            minted = _parse(answer, _MintSuccess, url, body)
            self._remember(minted.token, minted.expires, minted_at)
            return minted.token
        if answer.status == 422:
            failure = _parse(answer, _MintFailure, url, body)
            raise mint_refusal(
                self._index,
                [(e.code, e.description) for e in failure.errors],
                failure.message,
                self.claims,
                self._project,
            )
        raise UnexpectedResponse(
            f"{url} answered HTTP {answer.status} {md_code(answer.reason)}.",
            fix=f"Check `repository-url` and {PYPI_STATUS_PAGE}; re-run when the index is healthy.",
        )

    def _remember(self, token: str, expires: float | None, minted_at: float) -> None:
        lifetime = (expires - minted_at) if expires is not None else DEFAULT_LIFETIME
        low, high = _PLAUSIBLE_LIFETIME
        if not low <= lifetime <= high:
            self._reporter.debug(
                f"The index's `expires` is {lifetime:.0f} s from now; assuming PyPI's "
                f"{DEFAULT_LIFETIME:.0f} s instead."
            )
            lifetime = DEFAULT_LIFETIME
        self._token = token
        self._expires = minted_at + lifetime
        # Renew a minute ahead on PyPI's 15-minute tokens, proportionally on shorter ones.
        self._renew_margin = min(60.0, lifetime / 3)


_OUTAGE_FIX = (
    f"This is on the service's side. Check {PYPI_STATUS_PAGE} (PyPI) or "
    "https://www.githubstatus.com/ (identity tokens) and re-run the job."
)


def _send(http: httpx.Client, method: str, url: str, json_body: object = None) -> Answer:
    try:
        return send(http, method, url, json_body=json_body)
    except TooLarge:
        raise _unexpected(url, "an answer larger than any token exchange") from None


def _unexpected(url: str, what: str) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{url} answered with {what}, not the JSON the trusted-publishing protocol defines.",
        fix=f"Check that `repository-url` is the index's upload URL, and {PYPI_STATUS_PAGE} "
        "for an outage; HTML usually comes from a proxy or CDN in trouble.",
    )


def _parse(answer: Answer, model: type[M], url: str, body: object = None) -> M:
    data = body if body is not None else answer.json()
    try:
        return model.model_validate(data)
    except ValidationError:
        kind = md_code(answer.content_type or "no content type")
        raise _unexpected(url, f"HTTP {answer.status} with {kind}") from None


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
            f"This run is on {md_code(context.server_url)}; {index.display_name} trusts "
            "identity tokens from github.com only.",
            fix="Pass an API token as `password` (from a secret), or publish from github.com.",
        )
    if not context.can_request_id_token:
        raise missing_permission()
