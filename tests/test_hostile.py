"""Hostile text on every path into the log, the summary and the outputs, end to end.

Each run goes through the `run` fixture, whose runner emulation obeys `::cmd::` at a line
start and `##[cmd]` anywhere, `stop-commands` included, and fails the test if any secret
the index handed out is visible. Each test also checks that the runner obeyed no command
the action did not mean to write, and that the run ends as a user would expect.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Run
from tests.localindex.dists import make_release, make_sdist, make_wheel, sha256
from tests.localindex.runner import REGISTERED_COMMANDS, ActionRun, parse_command, split_lines
from tests.localindex.server import Fault, LocalIndex
from tests.localindex.transport import Received
from tests.summary import live_markup, rows, table_lines

STOP = "##[stop-commands]x"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# What the action itself writes as commands; anything else the runner obeyed was injected.
OWN_COMMANDS = {"add-mask", "debug", "group", "endgroup", "error", "warning", "notice"}


def obeyed_only_its_own_commands(result: ActionRun) -> None:
    for line in [*split_lines(result.stdout), *split_lines(result.stderr)]:
        command = parse_command(line, REGISTERED_COMMANDS)
        if command is None:
            continue
        assert command.name.lower() in OWN_COMMANDS, line
        # A command the action wrote starts its line; one found further in was injected.
        assert line.startswith("::"), line
    assert "stop-commands" not in {c.lower() for c in result.masks}


def no_internal_error(result: ActionRun) -> None:
    assert "Internal error" not in {a.title for a in result.annotations}, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_folder_named_like_a_command_is_published_from(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    folder = workspace / "dist" / STOP
    wheel = make_wheel(folder, "sample-project", "1.0.0")
    sdist = make_sdist(folder, "sample-project", "1.0.0")

    result = run({"attestations": "false"})

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    obeyed_only_its_own_commands(result)
    # The notice is written last: the runner still reads commands then.
    [notice] = [a for a in result.annotations if a.level == "notice"]
    assert notice.title == "Distributions found one folder down"
    assert f"`dist/{STOP}`" in notice.message.replace("\u200b", "")
    assert f"dist/{STOP}/{wheel.name}" in result.log().replace("\u200b", "")


@pytest.mark.parametrize(
    "reason",
    [f"Service Unavailable {STOP}", "Service\r::stop-commands::x\rUnavailable"],
    ids=["v1-command", "carriage-return"],
)
def test_a_reason_phrase_carrying_commands_is_retried_as_text(
    index: LocalIndex, workspace: Path, run: Run, reason: str
) -> None:
    wheel, sdist = make_release(workspace)
    index.faults("upload", Fault.status(503, reason, headers={"Retry-After": "0"}))

    result = run({"attestations": "false"})

    # The upload client reads the status line through its raw carriage return.
    assert result.returncode == 0, result.stdout
    assert set(index.files()) == {wheel.name, sdist.name}
    assert index.count("upload", 503) == 1
    obeyed_only_its_own_commands(result)
    no_internal_error(result)
    [notice] = [a for a in result.annotations if a.level == "notice"]
    assert notice.title == f"Retrying {wheel.name}"
    flat = " ".join(reason.split("\r"))
    assert flat in notice.message.replace("\u200b", "")
    assert {row.result for row in rows(result.summary)} == {"uploaded"}


def test_a_repository_url_carrying_a_command_is_refused_as_text(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    # `#` starts a fragment, the one place an accepted URL could carry `##[`: refused.
    url = f"{index.upload_url}#{STOP}"

    result = run({"repository-url": url, "verbose": "true"})

    assert result.returncode == 1
    obeyed_only_its_own_commands(result)
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "`repository-url` is not an upload URL"
    assert f"Use `{index.upload_url}`." in error.message
    assert index.log == []


@pytest.mark.parametrize(
    ("inputs", "secrets", "title"),
    [
        (
            {"repository-url": "https://alice-user:hunter2-pa55word@127.0.0.1:1/legacy/"},
            ["alice-user", "hunter2-pa55word"],
            "`repository-url` is not an upload URL",
        ),
        ({"password": "pypi-€-h0rse-battery"}, ["pypi-€-h0rse-battery", "h0rse"], "Invalid input"),
    ],
    ids=["credentials-in-url", "non-latin-1-password"],
)
def test_credentials_the_action_refuses_are_never_repeated(
    index: LocalIndex,
    workspace: Path,
    run: Run,
    inputs: dict[str, str],
    secrets: list[str],
    title: str,
) -> None:
    make_release(workspace)

    result = run(inputs)

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == title
    for secret in secrets:
        assert secret not in result.all_text()
    assert index.log == []
    if "repository-url" in inputs:
        assert "user name or password" in error.message
        assert "Use `https://127.0.0.1:1/legacy/`." in error.message
    else:
        assert "Input `password` is invalid" in error.message


def test_file_urls_from_a_listing_reach_links_and_outputs_only_as_https(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.mode = "pypiserver"
    index.add_file(wheel)
    index.add_file(sdist)
    hostile = f"https://files.example/`<img src=x onerror=alert(1)>`[x](javascript:y)/{sdist.name}"
    page = {
        "meta": {"api-version": "1.1"},
        "name": "sample-project",
        "files": [
            {
                "filename": wheel.name,
                "url": f"http://127.0.0.1:{index.port}/packages/{wheel.name}",
                "hashes": {"sha256": sha256(wheel)},
            },
            {"filename": sdist.name, "url": hostile, "hashes": {"sha256": sha256(sdist)}},
        ],
    }
    listing = Fault.status(200, body=json.dumps(page), content_type=SIMPLE_JSON)
    index.faults("simple", *[listing] * 8)

    result = run()

    assert result.returncode == 0, result.stdout
    obeyed_only_its_own_commands(result)
    # pypiserver says "exists"; the listing's sha256 is the evidence, and the summary says so.
    wheel_row, sdist_row = rows(result.summary)
    listed = "already on the index (its listing shows this sha256)"
    assert (wheel_row.file, wheel_row.result, wheel_row.link) == (wheel.name, listed, None)
    assert (sdist_row.file, sdist_row.result) == (sdist.name, listed)
    assert sdist_row.link is not None
    assert sdist_row.link.startswith("https://files.example/%60%3Cimg%20src=x")
    assert not set(sdist_row.link) & set(" ()<>`")
    assert [len(line) for line in table_lines(result.summary)] == [5] * 4
    assert "http://" not in result.summary
    assert "<img" not in re.sub(r"`[^`]*`", "", result.summary.replace(sdist_row.link, ""))
    files = {f["name"]: f["url"] for f in json.loads(result.outputs["files"])}
    assert files == {wheel.name: "", sdist.name: hostile}


def test_a_listing_that_redirects_to_plain_http_is_not_followed(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    index.mode = "pypiserver"
    index.add_file(wheel)
    index.faults("simple", *[Fault.redirect(302)] * 4)

    result = run()

    assert result.returncode == 1
    obeyed_only_its_own_commands(result)
    no_internal_error(result)
    # Asked once before the upload and once after "exists"; neither redirect was followed.
    assert index.count("simple") == index.count("simple", 302) == 2
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "File already exists; its contents could not be confirmed"
    assert error.file == f"dist/{wheel.name}"
    assert "could not confirm" in error.message
    assert "other contents" not in error.message
    assert [row.result for row in rows(result.summary)] == ["failed"]


def test_packages_dir_linked_out_of_the_workspace_is_refused_unlisted(
    index: LocalIndex, workspace: Path, run: Run, tmp_path: Path
) -> None:
    wheel, sdist = make_release(tmp_path / "elsewhere")
    (workspace / "linked").symlink_to(wheel.parent)

    result = run({"packages-dir": "linked"})

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Invalid input"
    assert "`packages-dir` leads out of the workspace" in error.message
    assert wheel.name not in result.all_text()
    assert sdist.name not in result.all_text()
    assert index.log == []


@pytest.mark.parametrize(
    "quote",
    [
        lambda jwt: jwt,
        lambda jwt: f"{jwt[:40]}\n{jwt[40:]}",
        lambda jwt: f"{jwt[:40]}\r\n {jwt[40:]}",
    ],
    ids=["whole", "wrapped", "wrapped-and-indented"],
)
def test_an_identity_token_the_mint_endpoint_quotes_back_is_written_nowhere(
    index: LocalIndex, workspace: Path, run: Run, quote: Callable[[str], str]
) -> None:
    make_release(workspace)

    def quoting(got: Received) -> object:
        # As a server that wraps long lines may quote it, too: the token, split.
        jwt = quote(json.loads(got.body)["token"])
        refused = {"code": "invalid-publisher", "description": f"no publisher for {jwt}"}
        return {"message": "Token request failed", "errors": [refused]}

    index.faults("mint", Fault.echo(422, quoting))

    result = run({"attestations": "false"})  # the fixture scans log, summary and outputs

    assert result.returncode == 1
    assert index.count("mint", 422) == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "PyPI refused the identity token"
    assert "`invalid-publisher`: `no publisher for ***`" in error.message
    assert "`no publisher for ***`" in result.summary
    assert index.count("upload") == 0


def test_an_identity_token_fulcio_quotes_back_is_written_nowhere(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.faults(
        "fulcio",
        Fault.echo(
            401,
            lambda got: {"code": 16, "message": f"error processing the token {got.bearer()}"},
        ),
    )

    result = run(sigstore=True)  # the fixture scans log, summary and outputs

    assert result.returncode == 1
    assert index.count("fulcio", 401) == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "Sigstore did not sign the release"
    assert "error processing the token ***" in error.message
    assert "error processing the token ***" in result.summary
    assert index.count("upload") == 0


def test_a_huge_project_status_reason_is_cut_where_shown_and_renders_as_text(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.add_file(make_wheel(workspace.parent / "older", "sample-project", "0.9.0"))
    index.project_status["sample-project"] = "archived"
    hostile = "`` <img src=https://x/p.png> [link](https://evil) ![i](https://x/i.png)"
    reason = f"Moved {hostile} " + "z" * 1_000_000 + f" {hostile} end"
    index.project_status_reason["sample-project"] = reason

    result = run({"attestations": "false"})

    assert result.returncode == 1
    obeyed_only_its_own_commands(result)
    no_internal_error(result)
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The project does not accept uploads"
    assert len(error.message) < 1000
    assert "(Shortened; the log has the full text.)" in error.message
    assert len(result.summary) < 4000
    assert [link for link in live_markup(result.summary) if "x/" in link or "evil" in link] == []
    assert "archived" in result.summary
    assert "…" in result.summary
    # Whole in the log, once.
    assert result.log().count(reason) == 1
    assert index.count("upload") == 0


def test_a_stray_file_whose_name_is_not_utf8_leaves_the_release_published(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    stray = os.path.join(os.fsencode(workspace / "dist"), b"notes-\xff\xfe.txt")
    with open(stray, "wb") as file:
        file.write(b"release notes")

    result = run({"attestations": "false"})

    assert result.returncode == 0, result.stdout + result.stderr
    no_internal_error(result)
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert {row.file: row.result for row in rows(result.summary)} == {
        wheel.name: "uploaded",
        sdist.name: "uploaded",
    }
    [notice] = [a for a in result.annotations if a.level == "notice"]
    assert notice.title == "Files that are not distributions were left out"
    assert "ignored: `notes-\\xff\\xfe.txt`." in notice.message
    assert "ignored: `notes-\\xff\\xfe.txt`." in result.summary
    files = json.loads(result.outputs["files"])
    assert [f["name"] for f in files] == [wheel.name, sdist.name]
