"""How the uploads authenticate: an API token as given, or trusted publishing.

Upload sees only a ``Credential``. `lease(valid_for)` lends a token that stays valid for at
least that many more seconds, minting a new one when needed, for as long as one request
holds it; `renew(stale)` mints one after the index said `stale` expired; `close()` ends every
token's life once the run is done with it. Leases and renewals are serialised: however many
uploads run at once, one mint serves them all.

Trusted publishing owns each upload token's whole life:
- the audience: PyPI's and TestPyPI's are known and never asked for; any other index is
  asked, and may not claim one whose identity tokens PyPI, TestPyPI or Sigstore accept;
- the exchange: a fresh GitHub identity token for every mint attempt, retries included
  (PyPI accepts each token's `jti` once);
- the burn: a token is revoked at the index that minted it once nothing will use it again,
  a replaced one as soon as no upload holds it, the last one when the run closes the
  credential, whatever the run's outcome. The burn is quiet: whatever it meets is one debug
  line, and never the run's verdict.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from oidc_publish.claims import Claims
from oidc_publish.diagnosis import mint_refusal, reusable_workflow_warning
from oidc_publish.errors import (
    PYPI_STATUS_PAGE,
    ReservedAudience,
    TrustedPublishingUnavailable,
    UnexpectedResponse,
)
from oidc_publish.identity import IdentityTokens, github_identity_token
from oidc_publish.index_urls import RESERVED_AUDIENCES, Index
from oidc_publish.network import (
    Answer,
    Pending,
    RetryPolicy,
    TooLarge,
    Transient,
    persist,
    send,
)
from oidc_publish.runner import log_quoted, md_code

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Reporter

# PyPI's tokens live 15 minutes; used when a mint answer leaves out `expires`, or gives a
# time no token plausibly lives to (in the past, or beyond a day).
DEFAULT_LIFETIME = 900.0
_PLAUSIBLE_LIFETIME = (1.0, 86_400.0)
# Seconds for one request to the burn endpoint; it is tried twice at most. A cancelled job
# has seconds before the runner kills it, and an unburned token still expires on its own.
BURN_DEADLINE = 5.0

M = TypeVar("M", bound=BaseModel)


class Credential(Protocol):
    username: str

    def lease(self, valid_for: float = 0.0) -> AbstractContextManager[str]:
        """A token valid for at least `valid_for` more seconds, held for one request."""

    def renew(self, stale: str) -> str | None:
        """A token to replace `stale`, which the index refused as expired; None if impossible."""

    def close(self) -> None:
        """No token is used after this: each one still alive is revoked where possible."""


class ApiToken:
    """A token the user gave: lent as it is, never renewed, never burned (PyPI's burn
    endpoint is for trusted publishing's tokens, and records a user's token sent there)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    @contextmanager
    def lease(self, valid_for: float = 0.0) -> Iterator[str]:
        yield self._password

    def renew(self, stale: str) -> None:
        return None

    def close(self) -> None:
        pass


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
    """The token exchange, and every token it mints until each is burned.

    `http` gives the HTTP client when first needed; `first_identity`, when given, is the
    identity token for the index's audience, asked for before this object could be made.
    """

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
        first_identity: Pending[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._http = http
        self._policy = policy
        self._reporter = reporter
        self._project = project
        self._identity = identity or github_identity_token(reporter, http)
        self._first_identity = first_identity
        self._clock = clock
        self._lock = threading.Lock()
        self._audience = index.known_audience
        self._token: str | None = None
        self._expires = 0.0
        self._renew_margin = 60.0
        self._held = _Held()
        self._closed = False
        self.claims: Claims | None = None

    def token(self, valid_for: float = 0.0) -> str:
        with self._lock:
            return self._current(valid_for)

    @contextmanager
    def lease(self, valid_for: float = 0.0) -> Iterator[str]:
        with self._lock:
            token = self._current(valid_for)
            self._held.take(token)
        try:
            yield token
        finally:
            with self._lock:
                done = self._held.give_back(token)
            if done:
                self._burn(token)

    def renew(self, stale: str) -> str:
        with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # another upload renewed it meanwhile
            token = self._mint()
        self._reporter.log("Minted a new upload token: the index refused the last as expired.")
        return token

    def close(self) -> None:
        with self._lock:
            alive = [*self._held.drain(), *([self._token] if self._token else [])]
            self._token = None
            self._closed = True
        for token in alive:
            self._burn(token)

    def audience(self) -> str:
        if self._audience is None:
            self._audience = ask_audience(self._index, self._http(), self._policy, self._reporter)
        return self._audience

    def _current(self, valid_for: float) -> str:
        """The token to hand out now (lock held): minted, or renewed when it would expire
        within the margin and `valid_for`."""
        if self._closed:
            # An upload abandoned by a cancellation may still ask: no token outlives close().
            raise Transient("the run is over; no new upload token is minted")
        if self._token is None:
            return self._mint()
        if self._expires - self._clock() < self._renew_margin + valid_for:
            self._reporter.log("Renewing the upload token before it expires.")
            return self._mint()
        return self._token

    def _identity_token(self) -> str:
        first, self._first_identity = self._first_identity, None
        if first is not None:
            try:
                return first.result()
            except Transient:
                pass  # this attempt asks again
        return self._identity(self.audience())

    def _mint(self) -> str:
        url = self._index.mint_url
        self.audience()  # before any identity token is asked for: it may be refused

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
            self._replace(minted.token)
            lifetime = _lifetime(minted.expires, minted_at, self._reporter)
            self._expires = minted_at + lifetime
            # Renew a minute ahead on PyPI's 15-minute tokens, proportionally on shorter ones.
            self._renew_margin = min(60.0, lifetime / 3)
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

    def _replace(self, token: str) -> None:
        """`token` is the one to hand out now (lock held); the one it replaces is burned by
        its last lease, or now if none holds it."""
        old, self._token = self._token, token
        if old is not None and self._held.replace(old):
            # Under the lock, as the mint was: one more short request before the others go on.
            self._burn(old)

    def _burn(self, token: str) -> None:
        burn(self._index, self._http(), self._reporter, token)


def ask_audience(index: Index, http: httpx.Client, policy: RetryPolicy, reporter: Reporter) -> str:
    """The audience an index other than PyPI and TestPyPI names at `/_/oidc/audience`: never
    one whose identity tokens PyPI, TestPyPI or Sigstore accept."""
    url = index.audience_url
    answer = persist(
        lambda: _send(http, "GET", url),
        policy,
        reporter,
        label="the audience endpoint",
        what=f"The audience endpoint ({index.host})",
        fix=_OUTAGE_FIX,
    )
    if answer.status == 403:
        raise TrustedPublishingUnavailable(
            f"{index.display_name} answered 403 at {url}: trusted publishing is disabled there "
            "(PyPI turns it off during incidents).",
            fix=f"Re-run later, checking {PYPI_STATUS_PAGE}, or pass an API token as `password`.",
        )
    if answer.status == 404:
        raise TrustedPublishingUnavailable(
            f"{url} answered 404: {index.host} does not offer trusted publishing.",
            fix="Check `repository-url`, or pass an API token for this index as `password`.",
        )
    audience = _parse(answer, _Audience, url).audience
    _refuse_reserved(index, audience)
    return audience


def burn(index: Index, http: httpx.Client, reporter: Reporter, token: str) -> None:
    """Revokes `token` at the index that minted it: two attempts at most, and quiet whatever
    happens. The token goes in the body only, as the endpoint takes it."""
    url = index.burn_url
    why = ""
    for last in (False, True):
        try:
            answer = send(http, "POST", url, json_body={"token": token}, deadline=BURN_DEADLINE)
        except Transient as failure:
            if not last:
                continue
            why = failure.reason
        except Exception as error:  # whatever it is, the burn decides nothing
            why = type(error).__name__
        else:
            if 200 <= answer.status < 300:
                reporter.log(f"Revoked the upload token at {index.host}.")
                return
            why = f"HTTP {answer.status}: {index.host} does not revoke tokens"
        reporter.debug(
            f"POST {url}: {log_quoted(why)}; the upload token was not revoked and expires on "
            "its own."
        )
        return


def _lifetime(expires: float | None, minted_at: float, reporter: Reporter) -> float:
    """Seconds a token minted at `minted_at` lives, by the index's `expires`; PyPI's 15
    minutes when it leaves it out or gives a time no token plausibly lives to."""
    lifetime = (expires - minted_at) if expires is not None else DEFAULT_LIFETIME
    low, high = _PLAUSIBLE_LIFETIME
    if not low <= lifetime <= high:
        reporter.debug(
            f"The index's `expires` is {lifetime:.0f} s from now; assuming PyPI's "
            f"{DEFAULT_LIFETIME:.0f} s instead."
        )
        lifetime = DEFAULT_LIFETIME
    return lifetime


class _Held:
    """Which tokens uploads hold now, and those a renewal replaced while uploads held them:
    each is burned once no upload holds it."""

    def __init__(self) -> None:
        self._count: Counter[str] = Counter()
        self._replaced: set[str] = set()

    def take(self, token: str) -> None:
        self._count[token] += 1

    def give_back(self, token: str) -> bool:
        """True when `token` was replaced and nothing holds it any more: burn it now."""
        self._count[token] -= 1
        if token in self._replaced and not self._count[token]:
            self._replaced.discard(token)
            return True
        return False

    def replace(self, token: str) -> bool:
        """True when nothing holds `token`, just replaced: burn it now; else its last
        holder does."""
        if self._count[token]:
            self._replaced.add(token)
            return False
        return True

    def drain(self) -> list[str]:
        """The replaced tokens still held (by uploads a cancellation abandoned)."""
        replaced, self._replaced = list(self._replaced), set()
        return replaced


def _refuse_reserved(index: Index, audience: str) -> None:
    """Another index may not ask for an identity token that PyPI, TestPyPI or Sigstore
    would accept: it could use it there, in this repository's name."""
    service = RESERVED_AUDIENCES.get(audience.strip().lower())
    if service is None:
        return
    use = (
        "get a signing certificate from Sigstore in this repository's name and sign "
        "anything as this workflow"
        if service == "Sigstore"
        else f"mint {service} upload tokens for this repository's projects"
    )
    raise ReservedAudience(
        f"{index.host} answered its audience endpoint with {md_code(audience)}, the audience "
        f"of {service}. An identity token for it is accepted by {service}: {index.host} could "
        f"use it to {use}. So no identity token was asked for.",
        fix=f"Ask the operator of {index.host} to give it an audience of its own (a "
        "self-hosted Warehouse sets it with `OIDC_AUDIENCE`), then re-run. If you meant "
        "PyPI or TestPyPI, set `repository-url` to `https://upload.pypi.org/legacy/` or "
        "`https://test.pypi.org/legacy/`.",
    )


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
