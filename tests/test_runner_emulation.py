"""The runner emulation reads workflow commands as actions/runner does: both syntaxes,
registered names only, stop-commands, and masks that only a processed command sets."""

from __future__ import annotations

import pytest

from tests.localindex.runner import ActionRun, Annotation, parse_command, read_log, split_lines
from tests.localindex.server import LocalIndex

SECRET = "pypi-emulation-secret"


def run_with(stdout: str, stderr: str = "") -> ActionRun:
    reading = read_log([*split_lines(stdout), *split_lines(stderr)])
    return ActionRun(0, stdout, stderr, "", {}, "", reading.annotations, reading.masks)


@pytest.fixture
def secret(index: LocalIndex) -> str:
    index.api_tokens.add(SECRET)
    return SECRET


def test_v2_commands_start_a_line_after_optional_whitespace() -> None:
    reading = read_log(
        [
            "  ::ERROR file=a.py,line=3,title=T%3A x::msg%0Anext",
            "text ::warning::not at the start",
            "::no-such-command::plain text",
            "::notice::",
        ]
    )

    assert reading.annotations == [
        Annotation("error", "msg\nnext", "T: x", "a.py", 3),
        Annotation("notice", ""),
    ]
    assert [line for line, _ in reading.visible][1:3] == [
        "text ::warning::not at the start",
        "::no-such-command::plain text",
    ]


def test_v1_commands_count_anywhere_in_a_line() -> None:
    reading = read_log(
        [
            "Uploading dist/##[add-mask]hidden-value",
            "note: ##[error file=a.py;line=7]bad%5D%3B thing",
            "##[unknown]plain",
        ]
    )

    assert reading.masks == ["hidden-value"]
    assert reading.annotations == [Annotation("error", "bad]; thing", None, "a.py", 7)]
    # The whole line carrying a processed add-mask is consumed, text before it included.
    assert [line for line, _ in reading.visible] == [
        "note: ##[error file=a.py;line=7]bad%5D%3B thing",
        "##[unknown]plain",
    ]
    assert parse_command("a ::add-mask::x") is None


@pytest.mark.parametrize(
    ("stop", "resume"),
    [
        ("::stop-commands::Tok3n", "::tok3n::"),
        ("path/##[stop-commands]tok3n", "  ##[TOK3N]"),
        ("::stop-commands::tok3n", "x ##[tok3n]"),
    ],
)
def test_stop_commands_turns_every_command_into_text_until_its_token(
    stop: str, resume: str
) -> None:
    reading = read_log(
        [
            stop,
            "::add-mask::while-stopped",
            "::error::while stopped",
            "::stop-commands::other",
            resume,
            "::add-mask::after-resume",
            "::warning::after resume",
        ]
    )

    assert reading.masks == ["after-resume"]
    assert reading.annotations == [Annotation("warning", "after resume")]
    assert [line for line, _ in reading.visible] == [
        stop,
        "::add-mask::while-stopped",
        "::error::while stopped",
        "::stop-commands::other",
        resume,
        "::warning::after resume",
    ]


def test_a_stop_without_its_token_lasts_to_the_end_across_streams() -> None:
    run = run_with("::stop-commands::never-resumed\n", "::add-mask::x\n")

    assert run.masks == []
    assert "::add-mask::x" in run.log()


def test_debug_commands_show_only_with_step_debugging() -> None:
    run = run_with("::debug::GET /simple/ -> 200 OK\nUploaded\n::stop-commands::t\n::debug::text\n")

    assert run.log(step_debug=False) == "Uploaded\n::stop-commands::t\n::debug::text"
    assert run.log().splitlines()[0] == "::debug::GET /simple/ -> 200 OK"


def test_a_mask_printed_while_commands_are_stopped_is_a_leak(
    index: LocalIndex, secret: str
) -> None:
    masked = run_with(f"::add-mask::{secret}\nUploading with ***\n")
    stopped = run_with(f"##[stop-commands]x\n::add-mask::{secret}\n::x::\n")
    # A folder name can carry the stop command in the older syntax.
    folder = run_with(f"Found dist/##[stop-commands]x/a.whl\n::add-mask::{secret}\n")

    assert masked.leaked(index) == []
    assert stopped.leaked(index) == [secret]
    assert folder.leaked(index) == [secret]
    assert folder.masks == []


def test_a_mask_line_that_is_not_a_command_is_a_leak(index: LocalIndex, secret: str) -> None:
    assert run_with(f"echo ::add-mask::{secret}\n").leaked(index) == [secret]
    assert run_with(f"::add-mask:: {secret}\n").leaked(index) == []
    # Carriage returns end lines for the runner: the mask is a command of its own.
    assert split_lines(f"progress\r::add-mask::{secret}\r\n") == [
        "progress",
        f"::add-mask::{secret}",
    ]


def test_masks_apply_from_the_next_line_and_line_by_line_for_multiline_values() -> None:
    run = run_with(
        "before: first-part\n::add-mask::first-part%0Asecond-part\nafter: first-part, second-part\n"
    )

    assert run.masks == ["first-part\nsecond-part", "first-part", "second-part"]
    assert run.log() == "before: first-part\nafter: ***, ***"
