"""Fixtures: one local index for the session, reset for every test that uses it."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.localindex.clients import pip_install
from tests.localindex.proc import isolate_pip
from tests.localindex.runner import ActionRun, run_action
from tests.localindex.server import LocalIndex

# Tests import these from here.
__all__ = ["Run", "pip_install"]


class Run(Protocol):
    """The `run` fixture: run_action bound to the test's index and workspace."""

    def __call__(
        self,
        inputs: Mapping[str, str] | None = ...,
        *,
        env: Mapping[str, str | None] | None = ...,
        event: Mapping[str, Any] | None = ...,
        id_token: bool = ...,
        sigstore: bool = ...,
        python: str = ...,
        entrypoint: Path = ...,
        timeout: float = ...,
        meanwhile: Callable[[subprocess.Popen[str]], None] | None = ...,
    ) -> ActionRun: ...


@pytest.fixture(scope="session", autouse=True)
def _isolated_pip() -> Iterator[None]:
    """Any pip a test starts sees no machine-wide pip configuration."""
    saved = dict(os.environ)
    isolate_pip()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def local_index() -> Iterator[LocalIndex]:
    with LocalIndex() as index:
        yield index


@pytest.fixture
def index(local_index: LocalIndex) -> Iterator[LocalIndex]:
    """The session's index, fresh for this test.

    In-process runs leave work in background threads (an identity token asked for early, a
    request abandoned at its deadline); they are waited for, so none of their requests lands
    in the next test's log.
    """
    local_index.reset()
    before = set(threading.enumerate())
    yield local_index
    local_index.reset()  # ends requests the index was still holding
    for thread in set(threading.enumerate()) - before:
        if thread.daemon and thread.name != "localindex":
            thread.join(timeout=10)


@pytest.fixture
def signing(index: LocalIndex, monkeypatch: pytest.MonkeyPatch) -> LocalIndex:
    """The index, for tests that sign in process against its local Sigstore.

    sigstore-python talks through requests, which takes its CA bundle from os.environ's
    REQUESTS_CA_BUNDLE: set here to the index's CA, as run_action's environment sets it.
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(index.ca_pem))
    return index


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The checkout the action runs in, with an empty dist/."""
    workspace = tmp_path / "workspace"
    (workspace / "dist").mkdir(parents=True)
    return workspace


@pytest.fixture
def run(index: LocalIndex, workspace: Path) -> Run:
    """run_action bound to the test's index and workspace.

    Every run, passing or failing, is scanned for every secret the index handed out or was
    given (identity tokens, those for Sigstore included, the token-request bearer, minted and
    API tokens): none may appear anywhere a reader could see it. And every request it made
    is: each identity token went to the one endpoint its audience belongs to, and no
    credential anywhere but in the header or field that carries it. `sigstore=True` signs
    against the index's local Sigstore.
    """

    def scanned(inputs: Mapping[str, str] | None = None, **options: Any) -> ActionRun:
        result = run_action(index, workspace, inputs, **options)
        leaked = result.leaked(index)
        assert not leaked, f"{len(leaked)} secret(s) in the output: {result.all_text()}"
        misrouted = index.misrouted()
        assert not misrouted, f"credentials sent where they do not belong: {misrouted}"
        return result

    return scanned
