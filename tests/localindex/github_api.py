"""GitHub's REST API for a repository's attestation store, written from its documentation.

"Create an attestation", `POST /repos/{owner}/{repo}/attestations` (REST API version
2022-11-28), as `GitHubApi.create_attestation` answers it:

- `X-GitHub-Api-Version`, when sent, must be 2022-11-28: 400 otherwise.
- `Authorization: Bearer <token>` (GitHub also takes `token <token>`) with a token `issue()`
  made: 401 `Bad credentials` otherwise.
- The repository must be the token's, the workflow's own (identity.py): 404 `Not Found`
  otherwise, as GitHub hides what a token cannot see.
- The token must carry the permission `attestations: write`: 403 `Resource not accessible by
  integration` otherwise, GitHub's words for a GITHUB_TOKEN without the permission.
- The body must be a JSON object (400 `Problems parsing JSON`) whose `bundle` is a Sigstore
  bundle that verifies against the trusted root GitHub trusts, here the local Sigstore's: its
  certificate chains to the root, its DSSE signature holds, its transparency-log entry is
  proven, and it envelops an in-toto statement. 422 otherwise, as GitHub answers a bundle it
  cannot validate.
- 201 `{"id": N}`, ids counting up from 1; the attestation is kept in `stored`.

Every answer is JSON with `message`, `documentation_url` and `status`, as GitHub's errors are.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

from tests.localindex import identity

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

API_VERSION = "2022-11-28"
PERMISSION = ("attestations", "write")
CREATE_ATTESTATION_DOCS = "https://docs.github.com/rest/repos/attestations#create-an-attestation"
IN_TOTO = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Token:
    """A GITHUB_TOKEN: the repository it is for and the job's permissions."""

    repository: str
    permissions: Mapping[str, str]


@dataclass(frozen=True)
class StoredAttestation:
    id: int
    repository: str
    bundle: dict[str, Any]
    """The bundle as it was sent: what `gh attestation verify` would download."""


class GitHubApi:
    """The attestation store of every repository, and the tokens that may write to it."""

    def __init__(self, trust_config: Path) -> None:
        self._trust_config = trust_config
        self._lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.stored: list[StoredAttestation] = []

    def reset(self) -> None:
        with self._lock:
            self.tokens.clear()
            self.stored.clear()

    def issue(self, permissions: Mapping[str, str], repository: str = identity.REPOSITORY) -> str:
        """A new installation token (`ghs_...`), as the runner hands each job its GITHUB_TOKEN."""
        token = "ghs_" + token_urlsafe(27)
        with self._lock:
            self.tokens[token] = Token(repository, dict(permissions))
        return token

    def create_attestation(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer to `POST <path>`; see the module docstring."""
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        with self._lock:
            token = self.tokens.get(credential) if scheme.lower() in ("bearer", "token") else None
        refused = _refusal(path, headers, token)
        if refused is not None:
            return refused
        try:
            request = json.loads(body)
        except ValueError:
            return _error(400, "Problems parsing JSON")
        bundle = request.get("bundle") if isinstance(request, dict) else None
        if not isinstance(bundle, dict):
            return _error(422, 'Invalid request.\n\n"bundle" wasn\'t supplied.')
        why = self._invalid(bundle)
        if why:
            return _error(422, f"Invalid bundle: {why}")
        assert token is not None
        with self._lock:
            stored = StoredAttestation(len(self.stored) + 1, token.repository, bundle)
            self.stored.append(stored)
        return 201, {"id": stored.id}

    def _invalid(self, bundle: dict[str, Any]) -> str:
        """Why the bundle does not verify against the trusted root; "" when it does."""
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle, ClientTrustConfig
        from sigstore.verify import Verifier

        config = ClientTrustConfig.from_json(self._trust_config.read_text(encoding="utf-8"))
        try:
            parsed = Bundle.from_json(json.dumps(bundle))
            payload_type, payload = Verifier(trusted_root=config.trusted_root).verify_dsse(
                parsed, AnySigner()
            )
        except (SigstoreError, ValueError, KeyError, TypeError) as error:
            return f"{type(error).__name__}: {error}"
        if payload_type != IN_TOTO:
            return f"the envelope holds {payload_type}, not an in-toto statement"
        try:
            statement = json.loads(payload)
        except ValueError:
            return "the envelope's statement is not JSON"
        if not isinstance(statement, dict) or not statement.get("subject"):
            return "the in-toto statement names no subject"
        return ""


class AnySigner:
    """The store's signer policy: any certificate the trusted root issued.

    Whose workflow signed a bundle is for whoever verifies it (`gh attestation verify`), not
    for the store. sigstore's `policy.UnsafeNoOp` accepts the same, but logs a warning for
    every bundle, as it should for a verifier that forgot its policy; this one says why.
    """

    def verify(self, cert: Certificate) -> None:
        return None


def _refusal(
    path: str, headers: Mapping[str, str], token: Token | None
) -> tuple[int, dict[str, Any]] | None:
    """GitHub's answer to a request it refuses before reading the body; None if it reads on."""
    version = headers.get("X-Github-Api-Version")
    if version is not None and version != API_VERSION:
        return _error(400, f"Unsupported 'X-GitHub-Api-Version': '{version}'")
    if token is None:
        return _error(401, "Bad credentials")
    parts = path.strip("/").split("/")
    if len(parts) != 4 or "/".join(parts[1:3]).lower() != token.repository.lower():
        return _error(404, "Not Found")
    if token.permissions.get(PERMISSION[0]) != PERMISSION[1]:
        return _error(403, "Resource not accessible by integration")
    return None


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "message": message,
        "documentation_url": CREATE_ATTESTATION_DOCS,
        "status": str(status),
    }


GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


class NotVerified(Exception):
    """What `gh attestation verify` would fail with."""


def verify_stored(
    stored: Sequence[StoredAttestation], paths: Sequence[Path], trust_config: Path
) -> None:
    """Each file in `paths` has its bundle in `stored`, in order, and each passes what
    `gh attestation verify --repo <the workflow's repository>` checks."""
    from tests.localindex import identity
    from tests.localindex.dists import sha256
    from tests.localindex.sigstore import PUBLISH_V1

    assert len(stored) == len(paths), f"{len(stored)} stored for {len(paths)} files"
    for bundle, path in zip(stored, paths, strict=True):
        gh_attestation_verify(
            bundle.bundle,
            trust_config=trust_config,
            repository=identity.REPOSITORY,
            predicate_type=PUBLISH_V1,
            sha256=sha256(path),
        )


def gh_attestation_verify(
    bundle: Mapping[str, Any],
    *,
    trust_config: Path,
    repository: str,
    predicate_type: str,
    sha256: str,
) -> dict[str, Any]:
    """The checks `gh attestation verify <file> --repo <repository> --predicate-type <type>`
    makes of one stored bundle, with sigstore-python's verifier; returns the in-toto statement.

    gh's policy for `--repo`: the certificate was issued for GitHub Actions' token issuer, its
    Source Repository URI extension is the repository, its SAN (the signing workflow) lies
    under the repository; the statement's predicate type is the one asked for, and one of its
    subjects has the file's sha256. Raises NotVerified naming the first check that fails.
    """
    from cryptography import x509
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.verify import Verifier, policy

    source = f"https://github.com/{repository}"

    class SignerUnderRepository:
        """gh's `Subject Alternative Name must match regex: (?i)^https://github.com/<repo>/`."""

        def verify(self, cert: x509.Certificate) -> None:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
            if not any(uri.lower().startswith(f"{source}/".lower()) for uri in uris):
                raise NotVerified(f"no SAN under {source}/: {uris}")

    config = ClientTrustConfig.from_json(trust_config.read_text(encoding="utf-8"))
    identity = policy.AllOf(
        [
            policy.OIDCIssuerV2(GITHUB_ISSUER),
            policy.OIDCSourceRepositoryURI(source),
            SignerUnderRepository(),
        ]
    )
    try:
        payload_type, payload = Verifier(trusted_root=config.trusted_root).verify_dsse(
            Bundle.from_json(json.dumps(bundle)), identity
        )
    except SigstoreError as error:
        raise NotVerified(f"{type(error).__name__}: {error}") from None
    if payload_type != IN_TOTO:
        raise NotVerified(f"payload type {payload_type}")
    statement: dict[str, Any] = json.loads(payload)
    if statement.get("predicateType") != predicate_type:
        raise NotVerified(f"predicate type {statement.get('predicateType')}, not {predicate_type}")
    digests = [subject.get("digest", {}).get("sha256") for subject in statement["subject"]]
    if sha256 not in digests:
        raise NotVerified(f"no subject has sha256 {sha256}: {digests}")
    return statement
