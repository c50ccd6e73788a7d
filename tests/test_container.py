"""The built image, run as a container action against the local index.

Needs a Docker engine and an image: CI's docker job builds one and sets
PYPI_OIDC_ACTION_IMAGE to its tag. Without it this module is skipped;
tests/test_supply_chain.py covers what can be checked without Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.container import docker_command
from tests.localindex.dists import make_wheel, sha256
from tests.localindex.server import LocalIndex
from tests.tools import ROOT

IMAGE = os.environ.get("PYPI_OIDC_ACTION_IMAGE", "")

needs_image = pytest.mark.skipif(
    not IMAGE, reason="PYPI_OIDC_ACTION_IMAGE names no built image (CI's docker job sets it)"
)


@pytest.fixture
def container(tmp_path: Path) -> str:
    """An executable that run_action can start in place of python: it runs IMAGE."""
    if shutil.which("docker") is None:
        pytest.fail("PYPI_OIDC_ACTION_IMAGE is set but there is no docker command")
    shim = tmp_path / "run-image"
    # Python, not sh: a POSIX shell drops INPUT_REPOSITORY-URL and the other
    # hyphenated names from the environment it passes on.
    shim.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.argv[1:] = [{IMAGE!r}]\n"
        f"runpy.run_path({str(ROOT / 'tests' / 'container.py')!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    return str(shim)


@needs_image
def test_the_image_publishes_as_a_container_action(
    index: LocalIndex, workspace: Path, run: Run, container: str
) -> None:
    wheel = make_wheel(workspace / "dist", "container-probe", "1.0.0")
    digest = sha256(wheel)

    result = run(python=container, timeout=600)

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: digest}
    # Outputs and summary reached the runner's files through the /github mounts.
    files = json.loads(result.outputs["files"])
    assert [(f["name"], f["sha256"]) for f in files] == [(wheel.name, digest)]
    assert digest in result.summary
    # Masked (the runner hides a mask's value everywhere), and nowhere else.
    assert set(index.minted_tokens) <= set(result.masks)
    shown = [line for line in result.all_text().splitlines() if not line.startswith("::add-mask::")]
    assert [secret for secret in index.secrets() if secret in "\n".join(shown)] == []


def test_container_command_passes_secrets_by_name_and_maps_runner_paths() -> None:
    runner = "/host/runner-1"
    environ = {
        "PATH": "/usr/bin",
        "HOME": f"{runner}/home",
        "GITHUB_WORKSPACE": "/host/workspace",
        "GITHUB_EVENT_PATH": f"{runner}/event.json",
        "GITHUB_OUTPUT": f"{runner}/file_commands/set_output",
        "GITHUB_STEP_SUMMARY": f"{runner}/file_commands/step_summary",
        "SSL_CERT_FILE": "/host/localindex/ca.pem",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-request-token",
        "INPUT_REPOSITORY-URL": "https://127.0.0.1:8443/legacy/",
    }

    command = docker_command("image:tag", environ)

    assert command[-1] == "image:tag"
    assert "secret-request-token" not in " ".join(command)
    env = [command[i + 1] for i, arg in enumerate(command) if arg == "--env"]
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in env
    assert "INPUT_REPOSITORY-URL" in env
    assert not [e for e in env if e.startswith("PATH")]
    assert {
        "HOME=/github/home",
        "GITHUB_WORKSPACE=/github/workspace",
        "GITHUB_EVENT_PATH=/github/workflow/event.json",
        "GITHUB_OUTPUT=/github/file_commands/set_output",
        "GITHUB_STEP_SUMMARY=/github/file_commands/step_summary",
        "SSL_CERT_FILE=/github/localindex/ca.pem",
    } <= set(env)
    volumes = {command[i + 1] for i, arg in enumerate(command) if arg == "--volume"}
    assert volumes == {
        "/host/workspace:/github/workspace",
        f"{runner}/home:/github/home",
        f"{runner}:/github/workflow",
        f"{runner}/file_commands:/github/file_commands",
        "/host/localindex:/github/localindex",
    }
