"""The one reporter every step is handed, and everything the user reads after the run.

During the run the reporter writes the log (lines, debug lines, masks, groups) and collects
diagnostics; at the end `finish` renders them once: annotations within GitHub's limits, the
step summary, the outputs. Steps never print or exit on their own.

Whatever the text came from, a value given to `mask` never reaches any of these (its writer's
`clean` scrubs each), and untrusted text longer than a few hundred characters is cut in the
summary and the annotations and logged whole. Rendering never loses the result: a surface
that cannot be written is named in a warning, and the log says what is on the index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from oidc_publish.errors import ActionError, Cancelled, Diagnostic, Level
from oidc_publish.outcomes import Outcome
from oidc_publish.runner import (
    ANNOTATIONS_PER_LEVEL,
    SPAN_MAX_CHARS,
    URL_MAX_CHARS,
    RunnerContext,
    WorkflowCommands,
    cap_code_spans,
    md_code,
    md_link,
    md_text,
    md_url,
    shown,
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
    url: str | None
    """The release's page on the index, when the index has one."""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def holds(self, result: FileResult) -> bool:
        """Whether the file is one of this release's, as PyPI files releases: by normalised
        name and canonical version (`1.0` and `1.0.0` are one release)."""
        from packaging.utils import canonicalize_name, canonicalize_version

        dist = result.dist
        return canonicalize_version(dist.version) == canonicalize_version(
            self.version
        ) and canonicalize_name(dist.name) == canonicalize_name(self.name)


@dataclass
class Publication:
    """What the run did, as far as it got: filled in by the command line, step by step."""

    dry_run: bool = False
    index_name: str = ""
    releases: Sequence[Release] = ()
    """In the order they are published; known once the distributions are read."""
    results: Sequence[FileResult] = ()
    attestations: str = ""
    """Why files are or are not attested, for the summary; empty when not asked."""
    no_attestations: str = ""
    """Why no file carries an attestation, when they were asked for and none were made."""
    github_verify: str = ""
    """The command that checks a downloaded file against GitHub's attestation store, once
    any file's attestation is stored there."""
    installable_after: float | None = None
    waited_for_index: bool = False


# Debug lines a run keeps for the verbose group: a few a request, so a release of a thousand
# files stays far below.
VERBOSE_LINES = 20_000
VERBOSE_GROUP = "Every request and retry decision, as they happened (verbose)"


