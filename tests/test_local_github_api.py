"""The local index's GitHub attestation store answers as GitHub's REST documentation says."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypi_attestations import Attestation

from tests.inprocess import attest
from tests.localindex import identity
from tests.localindex.clients import https_client
from tests.localindex.dists import make_wheel, sha256
from tests.localindex.github_api import API_VERSION, gh_attestation_verify
from tests.localindex.server import LocalIndex
from tests.localindex.sigstore import PUBLISH_V1

ENDPOINT = f"/repos/{identity.REPOSITORY}/attestations"


def bundle(signing: LocalIndex, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A wheel's publish attestation, signed by the local Sigstore, as a Sigstore bundle."""
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    [signed] = attest(signing, [wheel]).values()
    converted = Attestation.model_validate(signed).to_bundle().to_json()
    return json.loads(converted), wheel


def post(
    index: LocalIndex,
    body: object,
    token: str | None,
    *,
    path: str = ENDPOINT,
    version: str = API_VERSION,
) -> httpx.Response:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": version}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with https_client(index) as client:
        if isinstance(body, bytes):
            return client.post(path, content=body, headers=headers)
        return client.post(path, json=body, headers=headers)


def test_a_verifying_bundle_is_stored_with_an_id(signing: LocalIndex, tmp_path: Path) -> None:
    sent, wheel = bundle(signing, tmp_path)
    token = signing.github_token()

    first = post(signing, {"bundle": sent}, token)
    second = post(signing, {"bundle": sent}, token)

    assert (first.status_code, first.json()) == (201, {"id": 1})
    assert (second.status_code, second.json()) == (201, {"id": 2})
    stored = signing.github.stored[0]
    assert (stored.repository, stored.bundle) == (identity.REPOSITORY, sent)
    gh_attestation_verify(
        stored.bundle,
        trust_config=signing.sigstore_trust_config,
        repository=identity.REPOSITORY,
        predicate_type=PUBLISH_V1,
        sha256=sha256(wheel),
    )


def test_storing_a_bundle_logs_no_warning(
    signing: LocalIndex, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What `./dev demo` prints: a warning here would sit above the job's log.
    sent, _ = bundle(signing, tmp_path)
    token = signing.github_token()
    caplog.clear()

    with caplog.at_level(logging.WARNING):
        stored = post(signing, {"bundle": sent}, token)

    assert stored.status_code == 201
    assert [record.getMessage() for record in caplog.records] == []


def test_requests_github_refuses_before_reading_the_bundle(
    signing: LocalIndex, tmp_path: Path
) -> None:
    sent, _ = bundle(signing, tmp_path)
    token = signing.github_token()
    signing.github_permissions = {"contents": "read"}
    unpermitted = signing.github_token()

    answers = {
        "no token": post(signing, {"bundle": sent}, None),
        "unknown token": post(signing, {"bundle": sent}, "ghs_unknown"),
        "other repository": post(
            signing, {"bundle": sent}, token, path="/repos/octo-org/other/attestations"
        ),
        "no permission": post(signing, {"bundle": sent}, unpermitted),
        "old API version": post(signing, {"bundle": sent}, token, version="2021-01-01"),
        "not JSON": post(signing, b"{bundle", token),
        "no bundle": post(signing, {"attestation": sent}, token),
    }

    said = {why: (a.status_code, a.json()["message"]) for why, a in answers.items()}
    assert said == {
        "no token": (401, "Bad credentials"),
        "unknown token": (401, "Bad credentials"),
        "other repository": (404, "Not Found"),
        "no permission": (403, "Resource not accessible by integration"),
        "old API version": (400, "Unsupported 'X-GitHub-Api-Version': '2021-01-01'"),
        "not JSON": (400, "Problems parsing JSON"),
        "no bundle": (422, 'Invalid request.\n\n"bundle" wasn\'t supplied.'),
    }
    assert all(
        a.json()["documentation_url"].startswith("https://docs.github.com/")
        for a in answers.values()
    )
    assert signing.github.stored == []


def test_a_bundle_that_does_not_verify_is_422(signing: LocalIndex, tmp_path: Path) -> None:
    sent, _ = bundle(signing, tmp_path)
    forged = json.loads(json.dumps(sent))
    statement = json.loads(base64.b64decode(forged["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    forged["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    token = signing.github_token()

    answers = [post(signing, {"bundle": b}, token) for b in (forged, {"mediaType": "x"})]

    assert [a.status_code for a in answers] == [422, 422]
    assert all(a.json()["message"].startswith("Invalid bundle: ") for a in answers)
    assert "invalid signature" in answers[0].json()["message"]
    assert signing.github.stored == []


def test_reset_forgets_tokens_and_attestations(signing: LocalIndex, tmp_path: Path) -> None:
    sent, _ = bundle(signing, tmp_path)
    token = signing.github_token()
    assert post(signing, {"bundle": sent}, token).status_code == 201
    assert token in signing.secrets()

    signing.reset()

    assert signing.github.stored == []
    assert post(signing, {"bundle": sent}, token).status_code == 401
    assert signing.github_permissions == {"attestations": "write"}
