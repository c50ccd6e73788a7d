"""Several projects in one `packages-dir`, run as the runner runs the action: one token
exchange, each release whole or not at all."""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

from tests.conftest import Run, pip_install
from tests.localindex import identity
from tests.localindex.dists import make_sdist, make_wheel, sha256
from tests.localindex.github_api import verify_stored
from tests.localindex.oidc import default_publisher
from tests.localindex.server import Fault, LocalIndex
from tests.summary import releases, results
from tests.test_cli import held

NEEDS_CORE = {"Requires-Dist": "core>=2"}
# A push to a branch: no tag to compare the versions with.
BRANCH = {"GITHUB_REF": "refs/heads/main"}
UNSTORED = "Not stored in GitHub: files the index did not take"


def monorepo(workspace: Path) -> dict[str, list[Path]]:
    """A library and its plugin, a wheel and an sdist each, in one dist/ as one build job
    leaves them; the plugin sorts first by name, and requires the library."""
    dist = workspace / "dist"
    return {
        "core": [make_wheel(dist, "core", "2.0.0"), make_sdist(dist, "core", "2.0.0")],
        "a-plugin": [
            make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides=NEEDS_CORE),
            make_sdist(dist, "a-plugin", "0.3.0", metadata_overrides=NEEDS_CORE),
        ],
    }


def test_two_projects_are_published_in_one_run_with_one_token_exchange(
    index: LocalIndex, workspace: Path, run: Run, tmp_path: Path
) -> None:
    built = monorepo(workspace)

    # A tag that names one project is checked against that project only.
    result = run(env={"GITHUB_REF": "refs/tags/core-v2.0.0"}, sigstore=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {p.name: sha256(p) for paths in built.values() for p in paths}
    assert index.count("mint") == 1
    installed = pip_install(index, "a-plugin==0.3.0", tmp_path / "site", dependencies=True)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "site" / "core" / "__init__.py").exists()
    # The library goes first: the plugin never appears on the index before what it needs.
    log = result.stdout
    assert log.index(f"{built['core'][1].name}: uploaded") < log.index(
        f"{built['a-plugin'][0].name}: uploaded"
    )
    assert releases(result.summary) == {"core 2.0.0": "complete", "a-plugin 0.3.0": "complete"}
    assert result.summary.startswith("## ✅ Published 2 releases to 127.0.0.1")
    assert json.loads(result.outputs["releases"]) == [
        {"project": "core", "version": "2.0.0", "url": ""},
        {"project": "a-plugin", "version": "0.3.0", "url": ""},
    ]
    assert result.outputs["release-url"] == ""
    files = json.loads(result.outputs["files"])
    assert [(f["project"], f["name"], f["attested"]) for f in files] == [
        ("core", built["core"][0].name, True),
        ("core", built["core"][1].name, True),
        ("a-plugin", built["a-plugin"][0].name, True),
        ("a-plugin", built["a-plugin"][1].name, True),
    ]
    # Every file of both releases signed with one certificate, before the first upload.
    assert index.count("fulcio") == 1
    assert result.annotations_besides(index.failed_handshakes) == []


