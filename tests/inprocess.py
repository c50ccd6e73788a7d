"""What the in-process tests of the network, the credential, the uploader and the signing
share.

A reporter whose log a test can read and wait on, a sleep that records instead of
sleeping, a clock a test moves by hand, the action's own objects pointed at the local
index, its signing pointed at the index's Sigstore, and the provenance PyPI serves for
what the default publisher attested. Nothing here sleeps: tests wait on what the code
under test says it did.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import httpx

from oidc_publish.attest import TRUST_CONFIG_VARIABLE, File, sign_all
from oidc_publish.credentials import TrustedPublishing
from oidc_publish.dists import Distribution, load
from oidc_publish.index import IndexClient
from oidc_publish.index_urls import Index
from oidc_publish.network import RetryPolicy, client
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from tests.localindex import clients, identity
from tests.localindex.dists import sha256
from tests.localindex.runner import github_env, input_env
from tests.localindex.server import Fault, LocalIndex

# Far longer than any wait a passing test makes; a broken one fails instead of hanging.
PATIENCE = 30.0

UNAVAILABLE = Fault.status(503, "Service Unavailable", headers={"Retry-After": "0"})

SIGNING_POLICY = RetryPolicy(attempts=4, base=1.0, cap=30.0, budget=120.0, sleep=lambda _: None)
"""attest()'s retries: four attempts, each wait returning at once (replace `sleep` to see
them)."""


class Journal(Reporter):
    """A reporter writing to memory, whose lines a test can read, wait on and react to."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.stream = io.StringIO()
        super().__init__(RunnerContext.from_env({}), self.stream, verbose=verbose)
        self._changed = threading.Condition()
        self._lines: list[str] = []
        self._reactions: list[tuple[Callable[[str], bool], Callable[[], None]]] = []

    def log(self, text: str) -> None:
        super().log(text)
        self._note(text)

    def debug(self, text: str) -> None:
        super().debug(text)
        self._note(text)

    def on(self, line: Callable[[str], bool], then: Callable[[], None]) -> None:
        """Calls `then` (in the logging thread, before it goes on) the first time a line
        logged or debugged satisfies `line`."""
        with self._changed:
            self._reactions.append((line, then))

    def wait_for(self, condition: Callable[[list[str]], bool]) -> None:
        """Blocks until the lines logged so far satisfy `condition`."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self._lines), PATIENCE):
                raise AssertionError(f"never logged what was awaited; the log:\n{self.text()}")

    @property
    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def text(self) -> str:
        return self.stream.getvalue()

    def _note(self, text: str) -> None:
        with self._changed:
            self._lines.append(text)
            due = [pair for pair in self._reactions if pair[0](text)]
            for pair in due:
                self._reactions.remove(pair)
            self._changed.notify_all()
        for _, then in due:
            then()


def uploaded(filename: str) -> Callable[[str], bool]:
    """Matches the uploader's line for `filename` once it is done."""
    return lambda line: line.startswith(f"{filename}: ")


