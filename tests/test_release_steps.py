"""release.yml's own `run:` scripts, run as GitHub's runner runs them.

Each script is read from the workflow file (never copied into the test) and run with
`bash --noprofile --norc -eo pipefail`, as `shell: bash` runs it, with the step's `env:`
filled in from what earlier steps and jobs handed on, and the runner's files
($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY, $RUNNER_TEMP). The registry is a `docker` on PATH
that answers `imagetools inspect --raw` with the manifests a registry would serve, and the
repository is a local one: so the tag's check, the digests handed between jobs, the index's
checks, the release commit and the moving of `vX.Y.Z` and `vX` all run here. What only a
real release checks (the pushes to the registry, `gh attestation verify`, anonymous pulls,
GitHub's permission to push tags) is in the README's Versions section.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import AMD64, ARM64, digest, digest_of, image_manifest, release_index
from tests.tools import ROOT

RELEASE = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text("utf-8"))
EXPRESSION = re.compile(r"\$\{\{\s*(?P<expression>[^}]*?)\s*\}\}")
OWNER_REPO = "octo-org/pypi-oidc-action"
IMAGE = f"ghcr.io/{OWNER_REPO}"
INDEX = release_index()
INDEX_DIGEST = digest_of(INDEX)
# What the registry serves, by tag or digest.
MANIFESTS = {
    INDEX_DIGEST: INDEX,
    AMD64: image_manifest(30_000_000, 9_000_000),
    ARM64: image_manifest(29_000_000, 8_500_000),
}
DOCKER = """#!/usr/bin/env bash
# The registry's side of `docker`: every call logged, manifests served by tag or digest.
printf '%s\\n' "$*" >> "$DOCKER_LOG"
if [ "$1 $2 $3 $4" = "buildx imagetools inspect --raw" ]; then
    case "$5" in
        *@*) cat "$REGISTRY/${5##*@}" ;;
        *) cat "$REGISTRY/${5##*:}" ;;
    esac
