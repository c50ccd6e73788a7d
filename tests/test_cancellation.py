"""A job cancelled as the runner cancels it: SIGINT or SIGTERM to entrypoint.py, sent once the
index's log shows the run where the test wants it (uploads held in flight), never after a
timer. During the uploads; as PID 1 of a PID namespace of its own, as in the container; and
before the action has its handlers in place. The in-process tests in test_cli.py send each
signal at each phase."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.localindex.dists import make_release, sha256
from tests.localindex.runner import ActionRun
from tests.localindex.server import Fault, LocalIndex
from tests.summary import results
from tests.test_cli import PROMPTLY, SIGNALS, held, release_of

IN_FLIGHT = "in flight when the run stopped: may be on the index; a re-run recognises it"


def cancel(
    index: LocalIndex, count: int, send: Callable[[subprocess.Popen[str]], None]
) -> tuple[Callable[[subprocess.Popen[str]], None], list[float]]:
    """A `meanwhile` for run_action that calls `send` once `count` uploads are held in flight,
    and the moment it did."""
    sent: list[float] = []

    def meanwhile(process: subprocess.Popen[str]) -> None:
        index.wait_for(held("upload", count))
        sent.append(time.monotonic())
        send(process)

    return meanwhile, sent


def files_output(result: ActionRun) -> list[str]:
    return [f["name"] for f in json.loads(result.outputs["files"])]


def error_annotation(result: ActionRun) -> str:
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The run was cancelled"
    assert "Re-run the job" in error.message
    return error.message


@SIGNALS
def test_a_cancelled_job_ends_at_once_and_its_summary_says_what_is_on_the_index(
    index: LocalIndex, workspace: Path, run: Run, signum: int
) -> None:
    first, *flying, last = release_of(workspace, 5)
    # The first file goes up, the four workers' uploads are held in flight, one is left.
    index.faults("upload", Fault.delay(0), *[Fault.hold()] * len(flying))
    meanwhile, sent = cancel(index, len(flying), lambda process: process.send_signal(signum))

    result = run({"attestations": "false"}, meanwhile=meanwhile)

    assert time.monotonic() - sent[0] < PROMPTLY
    assert result.returncode == 128 + signum, result.stdout + result.stderr
    assert f"({signal.Signals(signum).name}) during the uploads" in error_annotation(result)
    assert results(result.summary) == {
        first.name: "uploaded",
        **{path.name: IN_FLIGHT for path in flying},
        last.name: "not uploaded",
    }
    assert files_output(result) == [first.name]
    assert index.files() == {first.name: sha256(first)}
    assert index.count("upload") == 1 + len(flying)
    assert index.alive_tokens() == []  # burned on the way out
    assert "Traceback" not in result.stdout + result.stderr


def test_a_cancellation_while_storing_in_github_ends_the_run_as_cancelled(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("github-attestations", Fault.hold())
    sent: list[float] = []

    def meanwhile(process: subprocess.Popen[str]) -> None:
        index.wait_for(held("github-attestations"))
        sent.append(time.monotonic())
        process.send_signal(signal.SIGTERM)

    result = run({"github-attestations": "true"}, sigstore=True, meanwhile=meanwhile)

    assert time.monotonic() - sent[0] < PROMPTLY
    assert result.returncode == 143, result.stdout + result.stderr
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The run was cancelled"
    assert "(SIGTERM) once every file was on the index" in error.message
    assert not [a for a in result.annotations if a.level == "warning"]
    assert results(result.summary) == {wheel.name: "uploaded", sdist.name: "uploaded"}
    assert files_output(result) == [wheel.name, sdist.name]
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    # The store stopped: the sdist's attestation was never sent.
    assert index.count("github-attestations") == 1
    assert index.github.stored == []


@pytest.fixture
def as_pid_1(tmp_path: Path) -> str:
    """An interpreter that runs its script as PID 1 of a PID namespace of its own, as
    `docker run` starts a container's entry point; skips where none can be made."""
    unshare = shutil.which("unshare")
    ways = (["--pid"], ["--user", "--map-root-user", "--pid"])
    flags = next(
        (
            [*way, "--fork", "--kill-child"]
            for way in ways
            if unshare
            and subprocess.run(
                [unshare, *way, "--fork", "true"], capture_output=True, check=False
            ).returncode
            == 0
        ),
        None,
    )
    if unshare is None or flags is None:
        pytest.skip("this machine cannot make a PID namespace (unshare)")
    shim = tmp_path / "python-as-pid-1"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"os.execv({unshare!r}, [{unshare!r}, *{flags!r}, sys.executable, *sys.argv[1:]])\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    return str(shim)


def test_as_pid_1_in_its_container_the_action_still_ends_on_sigterm(
    index: LocalIndex, workspace: Path, run: Run, as_pid_1: str
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", Fault.hold())
    namespaced: list[str] = []

    def terminate(process: subprocess.Popen[str]) -> None:
        # `unshare` is the process started; the action is its child, PID 1 in its namespace.
        [child] = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        status = Path(f"/proc/{child}/status").read_text().splitlines()
        namespaced.extend(line for line in status if line.startswith("NSpid:"))
        os.kill(int(child), signal.SIGTERM)

    meanwhile, sent = cancel(index, 1, terminate)

    result = run({"attestations": "false"}, python=as_pid_1, meanwhile=meanwhile)

    assert namespaced[0].split()[-1] == "1"  # the kernel drops a SIGTERM it has no handler for
    assert time.monotonic() - sent[0] < PROMPTLY
    assert result.returncode == 143, result.stdout + result.stderr
    assert "(SIGTERM) during the uploads" in error_annotation(result)
    assert results(result.summary) == {wheel.name: IN_FLIGHT, sdist.name: "not uploaded"}
    assert files_output(result) == []


@SIGNALS
def test_a_signal_before_the_action_has_its_handlers_is_reported_like_any_other(
    index: LocalIndex, workspace: Path, run: Run, tmp_path: Path, signum: int
) -> None:
    make_release(workspace)
    # The signal is already pending when the interpreter starts: blocked, sent, then exec.
    shim = tmp_path / "python-already-signalled"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys\n"
        f"signal.pthread_sigmask(signal.SIG_BLOCK, {{{int(signum)}}})\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)

    result = run(python=str(shim))

    assert result.returncode == 128 + signum, result.stdout + result.stderr
    message = error_annotation(result)
    assert f"({signal.Signals(signum).name}) before any upload: nothing was uploaded" in message
    assert "was cancelled" in result.summary
    assert files_output(result) == []
    assert index.log == []
