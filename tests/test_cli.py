"""The whole run in-process: `main(environ, stdout, world)` against the local index, with the
environment passed in, GitHub's identity tokens asked for directly, and sleep and the run's
deadline under the test's control.

Cancellation is tested with real signals, sent to the main thread where `main` runs, once
the index's log shows the run where the test wants it (a request held in flight): never
after a timer.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from oidc_publish.attest import TRUST_CONFIG_VARIABLE
from oidc_publish.cli import World, main
from oidc_publish.outcomes import Outcome
from tests.inprocess import PATIENCE, runner_environ
from tests.localindex import clients
from tests.localindex.dists import make_release, make_sdist, make_wheel, sha256
from tests.localindex.runner import parse_commands, parse_outputs
from tests.localindex.server import Fault, LocalIndex, LogEntry
from tests.summary import results


class Run:
    def __init__(
        self, index: LocalIndex, workspace: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.index = index
        self.workspace = workspace
        self.env = dict(env or {})
        self.outputs = workspace.parent / "outputs"
        self.summary = workspace.parent / "summary"
        self.stdout = io.StringIO()

    def __call__(self, world: World, **inputs: str) -> int:
        environ = {**runner_environ(self.index, self.workspace, inputs), **self.env}
        return main(environ, self.stdout, world)

    def annotations(self) -> dict[str, str]:
        found, _ = parse_commands(self.stdout.getvalue().splitlines())
        return {a.title or "": a.message for a in found}

    def files_output(self) -> list[str]:
        """The names in the `files` output: the files the run says are on the index."""
        return [f["name"] for f in json.loads(parse_outputs(self.outputs.read_text())["files"])]


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


def test_a_project_created_at_the_mint_keeps_the_dependency_order(
    index: LocalIndex, workspace: Path
) -> None:
    dist = workspace / "dist"
    core = make_wheel(dist, "core", "2.0.0")
    plugin = make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides={"Requires-Dist": "core"})
    index.projects.add("core")
    # Both pages are read while the mint is held: the plugin's answers 404. Then the mint
    # creates the plugin's project, as a pending publisher's does, and answers (a retry).
    index.faults("mint", Fault.hold())

    def pending_publisher_mints() -> None:
        index.wait_for(
            lambda log: held("mint")(log) and sum(e.endpoint == "simple" for e in log) >= 2
        )
        index.projects.add("a-plugin")
        index.release_held()

    threading.Thread(target=pending_publisher_mints, daemon=True).start()
    run = Run(index, workspace, env={"GITHUB_REF": "refs/heads/main"})
    world = World(identity=identity(index).identity, sleep=lambda _: None, run_deadline=None)

    assert run(world, attestations="false") == 0, run.stdout.getvalue()

    assert set(index.files()) == {core.name, plugin.name}
    log = run.stdout.getvalue()
    assert log.index(f"{core.name}: uploaded") < log.index(f"{plugin.name}: uploaded")
    assert "/simple/a-plugin/" in [r.path for r in index.simple_requests[2:]]


SIGNALS = pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM], ids=lambda signum: signal.Signals(signum).name
)
# Far less than any held request would hold the run (a request's deadline is 60 s).
PROMPTLY = 10.0


def held(endpoint: str, count: int = 1) -> Callable[[list[LogEntry]], bool]:
    """The index's log shows `count` requests to `endpoint` held in flight."""
    return lambda log: sum(e.endpoint == endpoint and e.status == "held" for e in log) >= count


def cancel_when(
    index: LocalIndex, signum: int, condition: Callable[[list[LogEntry]], bool]
) -> None:
    """Once the index's log satisfies `condition`, sends `signum` to the main thread (where
    main runs), as the runner cancels a job."""
    target = threading.main_thread().ident
    assert target is not None

    def watch() -> None:
        index.wait_for(condition)
        signal.pthread_kill(target, signum)

    threading.Thread(target=watch, name="canceller", daemon=True).start()


def cancelled(run: Run, world: World, **inputs: str) -> int:
    """`run`, which a signal cancels; asserts that it ended promptly."""
    started = time.monotonic()
    code = run(world, **inputs)
    assert time.monotonic() - started < PROMPTLY, run.stdout.getvalue()
    return code


def settle(index: LocalIndex, before: set[threading.Thread]) -> None:
    """Ends the requests still held, and waits for what the run left behind (abandoned
    requests, workers, signing) to end: whatever it would still send is then logged."""
    index.release_held()
    for thread in set(threading.enumerate()) - before:
        if thread.name != "localindex":
            thread.join(PATIENCE)
            assert not thread.is_alive(), thread.name


def assert_cancelled(run: Run, signum: int, code: int, *, happened: str) -> None:
    name = signal.Signals(signum).name
    assert code == 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    message = run.annotations()["The run was cancelled"]
    assert f"The run was cancelled ({name}) {happened}" in message
    # The release is named once the files are read, which a signal may come before.
    headline = run.summary.read_text().splitlines()[0]
    assert headline.startswith("## 🛑 Publishing "), headline
    assert headline.endswith(" was cancelled"), headline
    assert "Traceback" not in run.stdout.getvalue()


def release_of(workspace: Path, wheels: int) -> list[Path]:
    """sample-project 1.0.0 as `wheels` wheels and an sdist, in the order they upload."""
    folder = workspace / "dist"
    tags = [f"py3{minor}-none-any" for minor in range(8, 8 + wheels)]
    paths = [
        make_wheel(folder, "sample-project", "1.0.0", filename=f"sample_project-1.0.0-{tag}.whl")
        for tag in tags
    ]
    return [*sorted(paths), make_sdist(folder, "sample-project", "1.0.0")]


