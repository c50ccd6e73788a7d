"""The whole run in-process: `main(environ, stdout, world)` against the local index, with the
environment passed in, GitHub's identity tokens asked for directly, and sleep and the run's
deadline under the test's control."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from oidc_publish.cli import World, main
from tests.inprocess import runner_environ
from tests.localindex import clients
from tests.localindex.dists import make_release, sha256
from tests.localindex.runner import parse_commands, parse_outputs
from tests.localindex.server import Fault, LocalIndex


class Run:
    def __init__(self, index: LocalIndex, workspace: Path) -> None:
        self.index = index
        self.workspace = workspace
        self.outputs = workspace.parent / "outputs"
        self.summary = workspace.parent / "summary"
        self.stdout = io.StringIO()

    def __call__(self, world: World, **inputs: str) -> int:
        return main(runner_environ(self.index, self.workspace, inputs), self.stdout, world)

    def annotations(self) -> dict[str, str]:
        found, _ = parse_commands(self.stdout.getvalue().splitlines())
        return {a.title or "": a.message for a in found}


def identity(index: LocalIndex) -> World:
    return World(identity=lambda audience: clients.id_token(index, audience), run_deadline=None)


def test_a_release_is_published_through_trusted_publishing(
    index: LocalIndex, workspace: Path
) -> None:
    wheel, sdist = make_release(workspace)
    run = Run(index, workspace)

    assert run(identity(index)) == 0, run.stdout.getvalue()

    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    files = json.loads(parse_outputs(run.outputs.read_text())["files"])
    assert [f["name"] for f in files] == [wheel.name, sdist.name]
    shown = "\n".join(
        line for line in run.stdout.getvalue().splitlines() if not line.startswith("::add-mask::")
    )
    assert index.secrets()
    assert not [secret for secret in index.secrets() if secret in shown + run.summary.read_text()]
    assert "✅ Published sample-project 1.0.0" in run.summary.read_text()


def test_retries_wait_through_the_worlds_sleep(index: LocalIndex, workspace: Path) -> None:
    make_release(workspace)
    index.faults("upload", Fault.status(503, headers={"Retry-After": "30"}))
    slept: list[float] = []
    run = Run(index, workspace)
    world = identity(index)

    started = time.monotonic()
    code = run(
        World(identity=world.identity, sleep=slept.append, run_deadline=None),
        attestations="false",
    )

    assert code == 0, run.stdout.getvalue()
    assert slept == [30.0]
    assert time.monotonic() - started < 30
    assert "Retrying sample_project-1.0.0-py3-none-any.whl" in run.annotations()


def test_the_run_ends_at_its_deadline_whatever_it_waits_on(
    index: LocalIndex, workspace: Path
) -> None:
    make_release(workspace)
    # The mint answers only after the run's deadline.
    index.faults("mint", Fault.delay(5))
    run = Run(index, workspace)
    world = identity(index)

    started = time.monotonic()
    code = run(World(identity=world.identity, run_deadline=0.5))

    assert code == 1
    assert time.monotonic() - started < 4
    annotations = run.annotations()
    assert "The run took too long" in annotations
    assert "did not finish within" in annotations["The run took too long"]
    assert index.count("upload") == 0
    assert "❌ Publishing sample-project 1.0.0 to 127.0.0.1 failed" in run.summary.read_text()


def two_projects(workspace: Path) -> list[Path]:
    from tests.localindex.dists import make_sdist, make_wheel

    # Released in lockstep, at the version the run's tag (v1.0.0) names.
    dist = workspace / "dist"
    return [
        make_wheel(dist, "core", "1.0.0"),
        make_sdist(dist, "core", "1.0.0"),
        make_wheel(dist, "core-stubs", "1.0.0"),
    ]


def test_a_dry_run_rehearses_every_release_and_uploads_nothing(
    index: LocalIndex, workspace: Path
) -> None:
    two_projects(workspace)
    run = Run(index, workspace)

    assert run(identity(index), **{"dry-run": "true", "attestations": "false"}) == 0

    summary = run.summary.read_text()
    assert summary.startswith("## 🧪 Dry run: 2 releases would be published to 127.0.0.1")
    assert "**core 1\\.0\\.0**: rehearsed" in summary
    assert "**core\\-stubs 1\\.0\\.0**: rehearsed" in summary
    assert summary.count("would upload (dry run)") == 3
    assert index.count("upload") == 0
    assert index.count("mint") == 1
    assert json.loads(parse_outputs(run.outputs.read_text())["releases"]) == []


def test_waiting_until_installable_waits_for_every_project(
    index: LocalIndex, workspace: Path
) -> None:
    two_projects(workspace)
    # New files stay unlisted for two reads of their project's page.
    index.listing_delay = 2
    slept: list[float] = []
    run = Run(index, workspace)
    world = identity(index)

    code = run(
        World(identity=world.identity, sleep=slept.append, run_deadline=None),
        **{"wait-until-installable": "true", "attestations": "false"},
    )

    assert code == 0, run.stdout.getvalue()
    uncached = [
        r.path for r in index.simple_requests if r.headers.get("Cache-Control") == "no-cache"
    ]
    assert uncached.count("/simple/core/") >= 2
    assert uncached.count("/simple/core-stubs/") >= 2
    assert slept, "the wait never polled again"
    assert parse_outputs(run.outputs.read_text())["installable-after"] != ""
    assert "Installable from the index" in run.summary.read_text()
