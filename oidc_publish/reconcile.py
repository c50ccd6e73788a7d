"""Reconciling the release with what the index already holds, judged by sha256.

An index that answers "already exists" says nothing about whose bytes it holds; its simple
API's listing does. Identical bytes count as published (and the summary says the listing
was the evidence); other bytes are an error, or with `skip-existing` a warning that names
both hashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from oidc_publish.errors import ActionError, Diagnostic, Level, UploadRejected
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.runner import md_code

if TYPE_CHECKING:
    from oidc_publish.dists import Distribution
    from oidc_publish.index import IndexClient
    from oidc_publish.report import Reporter
    from oidc_publish.simple_api import IndexedFile


def project(dist: Distribution) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(dist.name)


class Reconciler:
    def __init__(self, index: IndexClient, *, skip_existing: bool, reporter: Reporter) -> None:
        self._index = index
        self._skip_existing = skip_existing
        self._reporter = reporter

    def name_taken(self, dist: Distribution, after_retry: bool) -> FileResult:
        """The index answered that `dist`'s filename exists: ours, or somebody else's bytes?"""
        listing = self._index.project_files(project(dist))
        if listing is None:
            return self._unconfirmed(dist)
        return self._judge(dist, listing.get(dist.filename), after_retry=after_retry)

    def rehearse(self, dists: Sequence[Distribution]) -> list[FileResult]:
        """A dry run: what uploading would do, judged from what the index already holds."""
        listed = {
            name: self._index.project_files(name) or {} for name in {project(d) for d in dists}
        }
        results: list[FileResult] = []
        for position, dist in enumerate(dists):
            present = listed[project(dist)].get(dist.filename)
            if present is None:
                results.append(FileResult(dist, Outcome.WOULD_UPLOAD))
                continue
            try:
                results.append(self._judge(dist, present, after_retry=False))
            except ActionError as error:
                error.results = [
                    *results,
                    FileResult(dist, Outcome.FAILED),
                    *(FileResult(d, Outcome.NOT_ATTEMPTED) for d in dists[position + 1 :]),
                ]
                raise
        return results

    def with_urls(self, results: Sequence[FileResult]) -> list[FileResult]:
        """Each file on the index gets its download URL; a listed hash that differs is reported.

        PyPI's URLs follow from the file's digest, so only other indexes are asked.
        """
        urls = self._index.index
        known = [
            replace(
                r,
                url=urls.file_url(r.dist.filename, r.dist.blake2_256) or "",
                provenance=urls.provenance_url(r.dist.name, r.dist.version, r.dist.filename) or ""
                if r.attested
                else "",
            )
            for r in results
        ]
        if all(r.url or not r.outcome.on_index for r in known):
            return known
        listed: dict[str, IndexedFile] = {}
        for name in {project(r.dist) for r in results if r.outcome.on_index}:
            listed.update(self._index.project_files(name) or {})
        filled = []
        for result in known:
            entry = listed.get(result.dist.filename) if result.outcome.on_index else None
            if entry and entry.sha256 and entry.sha256 != result.dist.sha256:
                self._reporter.add(
                    Diagnostic(
                        Level.WARNING,
                        "The index lists other bytes for an uploaded file",
                        f"{urls.display_name} lists {md_code(result.dist.filename)} with sha256 "
                        f"{md_code(entry.sha256)}, but the file uploaded has "
                        f"{result.dist.sha256}.",
                        fix="Compare the file on the index with the artifact before announcing "
                        "the release.",
                        file=result.dist.display,
                    )
                )
            filled.append(replace(result, url=entry.url or result.url) if entry else result)
        return filled

    def _unconfirmed(self, dist: Distribution) -> FileResult:
        """The name is taken and the listing, the only evidence of whose bytes, won't say."""
        where = self._index.index.display_name
        said = (
            f"{md_code(dist.filename)} already exists on {where}, but its listing could not be "
            "read, so the action could not confirm that the file there is this one "
            f"(sha256 {dist.sha256})."
        )
        if self._skip_existing:
            self._reporter.add(
                Diagnostic(
                    Level.WARNING,
                    "Skipped: the file on the index could not be checked",
                    f"{said} `skip-existing` left it as it is.",
                    fix="Compare the file on the index with the artifact before announcing "
                    "the release.",
                    file=dist.display,
                )
            )
            return FileResult(dist, Outcome.UNCONFIRMED)
        raise UploadRejected(
            said,
            fix="Re-run the job once the index's simple API answers: if the file there is this "
            "one, the re-run counts it as published. `skip-existing: true` leaves it unchecked.",
            file=dist.display,
            title="File already exists; its contents could not be confirmed",
        )

    def _judge(
        self, dist: Distribution, present: IndexedFile | None, *, after_retry: bool
    ) -> FileResult:
        if present is not None and present.sha256 == dist.sha256:
            # After a failed attempt, the identical file is most likely that attempt's.
            return FileResult(dist, Outcome.UPLOADED if after_retry else Outcome.LISTED)
        theirs = md_code(present.sha256) if present and present.sha256 else "unknown (not listed)"
        hashes = f"the index has sha256 {theirs}, this file has {dist.sha256}"
        where = self._index.index.display_name
        if self._skip_existing:
            self._reporter.add(
                Diagnostic(
                    Level.WARNING,
                    "Skipped: the index has other bytes under this name",
                    f"{md_code(dist.filename)} is already on {where} with other contents "
                    f"({hashes}); `skip-existing` left it as it is.",
                    fix="If this build is the one to publish, release it under a new version: "
                    "a filename can never be replaced.",
                    file=dist.display,
                )
            )
            return FileResult(dist, Outcome.SKIPPED)
        raise UploadRejected(
            f"{md_code(dist.filename)} already exists on {where} with other contents: {hashes}.",
            fix="A published filename can never be replaced. Bump the version and build again; "
            "if the file on the index is the one you want, set `skip-existing: true`.",
            file=dist.display,
            title="File already exists with other contents",
        )
