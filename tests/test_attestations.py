"""PEP 740 attestations end to end: the action signs against the local Sigstore, the local
index verifies each attestation as PyPI does, and the Integrity API serves it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Run
from tests.localindex import identity
from tests.localindex.clients import https_client
from tests.localindex.dists import make_release, sha256
from tests.localindex.github_api import verify_stored
from tests.localindex.server import Fault, LocalIndex
from tests.localindex.sigstore import PUBLISH_V1
from tests.summary import results, rows

ATTESTATION_REFUSED = (
    "Invalid attestations supplied during upload: Could not verify the uploaded artifact "
    "using the included attestation: Verification failed: Certificate's Build Config URI "
    "(https://github.com/octo-org/sample-project/.github/workflows/ci.yml@refs/tags/v1.0.0) "
    "does not match expected Trusted Publisher (release.yml @ octo-org/sample-project)"
)


def provenance(index: LocalIndex, filename: str) -> dict[str, Any] | None:
    url = index.provenance_url(filename)
    assert url is not None
    with https_client(index) as client:
        answer = client.get(url)
    return answer.json() if answer.status_code == 200 else None


def test_every_file_is_signed_and_verified_by_the_index(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    before = sorted(p.name for p in workspace.rglob("*"))

    result = run(sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    for dist in (wheel, sdist):
        bundle = provenance(index, dist.name)
        assert bundle is not None, dist.name
        [published] = bundle["attestation_bundles"]
        assert published["publisher"]["workflow"] == identity.WORKFLOW_FILE
    files = json.loads(result.outputs["files"])
    assert [f["attested"] for f in files] == [True, True]
    # One certificate for the release, one log entry per file.
    assert index.sigstore.certificates_issued == 1
    assert index.sigstore.entries == 2
    assert "Every file carries a PEP 740 attestation" in result.summary
    assert sorted(p.name for p in workspace.rglob("*")) == before, "wrote into the workspace"


def test_a_rekor_502_is_retried_and_every_file_attested(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("rekor", Fault.status(502, headers={"Retry-After": "0"}))

    result = run(sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.count("rekor", 502) == 1
    assert "Sigstore (Rekor): attempt 1 failed" in result.stdout
    assert all(provenance(index, d.name) for d in (wheel, sdist))


def test_fulcio_down_for_good_is_one_error_and_nothing_is_uploaded(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.faults("fulcio", *[Fault.status(503, headers={"Retry-After": "0"})] * 6)

    result = run(sigstore=True)

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Sigstore did not sign the release"
    assert "Fulcio kept failing: 6 attempt(s)" in error.message
    assert "https://status.sigstore.dev" in error.message
    assert "`attestations: false`" in error.message
    assert index.count("upload") == 0
    assert index.files() == {}


def test_a_reusable_workflow_publishes_without_attestations_and_says_why(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    # The job runs in release.yml (the publisher), called from ci.yml.
    index.claims["workflow_ref"] = f"{identity.REPOSITORY}/.github/workflows/ci.yml@{identity.REF}"

    result = run(sigstore=True)

    assert result.returncode == 0, result.stdout
    assert set(index.files()) == {wheel.name, sdist.name}
    warnings = {a.title: a.message for a in result.annotations if a.level == "warning"}
    assert "Published without attestations from a reusable workflow" in warnings
    assert "reusable-workflows" in result.summary
    assert index.sigstore.certificates_issued == 0
    assert [f["attested"] for f in json.loads(result.outputs["files"])] == [False, False]


def test_stale_attestation_files_are_ignored_and_two_runs_in_one_job_work(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    for dist in (wheel, sdist):
        (dist.parent / f"{dist.name}.publish.attestation").write_text("{}")

    first = run(sigstore=True)
    # The same job publishes again (to TestPyPI, then PyPI): nothing it left behind gets in
    # the way.
    second = run(sigstore=True)

    for result in (first, second):
        assert result.returncode == 0, result.stdout
        [notice] = [a for a in result.annotations if a.title and "Attestation files" in a.title]
        assert "2 `*.publish.attestation` file(s)" in notice.message
    assert set(index.files()) == {wheel.name, sdist.name}
    assert all(provenance(index, d.name) for d in (wheel, sdist))


def test_an_api_token_uploads_without_attestations_with_one_notice(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.api_tokens.add("pypi-static-api-token")

    result = run({"password": "pypi-static-api-token"}, id_token=False, sigstore=True)

    assert result.returncode == 0, result.stdout
    [notice] = [a for a in result.annotations if a.title == "No attestations for this upload"]
    assert "trusted publishing" in notice.message
    assert index.count("fulcio") == 0
    assert set(index.files()) == {wheel.name, sdist.name}


def test_an_index_that_does_not_verify_attestations_gets_none_with_one_notice(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)

    result = run()

    assert result.returncode == 0, result.stdout
    assert set(index.files()) == {wheel.name, sdist.name}
    [notice] = [a for a in result.annotations if a.title == "No attestations for this upload"]
    assert "127.0.0.1 is not PyPI or TestPyPI" in notice.message
    assert index.count("fulcio") == 0


def test_attestations_false_makes_no_sigstore_request(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    # Storing them in GitHub as well is asked for, but there is nothing to store.
    result = run({"attestations": "false", "github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.count("fulcio") == index.count("rekor") == 0
    assert index.sigstore.certificates_issued == 0
    [notice] = [a for a in result.annotations if "ttestation" in (a.title or "")]
    assert notice.title == "Nothing stored in GitHub's attestation store"
    assert "no attestations were made: `attestations: false`" in notice.message
    assert index.count("github-attestations") == 0


def test_a_dry_run_signs_nothing_and_says_it_would(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run({"dry-run": "true", "github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.count("fulcio") == 0
    assert "every file would carry a PEP 740 attestation" in result.summary
    [notice] = [
        a for a in result.annotations_besides(index.failed_handshakes) if a.level == "notice"
    ]
    assert notice.title == "Dry run: nothing stored in GitHub's attestation store"
    assert "would store the attestation of each file it uploads (2 now)" in notice.message
    assert index.count("github-attestations") == 0


def test_pypis_refusal_of_an_attestation_is_diagnosed(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, _ = make_release(workspace)
    index.faults("upload", Fault.status(400, ATTESTATION_REFUSED))

    result = run(sigstore=True)

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Attestation refused"
    assert error.file == f"dist/{wheel.name}"
    assert "Build Config URI" in error.message
    assert "name the calling workflow's file in the publisher" in error.message
    assert results(result.summary)[wheel.name] == "failed"


def test_github_attestations_store_every_file_where_gh_attestation_verify_finds_it(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)

    result = run({"github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    stored = index.github.stored
    verify_stored(stored, [wheel, sdist], index.sigstore_trust_config)
    assert all(provenance(index, dist.name) for dist in (wheel, sdist)), "PyPI's copy is gone"
    base = f"https://github.com/{identity.REPOSITORY}/attestations"
    files = json.loads(result.outputs["files"])
    assert [f["github-attestation"] for f in files] == [f"{base}/{s.id}" for s in stored]
    assert [row.attestation_links["GitHub"] for row in rows(result.summary)] == [
        f"{base}/{s.id}" for s in stored
    ]
    assert f"--repo {identity.REPOSITORY} --predicate-type {PUBLISH_V1}" in result.summary
    assert not [a for a in result.annotations if a.level != "notice"]


def test_github_attestations_without_the_permission_warn_and_leave_the_release_whole(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.github_permissions = {}

    result = run({"github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert all(provenance(index, d.name) for d in (wheel, sdist))
    [warning] = [a for a in result.annotations if a.level == "warning"]
    assert warning.title == "GitHub's attestation store needs `attestations: write`"
    assert f"`{wheel.name}`, `{sdist.name}`" in warning.message
    assert "Add `attestations: write` to the publishing job's `permissions:`" in warning.message
    assert index.github.stored == []
    assert [f["github-attestation"] for f in json.loads(result.outputs["files"])] == ["", ""]


# GitHub's store answering 503 at once (Retry-After: 0), so the run's real sleeps are nil.
STORE_DOWN = Fault.status(503, headers={"Retry-After": "0"})


def test_github_attestations_are_stored_after_the_store_answers_503_twice(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.faults("github-attestations", STORE_DOWN, STORE_DOWN)

    result = run({"github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.count("github-attestations", 503) == 2
    assert len(index.github.stored) == 2
    files = json.loads(result.outputs["files"])
    assert all(f["github-attestation"] for f in files)
    assert not [a for a in result.annotations if a.level == "warning"]


def test_a_github_store_that_stays_down_is_one_warning_and_the_release_stands(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("github-attestations", *[STORE_DOWN] * 6)

    result = run({"github-attestations": "true"}, sigstore=True)

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    [warning] = [a for a in result.annotations if a.level == "warning"]
    assert warning.title == "GitHub's attestation store did not answer"
    assert f"Left unstored: `{wheel.name}`, `{sdist.name}`." in warning.message
    assert index.github.stored == []
    assert [f["github-attestation"] for f in json.loads(result.outputs["files"])] == ["", ""]