@dataclass
class Sleeps:
    """A policy's sleep: records each wait and returns at once."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Clock:
    """A clock that moves only when a test moves it."""

    now: float

    def __call__(self) -> float:
        return self.now


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def runner_environ(index: LocalIndex, workspace: Path, inputs: Mapping[str, str]) -> dict[str, str]:
    """The environment the runner hands the action, for `cli.main` in-process: the job's
    variables, its outputs and summary files beside `workspace`, the index's CA, GitHub's
    identity-token variables and API (the index), and the inputs over action.yml's
    defaults, `github-token` a GITHUB_TOKEN the index issued."""
    return {
        **github_env(),
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(workspace.parent / "outputs"),
        "GITHUB_STEP_SUMMARY": str(workspace.parent / "summary"),
        "GITHUB_API_URL": index.url,
        "SSL_CERT_FILE": str(index.ca_pem),
        "REQUESTS_CA_BUNDLE": str(index.ca_pem),
        "ACTIONS_ID_TOKEN_REQUEST_URL": index.id_token_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": index.id_token_request_token,
        **input_env(
            {"repository-url": index.upload_url, **inputs}, github_token=index.github_token()
        ),
    }


def policy(sleeps: Sleeps, **changes: Any) -> RetryPolicy:
    """The production policy, sleeping into `sleeps`, on a clock that never moves by itself."""
    return replace(RetryPolicy(sleep=sleeps, clock=Clock(0.0)), **changes)


def http_client(index: LocalIndex, reporter: Reporter) -> httpx.Client:
    """The action's own HTTP client, trusting the index's CA as a job would make it."""
    return client(reporter.debug, {"SSL_CERT_FILE": str(index.ca_pem)})


class Identity:
    """The identity callable trusted publishing is handed: GitHub tokens from the index."""

    def __init__(self, index: LocalIndex) -> None:
        self._index = index
        self.audiences: list[str] = []

    def __call__(self, audience: str) -> str:
        self.audiences.append(audience)
        return clients.id_token(self._index, audience)


def trusted_publishing(
    index: LocalIndex,
    reporter: Reporter,
    http: httpx.Client,
    sleeps: Sleeps,
    *,
    clock: Callable[[], float] | None = None,
    project: str | None = "sample-project",
    **policy_changes: Any,
) -> TrustedPublishing:
    return TrustedPublishing(
        index=Index(index.upload_url),
        http=lambda: http,
        policy=policy(sleeps, **policy_changes),
        reporter=reporter,
        project=project,
        identity=Identity(index),
        clock=clock or time.time,
    )


def index_client(
    index: LocalIndex, reporter: Reporter, http: httpx.Client, sleeps: Sleeps
) -> IndexClient:
    return IndexClient(Index(index.upload_url), http, policy(sleeps), reporter)


def distributions(paths: list[Path], workspace: Path) -> list[Distribution]:
    """The files as the action reads them before uploading, in their releases' order."""
    releases = load(
        paths,
        workspace=workspace,
        verify_metadata=False,
        pypi_rules=False,
        reporter=Journal(),
    )
    return [dist for release in releases for dist in release.files]


class _GatedPackage:
    """A twine PackageFile whose form is not ready until `before()` returns."""

    def __init__(self, package: object, before: Callable[[], None]) -> None:
        self._package = package
        self._before = before

    def metadata_dictionary(self) -> Any:
        self._before()
        return cast("Any", self._package).metadata_dictionary()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._package, name)


def gated(dist: Distribution, before: Callable[[], None]) -> Distribution:
    """`dist`, whose upload starts only once `before()` returns: makes one file late without
    a timer, so which file finishes last is decided by the test, not the scheduler."""
    return replace(dist, package=cast("Any", _GatedPackage(dist.package, before)))


def secret_lines(text: str, secrets: list[str]) -> list[str]:
    """Lines that show a secret anywhere but in the command that masks it."""
    return [
        line
        for line in text.splitlines()
        if not line.startswith("::add-mask::") and any(s and s in line for s in secrets)
    ]


def attest(index: LocalIndex, paths: Sequence[Path], **options: Any) -> dict[str, dict[str, Any]]:
    """`paths` signed as the action signs them (sign_all), against the index's Sigstore.

    By default: identity tokens for the audience `sigstore` from the index's token endpoint,
    the index's Sigstore trust config, SIGNING_POLICY and a fresh Journal; `options` replace
    any of these or set sign_all's others (workers, clock, renew_margin). sigstore-python
    must trust the index's CA (the `signing` fixture).
    """
    arguments: dict[str, Any] = {
        "identity_token": lambda: clients.id_token(index, "sigstore"),
        "environ": {TRUST_CONFIG_VARIABLE: str(index.sigstore_trust_config)},
        "policy": SIGNING_POLICY,
        "reporter": Journal(),
    }
    files = [File(path, sha256(path)) for path in paths]
    return sign_all(files, **(arguments | options))


def default_provenance(attestations: list[Any]) -> dict[str, Any]:
    """The Integrity API's provenance for a file the default publisher attested, as PyPI
    answers it: written out here, not built by the code under test."""
    return {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": "GitHub",
                    "repository": identity.REPOSITORY,
                    "workflow": identity.WORKFLOW_FILE,
                    "environment": identity.ENVIRONMENT,
                },
                "attestations": attestations,
            }
        ],
    }
