"""The linters for everything that ships besides the Python code.

Each runs from requirements-dev.txt, offline, and must report nothing. The
canary test feeds each one a file with a known flaw, so a linter that stopped
looking (a config that ignores everything, a flag that disables the audits)
fails here instead of passing everything.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.tools import ROOT, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile))


def actionlint(*workflows: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # An explicit shellcheck, so the run: scripts are checked rather than skipped
    # when shellcheck happens not to be on PATH.
    shellcheck = f"-shellcheck={tool('shellcheck')}"
    return run(tool("actionlint"), "-no-color", shellcheck, *map(str, workflows), cwd=cwd)


def zizmor(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # --no-config and --no-ignores: a finding is fixed, not silenced.
    return run(
        tool("zizmor"),
        "--offline",
        "--no-config",
        "--no-ignores",
        "--no-progress",
        "--color=never",
        *map(str, paths),
        cwd=cwd,
    )


def schema(name: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("check-jsonschema"), "--builtin-schema", name, *map(str, files))


def report(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_the_workflows_are_found() -> None:
    assert {"ci.yml", "release.yml"} <= {path.name for path in WORKFLOWS}


def test_hadolint_passes_the_dockerfile() -> None:
    done = hadolint(ROOT / "Dockerfile")
    assert done.returncode == 0, report(done)
    assert done.stdout.strip() == "", report(done)


def test_actionlint_passes_the_workflows() -> None:
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, report(done)


def test_zizmor_finds_nothing_in_the_workflows_and_dependabot_config() -> None:
    done = zizmor(*WORKFLOWS, ROOT / ".github" / "dependabot.yml")
    assert done.returncode == 0, report(done)
    assert "No findings to report" in done.stdout, report(done)


def test_action_yml_matches_githubs_action_schema() -> None:
    done = schema("vendor.github-actions", ROOT / "action.yml")
    assert done.returncode == 0, report(done)


def test_workflows_and_dependabot_config_match_githubs_schemas() -> None:
    for name, files in [
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.dependabot", [ROOT / ".github" / "dependabot.yml"]),
    ]:
        done = schema(name, *files)
        assert done.returncode == 0, report(done)


def readme_workflows() -> list[str]:
    """The README's ```yaml blocks that are whole workflows (they have jobs:)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```ya?ml[ \t]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [
        block
        for block in blocks
        if isinstance(data := yaml.safe_load(block), dict) and "jobs" in data
    ]


def test_readme_example_workflows_pass_actionlint_and_zizmor(tmp_path: Path) -> None:
    if not (ROOT / "README.md").exists():
        pytest.skip("README.md is not written yet; its example workflows are linted once it is")
    examples = readme_workflows()
    assert examples, "README.md shows no complete workflow (a ```yaml block with jobs:)"

    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    paths = []
    for number, example in enumerate(examples, start=1):
        path = workflows / f"readme-example-{number}.yml"
        path.write_text(example, encoding="utf-8")
        paths.append(path)
    linted = actionlint(*paths, cwd=tmp_path)
    assert linted.returncode == 0, report(linted)
    audited = zizmor(*paths, cwd=tmp_path)
    assert audited.returncode == 0, report(audited)


BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-24.04
    needs: nowhere
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def lint_bad_dockerfile(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.13-slim\nRUN pip install twine\nWORKDIR app\n")
    return hadolint(bad)


def bad_workflow(tmp_path: Path) -> Path:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_WORKFLOW)
    return bad


def lint_bad_action(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bad = tmp_path / "action.yml"
    bad.write_text("name: x\ndescription: y\nruns:\n  using: docker\n")
    return schema("vendor.github-actions", bad)


CANARIES: dict[str, Callable[[Path], subprocess.CompletedProcess[str]]] = {
    "hadolint": lint_bad_dockerfile,
    "actionlint": lambda tmp_path: actionlint(bad_workflow(tmp_path), cwd=tmp_path),
    "zizmor": lambda tmp_path: zizmor(bad_workflow(tmp_path), cwd=tmp_path),
    "check-jsonschema": lint_bad_action,
}


@pytest.mark.parametrize("linter", CANARIES)
def test_each_linter_still_rejects_a_known_flaw(linter: str, tmp_path: Path) -> None:
    done = CANARIES[linter](tmp_path)
    assert done.returncode != 0, report(done)