@SIGNALS
def test_a_signal_during_the_token_exchange_ends_the_run_before_any_upload(
    index: LocalIndex, workspace: Path, signum: int
) -> None:
    make_release(workspace)
    index.faults("mint", Fault.hold())
    cancel_when(index, signum, held("mint"))
    before = set(threading.enumerate())
    run = Run(index, workspace)

    code = cancelled(run, identity(index), attestations="false")

    assert_cancelled(run, signum, code, happened="before any upload: nothing was uploaded")
    assert results(run.summary.read_text()) == {}
    assert run.files_output() == []
    settle(index, before)
    # The mint, dropped after the stop, was not tried again; nothing was uploaded.
    assert index.count("mint") == 1
    assert index.count("upload") == 0


@SIGNALS
def test_a_signal_during_signing_ends_the_run_and_starts_no_other_log_entry(
    signing: LocalIndex, workspace: Path, signum: int
) -> None:
    index = signing
    make_release(workspace)
    index.faults("rekor", Fault.hold(), Fault.hold())
    cancel_when(index, signum, held("rekor", 2))
    before = set(threading.enumerate())
    run = Run(index, workspace, env={TRUST_CONFIG_VARIABLE: str(index.sigstore_trust_config)})

    code = cancelled(run, identity(index))

    assert_cancelled(run, signum, code, happened="before any upload: nothing was uploaded")
    assert run.files_output() == []
    settle(index, before)
    # Both entries were dropped after the stop: neither was tried again.
    assert index.count("rekor") == 2
    assert index.sigstore.entries == 0
    assert index.count("upload") == 0


@SIGNALS
def test_a_signal_during_the_first_upload_abandons_it_and_says_so(
    index: LocalIndex, workspace: Path, signum: int
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", Fault.hold())
    cancel_when(index, signum, held("upload"))
    before = set(threading.enumerate())
    run = Run(index, workspace)

    code = cancelled(run, identity(index), attestations="false")

    assert_cancelled(run, signum, code, happened="during the uploads; none started after it")
    assert results(run.summary.read_text()) == {
        wheel.name: Outcome.IN_FLIGHT,
        sdist.name: Outcome.NOT_ATTEMPTED,
    }
    assert (
        f"In flight when the run stopped, so perhaps on the index: `{wheel.name}`. "
        f"Not on the index: `{sdist.name}`." in run.summary.read_text()
    )
    assert run.files_output() == []
    settle(index, before)
    assert index.count("upload") == 1


@SIGNALS
def test_a_signal_during_the_parallel_uploads_starts_no_other_and_names_what_is_on_the_index(
    index: LocalIndex, workspace: Path, signum: int
) -> None:
    first, *flying, last = release_of(workspace, 5)
    # The first file goes up; the four workers' uploads are held in flight; one is left.
    index.faults("upload", Fault.delay(0), *[Fault.hold()] * len(flying))
    cancel_when(index, signum, held("upload", len(flying)))
    before = set(threading.enumerate())
    run = Run(index, workspace)

    code = cancelled(run, identity(index), attestations="false")

    assert_cancelled(run, signum, code, happened="during the uploads; none started after it")
    assert results(run.summary.read_text()) == {
        first.name: Outcome.UPLOADED,
        **{path.name: Outcome.IN_FLIGHT for path in flying},
        last.name: Outcome.NOT_ATTEMPTED,
    }
    assert run.files_output() == [first.name]
    assert index.files() == {first.name: sha256(first)}
    settle(index, before)
    # The uploads held in flight were dropped after the stop: none was tried again, and the
    # last file never started.
    assert index.count("upload") == 1 + len(flying)
    assert index.files() == {first.name: sha256(first)}


@SIGNALS
def test_a_signal_while_waiting_until_installable_reports_the_release_as_published(
    index: LocalIndex, workspace: Path, signum: int
) -> None:
    wheel, sdist = make_release(workspace)
    index.listing_delay = "never"

    def interrupted(seconds: float) -> None:
        """The wait's sleep, during which the job is cancelled."""
        signal.raise_signal(signum)

    run = Run(index, workspace)
    world = World(identity=identity(index).identity, sleep=interrupted, run_deadline=None)

    code = run(world, **{"wait-until-installable": "true", "attestations": "false"})

    assert_cancelled(run, signum, code, happened="once every file was on the index")
    assert "Re-run the job" not in run.annotations()["The run was cancelled"]
    assert results(run.summary.read_text()) == {
        wheel.name: Outcome.UPLOADED,
        sdist.name: Outcome.UPLOADED,
    }
    assert run.files_output() == [wheel.name, sdist.name]


def test_the_deadline_during_the_parallel_uploads_starts_no_other_and_names_what_is_on_the_index(
    index: LocalIndex, workspace: Path
) -> None:
    first, *flying, last = release_of(workspace, 5)
    # The first file goes up; the four workers' uploads are held until the deadline passes.
    index.faults("upload", Fault.delay(0), *[Fault.hold()] * len(flying))
    before = set(threading.enumerate())
    run = Run(index, workspace)
    world = identity(index)

    code = run(World(identity=world.identity, run_deadline=1.0), attestations="false")

    assert code == 1
    assert "did not finish within" in run.annotations()["The run took too long"]
    assert results(run.summary.read_text()) == {
        first.name: Outcome.UPLOADED,
        **{path.name: Outcome.IN_FLIGHT for path in flying},
        last.name: Outcome.NOT_ATTEMPTED,
    }
    assert run.files_output() == [first.name]
    settle(index, before)
    # The deadline stops the run as a cancellation does: the last file never started.
    assert index.count("upload") == 1 + len(flying)
    assert index.files() == {first.name: sha256(first)}
    assert index.alive_tokens() == []
