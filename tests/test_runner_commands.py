"""What the action writes for the runner: commands escaped as the runner unescapes them,
data that never becomes a command, and Markdown that shows untrusted text as written."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from oidc_publish.errors import Diagnostic, Level
from oidc_publish.runner import (
    Secrets,
    WorkflowCommands,
    cap_code_spans,
    fit_summary,
    md_code,
    md_link,
    md_text,
    shown,
    write_outputs,
    write_summary,
)
from tests.localindex.runner import parse_commands, parse_outputs
from tests.summary import code_span_text, live_markup, table_lines


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
    write_summary(summary, "## Published\n\n" + "x" * (2 * 1024 * 1024))
    assert summary.stat().st_size < 1024 * 1024
    assert summary.read_text().startswith("## Published\n\n*The summary was cut")


PAYLOAD = "<img src=https://x/p.png> [link](https://evil) ![i](https://x/i.png) <https://x/a>"


def test_the_summary_is_cut_between_blocks_never_inside_a_span_or_a_row() -> None:
    """Wherever the limit falls, what is kept renders no link, image or HTML from the text."""
    hostile = md_code(f"`{PAYLOAD}` | {PAYLOAD}")
    blocks = ["## Published", "", "| File | Result |", "|---|---|"]
    blocks += [f"| {hostile} | [`f{n}.whl`](https://files.example/f{n}.whl) |" for n in range(8)]
    blocks += [""]
    for n in range(8):
        blocks += [f"### Refused ({md_code(f'f{n}.whl')})", "", f"The index said {hostile}.", ""]
    blocks += ["```yaml", "permissions:", "", f"  note: {PAYLOAD}", "```", "", "Last."]
    markdown = "\n".join(blocks)
    ours = {f"https://files.example/f{n}.whl" for n in range(8)}
    assert set(live_markup(markdown)) == ours  # the page whole renders nothing from the text

    cuts = set()
    for limit in range(150, len(markdown.encode()), 7):
        cut = fit_summary(markdown, limit)

        assert len(cut.encode()) <= limit
        assert set(live_markup(cut)) <= ours, cut
        # Whole rows only: every row keeps both its cells.
        assert {len(row) for row in table_lines(cut)} <= {2}
        kept, note, _ = cut.partition("*The summary was cut")
        assert note
        assert markdown.startswith(kept.rstrip("\n"))
        cuts.add(len(kept))
    assert len(cuts) > 10  # the cut moved through rows, sections and the fenced block


def test_long_code_spans_are_cut_and_stay_spans() -> None:
    long = "a|b`c" + "x" * 1000
    escaped = "\\`not a span"
    markdown = f"Reason {md_code(long)}, file `f.whl`, {escaped} {md_code('y' * 20)}"

    capped = cap_code_spans(markdown, limit=20)

    assert capped == f"Reason {md_code(long[:20] + '…')}, file `f.whl`, {escaped} `{'y' * 20}`"
    assert code_span_text(md_code(long[:20] + "…")) == long[:20] + "…"
    assert cap_code_spans(capped, limit=20) == capped
    assert live_markup(capped) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"notes-\xff\xfe.txt", "notes-\\xff\\xfe.txt"),
        ("café.whl".encode(), "café.whl"),
        (b"\xe9t\xe9.whl", "\\xe9t\\xe9.whl"),
    ],
)
def test_a_name_that_is_not_utf8_is_shown_with_its_bytes_escaped(
    name: bytes, expected: str
) -> None:
    path = Path(os.fsdecode(name))

    assert shown(path) == shown(path.name) == expected
    assert md_code(path.name) == f"`{expected}`"
    shown(path).encode("utf-8")  # writable anywhere


def test_masked_values_are_scrubbed_whole_even_where_two_overlap() -> None:
    masks = Secrets()
    masks.add("abc-SECRET-one")
    masks.add("one-OTHER-xyz")
    masks.add("first-half\nsecond-half")

    assert masks.scrub("<abc-SECRET-one-OTHER-xyz>") == "<***>"
    assert masks.scrub("abc-SECRET-oneabc-SECRET-one!") == "***!"
    # Line by line, as the runner masks, and flattened as a code span shows it.
    assert masks.scrub("got second-half") == "got ***"
    assert masks.scrub(md_code("first-half\nsecond-half")) == "`*** ***`"
    assert masks.add("abc-SECRET-one") == []  # the runner is told once


@pytest.mark.parametrize(
    "render",
    [
        lambda s: f'{{"url": {json.dumps(s)}}}',
        md_code,
        md_text,
        lambda s: md_link("pkg.whl", f"https://files.example/{s}"),
        shown,
    ],
    ids=["json", "code-span", "prose", "link", "shown"],
)
def test_a_masked_value_is_scrubbed_in_every_form_the_action_writes_it(
    render: Callable[[str], str],
) -> None:
    secret = 'pypi-s3cr3t|t0k`3n"x\\y \udcff'
    masks = Secrets()
    masks.add(secret)

    written = masks.scrub(render(secret))

    assert "***" in written
    assert "s3cr3t" not in written
    assert "t0k" not in written


def test_the_writer_scrubs_every_line_and_command_it_writes() -> None:
    out = io.StringIO()
    writer = WorkflowCommands(out)
    writer.mask("pypi-s3cr3t%0A")
    writer.line("token pypi-s3cr3t%0A")
    writer.debug("token pypi-s3cr3t%0A")
    writer.group("token pypi-s3cr3t%0A")
    writer.annotate(
        Diagnostic(
            Level.ERROR,
            "title pypi-s3cr3t%0A",
            "message pypi-s3cr3t%0A",
            "fix pypi-s3cr3t%0A",
            "dist/pypi-s3cr3t%0A.whl",
        )
    )

    [mask, *lines] = out.getvalue().splitlines()
    assert mask == "::add-mask::pypi-s3cr3t%250A"
    assert not [line for line in lines if "s3cr3t" in line]
    [annotation], _ = parse_commands(lines)
    assert (annotation.title, annotation.file) == ("title ***", "dist/***.whl")
    assert annotation.message == "message ***\n\nFix: fix ***"
    assert lines[:3] == ["token ***", "::debug::token ***", "::group::token ***"]


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
    assert set(masks) == {"first-half\nsecond-half", "first-half", "second-half"}


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


def test_characters_that_reorder_or_break_text_unseen_are_shown_escaped() -> None:
    # A name that would read `invoice.exe.whl` as `invoicelhw.exe...` backwards.
    assert shown("invoice\u202egpj.exe.whl") == "invoice\\u202egpj.exe.whl"
    assert shown("a\u2066b\u2069c\u2028d\u200fe") == "a\\u2066b\\u2069c\\u2028d\\u200fe"
    # The zero-width space that breaks workflow commands is the action's own, and stays.
    assert shown("##\u200b[") == "##\u200b["
