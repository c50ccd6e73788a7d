"""Runs entrypoint.py as GitHub's runner runs a Docker container action.

The environment is built from scratch, as `docker run` builds it for a container action
(every declared input as `INPUT_<NAME>` with hyphens kept, the `GITHUB_*` and `RUNNER_*`
variables, the id-token variables when permitted); only PATH comes from the test process.
What the runner reads back comes back too: exit code, workflow commands on stdout and
stderr, the `$GITHUB_OUTPUT` file and the step summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.localindex import identity
from tests.localindex.proc import run

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "entrypoint.py"
ACTION_YML = REPO_ROOT / "action.yml"
SIGSTORE_TRUST_CONFIG = "OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG"
"""The variable naming the client trust config the action signs against (its attest.py)."""

# The runner's unescaping: sequential replacements in this order, "%25" last.
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
# The older `##[...]` syntax unescapes data and properties alike.
_V1_ESCAPES = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))


class Index(Protocol):
    """What a run needs of the local index: a LocalIndex in this process, or the
    benchmark's IndexProcess (index_process.py)."""

    @property
    def url(self) -> str: ...
    @property
    def upload_url(self) -> str: ...
    @property
    def ca_pem(self) -> Path: ...
    @property
    def id_token_request_url(self) -> str: ...
    @property
    def id_token_request_token(self) -> str: ...
    @property
    def sigstore_trust_config(self) -> Path: ...
    def github_token(self) -> str: ...
    def secrets(self) -> list[str]: ...


@dataclass(frozen=True)
class Annotation:
    level: str
    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ActionRun:
    returncode: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]
    outputs_raw: str
    annotations: list[Annotation]
    masks: list[str]

    def annotations_besides(self, failed_handshakes: Sequence[str]) -> list[Annotation]:
        """The annotations, less one retry notice for a TLS error per handshake that failed
        on the local server's side (its `failed_handshakes`).

        Rarely (one handshake in several suite runs, OpenSSL 3.0 on loopback, under load),
        the server refuses a client's hello (`BAD_EXTENSION`, sent as a `decode_error`
        alert). The action retries, as it must, and says so in a notice; the notice is
        about the machine, not about what a test checks. Any other annotation is kept.
        """
        excused = len(failed_handshakes)
        kept = []
        for annotation in self.annotations:
            if (
                excused
                and annotation.level == "notice"
                and (annotation.title or "").startswith("Retrying ")
                and "[SSL: " in annotation.message
            ):
                excused -= 1
            else:
                kept.append(annotation)
        return kept

    def all_text(self) -> str:
        """Everything the run wrote where a reader could see it, for secret scans."""
        return "\n".join((self.stdout, self.stderr, self.summary, self.outputs_raw))

    def reading(self) -> LogReading:
        """stdout then stderr through the runner's command processing.

        The runner reads both streams into one log; their interleaving is lost here, so
        stdout is read first, and a `stop-commands` left open on stdout holds for stderr.
        """
        return read_log([*split_lines(self.stdout), *split_lines(self.stderr)])

    def leaked(self, index: Index) -> list[str]:
        """The index's secrets that appear anywhere a reader could see them.

        Only an `add-mask` the runner really processes is consumed and never shown: a
        mask line printed while commands are stopped, or one that is not a command at all
        (`x ::add-mask::...`), is plain text in the log. Masking is not counted on: a
        secret in a visible line leaks, masked or not.
        """
        lines = [line for line, _ in self.reading().visible]
        text = "\n".join((*lines, self.summary, self.outputs_raw))
        return [secret for secret in index.secrets() if secret in text]

    def log(self, *, step_debug: bool = True) -> str:
        """The job log as GitHub shows it: mask commands consumed, masked values starred.

        A line is masked with the values masked before it, longest first. Without
        `step_debug` (the repository's ACTIONS_STEP_DEBUG), `debug` commands are left out,
        as the runner leaves them out of the log.
        """
        reading = self.reading()
        shown = []
        for number, (line, masks) in enumerate(reading.visible):
            if not step_debug and number in reading.debug:
                continue
            masked = line
            for secret in sorted(masks, key=len, reverse=True):
                masked = masked.replace(secret, "***")
            shown.append(masked)
        return "\n".join(shown)


