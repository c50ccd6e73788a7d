"""What the action writes for the runner: commands escaped as the runner unescapes them,
data that never becomes a command, and Markdown that shows untrusted text as written."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from oidc_publish.errors import Diagnostic, Level
from oidc_publish.runner import (
    WorkflowCommands,
    md_code,
    md_link,
    md_text,
    write_outputs,
    write_summary,
)
from tests.localindex.runner import parse_commands, parse_outputs


def test_annotation_round_trips_through_the_runners_unescaping() -> None:
    title, message = "100% sure: key, value", "line one\r\nline two %0A"
    out = io.StringIO()
    WorkflowCommands(out).annotate(
        Diagnostic(Level.ERROR, title, message, "do x", "dist/a:b,c.whl")
    )
    text = out.getvalue()
    assert text.count("\n") == 1
    # The runner splits properties on "," and the command on "::": neither may stay bare.
    properties = text.removeprefix("::error ").split("::", 1)[0]
    assert ":" not in properties
    assert properties.count(",") == 1
    [annotation], _ = parse_commands(text.splitlines())
    assert annotation.level == "error"
    assert annotation.title == title
    assert annotation.file == "dist/a:b,c.whl"
    assert annotation.message == f"{message}\n\nFix: do x"


def test_outputs_use_a_heredoc_the_value_cannot_end(tmp_path: Path) -> None:
    out = tmp_path / "output"
    value = 'line\nEOF\nname=evil\n[{"name": "x"}]'
    write_outputs(out, {"files": value, "release-url": ""})
    text = out.read_text()
    assert parse_outputs(text) == {"files": value, "release-url": ""}
    delimiter = text.splitlines()[0].split("<<", 1)[1]
    assert len(delimiter) > 20
    assert delimiter not in value


def test_summary_stays_under_githubs_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary"
    write_summary(summary, "x" * (2 * 1024 * 1024))
    assert summary.stat().st_size < 1024 * 1024
    assert "cut" in summary.read_text()


HOSTILE = [
    "::add-mask::x",
    "  ::stop-commands::token",
    "\t::error::fake",
    "dist/##[stop-commands]x/pkg.whl",
    "reason ##[add-mask]y and ##[error]z",
    "first\r::stop-commands::t2",
    "a\r\n::warning::w\nb",
]


def test_data_never_becomes_a_command_in_either_syntax() -> None:
    out = io.StringIO()
    writer = WorkflowCommands(out)
    for text in HOSTILE:
        writer.line(text)
        writer.debug(text)
        writer.group(text)
        writer.annotate(Diagnostic(Level.ERROR, text, text, text, text))
    annotations, masks = parse_commands(out.getvalue().splitlines())
    assert masks == []
    # Every annotation keeps its title: a missing one ("") matches nothing in HOSTILE.
    assert {(a.title or "").replace("\u200b", "") for a in annotations} == set(HOSTILE)
    for line in out.getvalue().splitlines():
        assert "##[" not in line
        if line.lstrip().startswith("::"):
            command = line.lstrip()[2:].split("::", 1)[0].split(" ", 1)[0]
            assert command in {"debug", "group", "error"}, line


def test_a_log_line_keeps_what_a_reader_sees() -> None:
    out = io.StringIO()
    WorkflowCommands(out).line("dist/##[stop-commands]x/pkg.whl\nnext")
    shown = out.getvalue().replace("\u200b", "")
    assert shown == "dist/##[stop-commands]x/pkg.whl\nnext\n"


def test_a_secret_with_line_breaks_is_masked_whole_and_line_by_line() -> None:
    out = io.StringIO()
    WorkflowCommands(out).mask("first-half\nsecond-half")
    _, masks = parse_commands(out.getvalue().splitlines())
    assert sorted(masks) == sorted(["first-half\nsecond-half", "first-half", "second-half"])


@pytest.mark.parametrize(
    "value",
    [
        "plain.whl",
        "a`b.whl",
        "``x``",
        "`lead",
        "a|b",
        "<img src=x onerror=alert(1)>",
        "[x](http://e)",
    ],
)
def test_untrusted_text_is_a_code_span_that_shows_it_as_written(value: str) -> None:
    span = md_code(value)
    fence = span[: len(span) - len(span.lstrip("`"))]
    inner = span[len(fence) : len(span) - len(fence)]
    assert inner.strip() == value.replace("|", "\\|").strip()
    assert "`" * len(fence) not in value


def test_markdown_prose_is_escaped_and_links_take_https_only() -> None:
    assert md_text("# not a **heading** <b>") == "\\# not a \\*\\*heading\\*\\* \\<b\\>"
    assert md_link("pkg.whl", "http://evil.example/pkg.whl") == "`pkg.whl`"
    assert md_link("pkg.whl", "https://files.example/a (1).whl") == (
        "[`pkg.whl`](https://files.example/a%20%281%29.whl)"
    )
