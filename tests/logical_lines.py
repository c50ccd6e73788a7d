"""Reading the Dockerfile and the lock as their tools do, for the tests and the benchmark."""

from __future__ import annotations

from collections.abc import Iterator


def logical_lines(text: str) -> Iterator[str]:
    """Lines with comment lines dropped and backslash continuations joined."""
    pending = ""
    for raw in text.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.strip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield line
    if pending:
        raise ValueError("the file ends in a continuation")


def instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, arguments) for each Dockerfile instruction."""
    for line in logical_lines(dockerfile):
        keyword, _, arguments = line.partition(" ")
        yield keyword.upper(), arguments.strip()
