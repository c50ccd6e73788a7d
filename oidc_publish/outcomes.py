"""What happened to each file: the upload's result, which the report and the outputs show."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oidc_publish.dists import Distribution


class Outcome(enum.StrEnum):
    UPLOADED = "uploaded"
    LISTED = "already on the index (its listing shows this sha256)"
    SKIPPED = "skipped: the index has other bytes"
    UNCONFIRMED = "skipped: the index's listing could not be read"
    WOULD_UPLOAD = "would upload (dry run)"
    FAILED = "failed"
    IN_FLIGHT = "in flight when the run stopped: may be on the index; a re-run recognises it"
    NOT_ATTEMPTED = "not uploaded"

    @property
    def on_index(self) -> bool:
        return self in (Outcome.UPLOADED, Outcome.LISTED)


@dataclass(frozen=True)
class FileResult:
    dist: Distribution
    outcome: Outcome
    url: str = ""
    attested: bool = False
    provenance: str = ""
    """Where the index shows the file's attestation (PyPI's Integrity API), when known."""
    github_attestation: str = ""
    """Where GitHub's attestation store shows the same attestation, once stored there."""
