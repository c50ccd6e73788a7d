"""Everything the user reads after the run: annotations, the step summary and the outputs.

Diagnostics are collected during the run and rendered once at the end, so the annotation
limits can be respected as a whole and the summary tells one coherent story.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oidc_publish.errors import ActionError, Diagnostic, Level
from oidc_publish.runner import (
    ANNOTATIONS_PER_LEVEL,
    RunnerContext,
    WorkflowCommands,
    write_outputs,
    write_summary,
)

if TYPE_CHECKING:
    from oidc_publish.upload import FileResult

_ICON = {Level.ERROR: "❌", Level.WARNING: "⚠️", Level.NOTICE: "ℹ️"}  # noqa: RUF001


@dataclass
class Release:
    name: str
    version: str
    index_name: str
    url: str | None


@dataclass
class Report:
    context: RunnerContext
    console: WorkflowCommands
    notes: list[Diagnostic] = field(default_factory=list)
    results: list[FileResult] = field(default_factory=list)
    release: Release | None = None
    dry_run: bool = False

    def add(self, diagnostic: Diagnostic) -> None:
        self.notes.append(diagnostic)

    def finish(self, error: ActionError | None) -> int:
        diagnostics = self.notes + (error.diagnostics() if error else [])
        self._annotate(diagnostics)
        write_summary(self.context.summary_path, self._summary(diagnostics, failed=bool(error)))
        write_outputs(self.context.output_path, self._outputs())
        return 1 if error else 0

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
                self.console.annotate(diagnostic, diagnostic.file)

    def _outputs(self) -> dict[str, str]:
        on_index = [r for r in self.results if r.outcome.on_index]
        files = [{"name": r.dist.filename, "sha256": r.dist.sha256, "url": r.url} for r in on_index]
        published = bool(on_index) and not self.dry_run
        release_url = self.release.url if self.release and self.release.url and published else ""
        return {"files": json.dumps(files), "release-url": release_url or ""}

    def _summary(self, diagnostics: Sequence[Diagnostic], *, failed: bool) -> str:
        lines = [f"## {self._headline(failed)}", ""]
        if self.release and self.release.url and not failed and not self.dry_run:
            lines += [f"Release: {self.release.url}", ""]
        if self.results:
            lines += ["| File | Size | SHA-256 | Result |", "|---|---|---|---|"]
            for r in self.results:
                name = f"[`{r.dist.filename}`]({r.url})" if r.url else f"`{r.dist.filename}`"
                lines.append(f"| {name} | {_size(r.dist.size)} | `{r.dist.sha256}` | {r.outcome} |")
            lines.append("")
            if failed:
                lines += [self._what_is_where(), ""]
        for diagnostic in diagnostics:
            lines += _section(diagnostic)
        return "\n".join(lines) + "\n"

    def _headline(self, failed: bool) -> str:
        what = f"{self.release.name} {self.release.version}" if self.release else "distributions"
        where = f" to {self.release.index_name}" if self.release else ""
        if self.dry_run and not failed:
            return f"🧪 Dry run: {what} would be published{where}"
        if failed:
            return f"❌ Publishing {what}{where} failed"
        return f"✅ Published {what}{where}"

    def _what_is_where(self) -> str:
        there = [f"`{r.dist.filename}`" for r in self.results if r.outcome.on_index]
        missing = [f"`{r.dist.filename}`" for r in self.results if not r.outcome.on_index]
        parts = []
        if there:
            parts.append(f"On the index: {', '.join(there)}.")
        if missing:
            parts.append(f"Not on the index: {', '.join(missing)}.")
        if there and missing and not self.dry_run:
            parts.append(
                "Re-running this job after the fix uploads the rest; files already there are "
                "recognised."
            )
        return " ".join(parts)


def _section(diagnostic: Diagnostic) -> list[str]:
    where = f" (`{diagnostic.file}`)" if diagnostic.file else ""
    lines = [f"### {_ICON[diagnostic.level]} {diagnostic.title}{where}", "", diagnostic.message, ""]
    if diagnostic.fix:
        lines += [f"**Fix:** {diagnostic.fix}", ""]
    if diagnostic.details:
        lines += [diagnostic.details, ""]
    return lines


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
