"""Workflow commands are escaped exactly as the runner unescapes them."""

from __future__ import annotations

import io
from pathlib import Path

from oidc_publish.errors import Diagnostic, Level
from oidc_publish.runner import WorkflowCommands, write_outputs, write_summary
from tests.localindex.runner import parse_commands, parse_outputs


def test_annotation_round_trips_through_the_runners_unescaping() -> None:
    title, message = "100% sure: key, value", "line one\r\nline two %0A"
    out = io.StringIO()
    WorkflowCommands(out).annotate(
        Diagnostic(Level.ERROR, title, message, "do x", "dist/a:b,c.whl"), "dist/a:b,c.whl"
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
