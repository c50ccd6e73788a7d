"""The guardrails through the local index: the tag against the version, a project the index
will refuse, and waiting until the release is installable. The rules themselves, both ways
each, are in test_release_rules.py and test_installable.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oidc_publish.cli import World
from tests.conftest import Run
from tests.inprocess import FakeTime
from tests.localindex.dists import make_release, make_wheel
from tests.localindex.runner import parse_outputs
from tests.localindex.server import LocalIndex
from tests.test_cli import Run as InProcess
from tests.test_cli import identity


@pytest.mark.parametrize("tag", ["v1.0.0", "1.0", "sample-project-1.0.0", "nightly"])
def test_a_tag_that_names_the_version_or_none_publishes(
    index: LocalIndex, workspace: Path, run: Run, tag: str
) -> None:
    wheel, sdist = make_release(workspace)

    result = run({"attestations": "false"}, env={"GITHUB_REF": f"refs/tags/{tag}"})

    assert result.returncode == 0, result.stdout
    assert set(index.files()) == {wheel.name, sdist.name}


def test_a_tag_for_another_version_stops_the_run_before_any_upload(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run(env={"GITHUB_REF": "refs/tags/v1.0.1"})

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The tag and the version differ"
    assert "1.0.1" in error.message
    assert "sample-project 1.0.0" in error.message
    assert "`verify-tag: false`" in error.message
    assert index.made_public() == []
    assert index.alive_tokens() == []
    # The check can be turned off for tags that mean something else.
    assert run({"verify-tag": "false"}, env={"GITHUB_REF": "refs/tags/v1.0.1"}).returncode == 0


def test_an_archived_project_is_refused_before_the_first_upload(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    # An archived project has releases; this one an older one.
    index.add_file(make_wheel(workspace.parent / "older", "sample-project", "0.9.0"))
    index.project_status["sample-project"] = "archived"

    result = run()

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The project does not accept uploads"
    assert "archived" in error.message
    assert index.count("upload") == 0


def waiting(run: InProcess, index: LocalIndex, time: FakeTime) -> int:
    """`run` with `wait-until-installable`, sleeping on `time`."""
    world = World(
        identity=identity(index).identity,
        sleep=time.sleep,
        monotonic=time.clock,
        run_deadline=None,
    )
    return run(world, **{"wait-until-installable": "true", "attestations": "false"})


def test_the_run_waits_until_the_index_lists_every_file(index: LocalIndex, workspace: Path) -> None:
    make_release(workspace)
    index.listing_delay = 3
    time = FakeTime()
    run = InProcess(index, workspace)

    code = waiting(run, index, time)

    assert code == 0, run.stdout.getvalue()
    waited = sum(time.sleeps)
    assert waited >= 1
    outputs = parse_outputs(run.outputs.read_text())
    assert outputs["installable-after"] == f"{waited:.0f}"
    assert "Installable from the index" in run.summary.read_text()
    assert any(r.headers.get("Cache-Control") == "no-cache" for r in index.simple_requests)


def test_an_index_that_never_lists_the_files_is_a_warning_at_the_deadline(
    index: LocalIndex, workspace: Path
) -> None:
    make_release(workspace)
    index.listing_delay = "never"
    time = FakeTime()
    run = InProcess(index, workspace)

    code = waiting(run, index, time)

    assert code == 0, run.stdout.getvalue()
    assert sum(time.sleeps) == pytest.approx(300.0)
    assert "Uploaded, but not installable yet" in run.annotations()
    outputs = parse_outputs(run.outputs.read_text())
    assert len(json.loads(outputs["files"])) == 2
    assert outputs["installable-after"] == ""
