"""Uploads that survive the real network: retries, existing files, re-runs, expiry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import Run
from tests.localindex.dists import make_release, make_wheel, sha256
from tests.localindex.server import Fault, LocalIndex
from tests.summary import results

UNAVAILABLE = Fault.status(503, "Service Unavailable", headers={"Retry-After": "0"})
GIB = 1024**3
# An interpreter that runs the action as its only child, then writes the child's peak
# resident memory (KiB, as Linux counts it) to a file.
MEASURED_PYTHON = """\
#!{python}
import resource, subprocess, sys
status = subprocess.call([{python!r}, *sys.argv[1:]])
with open({report!r}, "w") as handle:
    handle.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status)
"""


def test_transient_upload_failures_are_retried(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace, payload_size=400_000)
    # The wheel's first attempt loses its connection mid-body, the second meets a 503,
    # the third a 429 that asks for a second's wait; the fourth goes through.
    index.faults(
        "upload",
        Fault.reset(after_bytes=100_000),
        UNAVAILABLE,
        Fault.status(429, "Too Many Requests", headers={"Retry-After": "1"}),
    )

    result = run({"attestations": "false"})

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert [entry.status for entry in index.log if entry.endpoint == "upload"][:4] == [
        "reset",
        503,
        429,
        200,
    ]
    notices = [a for a in result.annotations if a.level == "notice"]
    assert [n.title for n in notices] == [f"Retrying {wheel.name}"] * 3
    assert [n.file for n in notices] == [f"dist/{wheel.name}"] * 3
    assert "HTTP 503" in notices[1].message
    assert "HTTP 429" in notices[2].message
    assert "retrying in 1.0s" in notices[2].message
    assert results(result.summary) == {wheel.name: "uploaded", sdist.name: "uploaded"}


def test_a_permanent_5xx_ends_with_a_clear_error_after_bounded_attempts(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", *[UNAVAILABLE] * 20)

    result = run()

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The index did not answer"
    assert error.file == f"dist/{wheel.name}"
    assert "6 time(s)" in error.message
    assert index.count("upload") == 6
    assert results(result.summary) == {wheel.name: "failed", sdist.name: "not uploaded"}


def test_a_rerun_completes_a_release_that_failed_halfway(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    # The wheel goes up; the sdist meets an outage that outlasts every retry.
    index.faults("upload", Fault.delay(0), *[UNAVAILABLE] * 6)
    first = run()
    assert first.returncode == 1
    assert results(first.summary) == {wheel.name: "uploaded", sdist.name: "failed"}
    assert f"On the index: `{wheel.name}`. Not on the index: `{sdist.name}`." in first.summary
    assert set(index.files()) == {wheel.name}

    second = run()

    assert second.returncode == 0, second.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    # The wheel is there byte for byte: PyPI answers 200 to the identical file.
    assert results(second.summary) == {wheel.name: "uploaded", sdist.name: "uploaded"}


def test_an_identical_file_already_there_counts_as_published(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    # pypiserver answers "already exists" whatever the bytes: the listing decides.
    index.mode = "pypiserver"
    index.add_file(wheel)
    index.add_file(sdist)

    again = run({"attestations": "false"})

    assert again.returncode == 0, again.stdout
    assert results(again.summary) == {
        wheel.name: "already on the index (its listing shows this sha256)",
        sdist.name: "already on the index (its listing shows this sha256)",
    }
    assert [f["name"] for f in json.loads(again.outputs["files"])] == [wheel.name, sdist.name]
    assert again.annotations_besides(index.failed_handshakes) == []


def test_same_name_other_bytes_is_an_error_naming_both_hashes(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    published = make_wheel(workspace / "published", "sample-project", "1.0.0")
    index.add_file(published)
    rebuilt = make_wheel(workspace / "dist", "sample-project", "1.0.0", payload_size=10)

    result = run()

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "File already exists with other contents"
    assert error.file == f"dist/{rebuilt.name}"
    assert sha256(published) in error.message
    assert sha256(rebuilt) in error.message
    assert "skip-existing" in error.message
    assert index.files() == {published.name: sha256(published)}
    assert results(result.summary) == {rebuilt.name: "failed"}


def test_skip_existing_warns_about_other_bytes_and_never_calls_it_success(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    published = make_wheel(workspace / "published", "sample-project", "1.0.0")
    index.add_file(published)
    rebuilt = make_wheel(workspace / "dist", "sample-project", "1.0.0", payload_size=10)

    result = run({"skip-existing": "true"})

    assert result.returncode == 0, result.stdout
    [warning] = [a for a in result.annotations if a.level == "warning"]
    assert warning.title == "Skipped: the index has other bytes under this name"
    assert sha256(published) in warning.message
    assert sha256(rebuilt) in warning.message
    assert results(result.summary) == {rebuilt.name: "skipped: the index has other bytes"}
    assert json.loads(result.outputs["files"]) == []


def test_an_expired_api_token_is_an_error_not_a_loop(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.api_tokens.add("pypi-static-token")
    index.faults("upload", Fault.status(403, "Invalid API Token: token is expired"))

    result = run({"password": "pypi-static-token"}, id_token=False)

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Upload token expired"
    assert index.count("upload") == 1


def test_a_refusal_with_a_gib_page_fails_the_file_in_bounded_memory(
    index: LocalIndex, workspace: Path, run: Run, tmp_path: Path
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", Fault.huge(GIB, "html", 400))
    report = tmp_path / "peak-rss-kib"
    python = tmp_path / "measured-python"
    python.write_text(MEASURED_PYTHON.format(python=sys.executable, report=str(report)))
    python.chmod(0o755)

    result = run({"attestations": "false"}, python=str(python))

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Upload refused"
    assert error.file == f"dist/{wheel.name}"
    assert "HTTP 400 `Bad Request`" in error.message
    assert results(result.summary) == {wheel.name: "failed", sdist.name: "not uploaded"}
    # The whole run, interpreter and libraries included, stays far below the page's size.
    assert int(report.read_text()) * 1024 < 150_000_000
