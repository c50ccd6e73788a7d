"""The linters for everything that ships besides the Python code.

Each runs from requirements-dev.txt, offline, and must report nothing. The
canary test feeds each one a file with a known flaw, so a linter that stopped
looking (a config that ignores everything, a flag that disables the audits)
fails here instead of passing everything.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
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


README = ROOT / "README.md"
# A fenced code block's opening line: its indent (inside a list item), fence and language.
FENCE = re.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<language>[^\s`]*).*")
# A job's id in a workflow written as the README writes them: two spaces in, under `jobs:`.
JOB_ID = re.compile(r"  (?P<id>[A-Za-z_][\w-]*):[ \t]*(#.*)?")

WORKFLOW = "a whole workflow"
JOBS = "jobs that replace or join the headline workflow's"
DEPENDABOT = "a .github/dependabot.yml"


@dataclass(frozen=True)
class Block:
    """A ```yaml block of README.md."""

    line: int
    """The line its fence opens on."""
    text: str
    """Its contents, with the indent of its fence taken off."""

    @property
    def name(self) -> str:
        return f"readme-line-{self.line}"

    @property
    def kind(self) -> str | None:
        """What the block is, so which linters check it; None when no linter could."""
        data = yaml.safe_load(self.text)
        if not isinstance(data, dict) or not data:
            return None
        if "jobs" in data:
            return WORKFLOW
        if data.get("version") == 2 and "updates" in data:
            return DEPENDABOT
        if all(
            isinstance(job, dict) and ("runs-on" in job or "uses" in job) for job in data.values()
        ):
            return JOBS
        return None


def readme_yaml_blocks() -> list[Block]:
    """Every ```yaml (or ```yml) block of README.md, wherever its fence is indented."""
    blocks: list[Block] = []
    opened: tuple[int, re.Match[str]] | None = None
    body: list[str] = []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if opened is None:
            fence = FENCE.fullmatch(line)
            if fence:
                opened, body = (number, fence), []
            continue
        start, fence = opened
        closing = line.strip()
        if closing.startswith(fence["fence"]) and not closing.strip(fence["fence"][0]):
            if fence["language"].lower() in ("yaml", "yml"):
                blocks.append(Block(start, "\n".join(body) + "\n"))
            opened = None
        else:
            body.append(line.removeprefix(fence["indent"]))
    assert opened is None, f"README.md: the code block opened on line {opened[0]} never closes"
    return blocks


def jobs_by_id(workflow: str) -> tuple[str, dict[str, str]]:
    """A workflow's text up to its jobs, and each job's text by its id."""
    head, marker, body = workflow.partition("\njobs:\n")
    assert marker, "the headline workflow has no top-level `jobs:`"
    jobs: dict[str, str] = {}
    current = None
    for line in body.splitlines(keepends=True):
        found = JOB_ID.fullmatch(line.rstrip("\n"))
        if found:
            current = found["id"]
            jobs[current] = ""
        if current is not None:
            jobs[current] += line
    assert set(jobs) == set(yaml.safe_load(workflow)["jobs"]), "a job id the split missed"
    return head + marker, jobs


def completed(headline: Block, fragment: Block) -> str:
    """The headline workflow with the fragment's jobs in place of those of the same ids."""
    head, jobs = jobs_by_id(headline.text)
    replaced = yaml.safe_load(fragment.text)
    kept = [text for job_id, text in jobs.items() if job_id not in replaced]
    return (
        head
        + "".join(kept).rstrip("\n")
        + "\n\n"
        + textwrap.indent(textwrap.dedent(fragment.text), "  ")
    )


def test_every_readme_yaml_block_is_one_the_linters_check() -> None:
    blocks = readme_yaml_blocks()
    unplaced = [block.line for block in blocks if block.kind is None]
    assert not unplaced, (
        f"README.md lines {unplaced}: a ```yaml block that is neither {WORKFLOW}, {JOBS}, nor "
        f"{DEPENDABOT}; teach this test how to lint it"
    )
    # Job examples are completed with the headline workflow: it comes first.
    assert blocks[0].kind == WORKFLOW, "README.md's first ```yaml block is not a workflow"
    assert {block.kind for block in blocks} == {WORKFLOW, JOBS, DEPENDABOT}


def test_readme_workflows_and_jobs_pass_actionlint_and_zizmor(tmp_path: Path) -> None:
    blocks = readme_yaml_blocks()
    headline = blocks[0]
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    paths = []
    for block in blocks:
        if block.kind not in (WORKFLOW, JOBS):
            continue
        path = workflows / f"{block.name}.yml"
        path.write_text(
            block.text if block.kind == WORKFLOW else completed(headline, block),
            encoding="utf-8",
        )
        paths.append(path)
    assert len(paths) > 1, "README.md shows one workflow example at most"

    linted = actionlint(*paths, cwd=tmp_path)
    assert linted.returncode == 0, report(linted)
    audited = zizmor(*paths, cwd=tmp_path)
    assert audited.returncode == 0, report(audited)
    assert "No findings to report" in audited.stdout, report(audited)


def test_readme_dependabot_configs_pass_githubs_schema_and_zizmor(tmp_path: Path) -> None:
    paths = []
    for block in readme_yaml_blocks():
        if block.kind != DEPENDABOT:
            continue
        # zizmor knows a Dependabot config by its place: .github/dependabot.yml.
        path = tmp_path / block.name / ".github" / "dependabot.yml"
        path.parent.mkdir(parents=True)
        path.write_text(block.text, encoding="utf-8")
        paths.append(path)
    assert paths, "README.md shows no .github/dependabot.yml"

    checked = schema("vendor.dependabot", *paths)
    assert checked.returncode == 0, report(checked)
    audited = zizmor(*paths, cwd=tmp_path)
    assert audited.returncode == 0, report(audited)
    assert "No findings to report" in audited.stdout, report(audited)


def test_a_job_example_replaces_the_headline_job_of_its_id() -> None:
    headline = Block(1, "on: push\njobs:\n  build:\n    runs-on: a\n  publish:\n    runs-on: b\n")
    fragment = Block(9, "publish:\n  runs-on: c\nextra:\n  runs-on: d\n")

    merged = yaml.safe_load(completed(headline, fragment))

    assert merged["jobs"] == {
        "build": {"runs-on": "a"},
        "publish": {"runs-on": "c"},
        "extra": {"runs-on": "d"},
    }


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
