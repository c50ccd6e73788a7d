"""What an identity token says about the workflow, and the publisher PyPI would need for it.

The token is decoded without verification: PyPI verifies it. We only read the claims to
explain a refusal, so nothing here is trusted for a decision.
"""

from __future__ import annotations

import base64
import json

from pydantic import BaseModel, ConfigDict, ValidationError

from oidc_publish.runner import workflow_filename


class Claims(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    repository: str = ""
    repository_owner: str = ""
    repository_owner_id: str = ""
    workflow_ref: str = ""
    job_workflow_ref: str = ""
    ref: str = ""
    event_name: str = ""
    environment: str | None = None

    @classmethod
    def from_jwt(cls, token: str) -> Claims | None:
        try:
            payload = token.split(".")[1]
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return cls.model_validate(data)
        except (IndexError, ValueError, RecursionError, ValidationError):
            return None

    @property
    def is_reusable_workflow(self) -> bool:
        return bool(self.job_workflow_ref) and self.job_workflow_ref != self.workflow_ref

    def publisher(self) -> Publisher:
        """The GitHub publisher PyPI matches against these claims."""
        owner, _, name = self.repository.partition("/")
        return Publisher(
            owner=owner or self.repository_owner,
            repository=name,
            owner_id=self.repository_owner_id,
            workflow=workflow_filename(self.job_workflow_ref),
            environment=self.environment,
        )


class Publisher(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str
    repository: str
    owner_id: str
    workflow: str
    environment: str | None
