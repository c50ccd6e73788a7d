""" "Already exists" judged by the listing's sha256, and said plainly when it won't say."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from oidc_publish.dists import WHEEL, Blake2, Distribution
from oidc_publish.errors import Level, UploadRejected
from oidc_publish.index_urls import Index
from oidc_publish.outcomes import Outcome
from oidc_publish.reconcile import Reconciler
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from oidc_publish.simple_api import IndexedFile

FILENAME = "sample_project-1.0.0-py3-none-any.whl"


class Listing:
    """An IndexClient whose listing is given: None for an index that won't say."""

    def __init__(self, files: dict[str, IndexedFile] | None) -> None:
        self.index = Index("https://index.example/legacy/")
        self._files = files

    def project_files(self, project: str) -> dict[str, IndexedFile] | None:
        return self._files


def wheel() -> Distribution:
    return Distribution(
        path=Path("dist") / FILENAME,
        display=f"dist/{FILENAME}",
        kind=WHEEL,
        name="sample-project",
        version="1.0.0",
        size=10,
        sha256="a" * 64,
        blake2=Blake2(Path(), "b" * 64),
        package=cast(Any, None),
    )


def reconciler(files: dict[str, IndexedFile] | None, *, skip_existing: bool) -> Reconciler:
    reporter = Reporter(RunnerContext.from_env({}), io.StringIO())
    return Reconciler(cast(Any, Listing(files)), skip_existing=skip_existing, reporter=reporter)


def test_the_listing_showing_this_sha256_is_the_evidence() -> None:
    listed = {FILENAME: IndexedFile("https://index.example/f.whl", "a" * 64)}

    assert reconciler(listed, skip_existing=False).name_taken(wheel(), False).outcome == (
        Outcome.LISTED
    )
    assert reconciler(listed, skip_existing=False).name_taken(wheel(), True).outcome == (
        Outcome.UPLOADED
    )


def test_a_listing_that_cannot_be_read_is_not_called_other_contents() -> None:
    with pytest.raises(UploadRejected) as refused:
        reconciler(None, skip_existing=False).name_taken(wheel(), False)

    [error] = refused.value.diagnostics()
    assert error.title == "File already exists; its contents could not be confirmed"
    assert "could not confirm" in error.message
    assert "other contents" not in error.message
    assert error.file == f"dist/{FILENAME}"


def test_skip_existing_leaves_an_unchecked_file_with_a_warning_that_says_so() -> None:
    judge = reconciler(None, skip_existing=True)

    result = judge.name_taken(wheel(), False)

    assert result.outcome is Outcome.UNCONFIRMED
    assert not result.outcome.on_index
    [warning] = judge._reporter.diagnostics
    assert warning.level is Level.WARNING
    assert warning.title == "Skipped: the file on the index could not be checked"
    assert "other bytes" not in warning.message


def test_a_dry_run_stops_at_other_bytes_saying_what_would_have_happened() -> None:
    listed = {FILENAME: IndexedFile("https://index.example/f.whl", "c" * 64)}
    sdist = replace(wheel(), path=Path("dist/sample_project-1.0.0.tar.gz"), kind="sdist")

    with pytest.raises(UploadRejected) as refused:
        reconciler(listed, skip_existing=False).rehearse([wheel(), sdist])

    [error] = refused.value.diagnostics()
    assert error.title == "File already exists with other contents"
    assert "c" * 64 in error.message
    assert [(r.dist.filename, r.outcome) for r in refused.value.results] == [
        (FILENAME, Outcome.FAILED),
        ("sample_project-1.0.0.tar.gz", Outcome.NOT_ATTEMPTED),
    ]
