"""What a run carries from step to step, made once and handed to each, as twine's `Settings`
carries an upload.

`World` is what a run reads besides its environment (clocks, sleep, the identity tokens, its
deadline and stop); tests pass their own. `Target` is what the checks that need no library
establish before anything else: where the files go, whether trusted publishing is asked
for, the files there are. `Run` is the rest, once the inputs are read: every step of
cli.publish takes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from oidc_publish.errors import RUN_DEADLINE_MINUTES
from oidc_publish.report import Publication, Reporter
from oidc_publish.runner import RunnerContext, input_value
from oidc_publish.stop import Stop

if TYPE_CHECKING:
    import httpx

    from oidc_publish.identity import IdentityTokens
    from oidc_publish.index_urls import Index
    from oidc_publish.inputs import Inputs
    from oidc_publish.network import RetryPolicy


@dataclass(frozen=True)
class World:
    """What a run reads besides its environment; tests pass their own."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    identity: IdentityTokens | None = None
    """GitHub's identity tokens; None asks GitHub (identity.github_identity_token)."""
    run_deadline: float | None = RUN_DEADLINE_MINUTES * 60.0
    """Seconds the whole run may take; enforced with SIGALRM, so only in the main thread."""
    stop: Stop = field(default_factory=Stop)
    """The run's stop, set by SIGINT and SIGTERM (handled in the main thread); one per run."""


@dataclass(frozen=True)
class Target:
    """Where the files go and which files: all a run checks before any library loads or any
    request goes out."""

    index: Index
    trusted_publishing: bool
    """No `password` is given: the upload token comes from the token exchange."""
    paths: list[Path]

    @cached_property
    def named(self) -> list[tuple[str, str]]:
        """The releases the file names name (dists.named_releases), read once."""
        from oidc_publish.dists import named_releases

        return named_releases(self.paths)

    @property
    def project(self) -> str | None:
        """The first project the file names name: the one a refusal's link points at."""
        return self.named[0][0] if self.named else None

    @classmethod
    def read(cls, environ: Mapping[str, str], context: RunnerContext, reporter: Reporter) -> Target:
        """The checks that need no library: `repository-url`, the job's right to an identity
        token, a folder of distributions. A failure here makes no request at all."""
        from oidc_publish.dists import DEFAULT_FOLDER, locate
        from oidc_publish.identity import check_context
        from oidc_publish.index_urls import PYPI_UPLOAD, Index, checked_upload_url
        from oidc_publish.network import proxy_secrets

        for secret in proxy_secrets(environ):
            reporter.mask(secret)
        url = input_value(environ, "repository-url", old="repository_url") or PYPI_UPLOAD
        index = Index(checked_upload_url(url))
        trusted = not input_value(environ, "password")
        if trusted:
            check_context(context, index)
        folder = input_value(environ, "packages-dir", old="packages_dir") or DEFAULT_FOLDER
        return cls(index, trusted, locate(context.workspace / folder, context.workspace, reporter))


@dataclass(frozen=True)
class Run:
    """What every step is handed."""

    environ: Mapping[str, str]
    context: RunnerContext
    reporter: Reporter
    publication: Publication
    world: World
    target: Target
    policy: RetryPolicy
    inputs: Inputs
    http: httpx.Client

    @property
    def index(self) -> Index:
        return self.target.index

    def identity(self) -> IdentityTokens:
        """GitHub's identity tokens, for any audience."""
        from oidc_publish.identity import github_identity_token

        return self.world.identity or github_identity_token(self.reporter, lambda: self.http)
