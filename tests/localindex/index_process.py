"""A LocalIndex in a process of its own, driven through a pipe: the benchmark's index.

In a thread of the benchmark's process the index's TLS, parsing, hashing and storing wait
for that process's GIL; in a process of its own they compete for the machine's cores as
any other process does, so a client that burns more CPU leaves the index less, and pays
for it in its own wall time.

`IndexProcess` starts the child (`python -m tests.localindex.index_process FD`: a fresh
interpreter that imports this module and what it needs, not the parent's main module, and
inherits its end of the pipe as FD) and offers what a run against the index needs
(runner.Index: where it is, the CA to trust, the job's tokens, and its secrets afterwards),
the settings a benchmark changes and what it reads back. Each call is one round trip: the
child makes it on its LocalIndex through `Control`, whose methods name the requests, and
answers with the result or the traceback, raised here as IndexProcessError. The child ends
when the pipe closes (the parent done or gone) or on SIGTERM, removing the index's files
either way; a Ctrl-C is the parent's to handle.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Concatenate, ParamSpec, TypeVar, cast

from tests.localindex.server import LocalIndex
from tests.localindex.service import IndexAddresses, Service

__all__ = ["Control", "IndexProcess", "IndexProcessError"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_START_TIMEOUT = 60.0
_ROOT = Path(__file__).resolve().parents[2]


class IndexProcessError(Exception):
    """A request the child failed (the message is its traceback), or the child is gone."""


class Control:
    """What the child does on its LocalIndex: one method per request the parent can make."""

    def __init__(self, index: LocalIndex) -> None:
        self._index = index

    def place(self) -> tuple[str, Path, Path, str]:
        """Where the index is, its CA, the client trust config naming its Sigstore, and the
        proxy that reaches it by PyPI's names."""
        index = self._index
        return index.url, index.ca_pem, index.sigstore_trust_config, index.proxy.url

    def reset(self) -> None:
        self._index.reset()

    def set_latency(self, latency: dict[str, float]) -> None:
        self._index.latency = latency

    def set_file_size_limit(self, limit: int | None) -> None:
        self._index.file_size_limit = limit

    def add_api_token(self, token: str) -> None:
        self._index.api_tokens.add(token)

    def id_token_request_token(self) -> str:
        return self._index.id_token_request_token

    def github_token(self) -> str:
        return self._index.github_token()

    def secrets(self) -> list[str]:
        return self._index.secrets()

    def files(self) -> dict[str, str]:
        return self._index.files()

    def rekor_entries(self) -> int:
        return self._index.sigstore.entries

    def attested(self, filenames: list[str]) -> list[str]:
        """Those of `filenames` whose provenance the index holds."""
        return [name for name in filenames if self._index.sigstore.provenances.has(name)]


class IndexProcess(Service, IndexAddresses):
    """The child's LocalIndex, as a context manager; see the module docstring."""

    url: str
    ca_pem: Path
    sigstore_trust_config: Path
    proxy_url: str
    _process: subprocess.Popen[bytes]
    _pipe: Connection

    def start(self) -> IndexProcess:
        ours, theirs = socket.socketpair()
        with theirs:
            fd = theirs.fileno()
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(fd)], pass_fds=[fd], cwd=_ROOT
            )
        self._pipe = Connection(ours.detach())
        if not self._pipe.poll(_START_TIMEOUT):
            self.stop()
            raise IndexProcessError(f"the index's process did not start in {_START_TIMEOUT} s")
        place = cast("tuple[str, Path, Path, str]", self._answer())  # Control.place(), unasked
        self.url, self.ca_pem, self.sigstore_trust_config, self.proxy_url = place
        return self

    def stop(self) -> None:
        self._pipe.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            self._process.wait()

    @property
    def id_token_request_token(self) -> str:
        """The job's token for GitHub's ID-token endpoint: a new one after every reset."""
        return self._call(Control.id_token_request_token)

    def github_token(self) -> str:
        return self._call(Control.github_token)

    def secrets(self) -> list[str]:
        return self._call(Control.secrets)

    def reset(self) -> None:
        """LocalIndex.reset(): empty storage, no state, default settings."""
        self._call(Control.reset)

    def set_latency(self, latency: Mapping[str, float]) -> None:
        """LocalIndex.latency: seconds each request to an endpoint waits, by name."""
        self._call(Control.set_latency, dict(latency))

    def set_file_size_limit(self, limit: int | None) -> None:
        """LocalIndex.file_size_limit: None lifts PyPI's per-file limit."""
        self._call(Control.set_file_size_limit, limit)

    def add_api_token(self, token: str) -> None:
        """A static API token: never expires, may upload any project."""
        self._call(Control.add_api_token, token)

    def files(self) -> dict[str, str]:
        """The stored distributions: filename -> sha256."""
        return self._call(Control.files)

    def rekor_entries(self) -> int:
        """Entries the local Sigstore's Rekor has made since the last reset."""
        return self._call(Control.rekor_entries)

    def attested(self, filenames: list[str]) -> list[str]:
        """Those of `filenames` whose provenance the index holds."""
        return self._call(Control.attested, filenames)

    def _call(
        self, request: Callable[Concatenate[Control, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        try:
            self._pipe.send((request.__name__, args, kwargs))
        except OSError as error:
            raise self._gone() from error
        return cast("_T", self._answer())

    def _answer(self) -> object:
        try:
            done, value = self._pipe.recv()
        except (EOFError, OSError) as error:
            raise self._gone() from error
        if not done:
            raise IndexProcessError(f"the index's process failed a request:\n{value}")
        return value

    def _gone(self) -> IndexProcessError:
        try:
            status: int | None = self._process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            status = None
        return IndexProcessError(f"the index's process is gone (exit {status})")


def _serve(pipe: Connection) -> None:
    """The child: a LocalIndex, and its answers to the parent's requests until the pipe closes."""

    def stopped(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)  # through the `with` below, which removes the index's files

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with LocalIndex() as index:
        control = Control(index)
        pipe.send((True, control.place()))
        while True:
            try:
                name, args, kwargs = pipe.recv()
            except EOFError:
                return
            try:
                answer: tuple[bool, object] = (True, getattr(control, name)(*args, **kwargs))
            except Exception:
                answer = (False, traceback.format_exc())
            pipe.send(answer)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
