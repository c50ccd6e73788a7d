"""The GitHub runner around the container: what it tells us, and how we talk back to it.

Reading: the event, the ref, the permission to request an identity token, the server.
Writing: workflow commands on stdout, the step summary and the outputs file. Escaping lives
here and nowhere else: every line goes through `neutralise`, every command through
`WorkflowCommands._command`, every untrusted value in Markdown through `md_code`, and in a
log line through `log_quoted`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from oidc_publish.errors import Diagnostic

GITHUB_COM = "https://github.com"

# GitHub keeps at most this many annotations of each kind per step, and cuts messages here.
ANNOTATIONS_PER_LEVEL = 10
ANNOTATION_MAX_CHARS = 4096
# A step summary over 1 MiB is dropped whole; keep well clear of it.
SUMMARY_MAX_BYTES = 1024 * 1024 - 64 * 1024
# The event file is the runner's, but a push event can still list thousands of commits.
EVENT_MAX_BYTES = 16 * 1024 * 1024

# The runner obeys `::cmd::` at the start of a line (after white space) and the older
# `##[cmd]` anywhere in it. A zero-width space breaks both without changing what a
# reader sees; the runner does not count it as white space.
_BREAK = "\u200b"
_LINE_COMMAND = re.compile(r"^(\s*)::")


@dataclass(frozen=True)
class RunnerContext:
    event_name: str
    event: Mapping[str, Any]
    server_url: str
    repository: str
    workflow_ref: str
    ref: str
    workspace: Path
    can_request_id_token: bool
    summary_path: Path | None
    output_path: Path | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RunnerContext:
        def path(name: str) -> Path | None:
            value = environ.get(name)
            return Path(value) if value else None

        return cls(
            event_name=environ.get("GITHUB_EVENT_NAME", ""),
            event=_event(path("GITHUB_EVENT_PATH")),
            server_url=environ.get("GITHUB_SERVER_URL", GITHUB_COM).rstrip("/"),
            repository=environ.get("GITHUB_REPOSITORY", ""),
            workflow_ref=environ.get("GITHUB_WORKFLOW_REF", ""),
            ref=environ.get("GITHUB_REF", ""),
            workspace=Path(environ.get("GITHUB_WORKSPACE") or "."),
            # The runner leaves both variables out (not empty) without `id-token: write`.
            can_request_id_token=bool(
                environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
                and environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            ),
            summary_path=path("GITHUB_STEP_SUMMARY"),
            output_path=path("GITHUB_OUTPUT"),
        )

    @property
    def is_fork_pull_request(self) -> bool:
        if self.event_name != "pull_request":
            return False
        pull_request = _mapping(self.event.get("pull_request"))
        head = _mapping(_mapping(pull_request.get("head")).get("repo"))
        base = _mapping(_mapping(pull_request.get("base")).get("repo"))
        if "fork" in head:
            return bool(head["fork"])
        return bool(head.get("full_name")) and head.get("full_name") != base.get("full_name")

    @property
    def on_github_com(self) -> bool:
        return self.server_url == GITHUB_COM

    @property
    def workflow_filename(self) -> str:
        return workflow_filename(self.workflow_ref)


def _event(path: Path | None) -> Mapping[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            loaded = json.loads(handle.read(EVENT_MAX_BYTES + 1)[:EVENT_MAX_BYTES])
    except (OSError, ValueError, RecursionError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def workflow_filename(workflow_ref: str) -> str:
    """`release.yml` from `owner/repo/.github/workflows/release.yml@refs/tags/v1`."""
    return workflow_ref.split("@", 1)[0].rsplit("/", 1)[-1]


def neutralise(text: str) -> list[str]:
    """`text` as log lines that the runner shows and never obeys."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [
        _LINE_COMMAND.sub(rf"\1{_BREAK}::", line).replace("##[", f"##{_BREAK}[") for line in lines
    ]


def escape_data(value: str) -> str:
    escaped = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return escaped.replace("##[", f"##{_BREAK}[")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def log_quoted(value: str) -> str:
    """Untrusted text inside a log line: in double quotes, on that one line, read as data.

    Line breaks and every other control or invisible character are escaped (`\\r`, `\\x1b`,
    `\\u2028`), so a server's text can neither start a line of its own, which a reader would
    take for the action's, nor hide part of itself.
    """
    return '"' + "".join(_LOG_ESCAPES.get(c) or _printable(c) for c in value) + '"'


_LOG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _printable(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def md_code(value: str) -> str:
    """Untrusted text as a Markdown code span: shown literally, in prose or a table cell.

    Inside a code span Markdown and HTML are inert; the fence is longer than any run of
    backticks in the value, and `|` is escaped because GitHub splits table cells first.
    """
    flat = " ".join(value.replace("\r", "\n").split("\n"))
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}".replace("|", "\\|")


def md_text(value: str) -> str:
    """Untrusted text as Markdown prose: every character that could mark something up is
    escaped, so it reads as written."""
    flat = " ".join(value.replace("\r", "\n").split("\n"))
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~&])", r"\\\1", flat)


def md_link(text: str, url: str) -> str:
    """A link whose text is untrusted and whose URL is https:// (else the text alone)."""
    if not url.startswith("https://"):
        return md_code(text)
    safe = "".join(
        c if c.isascii() and c.isprintable() and c not in " ()<>|`" else _pct(c) for c in url
    )
    return f"[{md_code(text)}]({safe})"


def _pct(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


class WorkflowCommands:
    """Writes to the runner's log: plain lines and workflow commands, each whole.

    Threads share it (uploads run in parallel), so each write holds a lock and ends with a
    newline: no two lines interleave.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            self._stream.write("".join(line + "\n" for line in lines))
            self._stream.flush()

    def _command(self, command: str, message: str, **properties: str | None) -> None:
        props = ",".join(
            f"{key}={escape_property(value)}" for key, value in properties.items() if value
        )
        head = f"{command} {props}" if props else command
        self._write([f"::{head}::{escape_data(message)}"])

    def line(self, text: str) -> None:
        self._write(neutralise(text))

    def mask(self, secret: str) -> None:
        """Masks `secret` whole, and each of its lines: the runner matches line by line."""
        parts = [secret, *secret.replace("\r", "\n").split("\n")]
        for part in dict.fromkeys(p for p in parts if p.strip()):
            self._command("add-mask", part)

    def debug(self, text: str) -> None:
        self._command("debug", text)

    def group(self, title: str) -> None:
        self._command("group", title)

    def endgroup(self) -> None:
        self._command("endgroup", "")

    def annotate(self, diagnostic: Diagnostic) -> None:
        text = diagnostic.message
        if diagnostic.fix:
            text = f"{text}\n\nFix: {diagnostic.fix}"
        if len(text) > ANNOTATION_MAX_CHARS:
            text = text[: ANNOTATION_MAX_CHARS - 40] + "\n… (the step summary has the rest)"
        self._command(str(diagnostic.level), text, title=diagnostic.title, file=diagnostic.file)


def write_outputs(path: Path | None, outputs: Mapping[str, str]) -> None:
    """Append outputs; every value goes in a heredoc with a delimiter it cannot contain."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as handle:
        for name, value in outputs.items():
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
            handle.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def write_summary(path: Path | None, markdown: str) -> None:
    if path is None:
        return
    data = markdown.encode("utf-8")
    if len(data) > SUMMARY_MAX_BYTES:
        cut = data[:SUMMARY_MAX_BYTES].decode("utf-8", errors="ignore")
        markdown = cut + "\n\n*The summary was cut to stay under GitHub's 1 MiB limit.*\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown)
