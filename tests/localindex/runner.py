"""Runs entrypoint.py as GitHub's runner runs a Docker container action.

The environment is built from scratch, as `docker run` builds it (see
/work/shared/protocol.md section 4); only PATH comes from the test process. What
the runner reads back comes back too: exit code, workflow commands on stdout and
stderr, the `$GITHUB_OUTPUT` file and the step summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.localindex import identity
from tests.localindex.server import LocalIndex

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "entrypoint.py"
ACTION_YML = REPO_ROOT / "action.yml"

# The runner's unescaping: sequential replacements in this order, "%25" last.
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))


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

    def all_text(self) -> str:
        """Everything the run wrote where a reader could see it, for secret scans."""
        return "\n".join((self.stdout, self.stderr, self.summary, self.outputs_raw))

    def leaked(self, index: LocalIndex) -> list[str]:
        """The index's secrets that appear anywhere in all_text(), but in `::add-mask::`.

        The runner consumes mask commands and never shows them; everywhere else a secret
        would be in plain sight for anyone who can read the log.
        """
        text = "\n".join(
            line for line in self.all_text().splitlines() if not line.startswith("::add-mask::")
        )
        return [secret for secret in index.secrets() if secret in text]

    def log(self) -> str:
        """The job log as GitHub shows it: mask commands consumed, masked values starred."""
        lines = [
            line
            for line in (self.stdout + self.stderr).splitlines()
            if not line.startswith("::add-mask::")
        ]
        text = "\n".join(lines)
        for secret in sorted(self.masks, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def run_action(
    index: LocalIndex,
    workspace: Path,
    inputs: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str | None] | None = None,
    event: Mapping[str, Any] | None = None,
    id_token: bool = True,
    python: str = sys.executable,
    entrypoint: Path = ENTRYPOINT,
    timeout: float = 120,
) -> ActionRun:
    """Runs the action in `workspace` against `index`.

    `inputs` are action inputs by name ("repository-url"), over action.yml's
    defaults and a repository-url pointing at the index. `env` sets variables last
    (None removes one). `id_token=False` is a job without `id-token: write`.
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
        # The index's CA is the only one trusted: nothing reaches a real host.
        "SSL_CERT_FILE": str(index.ca_pem),
        "REQUESTS_CA_BUNDLE": str(index.ca_pem),
        **input_env({"repository-url": index.upload_url, **(inputs or {})}),
    }
    if id_token:
        environ["ACTIONS_ID_TOKEN_REQUEST_URL"] = index.id_token_request_url
        environ["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = index.id_token_request_token
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value

    completed = subprocess.run(
        [python, str(entrypoint)],
        cwd=workspace,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    outputs_raw = output_file.read_text(encoding="utf-8")
    annotations, masks = parse_commands(
        [*completed.stdout.splitlines(), *completed.stderr.splitlines()]
    )
    return ActionRun(
        returncode=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        summary=summary_file.read_text(encoding="utf-8"),
        outputs=parse_outputs(outputs_raw),
        outputs_raw=outputs_raw,
        annotations=annotations,
        masks=masks,
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


def input_env(inputs: Mapping[str, str], action_yml: Path = ACTION_YML) -> dict[str, str]:
    """`INPUT_*` for every input action.yml declares: its default unless given in `inputs`."""
    declared = yaml.safe_load(action_yml.read_text(encoding="utf-8")).get("inputs") or {}
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ValueError(f"action.yml declares no input named {unknown}")
    values = {name: _yaml_text((spec or {}).get("default")) for name, spec in declared.items()}
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


def parse_commands(lines: Iterable[str]) -> tuple[list[Annotation], list[str]]:
    """The annotations and masks among workflow command lines, parsed as the runner does."""
    annotations: list[Annotation] = []
    masks: list[str] = []
    stop_token: str | None = None
    for line in lines:
        parsed = _parse_command(line)
        if parsed is None:
            continue
        command, properties, data = parsed
        if stop_token is not None:
            # `::stop-commands::TOKEN` ignores every command until `::TOKEN::`.
            if command == stop_token:
                stop_token = None
        elif command in {"error", "warning", "notice"}:
            line_number = properties.get("line")
            annotations.append(
                Annotation(
                    level=command,
                    message=data,
                    title=properties.get("title"),
                    file=properties.get("file"),
                    line=int(line_number) if line_number and line_number.isdigit() else None,
                )
            )
        elif command == "add-mask":
            masks.append(data)
        elif command == "stop-commands":
            stop_token = data
    return annotations, masks


def _parse_command(line: str) -> tuple[str, dict[str, str], str] | None:
    """ActionCommand.TryParseV2: `::name key=value,key=value::data`, leading spaces allowed."""
    line = line.lstrip()
    if not line.startswith("::"):
        return None
    info, separator, data = line[2:].partition("::")
    if not separator:
        return None
    command, _, property_text = info.partition(" ")
    properties: dict[str, str] = {}
    for item in property_text.strip().split(","):
        key, _, value = item.partition("=")
        if key and value:
            properties[key.lower()] = _unescape(value, _PROPERTY_ESCAPES)
    return command, properties, _unescape(data, _DATA_ESCAPES)


def _unescape(value: str, escapes: Iterable[tuple[str, str]]) -> str:
    for escaped, plain in escapes:
        value = value.replace(escaped, plain)
    return value


def _yaml_text(value: object) -> str:
    """An action.yml default as the runner passes it: YAML booleans in lower case."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
