"""The whole action, run as the runner runs it, against the local index."""

from __future__ import annotations

import json
from pathlib import Path

from oidc_publish.report import VERBOSE_GROUP
from tests.conftest import Run, pip_install
from tests.localindex.dists import make_release, make_wheel, sha256
from tests.localindex.server import Fault, LocalIndex, Publisher
from tests.summary import results, rows


def test_trusted_publishing_puts_the_release_on_the_index(
    index: LocalIndex, workspace: Path, run: Run, tmp_path: Path
) -> None:
    wheel, sdist = make_release(workspace)

    result = run(sigstore=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    installed = pip_install(index, "sample-project==1.0.0", tmp_path / "site")
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "site" / "sample_project" / "__init__.py").exists()
    # The token is masked before anything could print it: before the uploads begin.
    [minted] = index.minted_tokens
    assert minted in result.masks
    mask_line = f"::add-mask::{minted}"
    assert result.stdout.index(mask_line) < result.stdout.index("::group::Uploading")
    assert minted not in result.all_text().replace(mask_line, "")
    # The wheel goes up first, alone, so the release exists before the sdist arrives.
    assert result.stdout.index(f"{wheel.name}: uploaded") < result.stdout.index(
        f"{sdist.name}: uploaded"
    )
    files = json.loads(result.outputs["files"])
    assert [(f["name"], f["sha256"]) for f in files] == [
        (wheel.name, sha256(wheel)),
        (sdist.name, sha256(sdist)),
    ]
    assert all(f["url"].startswith(f"{index.url}/packages/") for f in files)
    assert result.outputs["release-url"] == ""
    assert [(r.file, r.sha256, r.result) for r in rows(result.summary)] == [
        (wheel.name, sha256(wheel), "uploaded"),
        (sdist.name, sha256(sdist), "uploaded"),
    ]
    assert [r.link for r in rows(result.summary)] == [f["url"] for f in files]
    assert result.annotations_besides(index.failed_handshakes) == []
    # `verbose` is on by default: every request is in the log, together in one group at
    # the end; before it, the steps' own lines.
    lines = result.stdout.splitlines()
    verbose = lines.index(f"::group::{VERBOSE_GROUP}")
    assert any(line.startswith("POST ") and "/legacy/" in line for line in lines[verbose:])
    assert not any(line.startswith(("POST ", "GET ")) for line in lines[:verbose])


def test_api_token_upload_needs_no_identity_token(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel = make_wheel(workspace / "wheelhouse", "sample-project", "1.0.0")
    index.api_tokens.add("pypi-static-api-token-for-tests")

    # Written as the action this one replaces spelt its inputs, which win when given.
    result = run(
        {
            "password": "pypi-static-api-token-for-tests",
            "packages_dir": "wheelhouse",
            "repository-url": "https://ignored.example/legacy/",
            "repository_url": index.upload_url,
        },
        id_token=False,
    )

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel)}
    assert index.count("id-token") == 0
    assert index.count("mint") == 0
    assert index.count("audience") == 0
    assert index.count("burn") == 0  # a user's token is never sent there
    assert "pypi-static-api-token-for-tests" in result.masks
    assert results(result.summary) == {wheel.name: "uploaded"}


def test_token_exchange_outages_are_retried_with_fresh_identity_tokens(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("id-token", Fault.status(502, headers={"Retry-After": "0"}))
    unavailable = Fault.status(503, "Service Unavailable", headers={"Retry-After": "0"})
    index.faults("mint", unavailable, unavailable)

    result = run()

    assert result.returncode == 0, result.stdout
    assert index.count("mint") == 3
    assert index.count("mint", 200) == 1
    # PyPI burns every jti it sees, so each mint attempt needs its own identity token.
    assert index.count("id-token") == 4
    assert index.count("id-token", 502) == 1
    assert len(set(index.issued_id_tokens)) == 3
    assert set(index.files()) == {wheel.name, sdist.name}
    retries = [line for line in result.stdout.splitlines() if "retrying in" in line]
    # GitHub's 502 and the mint's two 503s: each is one retry of the exchange, in the open.
    assert [line.split(":")[0] for line in retries if not line.startswith("::")] == [
        "the token exchange"
    ] * 3


def test_invalid_publisher_is_explained_not_retried_and_nothing_is_uploaded(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.publishers = [Publisher("octo-org", "sample-project", "1234567", "publish.yml", "pypi")]

    result = run()

    assert result.returncode == 1
    assert index.count("mint") == 1
    assert index.count("upload") == 0
    assert index.files() == {}
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "PyPI refused the identity token"
    assert "invalid-publisher" in error.message
    assert "Publisher with matching claims was not found" in error.message
    assert "release.yml" in error.message
    # The summary sets this run's claims beside the publisher PyPI would need.
    assert (
        "octo-org/sample-project/.github/workflows/release.yml@refs/tags/v1.0.0" in result.summary
    )
    assert "`release.yml`" in result.summary
    assert "`1234567`" in result.summary


def test_no_distributions_is_an_error_before_any_request(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    result = run()

    assert result.returncode == 1
    [error] = result.annotations
    assert error.title == "No distributions to upload"
    assert "`dist` is empty" in error.message
    assert "download-artifact" in error.message
    assert index.log == []
