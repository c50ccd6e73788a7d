"""The structure of the release and CI workflows, read as GitHub reads them.

actionlint and zizmor (tests/test_lint.py) check that the workflows are valid
and safe; these tests check that they do what a multi-platform release needs:
each platform built natively and attested, one index of both attested and
pinned, and nothing pinned before every check has passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.tools import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
# The platforms a release image is built for, and the runner label of each one's
# native architecture on GitHub-hosted runners.
NATIVE = {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
BUILD_PUSH = "docker/build-push-action"
ATTEST = "actions/attest-build-provenance"
EXPRESSION = re.compile(r"^\$\{\{\s*(?P<expression>[^}]*?)\s*\}\}$")

Job = dict[str, Any]
Step = dict[str, Any]


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def expression(value: object) -> str:
    """The expression inside a value that is exactly `${{ ... }}`."""
    found = EXPRESSION.fullmatch(str(value))
    assert found, f"{value!r} is not one ${{{{ }}}} expression"
    return found["expression"]


def action(step: Step) -> str | None:
    uses = step.get("uses")
    return uses.split("@", 1)[0] if isinstance(uses, str) else None


def runs(step: Step, command: str) -> bool:
    """Whether the step's run: script runs `command` (at a line start or after a pipe)."""
    script = step.get("run", "")
    return (
        re.search(rf"(^|[|;&]\s*)\s*{re.escape(command)}(\s|$)", script, re.MULTILINE) is not None
    )


def jobs(workflow: dict[str, Any]) -> dict[str, Job]:
    found = workflow["jobs"]
    assert isinstance(found, dict)
    return found


def only(matches: list[tuple[str, Job]], what: str) -> tuple[str, Job]:
    assert len(matches) == 1, f"{len(matches)} jobs {what}: {[name for name, _ in matches]}"
    return matches[0]


def job_where(workflow: dict[str, Any], what: str, found: Any) -> tuple[str, Job]:
    return only([(name, job) for name, job in jobs(workflow).items() if found(job)], what)


def step_index(job: Job, what: str, found: Any) -> int:
    matches = [n for n, step in enumerate(job.get("steps", [])) if found(step)]
    assert len(matches) == 1, f"{len(matches)} steps {what}"
    return matches[0]


def needs(job: Job) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def depends_on(workflow: dict[str, Any], job: str, other: str) -> bool:
    """Whether `job` runs only after `other`, directly or through another job."""
    return other in needs(jobs(workflow)[job]) or any(
        depends_on(workflow, middle, other) for middle in needs(jobs(workflow)[job])
    )


def matrix_runs(job: Job) -> list[dict[str, Any]]:
    """Each matrix combination of `job` (only `include` lists and plain lists are used here)."""
    matrix = job.get("strategy", {}).get("matrix", {})
    combinations: list[dict[str, Any]] = [{}]
    for key, values in matrix.items():
        if key != "include":
            combinations = [{**c, key: value} for c in combinations for value in values]
    if "include" in matrix:
        combinations = [c for c in combinations if c] + list(matrix["include"])
    return combinations


def resolve(value: object, combination: dict[str, Any]) -> str:
    """`value` with `${{ matrix.KEY }}` replaced by this combination's value."""
    return re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(combination[m[1]]), str(value))


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return load("release.yml")


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load("ci.yml")


def build_job(release: dict[str, Any]) -> tuple[str, Job]:
    return job_where(
        release,
        "build the image",
        lambda job: any(action(step) == BUILD_PUSH for step in job.get("steps", [])),
    )


def index_job(release: dict[str, Any]) -> tuple[str, Job]:
    return job_where(
        release,
        "create the index",
        lambda job: any(runs(s, "docker buildx imagetools create") for s in job.get("steps", [])),
    )


def pin_job(release: dict[str, Any]) -> tuple[str, Job]:
    return job_where(
        release,
        "pin action.yml",
        lambda job: any(runs(s, "python3 -m scripts.pin_image") for s in job.get("steps", [])),
    )


# --- each platform built natively, pushed by digest, attested ---------------


