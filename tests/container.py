"""Run the action's image the way GitHub's runner runs a Docker container action.

    python tests/container.py IMAGE [ignored...]

It stands in for the interpreter in tests.localindex.runner.run_action, which
calls it with the environment it built for the step and the entrypoint path
(ignored: the image has its own ENTRYPOINT). The runner mounts its directories
at fixed places under /github and points the GITHUB_* variables there; this
mounts the directories run_action made at the same places and rewrites the
variables to match, so the image finds its workspace, event, output and
summary files where a real runner puts them. Values go to `docker run` by name
(`-e NAME`), as the runner passes them, so no token is on a command line.

One difference: `--network host`, so the image reaches the local index on the
host's 127.0.0.1 (the runner's own network is a bridge).

Only the standard library: it runs outside the test process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# The runner's mounts, keyed by the variable that names the host side: a
# directory itself, or for a file its parent directory.
DIRECTORY_MOUNTS = {
    "GITHUB_WORKSPACE": "/github/workspace",
    "HOME": "/github/home",
}
PARENT_MOUNTS = {
    "GITHUB_EVENT_PATH": "/github/workflow",
    "GITHUB_OUTPUT": "/github/file_commands",
    # Not the runner's: where the local index's CA certificate is.
    "SSL_CERT_FILE": "/github/localindex",
}
# The image's PATH finds its own python; the host's would not.
NOT_PASSED = {"PATH"}


def mounts(environ: Mapping[str, str]) -> dict[str, str]:
    """Host directory -> container directory."""
    found = {environ[name]: inside for name, inside in DIRECTORY_MOUNTS.items()}
    found |= {os.path.dirname(environ[name]): inside for name, inside in PARENT_MOUNTS.items()}
    return found


def inside(value: str, mounted: Mapping[str, str]) -> str:
    """`value` with a mounted host directory at its start replaced by the container's."""
    for host in sorted(mounted, key=len, reverse=True):
        if value == host or value.startswith(host + "/"):
            return mounted[host] + value[len(host) :]
    return value


def docker_command(image: str, environ: Mapping[str, str]) -> list[str]:
    mounted = mounts(environ)
    command = ["docker", "run", "--rm", "--network", "host", "--workdir", "/github/workspace"]
    for host, container in mounted.items():
        command += ["--volume", f"{host}:{container}"]
    for name in sorted(environ):
        if name in NOT_PASSED:
            continue
        value = inside(environ[name], mounted)
        # A changed value is a path; every other one stays out of the command line.
        command += ["--env", f"{name}={value}" if value != environ[name] else name]
    return [*command, image]


def main() -> None:
    command = docker_command(sys.argv[1], os.environ)
    os.execvp(command[0], command)  # noqa: S606 - the test's own docker, argv list


if __name__ == "__main__":
    main()
