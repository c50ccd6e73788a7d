"""The step summary, the outputs and the annotations: what a reader sees, and nothing more.

File names, URLs and texts from the index are untrusted; rendered, they stay text.
"""

from __future__ import annotations

import io
import json
import re
import signal
from pathlib import Path
from typing import Any, cast

import pytest

from oidc_publish.dists import SDIST, WHEEL, Distribution
from oidc_publish.errors import Cancelled, Diagnostic, Level, UploadRejected
from oidc_publish.outcomes import FileResult, Outcome
from oidc_publish.report import Publication, Release, Reporter, render_outputs, render_summary
from oidc_publish.runner import RunnerContext
from tests.localindex.runner import parse_commands, parse_outputs
from tests.summary import code_span_text, table_lines

HOSTILE_NAME = "evil`x``|<img src=x onerror=alert(1)>|[a](javascript:x)-1.0-py3-none-any.whl"
RELEASE = Release("sample-project", "1.0.0", "PyPI", "https://pypi.org/project/x/1.0.0/")


def dist(tmp_path: Path, filename: str, kind: str = WHEEL) -> Distribution:
    return Distribution(
        path=tmp_path / "dist" / filename,
        display=f"dist/{filename}",
        kind=kind,
        name="sample-project",
        version="1.0.0",
        size=1234,
        sha256="a" * 64,
        blake2_256="b" * 64,
        package=cast(Any, None),
    )


def without_code_spans(markdown: str) -> str:
    """The Markdown with every code span cut out: what is left is what renders as markup."""
    return re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)


def test_a_hostile_file_name_is_a_code_span_that_keeps_the_table_whole(tmp_path: Path) -> None:
    hostile = dist(tmp_path, HOSTILE_NAME)
    others = [dist(tmp_path, "sample_project-1.0.0.tar.gz", SDIST)]
    publication = Publication(
        release=RELEASE,
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
        release=RELEASE,
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
    publication = Publication(release=RELEASE, results=[FileResult(listed, Outcome.LISTED, url)])

    summary = render_summary(publication, [], failed=False)
    outputs = render_outputs(publication)

    assert summary.startswith("## ✅ Published sample-project 1.0.0 to PyPI\n")
    [row] = table_lines(summary)[2:]
    assert row[4] == "already on the index (its listing shows this sha256)"
    assert json.loads(outputs["files"]) == [
        {"name": listed.filename, "sha256": "a" * 64, "url": url, "attested": False}
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
        Publication(release=RELEASE, results=error.results), error
    )

    assert exit_code == code
    summary = summary_file.read_text()
    assert summary.startswith("## 🛑 Publishing sample-project 1.0.0 to PyPI was cancelled\n")
    assert "Release: " not in summary
    assert [row[4] for row in table_lines(summary)[2:]] == [
        "uploaded",
        "in flight when cancelled: may be on the index; a re-run recognises it",
        "not uploaded",
    ]
    assert (
        f"On the index: `{up.filename}`. In flight when cancelled, so perhaps on the index: "
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
        "release-url": "",
        "installable-after": "",
    }


def test_debug_lines_are_commands_unless_verbose_makes_them_log_lines(tmp_path: Path) -> None:
    line = f"POST https://index.example/_/oidc/mint-token -> 200 OK {chr(10)}::error::x"
    quiet, loud = io.StringIO(), io.StringIO()
    context = RunnerContext.from_env({"GITHUB_WORKSPACE": str(tmp_path)})

    Reporter(context, quiet).debug(line)
    Reporter(context, loud, verbose=True).debug(line)

    assert quiet.getvalue() == f"::debug::{line.replace(chr(10), '%0A')}\n"
    shown = loud.getvalue().splitlines()
    assert shown[0] == "POST https://index.example/_/oidc/mint-token -> 200 OK "
    assert parse_commands(shown) == ([], [])