def test_release_builds_each_platform_natively_on_its_own_runner(release: dict[str, Any]) -> None:
    _, job = build_job(release)
    build = job["steps"][step_index(job, "build", lambda s: action(s) == BUILD_PUSH)]
    built = {
        resolve(build["with"]["platforms"], combination): resolve(job["runs-on"], combination)
        for combination in matrix_runs(job)
    }
    # One platform per job, each on the runner of its own architecture: no emulation.
    assert built == NATIVE
    assert build["with"].get("push") is None, "pushed by digest through outputs:, not push:"
    assert "push-by-digest=true" in build["with"]["outputs"].split(",")
    assert str(build["with"]["provenance"]).lower() == "false"
    assert job["strategy"].get("fail-fast") is True


@pytest.mark.parametrize("name", ["release.yml", "ci.yml"])
def test_no_workflow_emulates_another_architecture(name: str) -> None:
    for job_name, job in jobs(load(name)).items():
        for step in job.get("steps", []):
            assert action(step) != "docker/setup-qemu-action", job_name
            assert "qemu" not in step.get("run", "").lower(), job_name
            assert "binfmt" not in step.get("run", "").lower(), job_name


def test_each_platform_image_is_attested_by_the_job_that_built_it(release: dict[str, Any]) -> None:
    _, job = build_job(release)
    built = step_index(job, "build", lambda s: action(s) == BUILD_PUSH)
    attested = step_index(job, "attest", lambda s: action(s) == ATTEST)
    assert attested > built
    build_id = job["steps"][built]["id"]
    attest = job["steps"][attested]["with"]
    assert expression(attest["subject-digest"]) == f"steps.{build_id}.outputs.digest"
    assert attest["push-to-registry"] is True


def test_build_job_hands_on_one_digest_output_per_platform(release: dict[str, Any]) -> None:
    # A matrix job's outputs are merged across its jobs: distinct names per platform.
    _, job = build_job(release)
    record = job["steps"][step_index(job, "record the digest", lambda s: s.get("id") == "digest")]
    build_id = job["steps"][step_index(job, "build", lambda s: action(s) == BUILD_PUSH)]["id"]
    assert expression(record["env"]["DIGEST"]) == f"steps.{build_id}.outputs.digest"
    assert expression(record["env"]["PLATFORM"]) == "matrix.platform"
    assert {name: expression(value) for name, value in job["outputs"].items()} == {
        arch: f"steps.digest.outputs.{arch}" for arch in ("amd64", "arm64")
    }


# --- one index of both, attested --------------------------------------------


def test_index_job_merges_both_builds_and_attests_the_index(release: dict[str, Any]) -> None:
    build_name, _ = build_job(release)
    index_name, job = index_job(release)
    # The build job's matrix is both platforms: needing it waits for both.
    assert build_name in needs(job)
    create = job["steps"][
        step_index(job, "create", lambda s: runs(s, "docker buildx imagetools create"))
    ]
    assert {expression(create["env"][arch.upper()]) for arch in ("amd64", "arm64")} == {
        f"needs.{build_name}.outputs.amd64",
        f"needs.{build_name}.outputs.arm64",
    }
    assert runs(create, "python3 -m scripts.image_index platforms")
    assert "--expect" in create["run"]
    attested = step_index(job, "attest", lambda s: action(s) == ATTEST)
    assert attested > job["steps"].index(create)
    assert expression(job["steps"][attested]["with"]["subject-digest"]) == (
        f"steps.{create['id']}.outputs.digest"
    )
    assert expression(job["outputs"]["digest"]) == f"steps.{create['id']}.outputs.digest"
    assert depends_on(release, index_name, build_name)


# --- nothing pinned before every check ---------------------------------------


