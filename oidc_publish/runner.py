"""The GitHub runner around the container: what it tells us, and how we talk back to it.

Reading: the event, the permission to request an identity token, the server. Writing:
workflow commands on stdout, the step summary and the outputs file. Escaping lives here
and nowhere else.
"""

from __future__ import annotations

import json
import secrets
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


@dataclass(frozen=True)
class RunnerContext:
    event_name: str
    event: Mapping[str, Any]
    server_url: str
    repository: str
    workflow_ref: str
    workspace: Path
    can_request_id_token: bool
    summary_path: Path | None
    output_path: Path | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RunnerContext:
        event: Mapping[str, Any] = {}
        event_path = environ.get("GITHUB_EVENT_PATH")
        if event_path:
            try:
                loaded = json.loads(Path(event_path).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = {}
            event = loaded if isinstance(loaded, dict) else {}

        def path(name: str) -> Path | None:
            value = environ.get(name)
            return Path(value) if value else None

        return cls(
            event_name=environ.get("GITHUB_EVENT_NAME", ""),
            event=event,
            server_url=environ.get("GITHUB_SERVER_URL", GITHUB_COM).rstrip("/"),
            repository=environ.get("GITHUB_REPOSITORY", ""),
            workflow_ref=environ.get("GITHUB_WORKFLOW_REF", ""),
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
        head = self.event.get("pull_request", {}).get("head", {}).get("repo") or {}
        base = self.event.get("pull_request", {}).get("base", {}).get("repo") or {}
        if "fork" in head:
            return bool(head["fork"])
        return bool(head.get("full_name")) and head.get("full_name") != base.get("full_name")

    @property
    def on_github_com(self) -> bool:
        return self.server_url == GITHUB_COM

    @property
    def workflow_filename(self) -> str:
        return workflow_filename(self.workflow_ref)

    def display_path(self, path: Path) -> str:
        """A path as the user wrote it: relative to the workspace when inside it."""
        try:
            return str(path.resolve().relative_to(self.workspace.resolve()))
        except ValueError:
            return str(path)


def workflow_filename(workflow_ref: str) -> str:
    """`release.yml` from `owner/repo/.github/workflows/release.yml@refs/tags/v1`."""
    return workflow_ref.split("@", 1)[0].rsplit("/", 1)[-1]


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


class WorkflowCommands:
    """Writes workflow commands. The minted token is masked through here before anything
    else could print it."""

    def __init__(self, stream: TextIO, *, verbose: bool = False) -> None:
        self._stream = stream
        self.verbose = verbose

    def _command(self, command: str, message: str, **properties: str | None) -> None:
        props = ",".join(
            f"{key}={escape_property(value)}" for key, value in properties.items() if value
        )
        head = f"{command} {props}" if props else command
        self._stream.write(f"::{head}::{escape_data(message)}\n")
        self._stream.flush()

    def mask(self, secret: str) -> None:
        if secret:
            self._command("add-mask", secret)

    def log(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def debug(self, line: str) -> None:
        # Shown in the log with `verbose`, and by the runner when step debugging is on.
        if self.verbose:
            self.log(line)
        else:
            self._command("debug", line)

    def group(self, title: str) -> None:
        self._command("group", title)

    def endgroup(self) -> None:
        self._command("endgroup", "")

    def annotate(self, diagnostic: Diagnostic, workspace_relative_file: str | None) -> None:
        text = diagnostic.message
        if diagnostic.fix:
            text = f"{text}\n\nFix: {diagnostic.fix}"
        if len(text) > ANNOTATION_MAX_CHARS:
            text = text[: ANNOTATION_MAX_CHARS - 40] + "\n… (the step summary has the rest)"
        self._command(
            str(diagnostic.level), text, title=diagnostic.title, file=workspace_relative_file
        )


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
