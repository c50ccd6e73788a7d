"""The step summary read back as GitHub renders it: the results table, cell by cell."""

from __future__ import annotations

import re
from dataclasses import dataclass

COLUMNS = ("File", "Size", "SHA-256", "Attested", "Result")


@dataclass(frozen=True)
class Row:
    file: str
    """The file name as shown (the code span's text)."""
    link: str | None
    """Where the name links to, if it is a link."""
    size: str
    sha256: str
    attested: bool
    attestation_links: dict[str, str]
    """Where the file's attestation is shown ("GitHub", the index's name) -> the link."""
    result: str


def cells(line: str) -> list[str]:
    """A table line's cells as GitHub splits them: on every `|` not escaped, before any
    other Markdown is read."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def table_lines(summary: str) -> list[list[str]]:
    """Every line of the summary's tables, header and delimiter included, split in cells."""
    return [cells(line) for line in summary.splitlines() if line.startswith("|")]


def code_span_text(span: str) -> str:
    """What a code span in a table cell shows: fence and padding off, `\\|` a pipe."""
    fence = re.match(r"`+", span)
    assert fence, span
    assert span.endswith(fence.group()), span
    assert len(span) > 2 * len(fence.group()), span
    inner = span[len(fence.group()) : -len(fence.group())]
    if inner.startswith(" ") and inner.endswith(" ") and inner.strip():
        inner = inner[1:-1]
    return inner.replace("\\|", "|")


def rows(summary: str) -> list[Row]:
    """The results tables (one per release when a run publishes several): one Row per file,
    in the summary's order."""
    found = []
    for line in table_lines(summary):
        assert len(line) == len(COLUMNS), line
        if tuple(line) == COLUMNS or set("".join(line)) <= {"-"}:
            continue  # a table's header or delimiter
        name, size, sha, attested, result = line
        linked = re.fullmatch(r"\[(.+)\]\((\S+)\)", name)
        span, link = (linked.group(1), linked.group(2)) if linked else (name, None)
        links = {
            where.replace("\\", ""): url
            for where, url in re.findall(r"\[([^\]]+)\]\((\S+?)\)", attested)
        }
        found.append(
            Row(
                code_span_text(span),
                link,
                size,
                code_span_text(sha),
                attested.startswith("✅"),
                links,
                result,
            )
        )
    return found


def releases(summary: str) -> dict[str, str]:
    """Release (`name version`) -> its state, from the lines that head each release's table
    when a run publishes several."""
    found = {}
    for line in summary.splitlines():
        heading = re.fullmatch(r"\*\*(.+)\*\*: ([^(]+?)(?: \(.*\))?", line)
        if heading:
            found[re.sub(r"\\(.)", r"\1", heading.group(1))] = heading.group(2)
    return found


def results(summary: str) -> dict[str, str]:
    """File name -> its result, from the summary's table."""
    return {row.file: row.result for row in rows(summary)}


def live_markup(markdown: str) -> list[str]:
    """Everything in `markdown` that renders as more than text, as a CommonMark renderer
    with GitHub's tables reads it: each link's and image's target, each piece of raw HTML."""
    from markdown_it import MarkdownIt

    found = []
    for block in MarkdownIt("commonmark").enable("table").parse(markdown):
        for token in [block, *(block.children or [])]:
            if token.type == "link_open":
                found.append(str(token.attrs["href"]))
            elif token.type == "image":
                found.append(str(token.attrs["src"]))
            elif token.type in ("html_inline", "html_block"):
                found.append(token.content)
    return found
