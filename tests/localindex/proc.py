"""Starting other programs: environments without pip configuration, and one runner."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path

__all__ = ["CommandFailed", "isolate_pip", "pip_free_env", "run"]

# Of this machine's PIP_* variables, those that say how to reach the registry: an install
# that needs the registry keeps them (with the machine's pip config); the rest (extra
# find-links, say) would change what gets installed.
PIP_REACH = frozenset(
    {
        "PIP_CERT",
        "PIP_CLIENT_CERT",
        "PIP_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "PIP_PROXY",
        "PIP_DEFAULT_TIMEOUT",
        "PIP_TIMEOUT",
        "PIP_RETRIES",
    }
)


class CommandFailed(Exception):
    """A command that exited non-zero; the message holds the command and its output."""


def pip_free_env(
    environ: Mapping[str, str] | None = None, *, reach_registry: bool = False
) -> dict[str, str]:
    """`environ` (this process's by default) without pip configuration.

    The machine's pip config adds indexes and find-links; a pip under test must see the
    local index only (PIP_CONFIG_FILE=/dev/null, no PIP_*). `reach_registry` keeps the
    config file and the PIP_* variables an install from the registry needs.
    """
    source = os.environ if environ is None else environ
    if reach_registry:
        return {k: v for k, v in source.items() if not k.startswith("PIP_") or k in PIP_REACH}
    kept = {k: v for k, v in source.items() if not k.startswith("PIP_")}
    return kept | {"PIP_CONFIG_FILE": os.devnull}


def isolate_pip(environ: MutableMapping[str, str] | None = None) -> None:
    """pip_free_env() applied in place (to os.environ by default)."""
    target = os.environ if environ is None else environ
    cleaned = pip_free_env(target)
    for name in [name for name in target if name not in cleaned]:
        del target[name]
    target.update(cleaned)


def run(
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    meanwhile: Callable[[subprocess.Popen[str]], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs `command` without input, its output captured as text; raises CommandFailed
    on a non-zero exit when `check`.

    `meanwhile` is called, in a thread of its own, with the running process (to signal it,
    say) while its output is collected; what it raises is raised here once the process
    has ended.
    """
    argv = [str(part) for part in command]
    failures: list[BaseException] = []

    def act(process: subprocess.Popen[str]) -> None:
        try:
            if meanwhile is not None:
                meanwhile(process)
        except BaseException as failure:
            failures.append(failure)

    with subprocess.Popen(
        argv,
        env=None if env is None else dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as process:
        helper = threading.Thread(target=act, args=(process,), daemon=True)
        helper.start()
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        helper.join(timeout)
    if failures:
        raise failures[0]
    if check and process.returncode != 0:
        raise CommandFailed(f"{shlex.join(argv)} exited {process.returncode}\n{stdout}{stderr}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