fi
"""


def step(job: str, name: str) -> dict[str, Any]:
    """The step of `job` with this id, or whose name starts with `name`."""
    steps = RELEASE["jobs"][job]["steps"]
    [found] = [s for s in steps if s.get("id") == name or s.get("name", "").startswith(name)]
    assert isinstance(found, dict)
    return found


@dataclass
class Runner:
    """One job's runner: its files, its PATH, and what the workflow's context says."""

    root: Path
    context: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.temp = self.root / "runner-temp"
        self.bin = self.root / "bin"
        self.registry = self.root / "registry"
        self.summary = self.root / "step-summary.md"
        for folder in (self.temp, self.bin, self.registry, self.root / "home"):
            folder.mkdir(parents=True, exist_ok=True)
        self.summary.touch()
        (self.bin / "python3").symlink_to(sys.executable)
        docker = self.bin / "docker"
        docker.write_text(DOCKER, encoding="utf-8")
        docker.chmod(0o755)
        for name, manifest in MANIFESTS.items():
            (self.registry / name).write_bytes(manifest)

    def serve(self, tag: str, manifest: bytes) -> None:
        (self.registry / tag).write_bytes(manifest)

    @property
    def docker_calls(self) -> list[str]:
        log = self.root / "docker.log"
        return log.read_text(encoding="utf-8").splitlines() if log.exists() else []

    def run(
        self, job: str, name: str, expressions: Mapping[str, str], cwd: Path | None = None
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
        """Run the step as the runner would; its result and the outputs it set."""
        spec = step(job, name)
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "RUNNER_TEMP": str(self.temp),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "DOCKER_LOG": str(self.root / "docker.log"),
            "REGISTRY": str(self.registry),
            **self.context,
        }
        for variable, value in spec.get("env", {}).items():
            # Every expression must be one this test hands on: an unknown one fails here.
            env[variable] = EXPRESSION.sub(lambda m: expressions[m["expression"]], str(value))
        outputs = self.root / "github-output"
        outputs.write_text("", encoding="utf-8")
        env["GITHUB_OUTPUT"] = str(outputs)
        script = self.root / "step.sh"
        script.write_text(spec["run"], encoding="utf-8")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd or ROOT,  # the checkout of this repository, unless the test makes one
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = outputs.read_text(encoding="utf-8").splitlines()
        return done, {name: value for name, _, value in (line.partition("=") for line in lines)}


def tag_context(tag: str, server: Path) -> dict[str, str]:
    return {
        "GITHUB_REF_NAME": tag,
        "GITHUB_REF": f"refs/tags/{tag}",
        "GITHUB_REPOSITORY": OWNER_REPO,
        "GITHUB_SERVER_URL": server.as_uri(),
    }


# --- the tag job ---------------------------------------------------------------


def test_a_release_tag_names_the_image_in_lower_case(tmp_path: Path) -> None:
    runner = Runner(tmp_path, {"GITHUB_REF_NAME": "v1.2.3", "GITHUB_REPOSITORY": "Octo-Org/PyPI"})

    done, outputs = runner.run("tag", "name", {})

    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs == {"image": "ghcr.io/octo-org/pypi"}


@pytest.mark.parametrize("tag", ["v1.2", "1.2.3", "v1.2.3-rc1", "v1.2.3.4", "v1.2.x"])
def test_a_tag_that_is_not_vX_Y_Z_releases_nothing(tmp_path: Path, tag: str) -> None:
    # The trigger's `v*.*.*` is a glob: it lets `v1.2.3-rc1` through to this check.
    runner = Runner(tmp_path, {"GITHUB_REF_NAME": tag, "GITHUB_REPOSITORY": OWNER_REPO})

    done, outputs = runner.run("tag", "name", {})

    assert done.returncode == 1
    assert f"::error::release tags are vX.Y.Z; got {tag}" in done.stdout
    assert outputs == {}


# --- digests from job to job ---------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "output"), [("linux/amd64", "amd64"), ("linux/arm64", "arm64")]
)
def test_each_build_hands_on_its_own_platforms_digest(
    tmp_path: Path, platform: str, output: str
) -> None:
    built = digest(f"{platform} build")
    expressions = {"matrix.platform": platform, "steps.build.outputs.digest": built}

    done, outputs = Runner(tmp_path).run("build", "digest", expressions)

    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs == {output: built}


@pytest.mark.parametrize("reported", ["", "sha256:abc", f"{AMD64}\nevil=1"])
def test_a_build_without_a_digest_stops_the_release(tmp_path: Path, reported: str) -> None:
    expressions = {"matrix.platform": "linux/amd64", "steps.build.outputs.digest": reported}

    done, outputs = Runner(tmp_path).run("build", "digest", expressions)

    assert done.returncode == 1
    assert "::error::the build reported no image digest for linux/amd64" in done.stdout
    assert outputs == {}


def index_expressions(arm64: str = ARM64) -> dict[str, str]:
    return {
        "needs.tag.outputs.image": IMAGE,
        "needs.build.outputs.amd64": AMD64,
        "needs.build.outputs.arm64": arm64,
    }


def test_the_index_job_hands_on_the_index_of_both_builds(tmp_path: Path) -> None:
    runner = Runner(tmp_path, {"GITHUB_REF_NAME": "v1.2.3"})
    runner.serve("v1.2.3", INDEX)

    done, outputs = runner.run("index", "index", index_expressions())

    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs == {"digest": INDEX_DIGEST, "amd64": AMD64, "arm64": ARM64}
    assert runner.docker_calls[0] == (
        f"buildx imagetools create --tag {IMAGE}:v1.2.3 {IMAGE}@{AMD64} {IMAGE}@{ARM64}"
    )


def test_an_index_of_other_images_than_the_builds_is_not_handed_on(tmp_path: Path) -> None:
    runner = Runner(tmp_path, {"GITHUB_REF_NAME": "v1.2.3"})
    runner.serve("v1.2.3", INDEX)

    # The check fails inside a pipe into tee: only pipefail makes the step fail.
    done, outputs = runner.run("index", "index", index_expressions(digest("another arm64")))

    assert done.returncode == 1
    assert "but the release built" in done.stderr
    assert outputs == {}


# --- the pin job: the release commit and the tags -----------------------------


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    identity = ["-c", "user.name=Maintainer", "-c", "user.email=maintainer@example.com"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@dataclass
class Repository:
    """The repository on the server, and the release workflow's checkout of a pushed tag."""

    server: Path
    remote: Path
    checkout: Path

    def tag(self, name: str) -> str:
        """The commit a tag on the server names."""
        return git(self.remote, "rev-parse", f"refs/tags/{name}^{{commit}}")

    def tags(self) -> set[str]:
        return set(git(self.remote, "tag", "--list").split())


