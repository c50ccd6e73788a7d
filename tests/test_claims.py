"""Reading an identity token's claims to explain PyPI's answer."""

from __future__ import annotations

import base64
import json

from oidc_publish.claims import Claims


def jwt(claims: dict[str, str]) -> str:
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.signature"


def test_publisher_pypi_needs_comes_from_job_workflow_ref() -> None:
    claims = Claims.from_jwt(
        jwt(
            {
                "repository": "octo-org/sample",
                "repository_owner": "octo-org",
                "repository_owner_id": "42",
                "workflow_ref": "octo-org/sample/.github/workflows/ci.yml@refs/tags/v1",
                "job_workflow_ref": (
                    "octo-org/shared/.github/workflows/publish.yaml@refs/heads/main"
                ),
                "environment": "pypi",
            }
        )
    )
    assert claims is not None
    assert claims.is_reusable_workflow
    publisher = claims.publisher()
    assert (publisher.owner, publisher.repository, publisher.owner_id) == (
        "octo-org",
        "sample",
        "42",
    )
    assert publisher.workflow == "publish.yaml"
    assert publisher.environment == "pypi"


def test_same_workflow_is_not_reusable() -> None:
    ref = "o/r/.github/workflows/release.yml@refs/tags/v1"
    claims = Claims.from_jwt(jwt({"workflow_ref": ref, "job_workflow_ref": ref}))
    assert claims is not None
    assert not claims.is_reusable_workflow
    assert claims.environment is None


def test_garbage_is_no_claims() -> None:
    assert Claims.from_jwt("not-a-jwt") is None
    assert Claims.from_jwt("a.!!!.c") is None
