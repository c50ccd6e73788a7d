"""The GitHub runner around the container: what it tells us, and how we talk back to it.

Reading: the event, the ref, the permission to request an identity token, the server.
Writing: workflow commands on stdout, the step summary and the outputs file. Escaping lives
here and nowhere else: every text written goes through `WorkflowCommands.clean` (masked
values out, undecodable bytes shown), every line through `neutralise`, every command through
`WorkflowCommands._command`, every untrusted value in Markdown through `md_code` and in a log
line through `log_quoted`, and the summary's cut through `fit_summary`.
"""

from __future__ import annotations

import bisect
import json
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TextIO

from oidc_publish.errors import Diagnostic, InvalidInput

GITHUB_COM = "https://github.com"

# GitHub keeps at most this many annotations of each kind per step, and cuts messages here.
ANNOTATIONS_PER_LEVEL = 10
ANNOTATION_MAX_CHARS = 4096
# A step summary over 1 MiB is dropped whole; keep well clear of it.
SUMMARY_MAX_BYTES = 1024 * 1024 - 64 * 1024
# Untrusted text (a server's reason, a message) in the summary or an annotation: longer
# code spans are cut there, and the log has them whole.
SPAN_MAX_CHARS = 300
# A link or output URL longer than any index's file URL is shown as text, never linked.
URL_MAX_CHARS = 2048
MASKED = "***"
# The event file is the runner's, but a push event can still list thousands of commits.
EVENT_MAX_BYTES = 16 * 1024 * 1024

# The runner obeys `::cmd::` at the start of a line (after white space) and the older
# `##[cmd]` anywhere in it. A zero-width space breaks both without changing what a
# reader sees; the runner does not count it as white space.
_BREAK = "\u200b"
_LINE_COMMAND = re.compile(r"^(\s*)::")
# Python reads the bytes of a file name that are not UTF-8 as lone surrogates, which no
# file, stream or JSON reader downstream accepts.
# A lone surrogate (a file name's byte that is not UTF-8), and the characters that change
# how the text around them reads without showing themselves: bidirectional controls (a
# name that reads `exe.gpj` backwards), line and paragraph separators.
_UNSEEN = re.compile(r"[\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")
_SPAN_OR_ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]|`+")


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


def input_value(environ: Mapping[str, str], name: str, *, old: str | None = None) -> str:
    """An input as the runner passes it to a Docker action, trimmed; "" when not given.

    Every declared input arrives as `INPUT_<NAME>`, upper-cased with hyphens kept
    (`repository-url` -> `INPUT_REPOSITORY-URL`), "" when it has no value. `old`, a
    deprecated spelling, wins when given, as in the action this one replaces.
    """
    value = environ.get(f"INPUT_{old.upper()}", "").strip() if old else ""
    value = value or environ.get(f"INPUT_{name.upper()}", "").strip()
    if "\n" in value or "\r" in value:
        # No input is a list; a line break is a YAML slip, or text meant to smuggle a
        # second line into the log.
        raise InvalidInput(
            f"Input `{name}` spans several lines; it takes one value.",
            fix=f"Write `{name}` on one line in the step's `with:` block (a `|` block scalar "
            "keeps line breaks; use a plain or quoted value).",
        )
    return value


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


def shown(value: str | PurePath) -> str:
    """A name or text as it can be written anywhere: each byte of a file name that is not
    UTF-8 (a lone surrogate to Python) as a visible `\\xff` escape, and each character that
    would reorder or break the text around it unseen as `\\u202e`."""
    return _UNSEEN.sub(_escaped, str(value))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def md_code(value: str) -> str:
    """Untrusted text as a Markdown code span: shown literally, in prose or a table cell.

    Inside a code span Markdown and HTML are inert; the fence is longer than any run of
    backticks in the value, and `|` is escaped because GitHub splits table cells first.
    """
    flat = " ".join(shown(value).replace("\r", "\n").split("\n"))
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat.strip() else ""
    return f"{fence}{pad}{flat}{pad}{fence}".replace("|", "\\|")


def cap_code_spans(markdown: str, limit: int = SPAN_MAX_CHARS) -> str:
    """`markdown` with each code span longer than `limit` characters cut there, ending "…".

    Spans are found as CommonMark finds them: a run of backticks that no backslash escapes
    opens one, closed by the next run of the same length; a run never closed is text.
    """
    pieces: list[str] = []
    copied = position = 0
    while found := _SPAN_OR_ESCAPE.search(markdown, position):
        position = found.end()
        if found.group().startswith("\\"):
            continue
        fence = found.group()
        closing = next(
            (run for run in _BACKTICKS.finditer(markdown, position) if run.group() == fence),
            None,
        )
        if closing is None:
            continue
        inner = markdown[position : closing.start()]
        if inner.startswith(" ") and inner.endswith(" ") and inner.strip():
            inner = inner[1:-1]
        text = inner.replace("\\|", "|")
        if len(text) > limit:
            pieces += [markdown[copied : found.start()], md_code(text[:limit] + "…")]
            copied = closing.end()
        position = closing.end()
    return "".join(pieces) + markdown[copied:] if pieces else markdown


def md_text(value: str) -> str:
    """Untrusted text as Markdown prose: every character that could mark something up is
    escaped, so it reads as written."""
    flat = " ".join(shown(value).replace("\r", "\n").split("\n"))
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~&])", r"\\\1", flat)


def md_link(text: str, url: str) -> str:
    """A link whose text is untrusted and whose URL is https:// (else the text alone)."""
    safe = md_url(url)
    return f"[{md_code(text)}]({safe})" if safe else md_code(text)


def md_url(url: str) -> str | None:
    """An https:// URL as a link target nothing in it can end; None for any other URL, or
    one too long to be an index's."""
    if not url.startswith("https://") or len(url) > URL_MAX_CHARS:
        return None
    return _url_text(url)


def _url_text(text: str) -> str:
    return "".join(
        c if c.isascii() and c.isprintable() and c not in " ()<>|`" else _pct(c) for c in text
    )


