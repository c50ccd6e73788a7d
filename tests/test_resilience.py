"""Uploads that survive the real network: retries, token renewal, existing files, re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.localindex.dists import make_release, make_wheel, sha256
from tests.localindex.runner import ActionRun
from tests.localindex.server import Fault, LocalIndex

UNAVAILABLE = Fault.status(503, "Service Unavailable", headers={"Retry-After": "0"})


def results(run: ActionRun) -> dict[str, str]:
    """File name -> result, from the step summary's table."""
    rows = {}
    for line in run.summary.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and "`" in cells[0]:
            rows[cells[0].split("`")[1]] = cells[4]
    return rows


def test_a_503_is_retried(index: LocalIndex, workspace: Path, run: Run) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", UNAVAILABLE)

    result = run()

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert index.count("upload", 503) == 1
    [notice] = [a for a in result.annotations if a.level == "notice"]
    assert notice.title == f"Retrying {wheel.name}"
    assert "HTTP 503" in notice.message


def test_a_connection_dropped_mid_body_is_retried(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace, payload_size=400_000)
    index.faults("upload", Fault.reset(after_bytes=100_000))

    result = run()

    assert result.returncode == 0, result.stdout
    assert index.count("upload", "reset") == 1
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}


def test_a_429_waits_as_long_as_retry_after_says(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.faults("upload", Fault.status(429, "Too Many Requests", headers={"Retry-After": "1"}))

    result = run()

    assert result.returncode == 0, result.stdout
    assert "retrying in 1.0s" in result.stdout
    assert index.count("upload", 429) == 1


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
    assert results(result) == {wheel.name: "failed", sdist.name: "not uploaded"}


def test_a_rerun_completes_a_release_that_failed_halfway(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    # The wheel goes up; the sdist meets an outage that outlasts every retry.
    index.faults("upload", Fault.delay(0), *[UNAVAILABLE] * 6)
    first = run()
    assert first.returncode == 1
    assert f"On the index: `{wheel.name}`. Not on the index: `{sdist.name}`." in first.summary
    assert set(index.files()) == {wheel.name}

    second = run()

    assert second.returncode == 0, second.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}


def test_an_identical_file_already_there_counts_as_published(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.mode = "pypiserver"
    assert run().returncode == 0

    again = run()

    assert again.returncode == 0, again.stdout
    assert results(again) == {
        wheel.name: "already on the index",
        sdist.name: "already on the index",
    }
    assert [f["name"] for f in json.loads(again.outputs["files"])] == [wheel.name, sdist.name]


def test_an_earlier_attempt_that_landed_is_recognised_by_hash(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, _ = make_release(workspace)
    index.mode = "pypiserver"
    # The first attempt stored the file but its answer was lost; the retry finds it there.
    index.add_file(wheel)
    index.faults("upload", UNAVAILABLE)

    result = run()

    assert result.returncode == 0, result.stdout
    assert results(result)[wheel.name] == "uploaded"


@pytest.mark.parametrize("mode", ["pypi", "pypiserver"])
def test_same_name_other_bytes_is_an_error_naming_both_hashes(
    index: LocalIndex, workspace: Path, run: Run, mode: str
) -> None:
    index.mode = mode  # type: ignore[assignment]
    wheel, _ = make_release(workspace)
    published = sha256(wheel)
    assert run().returncode == 0
    wheel.unlink()
    rebuilt = make_wheel(workspace / "dist", "sample-project", "1.0.0", payload_size=10)

    result = run()

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "File already exists with other contents"
    assert published in error.message
    assert sha256(rebuilt) in error.message
    assert "skip-existing" in error.message
    assert index.files()[rebuilt.name] == published


def test_skip_existing_warns_about_other_bytes_and_never_calls_it_success(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, _ = make_release(workspace)
    published = sha256(wheel)
    assert run().returncode == 0
    wheel.unlink()
    rebuilt = make_wheel(workspace / "dist", "sample-project", "1.0.0", payload_size=10)

    result = run({"skip-existing": "true"})

    assert result.returncode == 0, result.stdout
    [warning] = [a for a in result.annotations if a.level == "warning"]
    assert published in warning.message
    assert sha256(rebuilt) in warning.message
    assert results(result)[rebuilt.name] == "skipped: the index has other bytes"
    assert rebuilt.name not in [f["name"] for f in json.loads(result.outputs["files"])]


def test_upload_token_is_renewed_before_it_expires_on_a_slow_release(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    dist = workspace / "dist"
    wheels = [
        make_wheel(
            dist,
            "sample-project",
            "1.0.0",
            payload_size=250_000,
            filename=f"sample_project-1.0.0-{n}-py3-none-any.whl",
        )
        for n in range(1, 4)
    ]
    # Each upload takes about a second against a three-second token: the third would arrive
    # after the first token died.
    index.token_lifetime = 3
    index.upload_throttle = 250_000

    result = run()

    assert result.returncode == 0, result.stdout
    assert {p.name for p in wheels} == set(index.files())
    assert index.count("upload", 403) == 0
    assert len(index.minted_tokens) >= 2
    assert index.count("id-token") == len(index.minted_tokens)
    assert "Renewing the upload token" in result.stdout
    assert not result.leaked(index)


def test_a_token_the_index_calls_expired_is_minted_again_once(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.faults("upload", Fault.status(403, "Invalid API Token: token is expired"))

    result = run()

    assert result.returncode == 0, result.stdout
    assert len(index.minted_tokens) == 2
    assert len(set(index.files())) == 2


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


def test_retry_notices_keep_to_ten_annotations(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheels = [
        make_wheel(
            workspace / "dist",
            "sample-project",
            "1.0.0",
            filename=f"sample_project-1.0.0-{n}-py3-none-any.whl",
        )
        for n in range(1, 4)
    ]
    # Each file fails four times before it goes up: twelve retries in all.
    for _ in wheels:
        index.faults("upload", *[UNAVAILABLE] * 4, Fault.delay(0))

    result = run()

    assert result.returncode == 0, result.stdout
    assert set(index.files()) == {w.name for w in wheels}
    logged = [line for line in result.stdout.splitlines() if ": Attempt " in line]
    assert len([line for line in logged if not line.startswith("::")]) == 12
    notices = [a for a in result.annotations if a.level == "notice"]
    assert len(notices) == 10
    assert notices[-1].title == "3 more notices"