def test_pin_comes_after_every_verification_of_the_index(release: dict[str, Any]) -> None:
    index_name, _ = index_job(release)
    pin_name, job = pin_job(release)
    assert depends_on(release, pin_name, index_name)
    steps = job["steps"]
    pinned = step_index(job, "pin", lambda s: runs(s, "python3 -m scripts.pin_image"))
    listed = step_index(
        job, "check the platforms", lambda s: runs(s, "python3 -m scripts.image_index platforms")
    )
    verified = step_index(job, "verify", lambda s: runs(s, "gh attestation verify"))
    pulled = step_index(job, "pull", lambda s: runs(s, "docker pull"))
    assert pinned > max(listed, verified, pulled)
    assert listed < verified, "the platform digests to verify come from the platform check"

    index_digest = f"needs.{index_name}.outputs.digest"
    listed_id = steps[listed]["id"]
    platform_digests = {f"steps.{listed_id}.outputs.{arch}" for arch in ("amd64", "arm64")}
    # The index checked, verified and pulled is the one pinned.
    for n in (listed, verified, pulled, pinned):
        assert expression(steps[n]["env"]["DIGEST"]) == index_digest, steps[n].get("name")
    # Each platform image's provenance is verified too, and each one's size printed.
    for n in (verified, pulled):
        assert {expression(steps[n]["env"][a]) for a in ("AMD64", "ARM64")} == platform_digests
    assert '"$DIGEST" "$AMD64" "$ARM64"' in steps[verified]["run"]
    assert "--digest" in steps[listed]["run"]
    assert "--index-manifest" in steps[pinned]["run"]


def test_pin_job_reads_the_registry_anonymously(release: dict[str, Any]) -> None:
    _, job = pin_job(release)
    for step in job["steps"]:
        assert action(step) != "docker/login-action"
        assert not runs(step, "docker login")
    pull = job["steps"][step_index(job, "pull", lambda s: runs(s, "docker pull"))]
    for platform in NATIVE:
        assert platform in pull["run"]


def test_release_scripts_fail_on_a_failing_pipe(release: dict[str, Any]) -> None:
    # GitHub's default shell is bash -e without pipefail; `shell: bash` adds it.
    assert release["defaults"]["run"]["shell"] == "bash"


# --- least privilege ------------------------------------------------------------


def test_only_the_jobs_that_push_and_sign_may_push_and_sign(release: dict[str, Any]) -> None:
    build_name, _ = build_job(release)
    index_name, _ = index_job(release)
    pin_name, _ = pin_job(release)
    assert release["permissions"] == {}
    for name, job in jobs(release).items():
        granted = job["permissions"]
        writes = {scope for scope, level in granted.items() if level == "write"}
        if name in (build_name, index_name):
            assert writes == {"packages", "id-token", "attestations", "artifact-metadata"}, name
        elif name == pin_name:
            assert writes == {"contents"}, name
        else:
            assert writes == set(), name


# --- CI builds and runs the image on both architectures -------------------------


def test_ci_builds_and_runs_the_image_on_both_architectures(ci: dict[str, Any]) -> None:
    _, job = job_where(
        ci,
        "build the image",
        lambda job: any(runs(step, "docker build") for step in job.get("steps", [])),
    )
    assert {resolve(job["runs-on"], c) for c in matrix_runs(job)} == set(NATIVE.values())
    built = step_index(job, "build", lambda s: runs(s, "docker build"))
    tag = re.search(r"--tag (\S+)", job["steps"][built]["run"])
    assert tag, job["steps"][built]["run"]
    published = step_index(
        job, "publish", lambda s: s.get("env", {}).get("PYPI_OIDC_ACTION_IMAGE") == tag[1]
    )
    assert published > built
    assert runs(job["steps"][published], "./dev test tests/test_container.py")


# --- rules every workflow keeps --------------------------------------------------


def all_steps() -> Iterator[tuple[str, Step]]:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for job in jobs(load(path.name)).values():
            for step in job.get("steps", []):
                yield path.name, step


def test_no_expression_is_expanded_inside_a_run_script() -> None:
    for name, step in all_steps():
        assert "${{" not in step.get("run", ""), f"{name}: {step.get('name')}"


def test_every_action_is_pinned_by_commit_with_its_version() -> None:
    pinned = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            uses = line.strip().removeprefix("- ")
            if not uses.startswith("uses: ") or uses.startswith(("uses: ./", "uses: $/")):
                continue
            assert pinned.fullmatch(uses), f"{path.name}: {uses}"
