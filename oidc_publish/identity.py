"""The job's GitHub identity token: the one request a run may make before its inputs are read.

Trusted publishing's longest wait is a chain: GitHub's identity token, then the index's mint.
The first link goes to GitHub alone, so it may start before the inputs are validated; a bad
input drops the token unused. Nothing here imports pydantic, httpx or twine, so the request
is under way while they load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from oidc_publish.errors import IdTokenUnavailable, MissingIdTokenPermission
from oidc_publish.network import REQUEST_DEADLINE, Pending, Transient, is_transient_status, within

if TYPE_CHECKING:
    from oidc_publish.report import Reporter

PERMISSION_YAML = """\
```yaml
jobs:
  publish:
    permissions:
      id-token: write   # trusted publishing
      contents: read    # only if the job checks out the repository
```"""

IdentityTokens = Callable[[str], str]
"""Gets a GitHub identity token for an audience; raises `Transient` when asking again may help."""


def github_identity_token(reporter: Reporter) -> IdentityTokens:
    """The job's identity token from GitHub, through `id`, masked the moment it exists."""

    def fetch(audience: str) -> str:
        import id as oidc_id

        reporter.debug(f"Requesting a GitHub identity token for the audience {audience!r}")
        try:
            token = within(
                REQUEST_DEADLINE, lambda: oidc_id.detect_credential(audience), "identity token"
            )
        except oidc_id.GitHubOidcPermissionCredentialError:
            raise missing_permission() from None
        except oidc_id.AmbientCredentialError as error:
            # `id` reports the status only in its message, with the body after it: only the
            # status is taken, the body is the server's text. Pinned by the lock, and tested.
            text = str(error)
            status = re.search(r"code=(\d{3})", text)
            if "timed out" in text or (status and is_transient_status(int(status.group(1)))):
                code = f"HTTP {status.group(1)}" if status else "timed out"
                raise Transient(f"GitHub identity token: {code}") from None
            raise IdTokenUnavailable(
                "GitHub refused the identity token request"
                + (f" with HTTP {status.group(1)}." if status else "."),
                fix="Re-run the job; if it fails again, check https://www.githubstatus.com/.",
            ) from None
        if token is None:
            raise IdTokenUnavailable(
                "No GitHub Actions identity provider was found (GITHUB_ACTIONS is not set).",
                fix="Run this action in a GitHub Actions job.",
            )
        reporter.mask(token)
        return token

    return fetch


def ask_early(tokens: IdentityTokens, environ: Mapping[str, str]) -> IdentityTokens:
    """`tokens`, with the token for the audience PyPI (or TestPyPI) names asked for now.

    Only when the job may ask and no API token is given; the first call for that audience
    takes the early token, every other call asks anew (PyPI accepts a token once).
    """
    permitted = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL") and environ.get(
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
    )
    if not permitted or environ.get("INPUT_PASSWORD", "").strip():
        return tokens
    url = environ.get("INPUT_REPOSITORY_URL") or environ.get("INPUT_REPOSITORY-URL") or ""
    audience = "testpypi" if "test.pypi.org" in url.lower() else "pypi"
    early: list[Pending[str]] = [Pending(lambda: tokens(audience), "early identity token")]

    def tokens_for(wanted: str) -> str:
        if wanted == audience and early:
            return early.pop().result()
        return tokens(wanted)

    return tokens_for


def missing_permission() -> MissingIdTokenPermission:
    return MissingIdTokenPermission(
        "Trusted publishing needs an identity token, and this job may not request one: "
        "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set.",
        fix="Give the publishing job `permissions: id-token: write` (job level; a job-level "
        "`permissions:` replaces the workflow's, so list `contents: read` too if the job "
        "checks out code). Or pass an API token as `password`.",
        details=PERMISSION_YAML,
    )
