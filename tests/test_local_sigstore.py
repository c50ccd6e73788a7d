"""The local index's Sigstore, driven by sigstore-python's and pypi-attestations' real clients."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests
from cryptography import x509
from pypi_attestations import Attestation, Distribution
from sigstore._internal.rekor import RekorClientError
from sigstore._internal.trust import KeyringPurpose
from sigstore.models import ClientTrustConfig, TransparencyLogEntry
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

from tests.inprocess import default_provenance
from tests.localindex import identity
from tests.localindex.clients import id_token
from tests.localindex.dists import make_wheel
from tests.localindex.oidc import default_publisher
from tests.localindex.server import Fault, LocalIndex
from tests.localindex.sigstore import AttestationRefused, verify_upload


def trust_config(index: LocalIndex) -> ClientTrustConfig:
    return ClientTrustConfig.from_json(index.sigstore_trust_config.read_text(encoding="utf-8"))


def sign(index: LocalIndex, *wheels: Path) -> list[Attestation]:
    """Attestations for `wheels`, with one identity token for `sigstore` from the index."""
    config = trust_config(index)
    config.force_tlog_version = 1
    token = IdentityToken(id_token(index, "sigstore"))
    with SigningContext.from_trust_config(config).signer(token) as signer:
        return [Attestation.sign(signer, Distribution.from_file(w)) for w in wheels]


def upload_check(index: LocalIndex, wheel: Path, attestations: list[Attestation]) -> None:
    field = json.dumps([a.model_dump(mode="json") for a in attestations])
    verify_upload(
        field,
        filename=wheel.name,
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        publisher=default_publisher(),
        trust_config=index.sigstore_trust_config,
    )


def test_real_client_signs_and_pypi_side_accepts(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    (attestation,) = sign(index, wheel)

    upload_check(index, wheel, [attestation])

    assert index.sigstore.certificates_issued == 1
    assert index.sigstore.entries == 1
    assert [(e.endpoint, e.status) for e in index.log] == [
        ("id-token", 200),
        ("fulcio", 201),
        ("rekor", 201),
    ]
    claims = attestation.certificate_claims
    assert claims["1.3.6.1.4.1.57264.1.8"] == "https://token.actions.githubusercontent.com"
    assert claims["1.3.6.1.4.1.57264.1.18"] == f"https://github.com/{identity.WORKFLOW_REF}"
    assert claims["1.3.6.1.4.1.57264.1.12"] == f"https://github.com/{identity.REPOSITORY}"
    certificate = x509.load_der_x509_certificate(attestation.verification_material.certificate)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://github.com/{identity.WORKFLOW_REF}"
    ]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.total_seconds() == 600


def test_wrong_workflow_is_refused_with_pypis_words(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    # A reusable workflow: the caller (workflow_ref, Build Config URI) is another file.
    index.claims["workflow_ref"] = f"{identity.REPOSITORY}/.github/workflows/ci.yml@{identity.REF}"
    (attestation,) = sign(index, wheel)

    with pytest.raises(AttestationRefused) as refused:
        upload_check(index, wheel, [attestation])

    assert str(refused.value).startswith(
        "Invalid attestations supplied during upload: Could not verify the uploaded artifact "
        "using the included attestation: Verification failed: Certificate's Build Config URI"
    )


def test_other_refusals_use_pypis_words(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    other = make_wheel(tmp_path, "sample-project", "1.0.1")
    attestation, for_other = sign(index, wheel, other)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    field = [attestation.model_dump(mode="json")]

    def refusal(attestations: object, **kwargs: object) -> str:
        arguments: dict[str, object] = {
            "filename": wheel.name,
            "sha256": digest,
            "publisher": default_publisher(),
            "trust_config": index.sigstore_trust_config,
        } | kwargs
        with pytest.raises(AttestationRefused) as refused:
            verify_upload(attestations, **arguments)  # type: ignore[arg-type]
        return refused.value.why

    assert refusal(field, publisher=None) == (
        "Attestations are only supported when using Trusted Publishing"
    )
    assert refusal(field * 3) == "A maximum of 2 attestations per file are supported"
    assert refusal([for_other.model_dump(mode="json")]).endswith(
        f"subject does not match distribution name: {other.name} != {wheel.name}"
    )
    assert refusal("[]") == "Malformed attestations: an empty attestation set is not permitted"
    assert refusal(field * 2).startswith("Multiple attestations for the same file")


def test_rekor_502_is_logged_and_surfaces_in_the_client(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    index.faults("rekor", Fault.status(502, headers={"Retry-After": "1"}))

    with pytest.raises(RekorClientError):
        sign(index, wheel)

    assert index.count("rekor", 502) == 1
    assert index.sigstore.entries == 0


def test_reset_fault_drops_the_connection(signing: LocalIndex) -> None:
    index = signing
    index.faults("fulcio", Fault.reset())

    with pytest.raises(requests.ConnectionError):
        requests.post(f"{index.url}/api/v2/signingCert", data=b"{}", timeout=10)

    assert index.count("fulcio", "reset") == 1


def test_fulcio_refuses_a_token_for_another_audience(signing: LocalIndex) -> None:
    index = signing
    raw = id_token(index, "pypi")
    answer = requests.post(
        f"{index.url}/api/v2/signingCert",
        json={"certificateSigningRequest": ""},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert index.sigstore.certificates_issued == 0


def test_inclusion_proofs_verify_against_the_grown_tree(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    wheels = [make_wheel(tmp_path, "sample-project", f"1.0.{n}") for n in range(7)]
    attestations = sign(index, *wheels)
    for wheel, attestation in zip(wheels, attestations, strict=True):
        upload_check(index, wheel, [attestation])
    keyring = trust_config(index).trusted_root.rekor_keyring(KeyringPurpose.VERIFY)

    # Each entry fetched now carries a proof against the tree of 7, not the one it joined.
    for n in range(7):
        answer = requests.get(
            f"{index.sigstore.rekor_url}/api/v1/log/entries", params={"logIndex": n}, timeout=10
        )
        answer.raise_for_status()
        entry = TransparencyLogEntry._from_v1_response(answer.json())
        assert entry._inner.inclusion_proof.tree_size == 7
        entry._verify(keyring)
    log = requests.get(f"{index.sigstore.rekor_url}/api/v1/log", timeout=10).json()
    assert log["treeSize"] == 7


def test_provenance_store_answers_as_the_integrity_api(index: LocalIndex) -> None:
    store = index.sigstore.provenances
    assert store.answer("x-1.0-py3-none-any.whl") == (
        404,
        {"message": "No provenance available for x-1.0-py3-none-any.whl"},
    )
    store.record("x-1.0-py3-none-any.whl", default_publisher(), [{"version": 1}])
    status, body = store.answer("x-1.0-py3-none-any.whl")
    assert status == 200
    assert body == default_provenance([{"version": 1}])
