"""scripts/pin_image.py: the release commit's one-line edit of action.yml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.pin_image import PinError, main, pin
from tests.tools import ROOT, tool

IMAGE = "ghcr.io/org/pypi-oidc-action"
DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"docker://{IMAGE}@{DIGEST}"


def load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def test_pins_the_real_action_yml_and_changes_nothing_else() -> None:
    before = (ROOT / "action.yml").read_text(encoding="utf-8")
    after = pin(before, IMAGE, DIGEST)

    old, new = load(before), load(after)
    assert old["runs"] == {"using": "docker", "image": "Dockerfile"}
    assert new["runs"] == {"using": "docker", "image": PINNED}
    del old["runs"], new["runs"]
    assert new == old
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert changed == [("  image: Dockerfile", f"  image: {PINNED}")]


def test_pinned_action_yml_still_matches_githubs_action_schema(tmp_path: Path) -> None:
    pinned = tmp_path / "action.yml"
    pinned.write_text(pin((ROOT / "action.yml").read_text(encoding="utf-8"), IMAGE, DIGEST))
    checked = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(pinned)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_second_pin_is_refused() -> None:
    # A re-run release job must fail rather than stack a second release commit.
    once = pin((ROOT / "action.yml").read_text(encoding="utf-8"), IMAGE, DIGEST)
    with pytest.raises(PinError, match="expected 'Dockerfile'"):
        pin(once, IMAGE, DIGEST)


def test_only_the_direct_runs_image_key_is_touched() -> None:
    text = (
        "name: x\n"
        "inputs:\n"
        "  image:\n"
        "    description: an input that happens to be called image\n"
        "    default: Dockerfile\n"
        "runs:\n"
        "  using: 'docker'\n"
        "  env:\n"
        "    image: Dockerfile\n"
        '  image: "Dockerfile"  # rebuilt from source between releases\n'
        "  args: []\n"
    )
    data = load(pin(text, IMAGE, DIGEST))
    assert data["inputs"]["image"]["default"] == "Dockerfile"
    assert data["runs"]["env"] == {"image": "Dockerfile"}
    assert data["runs"]["image"] == PINNED
    assert f"  image: {PINNED}  # rebuilt from source between releases\n" in pin(
        text, IMAGE, DIGEST
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runs:\n  using: node24\n  main: index.js\n", "not 'docker'"),
        ("runs:\n  using: docker\n", "no runs.image"),
        ("runs:\n  using: docker\n  image: Dockerfile\n  image: Dockerfile\n", "more than one"),
        ("name: x\nimage: Dockerfile\nruns:\n  using: docker\n", "no runs.image"),
    ],
)
def test_refuses_action_files_it_cannot_pin(text: str, message: str) -> None:
    with pytest.raises(PinError, match=message):
        pin(text, IMAGE, DIGEST)


@pytest.mark.parametrize(
    "digest",
    [
        "0123456789abcdef" * 4,  # no algorithm
        "sha256:" + "0123456789ABCDEF" * 4,
        "sha256:" + "0123456789abcdef" * 3,
        "sha512:" + "0123456789abcdef" * 8,
        DIGEST + "\n",
    ],
)
def test_refuses_anything_but_a_sha256_digest(digest: str) -> None:
    with pytest.raises(PinError, match="not a sha256 digest"):
        pin("runs:\n  using: docker\n  image: Dockerfile\n", IMAGE, digest)


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/Org/pypi-oidc-action",  # registries refuse upper case
        "ghcr.io/org/pypi-oidc-action:v1.2.3",  # a tag can move; only the digest may pin
        f"ghcr.io/org/pypi-oidc-action@{DIGEST}",
        "pypi-oidc-action",
        "ghcr.io/org/pypi-oidc-action ",
    ],
)
def test_refuses_image_names_that_are_not_bare_and_lower_case(image: str) -> None:
    with pytest.raises(PinError, match="not a lower-case image name"):
        pin("runs:\n  using: docker\n  image: Dockerfile\n", image, DIGEST)


def test_command_line_edits_the_file_in_place(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text((ROOT / "action.yml").read_text(encoding="utf-8"), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pin_image.py"), "--image", IMAGE, DIGEST],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load(action.read_text(encoding="utf-8"))["runs"]["image"] == PINNED


def test_command_line_fails_without_touching_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    action = tmp_path / "action.yml"
    original = "runs:\n  using: docker\n  image: docker://ghcr.io/org/x@" + DIGEST + "\n"
    action.write_text(original, encoding="utf-8")
    assert main(["--action", str(action), "--image", IMAGE, DIGEST]) == 1
    assert action.read_text(encoding="utf-8") == original
    assert "expected 'Dockerfile'" in capsys.readouterr().err
