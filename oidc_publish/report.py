"""The one reporter every step is handed, and everything the user reads after the run.

During the run the reporter writes the log (lines, debug lines, masks, groups) and collects
diagnostics; at the end `finish` renders them once: annotations within GitHub's limits, the
step summary, the outputs. Steps never print or exit on their own.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from oidc_publish.errors import ActionError, Cancelled, Diagnostic, Level
from oidc_publish.outcomes import Outcome
from oidc_publish.runner import (
    ANNOTATIONS_PER_LEVEL,
    RunnerContext,
    WorkflowCommands,
    md_code,
    md_link,
    md_text,
    write_outputs,
    write_summary,
)

if TYPE_CHECKING:
    from oidc_publish.outcomes import FileResult

_ICON = {Level.ERROR: "❌", Level.WARNING: "⚠️", Level.NOTICE: "ℹ️"}  # noqa: RUF001


@dataclass(frozen=True)
class Release:
    name: str
    version: str
    index_name: str
    url: str | None


@dataclass
class Publication:
    """What the run did, as far as it got: filled in by the command line, step by step."""

    dry_run: bool = False
    release: Release | None = None
    results: Sequence[FileResult] = ()
    attestations: str = ""
    """Why files are or are not attested, for the summary; empty when not asked."""
    installable_after: float | None = None
    waited_for_index: bool = False


class Reporter:
    """Log, debug, mask, group and diagnostics for every step; thread-safe."""

    def __init__(self, context: RunnerContext, stream: TextIO, *, verbose: bool = False) -> None:
        self.context = context
        self.verbose = verbose
        self._console = WorkflowCommands(stream)
        self._lock = threading.Lock()
        self._diagnostics: list[Diagnostic] = []

    def log(self, text: str) -> None:
        self._console.line(text)

    def debug(self, text: str) -> None:
        # Shown in the log with `verbose`, and by the runner when step debugging is on.
        if self.verbose:
            self._console.line(text)
        else:
            self._console.debug(text)

    def mask(self, secret: str) -> None:
        self._console.mask(secret)

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self._console.group(title)
        try:
            yield
        finally:
            self._console.endgroup()

    def add(self, diagnostic: Diagnostic) -> None:
        with self._lock:
            self._diagnostics.append(diagnostic)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        with self._lock:
            return list(self._diagnostics)

    def finish(self, publication: Publication, error: ActionError | None) -> int:
        diagnostics = self.diagnostics + (error.diagnostics() if error else [])
        self._annotate(diagnostics)
        summary = render_summary(
            publication,
            diagnostics,
            failed=bool(error),
            cancelled=isinstance(error, Cancelled),
        )
        write_summary(self.context.summary_path, summary)
        write_outputs(self.context.output_path, render_outputs(publication))
        return error.exit_code if error else 0

    def _annotate(self, diagnostics: Sequence[Diagnostic]) -> None:
        for level in Level:
            of_level = [d for d in diagnostics if d.level is level]
            shown = of_level
            if len(of_level) > ANNOTATIONS_PER_LEVEL:
                # GitHub drops annotations past ten per kind; fold the rest into the tenth.
                shown = of_level[: ANNOTATIONS_PER_LEVEL - 1]
                rest = of_level[ANNOTATIONS_PER_LEVEL - 1 :]
                titles = "; ".join(f"{d.title} ({d.file})" if d.file else d.title for d in rest)
                shown.append(
                    Diagnostic(
                        level,
                        f"{len(rest)} more {level}s",
                        f"{titles}. The step summary lists each with its fix.",
                    )
                )
            for diagnostic in shown:
                self._console.annotate(diagnostic)


def render_outputs(publication: Publication) -> dict[str, str]:
    on_index = [r for r in publication.results if r.outcome.on_index]
    files = [
        {
            "name": r.dist.filename,
            "sha256": r.dist.sha256,
            # Only https:// addresses from the index reach a workflow.
            "url": r.url if r.url.startswith("https://") else "",
            "attested": r.attested,
        }
        for r in on_index
    ]
    release = publication.release
    published = bool(on_index) and not publication.dry_run
    release_url = release.url if release and release.url and published else ""
    waited = publication.installable_after
    return {
        "files": json.dumps(files),
        "release-url": release_url or "",
        "installable-after": "" if waited is None else f"{waited:.0f}",
    }


def render_summary(
    publication: Publication,
    diagnostics: Sequence[Diagnostic],
    *,
    failed: bool,
    cancelled: bool = False,
) -> str:
    release = publication.release
    lines = [f"## {_headline(publication, failed, cancelled)}", ""]
    if release and release.url and not failed and not publication.dry_run:
        lines += [f"Release: {release.url}", ""]
    if publication.attestations:
        lines += [publication.attestations, ""]
    if publication.waited_for_index:
        waited = publication.installable_after
        lines += [
            f"Installable from the index {waited:.0f} s after the upload."
            if waited is not None
            else "Not yet listed by the index when the wait ended; see the warning below.",
            "",
        ]
    if publication.results:
        lines += ["| File | Size | SHA-256 | Attested | Result |", "|---|---|---|---|---|"]
        for r in publication.results:
            name = md_link(r.dist.filename, r.url)
            attested = (
                (f"[✅]({r.provenance})" if r.provenance.startswith("https://") else "✅")
                if r.attested
                else "—"
            )
            lines.append(
                f"| {name} | {_size(r.dist.size)} | `{r.dist.sha256}` | {attested} | {r.outcome} |"
            )
        lines.append("")
        if failed:
            lines += [_what_is_where(publication, cancelled), ""]
    for diagnostic in diagnostics:
        lines += _section(diagnostic)
    return "\n".join(lines) + "\n"


def _headline(publication: Publication, failed: bool, cancelled: bool) -> str:
    release = publication.release
    what = f"{release.name} {release.version}" if release else "distributions"
    where = f" to {release.index_name}" if release else ""
    if cancelled:
        return f"🛑 Publishing {what}{where} was cancelled"
    if publication.dry_run and not failed:
        return f"🧪 Dry run: {what} would be published{where}"
    if failed:
        return f"❌ Publishing {what}{where} failed"
    return f"✅ Published {what}{where}"


def _what_is_where(publication: Publication, cancelled: bool) -> str:
    results = publication.results
    there = [md_code(r.dist.filename) for r in results if r.outcome.on_index]
    flying = [md_code(r.dist.filename) for r in results if r.outcome is Outcome.IN_FLIGHT]
    missing = [
        md_code(r.dist.filename)
        for r in results
        if not r.outcome.on_index and r.outcome is not Outcome.IN_FLIGHT
    ]
    parts = []
    if there:
        parts.append(f"On the index: {', '.join(there)}.")
    if flying:
        parts.append(f"In flight when cancelled, so perhaps on the index: {', '.join(flying)}.")
    if missing:
        parts.append(f"Not on the index: {', '.join(missing)}.")
    if (there or flying) and missing and not publication.dry_run:
        after = "" if cancelled else " after the fix"
        parts.append(
            f"Re-running this job{after} uploads the rest; files already there are recognised."
        )
    return " ".join(parts)


def _section(diagnostic: Diagnostic) -> list[str]:
    where = f" ({md_code(diagnostic.file)})" if diagnostic.file else ""
    title = md_text(diagnostic.title)
    lines = [f"### {_ICON[diagnostic.level]} {title}{where}", "", diagnostic.message, ""]
    if diagnostic.fix:
        lines += [f"**Fix:** {diagnostic.fix}", ""]
    if diagnostic.details:
        lines += [diagnostic.details, ""]
    return lines


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
