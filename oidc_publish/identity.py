"""The job's GitHub identity token, and whether this job may have one at all.

Nothing here imports pydantic, httpx or twine: the checks run, and the token exchange starts,
while they load.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from oidc_publish.errors import (
    EnterpriseServer,
    ForkPullRequest,
    IdTokenUnavailable,
    MissingIdTokenPermission,
    PullRequestTarget,
)
from oidc_publish.network import (
    REQUEST_DEADLINE,
    Transient,
    connection_failure,
    is_transient_status,
    proxy_for,
    send,
    within,
)
from oidc_publish.runner import md_code

if TYPE_CHECKING:
    import httpx

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

_RETRY_FIX = "Re-run the job; if it fails again, check https://www.githubstatus.com/."

IdentityTokens = Callable[[str], str]
"""Gets a GitHub identity token for an audience; raises `Transient` when asking again may help."""


def github_identity_token(
    reporter: Reporter,
    http: Callable[[], httpx.Client],
    environ: Mapping[str, str] = os.environ,
    *,
    asking: threading.Event | None = None,
) -> IdentityTokens:
    """The job's identity token from GitHub, masked the moment it exists.

    `id` asks for it, as on every runner that reaches GitHub directly. Its request goes
    through urllib3's own pool, which no proxy variable reaches; where a proxy applies to
    GitHub's token endpoint, the same request goes through `http`, the action's own client,
    which honours the runner's proxy variables as every other request does. `asking` is
    set once what a request needs is imported and it is about to go out.
    """
    url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    ask = (
        _through_id if proxy_for(url, environ) is None else partial(_through_client, http, environ)
    )
    if ask is _through_id:
        # id imports urllib3 when it first asks: imported here, in the caller's thread, so
        # that the request goes out at once.
        import urllib3  # noqa: F401

    def fetch(audience: str) -> str:
        reporter.debug(f"Requesting a GitHub identity token for the audience {audience!r}")
        if asking is not None:
            asking.set()
        token = ask(audience)
        reporter.mask(token)
        return token

    return fetch


def _through_id(audience: str) -> str:
    import id as oidc_id

    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    try:
        token = within(
            REQUEST_DEADLINE, lambda: oidc_id.detect_credential(audience), "identity token"
        )
    except oidc_id.GitHubOidcPermissionCredentialError:
        raise missing_permission() from None
    except oidc_id.AmbientCredentialError as error:
        # `id` says "timed out" for any failure to connect; what failed is in the urllib3
        # error it was raised from.
        failure = connection_failure(error, url)
        if failure is not None:
            raise failure from None
        # `id` reports the status only in its message, with the body after it: only the
        # status is taken, the body is the server's text. Pinned by the lock, and tested.
        text = str(error)
        status = re.search(r"code=(\d{3})", text)
        if "timed out" in text or (status and is_transient_status(int(status.group(1)))):
            code = f"HTTP {status.group(1)}" if status else "timed out"
            raise Transient(f"GitHub identity token: {code}") from None
        raise _refused(status.group(1) if status else None) from None
    if token is None:
        raise IdTokenUnavailable(
            "No GitHub Actions identity provider was found (GITHUB_ACTIONS is not set).",
            fix="Run this action in a GitHub Actions job.",
        )
    return token


def _through_client(
    http: Callable[[], httpx.Client], environ: Mapping[str, str], audience: str
) -> str:
    """The request `id` makes, made with the action's own client: GitHub's token endpoint,
    the audience added to its query, the job's request token as a bearer token."""
    import id as oidc_id

    url = environ["ACTIONS_ID_TOKEN_REQUEST_URL"]
    bearer = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), ("audience", audience)])
    answer = send(
        http(),
        "GET",
        urlunsplit(parts._replace(query=query)),
        headers={"Authorization": f"Bearer {bearer}"},
    )
    if answer.status != 200:
        raise _refused(str(answer.status))
    body = answer.json()
    token = body.get("value") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise IdTokenUnavailable(
            "GitHub's token endpoint answered without an identity token.",
            fix=_RETRY_FIX,
        )
    # Checked as `id` checks what it gets: a JWT for the audience asked for.
    try:
        claims = json.loads(oidc_id.decode_oidc_token(token)[1])
    except (ValueError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict) or claims.get("aud") != audience:
        raise IdTokenUnavailable(
            f"GitHub's token endpoint answered with a token that is not for the audience "
            f"{md_code(audience)}.",
            fix=_RETRY_FIX,
        )
    return token


def _refused(status: str | None) -> IdTokenUnavailable:
    return IdTokenUnavailable(
        "GitHub refused the identity token request" + (f" with HTTP {status}." if status else "."),
        fix=_RETRY_FIX,
    )


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
