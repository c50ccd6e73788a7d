"""The GitHub workflow every test runs as.

The index's ID-token claims and the runner's environment must describe the same
run, so both read it from here.
"""

from __future__ import annotations

OWNER = "octo-org"
OWNER_ID = "1234567"
REPOSITORY_NAME = "sample-project"
REPOSITORY = f"{OWNER}/{REPOSITORY_NAME}"
REPOSITORY_ID = "7654321"
WORKFLOW_FILE = "release.yml"
WORKFLOW_NAME = "Release"
REF_NAME = "v1.0.0"
REF = f"refs/tags/{REF_NAME}"
SHA = "0123456789abcdef0123456789abcdef01234567"
WORKFLOW_REF = f"{REPOSITORY}/.github/workflows/{WORKFLOW_FILE}@{REF}"
EVENT_NAME = "push"
ENVIRONMENT = "pypi"
ACTOR = "octocat"
ACTOR_ID = "583231"
RUN_ID = "9876543210"
RUN_NUMBER = "42"
RUN_ATTEMPT = "1"
JOB = "publish"


def default_claims() -> dict[str, str | int]:
    """The claims of this run's ID token, less the per-token ones (iss, aud, iat, nbf, exp, jti)."""
    return {
        "sub": f"repo:{REPOSITORY}:environment:{ENVIRONMENT}",
        "repository": REPOSITORY,
        "repository_owner": OWNER,
        "repository_owner_id": OWNER_ID,
        "repository_id": REPOSITORY_ID,
        "repository_visibility": "public",
        "actor": ACTOR,
        "actor_id": ACTOR_ID,
        "run_id": RUN_ID,
        "run_number": RUN_NUMBER,
        "run_attempt": RUN_ATTEMPT,
        "ref": REF,
        "ref_type": "tag",
        "ref_protected": "false",
        "sha": SHA,
        "head_ref": "",
        "base_ref": "",
        "event_name": EVENT_NAME,
        "environment": ENVIRONMENT,
        "workflow": WORKFLOW_NAME,
        "workflow_ref": WORKFLOW_REF,
        "workflow_sha": SHA,
        "job_workflow_ref": WORKFLOW_REF,
        "job_workflow_sha": SHA,
        "runner_environment": "github-hosted",
    }
