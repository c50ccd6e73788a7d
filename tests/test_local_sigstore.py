"""The local Sigstore, driven by sigstore-python's and pypi-attestations' real clients."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
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

from tests.localindex import identity
from tests.localindex.dists import make_wheel
from tests.localindex.oidc import default_publisher
from tests.localindex.sigstore import (
    AttestationRefused,
    Fault,
    LocalSigstore,
    Served,
    serve,
    verify_upload,
)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve() as running:
        yield running


@pytest.fixture
def local(served: Served, monkeypatch: pytest.MonkeyPatch) -> LocalSigstore:
    served.sigstore.reset()
    # sigstore-python talks through requests, which takes its CA bundle from here.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.ca_pem))
    return served.sigstore


def signing_context(local: LocalSigstore) -> SigningContext:
    config = ClientTrustConfig.from_json(local.trust_config_path.read_text(encoding="utf-8"))
    config.force_tlog_version = 1
    return SigningContext.from_trust_config(config)


def token(served: Served, **claims: str) -> IdentityToken:
    return IdentityToken(served.issuer.id_token("sigstore", identity.default_claims() | claims))


def sign(served: Served, *wheels: Path, **claims: str) -> list[Attestation]:
    with signing_context(served.sigstore).signer(token(served, **claims)) as signer:
        return [Attestation.sign(signer, Distribution.from_file(w)) for w in wheels]


def upload_check(local: LocalSigstore, wheel: Path, attestations: list[Attestation]) -> None:
    field = json.dumps([a.model_dump(mode="json") for a in attestations])
    verify_upload(
        field,
        filename=wheel.name,
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        publisher=default_publisher(),
        trust_config=local.trust_config_path,
    )


def test_real_client_signs_and_pypi_side_accepts(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    (attestation,) = sign(served, wheel)

    upload_check(local, wheel, [attestation])

    assert local.certificates_issued == 1
    assert local.entries == 1
    assert [(e.service, e.status) for e in local.log] == [("fulcio", 201), ("rekor", 201)]
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


def test_wrong_workflow_is_refused_with_pypis_words(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    # A reusable workflow: the caller (workflow_ref, Build Config URI) is another file.
    caller = f"{identity.REPOSITORY}/.github/workflows/ci.yml@{identity.REF}"
    (attestation,) = sign(served, wheel, workflow_ref=caller)

    with pytest.raises(AttestationRefused) as refused:
        upload_check(local, wheel, [attestation])

    assert str(refused.value).startswith(
        "Invalid attestations supplied during upload: Could not verify the uploaded artifact "
        "using the included attestation: Verification failed: Certificate's Build Config URI"
    )


def test_other_refusals_use_pypis_words(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    other = make_wheel(tmp_path, "sample-project", "1.0.1")
    attestation, for_other = sign(served, wheel, other)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    field = [attestation.model_dump(mode="json")]

    def refusal(attestations: object, **kwargs: object) -> str:
        arguments: dict[str, object] = {
            "filename": wheel.name,
            "sha256": digest,
            "publisher": default_publisher(),
            "trust_config": local.trust_config_path,
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
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    local.faults("rekor", Fault.status(502, headers={"Retry-After": "1"}))

    with pytest.raises(RekorClientError):
        sign(served, wheel)

    assert local.count("rekor", 502) == 1
    assert local.entries == 0


def test_reset_fault_drops_the_connection(served: Served, local: LocalSigstore) -> None:
    local.faults("fulcio", Fault.reset())

    with pytest.raises(requests.ConnectionError):
        requests.post(f"{served.url}/api/v2/signingCert", data=b"{}", timeout=10)

    assert local.count("fulcio", "reset") == 1


def test_fulcio_refuses_a_token_for_another_audience(served: Served, local: LocalSigstore) -> None:
    raw = served.issuer.id_token("pypi", identity.default_claims())
    answer = requests.post(
        f"{served.url}/api/v2/signingCert",
        json={"certificateSigningRequest": ""},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert local.certificates_issued == 0


def test_inclusion_proofs_verify_against_the_grown_tree(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    wheels = [make_wheel(tmp_path, "sample-project", f"1.0.{n}") for n in range(7)]
    attestations = sign(served, *wheels)
    for wheel, attestation in zip(wheels, attestations, strict=True):
        upload_check(local, wheel, [attestation])
    config = ClientTrustConfig.from_json(local.trust_config_path.read_text(encoding="utf-8"))
    keyring = config.trusted_root.rekor_keyring(KeyringPurpose.VERIFY)

    # Each entry fetched now carries a proof against the tree of 7, not the one it joined.
    for index in range(7):
        answer = requests.get(
            f"{local.rekor_url}/api/v1/log/entries", params={"logIndex": index}, timeout=10
        )
        answer.raise_for_status()
        entry = TransparencyLogEntry._from_v1_response(answer.json())
        assert entry._inner.inclusion_proof.tree_size == 7
        entry._verify(keyring)
    log = requests.get(f"{local.rekor_url}/api/v1/log", timeout=10).json()
    assert log["treeSize"] == 7


def test_provenance_store_answers_as_the_integrity_api(local: LocalSigstore) -> None:
    store = local.provenances
    assert store.answer("x-1.0-py3-none-any.whl") == (
        404,
        {"message": "No provenance available for x-1.0-py3-none-any.whl"},
    )
    store.record("x-1.0-py3-none-any.whl", default_publisher(), [{"version": 1}])
    status, body = store.answer("x-1.0-py3-none-any.whl")
    assert status == 200
    assert body == {
        "version": 1,
        "attestation_bundles": [
            {
                "publisher": {
                    "kind": "GitHub",
                    "repository": identity.REPOSITORY,
                    "workflow": identity.WORKFLOW_FILE,
                    "environment": identity.ENVIRONMENT,
                },
                "attestations": [{"version": 1}],
            }
        ],
    }