def run_action(
    index: Index,
    workspace: Path,
    inputs: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str | None] | None = None,
    event: Mapping[str, Any] | None = None,
    id_token: bool = True,
    sigstore: bool = False,
    python: str = sys.executable,
    entrypoint: Path = ENTRYPOINT,
    timeout: float = 120,
    meanwhile: Callable[[subprocess.Popen[str]], None] | None = None,
) -> ActionRun:
    """Runs the action in `workspace` against `index`.

    `inputs` are action inputs by name ("repository-url"), over action.yml's
    defaults and a repository-url pointing at the index; `${{ github.token }}` is a
    GITHUB_TOKEN the index issues with its `github_permissions`, and GITHUB_API_URL the
    index, so GitHub's attestation store is the index's. `env` sets variables last
    (None removes one). `id_token=False` is a job without `id-token: write`.
    `sigstore=True` points the action's signing at the index's local Sigstore
    (OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG); without it, signing would go to Sigstore's
    public instance, which the index's CA, the only one trusted, keeps out of reach.
    `meanwhile` is called with the running process, in a thread of its own: to cancel
    the job, as the runner does, with a signal.
    """
    # The runner's own directories, like /github/file_commands and /github/home.
    runner = Path(tempfile.mkdtemp(prefix="runner-", dir=workspace.parent))
    home, temp, commands = runner / "home", runner / "temp", runner / "file_commands"
    for directory in (home, temp, commands):
        directory.mkdir()
    output_file, summary_file = commands / "set_output", commands / "step_summary"
    output_file.touch()
    summary_file.touch()
    event_file = runner / "event.json"
    event_file.write_text(json.dumps(default_event() if event is None else event))

    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        **github_env(),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(output_file),
        "GITHUB_STEP_SUMMARY": str(summary_file),
        "GITHUB_EVENT_PATH": str(event_file),
        "RUNNER_TEMP": str(temp),
        # The index's CA is the only one trusted: nothing reaches a real host. sigstore's
        # HTTP goes through requests, so this one also lets it reach the local Sigstore.
        "SSL_CERT_FILE": str(index.ca_pem),
        "REQUESTS_CA_BUNDLE": str(index.ca_pem),
        "GITHUB_API_URL": index.url,
        **input_env(
            {"repository-url": index.upload_url, **(inputs or {})},
            github_token=index.github_token(),
        ),
    }
    if id_token:
        environ["ACTIONS_ID_TOKEN_REQUEST_URL"] = index.id_token_request_url
        environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = index.id_token_request_token
    if sigstore:
        environ[SIGSTORE_TRUST_CONFIG] = str(index.sigstore_trust_config)
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value

    completed = run(
        [python, entrypoint],
        env=environ,
        cwd=workspace,
        timeout=timeout,
        check=False,
        meanwhile=meanwhile,
    )
    outputs_raw = output_file.read_text(encoding="utf-8")
    reading = read_log([*split_lines(completed.stdout), *split_lines(completed.stderr)])
    return ActionRun(
        returncode=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        summary=summary_file.read_text(encoding="utf-8"),
        outputs=parse_outputs(outputs_raw),
        outputs_raw=outputs_raw,
        annotations=reading.annotations,
        masks=reading.masks,
    )


def github_env() -> dict[str, str]:
    """The runner's GITHUB_* and RUNNER_* variables for the run in identity.py."""
    return {
        "GITHUB_REPOSITORY": identity.REPOSITORY,
        "GITHUB_REPOSITORY_ID": identity.REPOSITORY_ID,
        "GITHUB_REPOSITORY_OWNER": identity.OWNER,
        "GITHUB_REPOSITORY_OWNER_ID": identity.OWNER_ID,
        "GITHUB_REF": identity.REF,
        "GITHUB_REF_NAME": identity.REF_NAME,
        "GITHUB_REF_TYPE": "tag",
        "GITHUB_SHA": identity.SHA,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_GRAPHQL_URL": "https://api.github.com/graphql",
        "GITHUB_WORKFLOW": identity.WORKFLOW_NAME,
        "GITHUB_WORKFLOW_REF": identity.WORKFLOW_REF,
        "GITHUB_WORKFLOW_SHA": identity.SHA,
        "GITHUB_EVENT_NAME": identity.EVENT_NAME,
        "GITHUB_RUN_ID": identity.RUN_ID,
        "GITHUB_RUN_NUMBER": identity.RUN_NUMBER,
        "GITHUB_RUN_ATTEMPT": identity.RUN_ATTEMPT,
        "GITHUB_JOB": identity.JOB,
        "GITHUB_ACTOR": identity.ACTOR,
        "GITHUB_ACTOR_ID": identity.ACTOR_ID,
        "GITHUB_TRIGGERING_ACTOR": identity.ACTOR,
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_ENVIRONMENT": "github-hosted",
    }


