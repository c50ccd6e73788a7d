"""GitHub's ID tokens, and PyPI's checks on them before it mints an upload token.

The checks follow warehouse (warehouse/oidc/views.py, services.py, models/github.py):
same order, same error codes, same wording, since the action explains failures by them.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, StrictStr, ValidationError

from tests.localindex import identity

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"

# warehouse's pattern: the workflow file is the last path segment ending in .yml or
# .yaml right before an "@" (either of which may also occur elsewhere in the ref).
_WORKFLOW_FILENAME = re.compile(r"[^/]+\.(yml|yaml)(?=@)")

_REQUIRED_CLAIMS = (
    "sub",
    "repository",
    "repository_owner",
    "repository_owner_id",
    "job_workflow_ref",
    "jti",
    "event_name",
    "ref",
    "sha",
)


@dataclass(frozen=True)
class Publisher:
    """A GitHub trusted publisher as configured on PyPI.

    `projects` names the projects its tokens may upload to; None allows any.
    """

    owner: str
    repository: str
    owner_id: str
    workflow: str
    environment: str | None = None
    projects: Collection[str] | None = None


def default_publisher() -> Publisher:
    return Publisher(
        identity.OWNER,
        identity.REPOSITORY_NAME,
        identity.OWNER_ID,
        identity.WORKFLOW_FILE,
        identity.ENVIRONMENT,
    )


class MintRefused(Exception):
    """A 422 from the mint endpoint: one error code and its description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class _NoPublisher(Exception):
    """The reason no publisher matched, worded as warehouse words it."""


class TokenPayload(BaseModel):
    """The mint request body; named as in warehouse, whose errors quote the name."""

    token: StrictStr


class Issuer:
    """GitHub's signing side: an RSA key made for this process, named by `kid`."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex

    def id_token(self, audience: str, claims: Mapping[str, str | int]) -> str:
        """Signs a token for `audience`; `claims` come last so tests can override any claim."""
        now = int(time.time())
        # Lifetimes as in the example token in GitHub's documentation.
        payload = {
            "iss": GITHUB_ISSUER,
            "aud": audience,
            "iat": now,
            "nbf": now - 600,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """warehouse's verify_jwt_signature; raises jwt.PyJWTError."""
        if jwt.get_unverified_header(token).get("kid") != self.kid:
            raise jwt.InvalidTokenError("no key with this kid")
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=audience,
            issuer=GITHUB_ISSUER,
            leeway=30,
            options={"require": ["iss", "iat", "exp", "aud"], "strict_aud": True},
        )


def verify(
    body: bytes,
    *,
    issuer: Issuer,
    audience: str,
    enabled: bool,
    publishers: Iterable[Publisher],
    used_jtis: Set[str],
) -> tuple[Publisher, str]:
    """Checks a mint request body; returns the matching publisher and the JWT's jti.

    Raises MintRefused with the first error PyPI would report.
    """
    try:
        token = TokenPayload.model_validate_json(body).token
    except ValidationError as exc:
        raise MintRefused("invalid-payload", str(exc)) from None
    try:
        unverified_issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
    except (jwt.PyJWTError, KeyError):
        raise MintRefused("invalid-payload", "malformed JWT") from None
    if unverified_issuer != GITHUB_ISSUER:
        raise MintRefused("invalid-payload", "unknown trusted publishing issuer")
    if not enabled:
        raise MintRefused("not-enabled", "github trusted publishing functionality not enabled")
    try:
        claims = issuer.verify(token, audience)
    except jwt.PyJWTError:
        raise MintRefused("invalid-token", "malformed or invalid token") from None
    try:
        return _find_publisher(claims, publishers, used_jtis), str(claims["jti"])
    except _NoPublisher as exc:
        raise MintRefused(
            "invalid-publisher", f"valid token, but no corresponding publisher ({exc})"
        ) from None


def _find_publisher(
    claims: Mapping[str, Any], publishers: Iterable[Publisher], used_jtis: Set[str]
) -> Publisher:
    for name in _REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise _NoPublisher(f"Missing claim {name!r}")
    owner, _, name = str(claims["repository"]).partition("/")
    workflow = _WORKFLOW_FILENAME.search(str(claims["job_workflow_ref"]))
    if workflow is None:
        raise _NoPublisher("Could not job extract workflow filename from OIDC claims")
    candidates = [
        publisher
        for publisher in publishers
        if publisher.owner.lower() == owner.lower()
        and publisher.repository.lower() == name.lower()
        and publisher.owner_id == claims["repository_owner_id"]
        and publisher.workflow == workflow.group(0)
    ]
    # The most specific publisher wins: one bound to the token's environment, else one
    # bound to none. Choosing by environment here is why warehouse's later "Check failed
    # for optional claim 'environment'" cannot happen: a mismatch is "not found".
    environment = str(claims.get("environment") or "").lower()
    publisher = next(
        (p for p in candidates if environment and (p.environment or "").lower() == environment),
        None,
    ) or next((p for p in candidates if not p.environment), None)
    if publisher is None:
        raise _NoPublisher("Publisher with matching claims was not found")
    _verify_claims(publisher, claims, used_jtis)
    return publisher


def _verify_claims(publisher: Publisher, claims: Mapping[str, Any], used_jtis: Set[str]) -> None:
    """GitHubPublisher.verify_claims, its checks in their declared order."""
    repository = f"{publisher.owner}/{publisher.repository}"
    sub = str(claims["sub"]).split(":")[:2]
    if len(sub) < 2 or not all(sub) or ":".join(sub).lower() != f"repo:{repository}".lower():
        raise _NoPublisher("Check failed for required claim 'sub'")
    if str(claims["repository"]).lower() != repository.lower():
        raise _NoPublisher("Check failed for required claim 'repository'")
    if claims["repository_owner"] != publisher.owner:
        raise _NoPublisher("Check failed for required claim 'repository_owner'")
    if claims["repository_owner_id"] != publisher.owner_id:
        raise _NoPublisher("Check failed for required claim 'repository_owner_id'")
    refs = [ref for ref in (claims["ref"], claims["sha"]) if ref]
    if not refs:
        raise _NoPublisher("The ref and sha claims are empty")
    expected = {f"{repository}/.github/workflows/{publisher.workflow}@{ref}" for ref in refs}
    if claims["job_workflow_ref"] not in expected:
        raise _NoPublisher(
            "The job_workflow_ref claim does not match, expecting one of "
            f"{sorted(expected)!r}, got {claims['job_workflow_ref']!r}"
        )
    if claims["jti"] in used_jtis:
        raise MintRefused("invalid-reuse-token", "invalid token: already used")
    if claims["event_name"] == "pull_request_target":
        raise _NoPublisher(
            "Publishing from a workflow invoked via 'pull_request_target' is not supported."
        )