class Reporter:
    """Log, debug, mask, group and diagnostics for every step; thread-safe.

    Debug lines (each request, each retry decision) are debug commands, shown where they
    happen when the runner's step debugging is on. With `verbose` the log shows them as
    well, together in one collapsed group when the run ends, so the steps' own lines read
    undisturbed.
    """

    def __init__(self, context: RunnerContext, stream: TextIO, *, verbose: bool = False) -> None:
        self.context = context
        self.verbose = verbose
        self._console = WorkflowCommands(stream)
        self._lock = threading.Lock()
        self._diagnostics: list[Diagnostic] = []
        self._debugged: list[str] = []

    def log(self, text: str) -> None:
        self._console.line(text)

    def debug(self, text: str) -> None:
        self._console.debug(text)
        with self._lock:
            if len(self._debugged) < VERBOSE_LINES:
                self._debugged.append(text)

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
        """The verbose group, annotations, summary and outputs, each written or named in a
        warning; returns the exit code, which is the publication's whatever the rendering
        does."""
        with self._lock:
            debugged, self._debugged = self._debugged, []
        if self.verbose and debugged:
            with self.group(VERBOSE_GROUP):
                for line in debugged:
                    self._console.line(line)
        diagnostics = self.diagnostics + (error.diagnostics() if error else [])
        failed = bool(error)
        cancelled = isinstance(error, Cancelled)
        surfaces: list[tuple[str, Callable[[], None]]] = [
            ("annotations", lambda: self._annotate([self._shortened(d) for d in diagnostics])),
            (
                "step summary",
                lambda: self._write_summary(publication, diagnostics, failed, cancelled),
            ),
            ("outputs", lambda: self._write_outputs(publication)),
        ]
        unwritten = [(what, problem) for what, write in surfaces if (problem := _attempt(write))]
        if unwritten:
            self._say_plainly(publication, unwritten)
        return error.exit_code if error else 0

    def _write_summary(
        self,
        publication: Publication,
        diagnostics: Sequence[Diagnostic],
        failed: bool,
        cancelled: bool,
    ) -> None:
        shortened = [self._shortened(d, log=False) for d in diagnostics]
        summary = render_summary(publication, shortened, failed=failed, cancelled=cancelled)
        write_summary(self.context.summary_path, self._console.clean(summary))

    def _write_outputs(self, publication: Publication) -> None:
        outputs = render_outputs(publication)
        cleaned = {name: self._console.clean(value) for name, value in outputs.items()}
        write_outputs(self.context.output_path, cleaned)

    def _shortened(self, diagnostic: Diagnostic, *, log: bool = True) -> Diagnostic:
        """`diagnostic` with its long code spans cut; the whole text goes to the log once.

        Masked values are scrubbed first, so no cut can leave a piece of one.
        """
        clean = self._console.clean
        whole = dataclasses.replace(
            diagnostic,
            message=clean(diagnostic.message),
            fix=clean(diagnostic.fix),
            details=clean(diagnostic.details),
        )
        short = dataclasses.replace(
            whole,
            message=cap_code_spans(whole.message),
            fix=cap_code_spans(whole.fix),
            details=cap_code_spans(whole.details),
        )
        if short == whole:
            return whole
        if log:
            fix = f"Fix: {whole.fix}" if whole.fix else ""
            texts = filter(None, (whole.message, fix, whole.details))
            self.log(f"{whole.title}, in full:\n" + "\n".join(texts))
        note = " (Shortened; the log has the full text.)"
        return dataclasses.replace(short, message=short.message + note)

    def _say_plainly(self, publication: Publication, unwritten: Sequence[tuple[str, str]]) -> None:
        """What is on the index, as plain log lines, when the report could not say it."""
        on_index = [r for r in publication.results if r.outcome.on_index]
        lines = [f"{r.dist.display}: on the index, sha256 {r.dist.sha256}" for r in on_index]
        warnings = [
            Diagnostic(
                Level.WARNING,
                f"The {what} could not be written",
                f"Writing the {what} failed ({problem}). The log lists each file on the "
                "index with its sha256; the run's result stands.",
            )
            for what, problem in unwritten
        ]
        # The last resort: a log that cannot be written leaves nothing to tell.
        with contextlib.suppress(Exception):
            for line in lines or ["No file of this run is on the index."]:
                self.log(line)
            for warning in warnings:
                self._console.annotate(warning)

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


@contextlib.contextmanager
def advisory(reporter: Reporter, step: str) -> Iterator[None]:
    """Runs a step that comes after the uploads (`step` names it): whatever ends it is one
    warning, and the run's verdict and exit code stay the uploads'. Only a cancellation goes
    on, to end the run as cancelled."""
    try:
        yield
    except Cancelled:
        raise
    except Exception as error:
        if isinstance(error, ActionError):
            said, fix = error.message, error.fix
        else:
            import traceback

            reporter.log(traceback.format_exc())
            said = md_code(f"{type(error).__name__}: {error}") + "."
            fix = "If it happens again, please report it with the log attached."
        reporter.add(
            Diagnostic(
                Level.WARNING,
                f"{step} did not finish",
                f"{step} stopped after the uploads: {said} The uploads' result stands: the "
                "step summary lists the files on the index.",
                fix=fix,
            )
        )


def _attempt(write: Callable[[], None]) -> str:
    """Runs `write`; what went wrong, or "" when nothing did."""
    try:
        write()
    except Exception as error:  # a report that fails must not lose the result
        return f"{type(error).__name__}: {error}"[:SPAN_MAX_CHARS]
    return ""


def render_outputs(publication: Publication) -> dict[str, str]:
    on_index = [r for r in publication.results if r.outcome.on_index]
    files = [
        {
            "project": r.dist.name,
            "version": r.dist.version,
            "name": shown(r.dist.filename),
            "sha256": r.dist.sha256,
            "url": _https(r.url),
            "attested": r.attested,
            "github-attestation": _https(r.github_attestation),
        }
        for r in on_index
    ]
    published = [
        release
        for release in publication.releases
        if not publication.dry_run and any(release.holds(r) for r in on_index)
    ]
    releases = [{"project": r.name, "version": r.version, "url": _https(r.url)} for r in published]
    # One release's page, as the single-project action always gave; with several, `releases`.
    release_url = releases[0]["url"] if len(publication.releases) == 1 and releases else ""
    waited = publication.installable_after
    return {
        "files": json.dumps(files),
        "releases": json.dumps(releases),
        "release-url": release_url,
        "installable-after": "" if waited is None else f"{waited:.0f}",
    }