def test_a_project_without_the_publisher_is_refused_by_name_and_the_other_stays_whole(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    built = monorepo(workspace)
    index.publishers = [replace(default_publisher(), projects={"core"})]
    index.projects.add("a-plugin")

    result = run(env=BRANCH)

    assert result.returncode == 1
    assert index.files() == {p.name: sha256(p) for p in built["core"]}
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "No trusted publisher on a-plugin"
    assert error.file == f"dist/{built['a-plugin'][0].name}"
    assert "Add the same publisher" in error.message
    assert releases(result.summary) == {"core 2.0.0": "complete", "a-plugin 0.3.0": "untouched"}
    assert results(result.summary) == {
        built["core"][0].name: "uploaded",
        built["core"][1].name: "uploaded",
        built["a-plugin"][0].name: "failed",
        built["a-plugin"][1].name: "not uploaded",
    }
    assert json.loads(result.outputs["releases"]) == [
        {"project": "core", "version": "2.0.0", "url": ""}
    ]


def test_a_stale_second_version_is_refused_before_any_upload(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    monorepo(workspace)
    stale = make_wheel(workspace / "dist", "core", "1.9.0")

    result = run(env=BRANCH)

    assert result.returncode == 1
    assert index.made_public() == []
    assert index.alive_tokens() == []
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Several versions of one project"
    assert stale.name in error.message
    assert "`2.0.0`: `core-2.0.0-py3-none-any.whl`, `core-2.0.0.tar.gz`" in error.message


def test_a_wheel_at_1_0_and_an_sdist_at_1_0_0_are_one_release_as_pypi_files_them(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    dist = workspace / "dist"
    wheel, sdist = make_wheel(dist, "core", "2.0"), make_sdist(dist, "core", "2.0.0")
    plugin = make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides=NEEDS_CORE)

    result = run(env={"GITHUB_REF": "refs/tags/core-v2.0.0"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {p.name: sha256(p) for p in (wheel, sdist, plugin)}
    assert releases(result.summary) == {"core 2.0": "complete", "a-plugin 0.3.0": "complete"}
    assert results(result.summary) == {
        wheel.name: "uploaded",
        sdist.name: "uploaded",
        plugin.name: "uploaded",
    }
    assert [r["version"] for r in json.loads(result.outputs["releases"])] == ["2.0", "0.3.0"]


def test_a_tag_that_reads_as_one_projects_version_publishes_though_another_name_fits_too(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    dist = workspace / "dist"
    built = [make_wheel(dist, "lib", "2.0.0"), make_wheel(dist, "lib-2", "0.5.0")]

    # `lib` 2.0, or `lib-2` and `0`: the first reading is this run's.
    result = run({"attestations": "false"}, env={"GITHUB_REF": "refs/tags/lib-2.0"})

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {p.name: sha256(p) for p in built}


def test_an_optional_dependency_back_on_the_plugin_keeps_the_library_first(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    dist = workspace / "dist"
    optional = {"Requires-Dist": 'a-plugin; extra == "plugins"'}
    core = make_wheel(dist, "core", "2.0.0", metadata_overrides=optional)
    plugin = make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides=NEEDS_CORE)
    # The library is refused: the plugin, which needs it, must not be on the index alone.
    index.publishers = [replace(default_publisher(), projects={"a-plugin"})]
    index.projects.add("core")

    result = run({"attestations": "false"}, env=BRANCH)

    assert result.returncode == 1
    assert index.files() == {}
    assert results(result.summary) == {core.name: "failed", plugin.name: "not uploaded"}
    assert releases(result.summary) == {"core 2.0.0": "untouched", "a-plugin 0.3.0": "untouched"}


def test_a_release_cancelled_with_a_file_in_flight_is_perhaps_partial_naming_it(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    built = monorepo(workspace)
    core_wheel = built["core"][0]
    index.faults("upload", Fault.hold())

    def cancel(process: subprocess.Popen[str]) -> None:
        index.wait_for(held("upload"))
        process.send_signal(signal.SIGTERM)

    result = run({"attestations": "false"}, env=BRANCH, meanwhile=cancel)

    assert result.returncode == 143, result.stdout + result.stderr
    assert releases(result.summary) == {
        "core 2.0.0": f"perhaps partial: `{core_wheel.name}` may be on the index",
        "a-plugin 0.3.0": "untouched",
    }


def test_a_refused_release_leaves_the_complete_ones_attested_in_github_and_says_what_is_not(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    built = monorepo(workspace)
    index.publishers = [replace(default_publisher(), projects={"core"})]
    index.projects.add("a-plugin")

    result = run({"github-attestations": "true"}, env=BRANCH, sigstore=True)

    assert result.returncode == 1
    assert index.files() == {p.name: sha256(p) for p in built["core"]}
    assert releases(result.summary) == {"core 2.0.0": "complete", "a-plugin 0.3.0": "untouched"}
    stored = index.github.stored
    verify_stored(stored, built["core"], index.sigstore_trust_config)
    base = f"https://github.com/{identity.REPOSITORY}/attestations"
    assert {f["name"]: f["github-attestation"] for f in json.loads(result.outputs["files"])} == {
        dist.name: f"{base}/{s.id}" for dist, s in zip(built["core"], stored, strict=True)
    }
    [notice] = [a for a in result.annotations if a.title == UNSTORED]
    plugin_files = ", ".join(f"`{p.name}`" for p in built["a-plugin"])
    assert f"not those of {plugin_files}, which are not on the index" in notice.message
    assert not [a for a in result.annotations if a.level == "warning"]


def test_a_project_the_index_does_not_have_goes_first_and_is_diagnosed_as_missing(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    built = monorepo(workspace)
    # The publisher is on core; the plugin is new, and PyPI has no project of that name.
    index.publishers = [replace(default_publisher(), projects={"core"})]

    result = run({"attestations": "false"}, env=BRANCH)

    assert result.returncode == 1
    # The plugin went first: refused, it left nothing of the run on the index.
    assert index.files() == {}
    assert releases(result.summary) == {"a-plugin 0.3.0": "untouched", "core 2.0.0": "untouched"}
    assert results(result.summary) == {
        built["a-plugin"][0].name: "failed",
        built["a-plugin"][1].name: "not uploaded",
        built["core"][0].name: "not uploaded",
        built["core"][1].name: "not uploaded",
    }
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "a-plugin does not exist on 127.0.0.1"
    assert error.file == f"dist/{built['a-plugin'][0].name}"
    assert "HTTP 400 `Non-user identities cannot create new projects." in error.message
    assert "only through a pending publisher" in error.message
    assert "Add a pending publisher for the project `a-plugin`" in error.message
    assert "one project per run" in error.message
    assert "as PyPI normalises it" in error.message