def pushed(tmp_path: Path, tag: str, *, earlier: tuple[str, ...] = ()) -> Repository:
    """A server repository where `earlier` releases exist and `tag` was just pushed, and the
    checkout of `tag` that actions/checkout makes (the tag fetched, its commit detached)."""
    server = tmp_path / "server"
    remote = server / f"{OWNER_REPO}.git"
    remote.mkdir(parents=True)
    git(remote, "init", "--quiet", "--bare")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git(checkout, "init", "--quiet", "--initial-branch=main")
    shutil.copy(ROOT / "action.yml", checkout / "action.yml")
    shutil.copytree(
        ROOT / "scripts", checkout / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    git(checkout, "add", ".")
    git(checkout, "commit", "--quiet", "-m", "The source of every release here")
    for name in (*earlier, tag):
        git(checkout, "tag", "--annotate", name, "-m", name)
    if earlier:
        git(checkout, "tag", "--annotate", earlier[-1].split(".")[0], "-m", "Latest release")
    git(checkout, "push", "--quiet", "--tags", remote.as_uri(), "main")
    git(checkout, "checkout", "--quiet", "--detach", f"refs/tags/{tag}")
    return Repository(server, remote, checkout)


def release(runner: Runner, repository: Repository) -> None:
    """The pin job's steps, in the workflow's order, but for `gh attestation verify`."""
    expressions = {
        "needs.tag.outputs.image": IMAGE,
        "needs.index.outputs.digest": INDEX_DIGEST,
        "github.token": "ghs_the-jobs-token",
    }
    done, platforms = runner.run("pin", "platforms", expressions, repository.checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert platforms == {"digest": INDEX_DIGEST, "amd64": AMD64, "arm64": ARM64}
    expressions |= {f"steps.platforms.outputs.{arch}": platforms[arch] for arch in platforms}
    for name in ("Check that anyone can pull", "Commit action.yml", "Move the tags"):
        done, _ = runner.run("pin", name, expressions, repository.checkout)
        assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"


def test_a_release_points_its_tag_and_vX_at_a_commit_pinning_the_index(tmp_path: Path) -> None:
    repository = pushed(tmp_path, "v1.2.3")
    source = repository.tag("v1.2.3")
    runner = Runner(tmp_path / "runner", tag_context("v1.2.3", repository.server))

    release(runner, repository)

    pinned = repository.tag("v1.2.3")
    assert pinned != source
    assert repository.tag("v1") == pinned
    assert git(repository.remote, "rev-parse", f"{pinned}^") == source
    # The release commit changes one line: the image, pinned to the index by digest.
    assert git(repository.remote, "diff", "--numstat", source, pinned) == "1\t1\taction.yml"
    action = yaml.safe_load(git(repository.remote, "show", f"{pinned}:action.yml"))
    assert action["runs"]["image"] == f"docker://{IMAGE}@{INDEX_DIGEST}"
    summary = runner.summary.read_text(encoding="utf-8")
    assert f"v1.2.3 v1 now point at {pinned}" in summary
    assert "linux/amd64 image: 39000000 bytes (39.0 MB) compressed" in summary
    assert "linux/arm64 image: 37500000 bytes (37.5 MB) compressed" in summary
    # Each platform is pulled from the index, as a runner of that platform pulls it.
    for platform in ("linux/amd64", "linux/arm64"):
        assert f"pull --quiet --platform {platform} {IMAGE}@{INDEX_DIGEST}" in runner.docker_calls
    # The job's token went to git in a header, never into the checkout's configuration.
    config = (repository.checkout / ".git" / "config").read_text(encoding="utf-8")
    assert "ghs_the-jobs-token" not in config
    assert "extraheader" not in config


def test_a_fix_for_an_older_minor_version_leaves_vX_where_it_is(tmp_path: Path) -> None:
    repository = pushed(tmp_path, "v1.2.4", earlier=("v1.2.3", "v1.3.0"))
    newest = repository.tag("v1")
    runner = Runner(tmp_path / "runner", tag_context("v1.2.4", repository.server))

    release(runner, repository)

    assert repository.tag("v1") == newest
    pinned = repository.tag("v1.2.4")
    action = yaml.safe_load(git(repository.remote, "show", f"{pinned}:action.yml"))
    assert action["runs"]["image"] == f"docker://{IMAGE}@{INDEX_DIGEST}"
    assert repository.tags() == {"v1", "v1.2.3", "v1.2.4", "v1.3.0"}
    assert f"v1.2.4 now point at {pinned}" in runner.summary.read_text(encoding="utf-8")