def default_event() -> dict[str, Any]:
    """The push event of the release tag, trimmed to the fields a reader might use."""
    return {
        "ref": identity.REF,
        "before": "0" * 40,
        "after": identity.SHA,
        "created": True,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "repository": {
            "id": int(identity.REPOSITORY_ID),
            "name": identity.REPOSITORY_NAME,
            "full_name": identity.REPOSITORY,
            "private": False,
            "html_url": f"https://github.com/{identity.REPOSITORY}",
            "owner": {"login": identity.OWNER, "id": int(identity.OWNER_ID)},
        },
        "sender": {"login": identity.ACTOR, "id": int(identity.ACTOR_ID)},
    }


def input_env(
    inputs: Mapping[str, str], action_yml: Path = ACTION_YML, *, github_token: str = ""
) -> dict[str, str]:
    """`INPUT_*` for every input action.yml declares: its default unless given in `inputs`.

    The runner evaluates a default's expression; `${{ github.token }}` becomes
    `github_token` (the job's GITHUB_TOKEN), and any other is refused.
    """
    declared = yaml.safe_load(action_yml.read_text(encoding="utf-8")).get("inputs") or {}
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ValueError(f"action.yml declares no input named {unknown}")
    values = {
        name: _evaluated(_yaml_text((spec or {}).get("default")), github_token)
        for name, spec in declared.items()
    }
    # The runner upper-cases and turns spaces into underscores, keeping hyphens.
    return {
        f"INPUT_{name.replace(' ', '_').upper()}": value
        for name, value in (values | dict(inputs)).items()
    }


