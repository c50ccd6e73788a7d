"""Workflow commands are escaped exactly as the runner unescapes them."""

from __future__ import annotations

import io
import re
from pathlib import Path

from oidc_publish.errors import Diagnostic, Level
from oidc_publish.runner import (
    WorkflowCommands,
    escape_data,
    escape_property,
    write_outputs,
    write_summary,
)


def unescape_data(value: str) -> str:
    return value.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(value: str) -> str:
    return unescape_data(value.replace("%3A", ":").replace("%2C", ","))


def test_escaping_round_trips_through_the_runners_unescaping() -> None:
    tricky = "100% sure,\r\nkey: value %0A"
    assert unescape_data(escape_data(tricky)) == tricky
    assert unescape_property(escape_property(tricky)) == tricky
    assert "\n" not in escape_data(tricky)
    assert ":" not in escape_property(tricky)
    assert "," not in escape_property(tricky)


def test_annotation_is_one_line_with_title_and_file() -> None:
    out = io.StringIO()
    WorkflowCommands(out).annotate(
        Diagnostic(Level.ERROR, "Bad: thing, here", "line one\nline two", "do x", "dist/a.whl"),
        "dist/a.whl",
    )
    text = out.getvalue()
    assert text.count("\n") == 1
    match = re.fullmatch(r"::error (?P<props>[^:]*)::(?P<msg>.*)\n", text)
    assert match
    assert "title=Bad%3A thing%2C here" in match["props"]
    assert "file=dist/a.whl" in match["props"]
    assert unescape_data(match["msg"]) == "line one\nline two\n\nFix: do x"


def test_outputs_use_a_heredoc_the_value_cannot_end(tmp_path: Path) -> None:
    out = tmp_path / "output"
    value = 'line\nEOF\nname=evil\n[{"name": "x"}]'
    write_outputs(out, {"files": value})
    lines = out.read_text().splitlines()
    head = lines[0]
    assert head.startswith("files<<")
    delimiter = head.split("<<", 1)[1]
    assert len(delimiter) > 20
    assert delimiter not in value
    assert "\n".join(lines[1:-1]) == value
    assert lines[-1] == delimiter


def test_summary_stays_under_githubs_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary"
    write_summary(summary, "x" * (2 * 1024 * 1024))
    assert summary.stat().st_size < 1024 * 1024
    assert "cut" in summary.read_text()
