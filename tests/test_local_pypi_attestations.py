"""The local index takes PEP 740 attestations as PyPI does, signed by its own Sigstore.

Signing is the action's own (oidc_publish.attest.sign_all) against the Sigstore the index
serves, with identity tokens from the index's GitHub token endpoint; uploads are twine's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests

from oidc_publish.errors import SigningFailed
from tests.inprocess import Journal, attest, default_provenance
from tests.localindex import identity
from tests.localindex.clients import https_client, mint_token, twine_upload
from tests.localindex.dists import make_wheel
from tests.localindex.server import Fault, LocalIndex

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
STATIC_TOKEN = "pypi-static-token-for-tests"
REFUSED = "Invalid attestations supplied during upload: "


def provenance(index: LocalIndex, filename: str) -> httpx.Response:
    url = index.provenance_url(filename)
    assert url is not None
    with https_client(index) as client:
        return client.get(url)


def simple_files(index: LocalIndex) -> dict[str, dict[str, Any]]:
    with https_client(index) as client:
        answer = client.get("/simple/sample-project/", headers={"Accept": SIMPLE_JSON})
    return {file["filename"]: file for file in answer.json()["files"]}


def test_an_attested_upload_is_verified_and_its_provenance_served(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    plain = make_wheel(tmp_path, "sample-project", "0.9")
    attestation = attest(index, [wheel])[wheel.name]
    token = mint_token(index)

    answer = twine_upload(index, wheel, token, attestations=[attestation])
    unattested = twine_upload(index, plain, token)

    assert (answer.status_code, unattested.status_code) == (200, 200)
    # One server: Sigstore's requests are the index's, logged by service.
    assert (index.count("fulcio", 201), index.count("rekor", 201)) == (1, 1)
    assert index.sigstore.certificates_issued == 1
    audiences = [
        jwt.decode(t, options={"verify_signature": False})["aud"]
        for t in index.secrets()
        if t in index.issued_id_tokens
    ]
    assert sorted(audiences) == [index.audience, "sigstore"]  # the leak scan covers both
    found = provenance(index, wheel.name)
    assert found.status_code == 200
    assert found.json() == default_provenance([attestation])
    missing = provenance(index, plain.name)
    assert missing.status_code == 404
    assert missing.json() == {"message": f"No provenance available for {plain.name}"}
    url = f"{index.url}/integrity/sample-project/1.0.0/{wheel.name}/provenance"
    files = simple_files(index)
    assert (files[wheel.name]["provenance"], files[plain.name]["provenance"]) == (url, None)
    with https_client(index) as client:
        page = client.get("/simple/sample-project/", headers={"Accept": "text/html"}).text
        unknown = client.get(f"/integrity/sample-project/2.0/{wheel.name}/provenance")
    assert f'data-provenance="{url}">{wheel.name}</a>' in page
    assert f'#sha256={hashlib.sha256(plain.read_bytes()).hexdigest()}">{plain.name}' in page
    assert unknown.status_code == 404  # no such release: not the JSON of a file without one


def test_attestations_need_trusted_publishing(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    attestation = attest(index, [wheel])[wheel.name]
    index.api_tokens.add(STATIC_TOKEN)

    refused = twine_upload(index, wheel, STATIC_TOKEN, attestations=[attestation])

    assert refused.status_code == 400
    assert refused.reason == (
        REFUSED + "Attestations are only supported when using Trusted Publishing"
    )
    assert index.files() == {}


def test_an_attestation_from_a_calling_workflow_is_refused(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    # A reusable workflow: minting matches job_workflow_ref (release.yml), while Fulcio puts
    # the caller's workflow_ref in the Build Config URI that PyPI checks the attestation by.
    index.claims["workflow_ref"] = f"{identity.REPOSITORY}/.github/workflows/ci.yml@{identity.REF}"
    attestation = attest(index, [wheel])[wheel.name]

    refused = twine_upload(index, wheel, mint_token(index), attestations=[attestation])

    assert refused.status_code == 400
    assert refused.reason.startswith(
        REFUSED + "Could not verify the uploaded artifact using the included attestation: "
        "Verification failed: Certificate's Build Config URI"
    )
    assert index.files() == {}
    assert provenance(index, wheel.name).status_code == 404


def test_an_identical_reupload_answers_200_before_its_attestations_are_judged(
    signing: LocalIndex, tmp_path: Path
) -> None:
    """As warehouse: the duplicate check comes first, and changes nothing."""
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    attestation = attest(index, [wheel])[wheel.name]
    token = mint_token(index)
    assert twine_upload(index, wheel, token, attestations=[attestation]).status_code == 200
    index.api_tokens.add(STATIC_TOKEN)

    again = twine_upload(index, wheel, STATIC_TOKEN, attestations=[{"not": "one"}])

    assert again.status_code == 200
    assert provenance(index, wheel.name).json()["attestation_bundles"][0]["attestations"] == [
        attestation
    ]


def test_sigstore_faults_and_latency_are_the_indexs(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    index.faults("rekor", Fault.status(502, headers={"Retry-After": "1"}))
    index.latency["rekor"] = 0.2
    reporter = Journal()

    signed = attest(index, [wheel], reporter=reporter)

    assert list(signed) == [wheel.name]
    assert [(e.endpoint, e.status) for e in index.log if e.endpoint == "rekor"] == [
        ("rekor", 502),
        ("rekor", 201),
    ]
    assert 'Sigstore (Rekor): attempt 1 failed ("HTTP 502 Bad Gateway")' in reporter.text()
    assert index.sigstore.entries == 1


def test_a_fulcio_that_stays_down_fails_signing_and_a_reset_drops_the_connection(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    index.faults("fulcio", *[Fault.status(503)] * 4)

    with pytest.raises(SigningFailed, match="Fulcio kept failing: 4 attempt"):
        attest(index, [wheel])

    index.faults("fulcio", Fault.reset())
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{index.url}/api/v2/signingCert", data=b"{}", timeout=10)
    assert index.count("fulcio", 503) == 4
    assert index.count("fulcio", "reset") == 1
    assert index.sigstore.certificates_issued == 0


def test_reset_clears_sigstore_and_provenance(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    attestation = attest(index, [wheel])[wheel.name]
    assert twine_upload(index, wheel, mint_token(index), attestations=[attestation]).ok
    index.latency["rekor"] = 5.0

    index.reset()

    assert index.latency == {}
    assert (index.sigstore.entries, index.sigstore.certificates_issued) == (0, 0)
    assert not index.sigstore.provenances.has(wheel.name)
    assert index.sigstore_trust_config.is_file()
