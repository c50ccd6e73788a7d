"""Once a file is on the index, the exit code and the summary's verdict are the uploads'.

What runs after them (reading the files' URLs from the index, waiting until the release is
installable, storing attestations in GitHub) may add a warning, never a failure; only a
cancellation ends the run from there, with its own exit code. In-process through
`cli.main` against the local index; GitHub's store has its own tests in
test_github_attestations.py, the cancellation while waiting in test_cli.py.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from oidc_publish.cli import World
from tests.localindex.dists import make_release, sha256
from tests.localindex.runner import parse_outputs
from tests.localindex.server import Fault, LocalIndex
from tests.test_cli import Run, identity

JSON = "application/vnd.pypi.simple.v1+json"
# Hosts no URL parser takes: urljoin raises ValueError for either.
UNPARSABLE = ["https://[x/", "https://a]b/"]


def page_with_unparsable_urls(files: list[Path], host: str) -> Fault:
    """The project's page in JSON, each file's URL on a host that does not parse."""
    body = {
        "meta": {"api-version": "1.4"},
        "name": "sample-project",
        "files": [
            {"filename": f.name, "url": f"{host}{f.name}", "hashes": {"sha256": sha256(f)}}
            for f in files
        ],
    }
    return Fault.status(200, body=json.dumps(body), content_type=JSON)


def published(run: Run, index: LocalIndex, files: tuple[Path, ...], code: int) -> None:
    assert code == 0, run.stdout.getvalue()
    assert index.files() == {f.name: sha256(f) for f in files}
    summary = run.summary.read_text()
    assert summary.startswith("## ✅ Published sample-project 1.0.0 to 127.0.0.1"), summary
    assert run.files_output() == [f.name for f in files]
    assert "Internal error" not in run.annotations()


# The simple API's requests, in order: the page for the index's rules before the first
# upload, the listing that gives each uploaded file its URL, then the wait's looks.
RULES, URLS, FIRST_LOOK = 0, 1, 2


@pytest.mark.parametrize("host", UNPARSABLE)
@pytest.mark.parametrize("which", [RULES, URLS], ids=["rules", "urls"])
def test_a_page_whose_urls_do_not_parse_is_the_index_not_saying(
    index: LocalIndex, workspace: Path, host: str, which: int
) -> None:
    files = make_release(workspace)
    index.faults("simple", *[Fault.delay(0)] * which, page_with_unparsable_urls(list(files), host))
    run = Run(index, workspace)

    code = run(identity(index), attestations="false")

    published(run, index, files, code)


@pytest.mark.parametrize("host", UNPARSABLE)
def test_waiting_until_installable_reads_past_a_page_whose_urls_do_not_parse(
    index: LocalIndex, workspace: Path, host: str
) -> None:
    files = make_release(workspace)
    unparsable = page_with_unparsable_urls(list(files), host)
    index.faults("simple", *[Fault.delay(0)] * FIRST_LOOK, unparsable)
    slept: list[float] = []
    run = Run(index, workspace)
    world = World(identity=identity(index).identity, sleep=slept.append, run_deadline=None)

    code = run(world, **{"wait-until-installable": "true", "attestations": "false"})

    published(run, index, files, code)
    assert slept == [1.0]
    assert parse_outputs(run.outputs.read_text())["installable-after"] != ""


def test_the_runs_deadline_passing_while_waiting_until_installable_is_a_warning(
    index: LocalIndex, workspace: Path
) -> None:
    files = make_release(workspace)
    index.listing_delay = "never"

    def deadline(seconds: float) -> None:
        """The wait's sleep, during which the run's 60 minutes run out."""
        signal.raise_signal(signal.SIGALRM)

    run = Run(index, workspace)
    world = World(identity=identity(index).identity, sleep=deadline, run_deadline=3600)

    code = run(world, **{"wait-until-installable": "true", "attestations": "false"})

    published(run, index, files, code)
    warning = run.annotations()["Waiting until the index lists every file did not finish"]
    assert "The run did not finish within 60 minutes." in warning
    assert "The uploads' result stands" in warning
    assert parse_outputs(run.outputs.read_text())["installable-after"] == ""