def _https(url: str | None) -> str:
    """Only https:// addresses reach a workflow, and none longer than an index's or GitHub's."""
    return url if url and url.startswith("https://") and len(url) <= URL_MAX_CHARS else ""


def render_summary(
    publication: Publication,
    diagnostics: Sequence[Diagnostic],
    *,
    failed: bool,
    cancelled: bool = False,
) -> str:
    releases = publication.releases
    lines = [f"## {_headline(publication, failed, cancelled)}", ""]
    single = releases[0] if len(releases) == 1 else None
    if single and single.url and not failed and not publication.dry_run:
        lines += [f"Release: {single.url}", ""]
    if publication.attestations:
        lines += [publication.attestations, ""]
    if publication.github_verify:
        lines += [
            "Files linked to GitHub below have their attestation in GitHub's attestation store "
            "too; to verify a downloaded one:",
            "",
            md_code(publication.github_verify),
            "",
        ]
    if publication.waited_for_index:
        waited = publication.installable_after
        lines += [
            f"Installable from the index {waited:.0f} s after the upload."
            if waited is not None
            else "Not yet listed by the index when the wait ended; see the warning below.",
            "",
        ]
    index = publication.index_name or "the index"
    if publication.results and len(releases) > 1:
        for release in releases:
            results = [r for r in publication.results if release.holds(r)]
            lines += [_release_line(release, results, publication.dry_run), ""]
            lines += [*_table(results, index), ""]
    elif publication.results:
        lines += [*_table(publication.results, index), ""]
    if publication.results and failed:
        lines += [_what_is_where(publication, cancelled), ""]
    for diagnostic in diagnostics:
        lines += _section(diagnostic)
    return "\n".join(lines) + "\n"


def _table(results: Sequence[FileResult], index: str) -> list[str]:
    lines = ["| File | Size | SHA-256 | Attested | Result |", "|---|---|---|---|---|"]
    for r in results:
        name = md_link(r.dist.filename, r.url)
        attested = _attested(r, index)
        lines.append(
            f"| {name} | {_size(r.dist.size)} | `{r.dist.sha256}` | {attested} | {r.outcome} |"
        )
    return lines


def release_state(results: Sequence[FileResult], *, dry_run: bool) -> str:
    """Whether a release is on the index whole: what a re-run has left to do. A file whose
    upload was under way when the run stopped may be there: it is named."""
    on_index = sum(r.outcome.on_index for r in results)
    flying = ", ".join(md_code(r.dist.filename) for r in results if r.outcome is Outcome.IN_FLIGHT)
    if dry_run:
        return "rehearsed"
    if results and on_index == len(results):
        return "complete"
    if on_index == 0:
        return f"perhaps partial: {flying} may be on the index" if flying else "untouched"
    partial = f"partial: {on_index} of {len(results)} files on the index"
    return f"{partial}, and {flying} may be" if flying else partial


def _release_line(release: Release, results: Sequence[FileResult], dry_run: bool) -> str:
    state = release_state(results, dry_run=dry_run)
    line = f"**{md_text(release.label)}**: {state}"
    if release.url and state not in ("untouched", "rehearsed"):
        line += f" ({md_link(release.url, release.url)})"
    return line


def _attested(result: FileResult, index: str) -> str:
    """✅ and a link to each place that shows the file's attestation: the index, GitHub."""
    if not result.attested:
        return "—"
    places = ((index, result.provenance), ("GitHub", result.github_attestation))
    links = [f"[{md_text(where)}]({safe})" for where, url in places if (safe := md_url(url))]
    return f"✅ {' · '.join(links)}" if links else "✅"


def _headline(publication: Publication, failed: bool, cancelled: bool) -> str:
    releases = publication.releases
    if len(releases) == 1:
        what = releases[0].label
    elif releases:
        what = f"{len(releases)} releases"
    else:
        what = "distributions"
    where = f" to {publication.index_name}" if publication.index_name else ""
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
        parts.append(
            f"In flight when the run stopped, so perhaps on the index: {', '.join(flying)}."
        )
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
