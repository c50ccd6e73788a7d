"""The job's GitHub identity token, and whether this job may have one at all.

Nothing here imports pydantic, httpx or twine: the checks run, and the token exchange starts,
while they load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from oidc_publish.errors import (
    EnterpriseServer,
    ForkPullRequest,
    IdTokenUnavailable,
    MissingIdTokenPermission,
    PullRequestTarget,
)
from oidc_publish.network import REQUEST_DEADLINE, Transient, is_transient_status, within
from oidc_publish.runner import md_code

if TYPE_CHECKING:
    from oidc_publish.index_urls import Index
    from oidc_publish.report import Reporter
    from oidc_publish.runner import RunnerContext

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


def missing_permission() -> MissingIdTokenPermission:
    return MissingIdTokenPermission(
        "Trusted publishing needs an identity token, and this job may not request one: "
        "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set.",
        fix="Give the publishing job `permissions: id-token: write` (job level; a job-level "
        "`permissions:` replaces the workflow's, so list `contents: read` too if the job "
        "checks out code). Or pass an API token as `password`.",
        details=PERMISSION_YAML,
    )


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