def parse_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value` lines and `name<<DELIMITER` blocks.

    A file the runner would reject (the step would fail) raises ValueError.
    """
    outputs: dict[str, str] = {}
    lines = iter(line.removesuffix("\r") for line in text.split("\n"))
    for line in lines:
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, _, value = line.partition("=")
            if not name:
                raise ValueError(f"output line without a name: {line!r}")
            outputs[name] = value
        elif heredoc >= 0:
            name, _, delimiter = line.partition("<<")
            if not name or not delimiter:
                raise ValueError(f"output heredoc without a name or delimiter: {line!r}")
            body: list[str] = []
            for value_line in lines:
                if value_line == delimiter:
                    break
                body.append(value_line)
            else:
                raise ValueError(f"output {name!r} never ends: no line {delimiter!r}")
            outputs[name] = "\n".join(body)
        else:
            raise ValueError(f"output line the runner cannot read: {line!r}")
    return outputs


# The commands the runner registers (ActionCommandManager's extensions and stop-commands);
# a line naming any other command is plain text. Names compare ignoring case.
REGISTERED_COMMANDS = frozenset(
    {
        "add-mask",
        "add-matcher",
        "add-path",
        "debug",
        "echo",
        "endgroup",
        "error",
        "group",
        "notice",
        "remove-matcher",
        "save-state",
        "set-env",
        "set-output",
        "stop-commands",
        "warning",
    }
)
_ANNOTATIONS = frozenset({"error", "warning", "notice"})
# The runner reads its child's output with .NET's ReadLine: CR, LF and CRLF end a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Command:
    name: str
    properties: dict[str, str]
    data: str


@dataclass(frozen=True)
class LogReading:
    """What the runner makes of a step's output lines."""

    annotations: list[Annotation]
    masks: list[str]
    """Every value masked, in order: a multi-line value whole, then each of its lines."""
    visible: list[tuple[str, tuple[str, ...]]]
    debug: frozenset[int] = frozenset()
    """The positions in `visible` of `debug` commands: shown only with step debugging."""
    """Each line that reaches the job log, with the masks in force when it was written."""


def split_lines(text: str) -> list[str]:
    """Output split as the runner splits it (CR, LF, CRLF), the last empty piece dropped."""
    lines = _LINE_BREAK.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_log(lines: Iterable[str]) -> LogReading:
    """ActionCommandManager.TryProcessCommand over every line, in order.

    Each line is tried as `::name props::data` at its start (after whitespace), then as
    the older `##[name props]data` anywhere in it; only registered names count. After
    `stop-commands` with a token, every command is plain text until one named like the
    token (`::token::` or `##[token]`); the stop and resume lines themselves stay visible.
    An `add-mask` the runner processes is consumed (never shown) and masks its value, and,
    when that value spans lines, each of its lines, from the next line on. Other command
    lines stay in the reading's `visible` lines as they were printed (the runner shows
    annotations and groups in their own form; their text is what matters here).
    """
    annotations: list[Annotation] = []
    masks: list[str] = []
    visible: list[tuple[str, tuple[str, ...]]] = []
    debug: set[int] = set()
    registered = set(REGISTERED_COMMANDS)
    stop_token: str | None = None
    for line in lines:
        command = parse_command(line, registered)
        name = command.name.lower() if command else ""
        if command is None or stop_token is not None:
            if command is not None and stop_token and name == stop_token.lower():
                registered.discard(name)
                stop_token = None
            visible.append((line, tuple(masks)))
            continue
        if name == "stop-commands":
            stop_token = command.data
            registered.add(command.data.lower())
            visible.append((line, tuple(masks)))
        elif name == "add-mask":
            # Whitespace alone is refused with a warning; the line is consumed either way.
            if command.data.strip():
                masks.append(command.data)
                masks.extend(
                    part
                    for part in _LINE_BREAK.split(command.data)
                    if part and part != command.data
                )
        else:
            if name in _ANNOTATIONS:
                line_number = command.properties.get("line")
                annotations.append(
                    Annotation(
                        level=name,
                        message=command.data,
                        title=command.properties.get("title"),
                        file=command.properties.get("file"),
                        line=int(line_number) if line_number and line_number.isdigit() else None,
                    )
                )
            if name == "debug":
                debug.add(len(visible))
            visible.append((line, tuple(masks)))
    return LogReading(annotations, masks, visible, frozenset(debug))


def parse_commands(lines: Iterable[str]) -> tuple[list[Annotation], list[str]]:
    """The annotations and masks among workflow command lines, parsed as the runner does."""
    reading = read_log(lines)
    return reading.annotations, reading.masks


def parse_command(line: str, registered: Iterable[str] = REGISTERED_COMMANDS) -> Command | None:
    """ActionCommand.TryParseV2, then ActionCommand.TryParse, as the runner tries them."""
    names = {name.lower() for name in registered}
    return _parse_v2(line, names) or _parse_v1(line, names)


def _parse_v2(line: str, registered: set[str]) -> Command | None:
    """`::name key=value,key=value::data`, leading whitespace allowed."""
    line = line.lstrip()
    if not line.startswith("::"):
        return None
    info, separator, data = line[2:].partition("::")
    if not separator:
        return None
    name, space, property_text = info.partition(" ")
    if name.lower() not in registered:
        return None
    properties: dict[str, str] = {}
    if space:
        for item in property_text.strip().split(","):
            key, _, value = item.partition("=")
            if key and value:
                properties[key.lower()] = _unescape(value, _PROPERTY_ESCAPES)
    return Command(name, properties, _unescape(data, _DATA_ESCAPES))


def _parse_v1(line: str, registered: set[str]) -> Command | None:
    """`##[name key=value;key=value]data`, anywhere in the line."""
    start = line.find("##[")
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    name, space, property_text = line[start + 3 : end].partition(" ")
    if name.lower() not in registered:
        return None
    properties: dict[str, str] = {}
    if space:
        for item in property_text.split(";"):
            key, _, value = item.partition("=")
            if key and value:
                properties[key.lower()] = _unescape(value, _V1_ESCAPES)
    return Command(name, properties, _unescape(line[end + 1 :], _V1_ESCAPES))


def _unescape(value: str, escapes: Iterable[tuple[str, str]]) -> str:
    for escaped, plain in escapes:
        value = value.replace(escaped, plain)
    return value


def _evaluated(default: str, github_token: str) -> str:
    if "${{" not in default:
        return default
    if re.fullmatch(r"\$\{\{\s*github\.token\s*\}\}", default):
        return github_token
    raise ValueError(f"the runner emulation cannot evaluate the default {default!r}")


def _yaml_text(value: object) -> str:
    """An action.yml default as the runner passes it: YAML booleans in lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