def _pct(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


class Secrets:
    """The values masked for the job, and the one rule that keeps them out of everything
    the action writes: `scrub`.

    A value is masked whole and line by line (the runner matches line by line), and in
    the forms the action's own writing gives it: JSON-escaped, in a code span, as prose, in
    a link, with undecodable bytes shown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: set[str] = set()
        self._forms: tuple[str, ...] = ()
        self._tokens: tuple[str, ...] = ()

    def add(self, secret: str) -> list[str]:
        """Registers `secret`; returns the parts the runner has not been told to mask."""
        parts = [secret, *secret.replace("\r", "\n").split("\n")]
        with self._lock:
            new = [p for p in dict.fromkeys(parts) if p.strip() and p not in self._parts]
            self._parts.update(new)
            forms = {form for part in new for form in _forms(part)}
            self._forms = tuple(forms.union(self._forms))
            self._tokens += tuple(part for part in new if _is_token(part))
        return new

    def scrub(self, text: str) -> str:
        """`text` with every masked value replaced by `***`; values that overlap or touch
        become one `***`, so no piece of either is left."""
        found: list[tuple[int, int]] = []
        for form in self._forms:
            start = text.find(form)
            while start >= 0:
                found.append((start, start + len(form)))
                start = text.find(form, start + 1)
        found += _wrapped(text, self._tokens)
        if not found:
            return text
        merged: list[list[int]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        pieces, copied = [], 0
        for start, end in merged:
            pieces += [text[copied:start], MASKED]
            copied = end
        return "".join(pieces) + text[copied:]


# A token is long, with no white space or backslash: one a server wraps over several lines
# (and the action's own flattening then joins with spaces) is still the token.
_TOKEN_MIN_CHARS = 20
_WRAP = re.compile(r"(?:\s|\\[nrt])+")


def _is_token(part: str) -> bool:
    return len(part) >= _TOKEN_MIN_CHARS and not any(c.isspace() or c == "\\" for c in part)


def _wrapped(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Where `tokens` stand in `text` with white space or line breaks (raw, or as JSON
    writes them) inside them: found in the text with those taken out, mapped back."""
    gaps = list(_WRAP.finditer(text)) if tokens else []
    if not gaps:
        return []
    stripped = _WRAP.sub("", text)
    if not any(token in stripped for token in tokens):
        return []
    # Gap k stands before the stripped text's character at[k]; removed[k] counts the
    # characters taken out up to and including it.
    at: list[int] = []
    removed: list[int] = []
    total = 0
    for gap in gaps:
        at.append(gap.start() - total)
        total += gap.end() - gap.start()
        removed.append(total)

    def original(position: int) -> int:
        before = bisect.bisect_right(at, position)
        return position + (removed[before - 1] if before else 0)

    spans = []
    for token in tokens:
        start = stripped.find(token)
        while start >= 0:
            spans.append((original(start), original(start + len(token) - 1) + 1))
            start = stripped.find(token, start + 1)
    return spans


def _forms(part: str) -> set[str]:
    forms = {
        part,
        shown(part),
        json.dumps(part)[1:-1],
        json.dumps(part, ensure_ascii=False)[1:-1],
        shown(part).replace("|", "\\|"),
        md_text(part),
        _url_text(part),
    }
    return {form for form in forms if form.strip()}


class WorkflowCommands:
    """Writes to the runner's log: plain lines and workflow commands, each whole, each
    cleaned by `clean` before it is escaped.

    Threads share it (uploads run in parallel), so each write holds a lock and ends with a
    newline: no two lines interleave.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.secrets = Secrets()

    def clean(self, text: str) -> str:
        """The one rule for everything the action writes, log or not: masked values out,
        undecodable bytes shown."""
        return shown(self.secrets.scrub(text))

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
        self._write(neutralise(self.clean(text)))

    def mask(self, secret: str) -> None:
        """Masks `secret` whole, and each of its lines: the runner matches line by line."""
        for part in self.secrets.add(secret):
            self._command("add-mask", shown(part))

    def debug(self, text: str) -> None:
        self._command("debug", self.clean(text))

    def group(self, title: str) -> None:
        self._command("group", self.clean(title))

    def endgroup(self) -> None:
        self._command("endgroup", "")

    def annotate(self, diagnostic: Diagnostic) -> None:
        text = diagnostic.message
        if diagnostic.fix:
            text = f"{text}\n\nFix: {diagnostic.fix}"
        text = self.clean(text)
        if len(text) > ANNOTATION_MAX_CHARS:
            text = text[: ANNOTATION_MAX_CHARS - 40] + "\n… (the step summary has the rest)"
        file = self.clean(diagnostic.file) if diagnostic.file else None
        self._command(str(diagnostic.level), text, title=self.clean(diagnostic.title), file=file)


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
    with path.open("a", encoding="utf-8") as handle:
        handle.write(fit_summary(markdown))


_CUT_NOTE = (
    "*The summary was cut to stay under GitHub's 1 MiB limit; the log has each file's result.*\n"
)


def fit_summary(markdown: str, limit: int = SUMMARY_MAX_BYTES) -> str:
    """`markdown`, or as many of its first blocks as fit in `limit` bytes with a note.

    The cut falls after a blank line or between two table rows, outside any fenced code
    block: never inside a paragraph, a span or a link, where the rest would render as
    live Markdown.
    """
    if len(markdown.encode("utf-8")) <= limit:
        return markdown
    budget = limit - len(_CUT_NOTE.encode("utf-8")) - 2
    lines = markdown.split("\n")
    kept = used = 0
    fenced = False
    for number, line in enumerate(lines):
        used += len(line.encode("utf-8")) + 1
        if used > budget:
            break
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        after = lines[number + 1] if number + 1 < len(lines) else ""
        if not fenced and (not line.strip() or (line.startswith("|") and after.startswith("|"))):
            kept = number + 1
    head = "\n".join(lines[:kept]).rstrip("\n")
    return f"{head}\n\n{_CUT_NOTE}" if head else _CUT_NOTE
