"""The step summary, the outputs and the annotations: what a reader sees, and nothing more.

File names, URLs and texts from the index are untrusted; rendered, they stay text.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from oidc_publish.dists import SDIST, WHEEL, Blake2, Distribution, Folder
from oidc_publish.errors import (
    ActionError,
    Cancelled,
    Diagnostic,
    Level,
    ProjectNotAcceptingUploads,
    UploadRejected,
)
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.report import (
    VERBOSE_GROUP,
    Publication,
    Release,
    Reporter,
    release_state,
    render_outputs,
    render_summary,
)
from oidc_publish.runner import RunnerContext, md_code
from tests.localindex.runner import parse_commands, parse_outputs
from tests.summary import code_span_text, live_markup, rows, table_lines

HOSTILE_NAME = "evil`x``|<img src=x onerror=alert(1)>|[a](javascript:x)-1.0-py3-none-any.whl"
RELEASE = Release("sample-project", "1.0.0", "https://pypi.org/project/x/1.0.0/")


def dist(
    tmp_path: Path,
    filename: str,
    kind: str = WHEEL,
    name: str = "sample-project",
    version: str = "1.0.0",
) -> Distribution:
    return Distribution(
        path=tmp_path / "dist" / filename,
        display=f"dist/{filename}",
        kind=kind,
        name=name,
        version=version,
        size=1234,
        sha256="a" * 64,
        blake2=Blake2(Path(), "b" * 64),
        package=cast(Any, None),
    )


def without_code_spans(markdown: str) -> str:
    """The Markdown with every code span cut out: what is left is what renders as markup."""
    return re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def test_a_hostile_file_name_is_a_code_span_that_keeps_the_table_whole(tmp_path: Path) -> None:
    hostile = dist(tmp_path, HOSTILE_NAME)
    others = [dist(tmp_path, "sample_project-1.0.0.tar.gz", SDIST)]
    publication = Publication(
        index_name="PyPI",
        releases=[RELEASE],
        results=[
            FileResult(hostile, Outcome.UPLOADED, url=f"https://files.example/{HOSTILE_NAME}"),
            FileResult(hostile, Outcome.FAILED),
            FileResult(others[0], Outcome.NOT_ATTEMPTED),
        ],
    )
    error = UploadRejected("refused", fix="fix it", file=hostile.display, title="Refused")

    summary = render_summary(publication, error.diagnostics(), failed=True)

    rows = table_lines(summary)
    assert [len(row) for row in rows] == [5] * len(rows)
    linked, failed, _ = rows[2:]
    # Linked: the text is a code span, the URL percent-encoded so nothing in it ends the link.
    text, url = re.fullmatch(r"\[(.+)\]\((\S+)\)", linked[0]).groups()  # type: ignore[union-attr]
    assert code_span_text(text) == HOSTILE_NAME
    assert url.startswith("https://files.example/evil%60x%60%60%7C%3Cimg")
    assert not set(url) & set(" ()<>|`")
    assert code_span_text(failed[0]) == HOSTILE_NAME
    # Outside code spans nothing of the name is left to render as HTML or a link.
    bare = without_code_spans(summary)
    assert "<img" not in bare
    assert "](javascript:x)" not in bare
    assert f"({hostile.display.replace('|', chr(92) + '|')})" not in bare


def test_urls_from_the_index_are_linked_and_output_only_when_https(tmp_path: Path) -> None:
    urls = {
        "a-1.0-py3-none-any.whl": "http://files.example/a-1.0-py3-none-any.whl",
        "b-1.0-py3-none-any.whl": "javascript:alert(1)",
        "c-1.0-py3-none-any.whl": "HTTPS://files.example/c-1.0-py3-none-any.whl",
        "d-1.0-py3-none-any.whl": "https://files.example/d-1.0-py3-none-any.whl",
    }
    publication = Publication(
        index_name="PyPI",
        releases=[RELEASE],
        results=[
            FileResult(dist(tmp_path, name), Outcome.UPLOADED, url) for name, url in urls.items()
        ],
    )

    summary = render_summary(publication, [], failed=False)
    files = json.loads(render_outputs(publication)["files"])

    assert [row[0] for row in table_lines(summary)[2:]] == [
        "`a-1.0-py3-none-any.whl`",
        "`b-1.0-py3-none-any.whl`",
        "`c-1.0-py3-none-any.whl`",
        "[`d-1.0-py3-none-any.whl`](https://files.example/d-1.0-py3-none-any.whl)",
    ]
    assert "http://" not in summary
    assert "javascript:" not in summary
    assert [f["url"] for f in files] == ["", "", "", urls["d-1.0-py3-none-any.whl"]]


def test_a_file_the_listing_vouches_for_says_so_and_counts_as_published(tmp_path: Path) -> None:
    listed = dist(tmp_path, "sample_project-1.0.0-py3-none-any.whl")
    url = "https://files.example/sample_project-1.0.0-py3-none-any.whl"
    publication = Publication(
        index_name="PyPI", releases=[RELEASE], results=[FileResult(listed, Outcome.LISTED, url)]
    )

    summary = render_summary(publication, [], failed=False)
    outputs = render_outputs(publication)

    assert summary.startswith("## ✅ Published sample-project 1.0.0 to PyPI\n")
    [row] = table_lines(summary)[2:]
    assert row[4] == "already on the index (its listing shows this sha256)"
    assert json.loads(outputs["files"]) == [
        {
            "project": "sample-project",
            "version": "1.0.0",
            "name": listed.filename,
            "sha256": "a" * 64,
            "url": url,
            "attested": False,
            "github-attestation": "",
        }
    ]
    assert outputs["release-url"] == RELEASE.url


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_cancelled_run_exits_as_a_shell_reports_the_signal_and_says_what_may_be_there(
    tmp_path: Path, signum: int, code: int
) -> None:
    summary_file, output_file = tmp_path / "summary", tmp_path / "output"
    context = RunnerContext.from_env(
        {"GITHUB_STEP_SUMMARY": str(summary_file), "GITHUB_OUTPUT": str(output_file)}
    )
    up, flying, left = (dist(tmp_path, f"sample_project-1.0.0-py3{n}-none-any.whl") for n in "012")
    error = Cancelled(signum)
    error.results = [
        FileResult(up, Outcome.UPLOADED),
        FileResult(flying, Outcome.IN_FLIGHT),
        FileResult(left, Outcome.NOT_ATTEMPTED),
    ]
    stdout = io.StringIO()

    exit_code = Reporter(context, stdout).finish(
        Publication(index_name="PyPI", releases=[RELEASE], results=error.results), error
    )

    assert exit_code == code
    summary = summary_file.read_text()
    assert summary.startswith("## 🛑 Publishing sample-project 1.0.0 to PyPI was cancelled\n")
    assert "Release: " not in summary
    assert [row[4] for row in table_lines(summary)[2:]] == [
        "uploaded",
        "in flight when the run stopped: may be on the index; a re-run recognises it",
        "not uploaded",
    ]
    assert (
        f"On the index: `{up.filename}`. In flight when the run stopped, so perhaps on the index: "
        f"`{flying.filename}`. Not on the index: `{left.filename}`. Re-running this job uploads "
        "the rest; files already there are recognised." in summary
    )
    assert [f["name"] for f in json.loads(parse_outputs(output_file.read_text())["files"])] == [
        up.filename
    ]
    [annotation], _ = parse_commands(stdout.getvalue().splitlines())
    assert annotation.title == "The run was cancelled"
    assert f"({signal.Signals(signum).name}) during the uploads" in annotation.message


@pytest.mark.parametrize(("level", "plural"), [(Level.NOTICE, "notices"), (Level.ERROR, "errors")])
def test_more_than_ten_of_a_kind_fold_into_the_tenth_annotation(
    tmp_path: Path, level: Level, plural: str
) -> None:
    summary_file, output_file = tmp_path / "summary", tmp_path / "output"
    context = RunnerContext.from_env(
        {
            "GITHUB_WORKSPACE": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(summary_file),
            "GITHUB_OUTPUT": str(output_file),
        }
    )
    stdout = io.StringIO()
    reporter = Reporter(context, stdout)
    for n in range(12):
        reporter.add(
            Diagnostic(level, f"Retrying file{n:02}.whl", "HTTP 503", file=f"dist/f{n:02}")
        )
    reporter.add(Diagnostic(Level.WARNING, "One warning", "stays"))

    code = reporter.finish(Publication(), None)

    assert code == 0
    annotations, _ = parse_commands(stdout.getvalue().splitlines())
    folded = [a for a in annotations if a.level == str(level)]
    assert len(folded) == 10
    assert [a.title for a in folded[:9]] == [f"Retrying file{n:02}.whl" for n in range(9)]
    assert folded[9].title == f"3 more {plural}"
    assert folded[9].file is None
    for n in (9, 10, 11):
        assert f"Retrying file{n:02}.whl (dist/f{n:02})" in folded[9].message
    assert [a.title for a in annotations if a.level == "warning"] == ["One warning"]
    # The summary keeps every one, each under its own heading.
    assert summary_file.read_text().count(" Retrying file") == 12
    assert parse_outputs(output_file.read_text()) == {
        "files": "[]",
        "releases": "[]",
        "release-url": "",
        "installable-after": "",
    }


def test_debug_lines_are_commands_and_verbose_shows_them_in_one_group_at_the_end(
    tmp_path: Path,
) -> None:
    line = f"POST https://index.example/_/oidc/mint-token -> 200 OK {chr(10)}::error::x"
    quiet, loud = io.StringIO(), io.StringIO()
    context = RunnerContext.from_env({"GITHUB_WORKSPACE": str(tmp_path)})
    reporters = Reporter(context, quiet, verbose=False), Reporter(context, loud, verbose=True)

    for reporter in reporters:
        reporter.debug(line)
        reporter.log("Uploading 2 file(s)")
        reporter.finish(Publication(), None)

    debug_command = f"::debug::{line.replace(chr(10), '%0A')}"
    assert quiet.getvalue().splitlines()[:2] == [debug_command, "Uploading 2 file(s)"]
    assert VERBOSE_GROUP not in quiet.getvalue()
    shown = loud.getvalue().splitlines()
    assert shown[:2] == [debug_command, "Uploading 2 file(s)"]
    grouped = shown[shown.index(f"::group::{VERBOSE_GROUP}") + 1 : shown.index("::endgroup::")]
    assert grouped[0] == "POST https://index.example/_/oidc/mint-token -> 200 OK "
    assert parse_commands(grouped) == ([], [])


def test_a_release_with_a_file_in_flight_is_perhaps_partial_and_names_it(tmp_path: Path) -> None:
    names = ["a-1.0-py3-none-any.whl", "a-1.0-py2-none-any.whl", "a-1.0.tar.gz"]
    files = [dist(tmp_path, name, name="a", version="1.0") for name in names]

    def state(*outcomes: Outcome) -> str:
        results = [FileResult(f, o) for f, o in zip(files, outcomes, strict=True)]
        return release_state(results, dry_run=False)

    flying, done, left = Outcome.IN_FLIGHT, Outcome.UPLOADED, Outcome.NOT_ATTEMPTED
    assert state(flying, left, left) == f"perhaps partial: `{names[0]}` may be on the index"
    assert state(done, flying, flying) == (
        f"partial: 1 of 3 files on the index, and `{names[1]}`, `{names[2]}` may be"
    )
    assert state(done, done, left) == "partial: 2 of 3 files on the index"
    assert state(left, left, left) == "untouched"


def test_several_releases_are_grouped_each_saying_whether_it_is_whole(tmp_path: Path) -> None:
    def of(name: str, version: str, *outcomes: Outcome) -> list[FileResult]:
        stem = name.replace("-", "_")
        kinds = [("py3-none-any.whl", WHEEL), ("tar.gz", "sdist")]
        return [
            FileResult(dist(tmp_path, f"{stem}-{version}-{suffix}", kind, name, version), outcome)
            for (suffix, kind), outcome in zip(kinds, outcomes, strict=False)
        ]

    releases = [
        Release("core", "2.0.0", "https://pypi.org/project/core/2.0.0/"),
        Release("core-plugin", "0.3.0", "https://pypi.org/project/core-plugin/0.3.0/"),
        Release("core-stubs", "2.0.0", "https://pypi.org/project/core-stubs/2.0.0/"),
    ]
    results = [
        *of("core", "2.0.0", Outcome.UPLOADED, Outcome.LISTED),
        *of("core-plugin", "0.3.0", Outcome.UPLOADED, Outcome.FAILED),
        *of("core-stubs", "2.0.0", Outcome.NOT_ATTEMPTED, Outcome.NOT_ATTEMPTED),
    ]
    publication = Publication(index_name="PyPI", releases=releases, results=results)

    summary = render_summary(publication, [], failed=True)
    outputs = render_outputs(publication)

    assert summary.startswith("## ❌ Publishing 3 releases to PyPI failed\n")
    assert (
        "**core 2\\.0\\.0**: complete "
        "([`https://pypi.org/project/core/2.0.0/`](https://pypi.org/project/core/2.0.0/))"
    ) in summary
    assert "**core\\-plugin 0\\.3\\.0**: partial: 1 of 2 files on the index" in summary
    assert "**core\\-stubs 2\\.0\\.0**: untouched\n" in summary
    # One table per release, in the releases' order.
    assert summary.count("| File | Size | SHA-256 | Attested | Result |") == 3
    assert summary.index("core-2.0.0") < summary.index("core_plugin") < summary.index("core_stubs")
    assert json.loads(outputs["releases"]) == [
        {"project": "core", "version": "2.0.0", "url": "https://pypi.org/project/core/2.0.0/"},
        {
            "project": "core-plugin",
            "version": "0.3.0",
            "url": "https://pypi.org/project/core-plugin/0.3.0/",
        },
    ]
    assert outputs["release-url"] == ""
    assert [(f["project"], f["name"]) for f in json.loads(outputs["files"])] == [
        ("core", "core-2.0.0-py3-none-any.whl"),
        ("core", "core-2.0.0-tar.gz"),
        ("core-plugin", "core_plugin-0.3.0-py3-none-any.whl"),
    ]


SECRET = 'pypi-s3cr3t|t0k`3n"x\\y'


def reporter_in(tmp_path: Path, stdout: io.StringIO) -> Reporter:
    context = RunnerContext.from_env(
        {
            "GITHUB_WORKSPACE": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            "GITHUB_OUTPUT": str(tmp_path / "output"),
        }
    )
    return Reporter(context, stdout)


def leaks(text: str) -> bool:
    """Whether any piece of SECRET shows, whatever escaping or cutting it went through."""
    return "s3cr" in text or "t0k" in text


def placed_in_log(reporter: Reporter, publication: Publication) -> ActionError | None:
    reporter.log(f"the index said: {SECRET}")
    return None


def placed_in_debug(reporter: Reporter, publication: Publication) -> ActionError | None:
    reporter.debug(f"POST /legacy/ -> 400 {SECRET}")
    return None


def placed_in_group(reporter: Reporter, publication: Publication) -> ActionError | None:
    with reporter.group(f"Uploading to {SECRET}"):
        return None


def placed_in_annotation(reporter: Reporter, publication: Publication) -> ActionError | None:
    reporter.add(
        Diagnostic(
            Level.WARNING,
            f"Retrying {SECRET}",
            f"The index said {md_code(SECRET)}",
            fix=f"Check {md_code(SECRET)}",
            file=f"dist/{SECRET}.whl",
            details=f"| Claim | Value |\n|---|---|\n| token | {md_code(SECRET)} |",
        )
    )
    return None


def placed_in_error(reporter: Reporter, publication: Publication) -> ActionError | None:
    # Where the summary and the annotation cut the reason, inside the secret.
    return UploadRejected(
        f"PyPI refused it: {md_code('x' * 290 + SECRET)}",
        fix="Read the reason.",
        file=f"dist/{SECRET}.whl",
        title=f"Refused {SECRET}",
    )


def placed_in_results(reporter: Reporter, publication: Publication) -> ActionError | None:
    listed = dist(Path("/w"), f"{SECRET}-1.0-py3-none-any.whl")
    url = f"https://files.example/{SECRET}.whl"
    publication.results = [FileResult(listed, Outcome.UPLOADED, url, True, url)]
    publication.releases = [Release("p", "1.0", f"https://pypi.org/{SECRET}")]
    return None


@pytest.mark.parametrize(
    ("place", "surfaces"),
    [
        (placed_in_log, ["log"]),
        (placed_in_debug, ["log"]),
        (placed_in_group, ["log"]),
        (placed_in_annotation, ["log", "summary"]),
        (placed_in_error, ["log", "summary"]),
        (placed_in_results, ["summary", "outputs"]),
    ],
    ids=["log", "debug", "group", "annotation", "error", "results"],
)
def test_a_masked_value_is_written_nowhere_whatever_the_text_came_from(
    tmp_path: Path,
    place: Callable[[Reporter, Publication], ActionError | None],
    surfaces: list[str],
) -> None:
    stdout = io.StringIO()
    reporter = reporter_in(tmp_path, stdout)
    reporter.mask(SECRET)
    publication = Publication()

    reporter.finish(publication, place(reporter, publication))

    written = {
        "log": "\n".join(
            line for line in stdout.getvalue().splitlines() if not line.startswith("::add-mask::")
        ),
        "summary": (tmp_path / "summary").read_text(),
        "outputs": (tmp_path / "output").read_text(),
    }
    assert [where for where, text in written.items() if leaks(text)] == []
    # The value was written there, as `***`.
    assert [where for where in surfaces if "***" not in written[where]] == []


def test_untrusted_text_is_cut_in_the_summary_and_annotations_and_logged_whole(
    tmp_path: Path,
) -> None:
    reason = "archived: " + " ".join(
        ["`x` <img src=https://x/p.png> [link](https://evil) ![i](https://x/i.png)"] * 12_000
    )
    stdout = io.StringIO()
    reporter = reporter_in(tmp_path, stdout)
    error = ProjectNotAcceptingUploads(
        f"PyPI marks the project {md_code('sample-project')} as archived: {md_code(reason)}",
        fix="Unarchive it.",
    )

    code = reporter.finish(Publication(index_name="PyPI", releases=[RELEASE]), error)

    assert code == 1
    annotations, _ = parse_commands(stdout.getvalue().splitlines())
    [annotation] = annotations
    assert len(annotation.message) < 600
    assert "`sample-project`" in annotation.message
    assert annotation.message.endswith(
        "…`` (Shortened; the log has the full text.)\n\nFix: Unarchive it."
    )
    summary = (tmp_path / "summary").read_text()
    assert len(summary) < 2000
    assert "…" in summary
    assert live_markup(summary) == []
    # The log has the reason once, whole, as the runner shows it.
    assert stdout.getvalue().count(reason) == 1


def test_an_unwritable_summary_loses_neither_the_outputs_nor_the_result(tmp_path: Path) -> None:
    on_index = dist(tmp_path, "sample_project-1.0.0-py3-none-any.whl")
    failed = dist(tmp_path, "sample_project-1.0.0.tar.gz", SDIST)
    publication = Publication(
        index_name="PyPI",
        releases=[RELEASE],
        results=[FileResult(on_index, Outcome.UPLOADED), FileResult(failed, Outcome.FAILED)],
    )
    stdout = io.StringIO()
    context = RunnerContext.from_env(
        {
            "GITHUB_WORKSPACE": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(tmp_path),  # a folder: IsADirectoryError
            "GITHUB_OUTPUT": str(tmp_path / "output"),
        }
    )
    error = UploadRejected("refused", fix="fix it", file=failed.display, title="Refused")

    code = Reporter(context, stdout).finish(publication, error)

    assert code == 1
    log = stdout.getvalue().splitlines()
    assert f"{on_index.display}: on the index, sha256 {on_index.sha256}" in log
    assert not [line for line in log if failed.display in line and "on the index" in line]
    annotations, _ = parse_commands(log)
    assert [a.title for a in annotations] == ["Refused", "The step summary could not be written"]
    assert "IsADirectoryError" in annotations[1].message
    files = json.loads(parse_outputs((tmp_path / "output").read_text())["files"])
    assert [f["name"] for f in files] == [on_index.filename]


def test_a_rendering_that_fails_keeps_the_exit_code_and_says_what_is_on_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("a bug in rendering")

    monkeypatch.setattr("oidc_publish.report.render_summary", broken)
    monkeypatch.setattr("oidc_publish.report.render_outputs", broken)
    wheel = dist(tmp_path, "sample_project-1.0.0-py3-none-any.whl")
    stdout = io.StringIO()

    code = reporter_in(tmp_path, stdout).finish(
        Publication(
            index_name="PyPI", releases=[RELEASE], results=[FileResult(wheel, Outcome.UPLOADED)]
        ),
        None,
    )

    assert code == 0
    log = stdout.getvalue().splitlines()
    assert f"{wheel.display}: on the index, sha256 {'a' * 64}" in log
    annotations, _ = parse_commands(log)
    assert [(a.level, a.title) for a in annotations] == [
        ("warning", "The step summary could not be written"),
        ("warning", "The outputs could not be written"),
    ]
    assert all("RuntimeError: a bug in rendering" in a.message for a in annotations)
    assert not (tmp_path / "summary").exists()


def test_a_name_with_undecodable_bytes_is_shown_escaped_in_summary_outputs_and_log(
    tmp_path: Path,
) -> None:
    name = os.fsdecode(b"sample_project-1.0.0-py3-none-any\xff.whl")
    odd = replace(dist(tmp_path, name), display=Folder(tmp_path).display(tmp_path / "dist" / name))
    stdout = io.StringIO()
    reporter = reporter_in(tmp_path, stdout)
    reporter.log(f"{odd.filename}: uploaded")

    code = reporter.finish(
        Publication(
            index_name="PyPI", releases=[RELEASE], results=[FileResult(odd, Outcome.UPLOADED)]
        ),
        None,
    )

    assert code == 0
    escaped = "sample_project-1.0.0-py3-none-any\\xff.whl"
    assert odd.display == f"dist/{escaped}"
    assert [row[0] for row in table_lines((tmp_path / "summary").read_text())[2:]] == [
        f"`{escaped}`"
    ]
    files = json.loads(parse_outputs((tmp_path / "output").read_text())["files"])
    assert [f["name"] for f in files] == [escaped]
    assert stdout.getvalue().splitlines()[0] == f"{escaped}: uploaded"


def test_each_attestation_is_linked_where_it_is_and_the_verify_command_printed(
    tmp_path: Path,
) -> None:
    names = ["a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl", "c-1.0-py3-none-any.whl"]
    github = [
        "https://github.com/octo-org/x/attestations/7",
        "javascript:alert(1)",
        "",
    ]
    publication = Publication(
        index_name="PyPI",
        releases=[RELEASE],
        results=[
            FileResult(
                dist(tmp_path, name),
                Outcome.UPLOADED,
                attested=True,
                provenance=f"https://pypi.org/integrity/x/1.0/{name}/provenance",
                github_attestation=url,
            )
            for name, url in zip(names, github, strict=True)
        ],
        github_verify="gh attestation verify a`b --repo octo-org/x",
    )

    summary = render_summary(publication, [], failed=False)
    files = json.loads(render_outputs(publication)["files"])

    shown = {row.file: row.attestation_links for row in rows(summary)}
    assert shown == {
        names[0]: {"PyPI": publication.results[0].provenance, "GitHub": github[0]},
        names[1]: {"PyPI": publication.results[1].provenance},
        names[2]: {"PyPI": publication.results[2].provenance},
    }
    assert [f["github-attestation"] for f in files] == [github[0], "", ""]
    assert "javascript:" not in summary
    assert "``gh attestation verify a`b --repo octo-org/x``" in summary
