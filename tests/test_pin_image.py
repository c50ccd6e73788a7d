"""scripts/pin_image.py: the release commit's one-line edit of action.yml.

A release pins its image index, which lists an image per platform; a
single-platform image's digest is refused, because it would fail on the others.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.image_index import DOCKER_IMAGE, DOCKER_LIST, OCI_INDEX
from scripts.pin_image import PinError, main, pin, pin_index
from tests.manifests import (
    AMD64,
    ARM64,
    attestation,
    digest_of,
    entry,
    image_manifest,
    index,
    release_index,
)
from tests.tools import ROOT, tool

IMAGE = "ghcr.io/org/pypi-oidc-action"
DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"docker://{IMAGE}@{DIGEST}"
INDEX = release_index()
INDEX_DIGEST = digest_of(INDEX)


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


@pytest.mark.parametrize(
    "manifest",
    [
        release_index(),
        release_index(media_type=DOCKER_LIST),
        # BuildKit's attestation manifests beside the images, arm64 with its variant.
        index(
            entry("linux", "amd64", AMD64),
            attestation(AMD64),
            entry("linux", "arm64", ARM64, variant="v8"),
            attestation(ARM64),
        ),
    ],
)
def test_an_index_of_both_platforms_is_pinned(manifest: bytes) -> None:
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    pinned = pin_index(action, IMAGE, digest_of(manifest), manifest)
    assert pinned == pin(action, IMAGE, digest_of(manifest))
    assert load(pinned)["runs"]["image"] == f"docker://{IMAGE}@{digest_of(manifest)}"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        # A single-platform image: the digest a one-platform build pushes.
        (image_manifest(30_000_000, 6_000_000), "single-platform image manifest"),
        (image_manifest(30_000_000, media_type=DOCKER_IMAGE), "single-platform image manifest"),
        (index(entry("linux", "amd64", AMD64), attestation(AMD64)), "lacks linux/arm64"),
        (index(entry("linux", "arm64", ARM64), media_type=OCI_INDEX), "lacks linux/amd64"),
    ],
)
def test_a_digest_that_is_not_an_index_of_both_platforms_is_refused(
    manifest: bytes, message: str
) -> None:
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    with pytest.raises(PinError, match=f"{digest_of(manifest)} cannot be pinned: .*{message}"):
        pin_index(action, IMAGE, digest_of(manifest), manifest)


def test_an_index_that_the_digest_does_not_name_is_refused() -> None:
    # The manifest shown must be the one the digest names, byte for byte.
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    with pytest.raises(PinError, match=f"have digest {INDEX_DIGEST}, not {DIGEST}"):
        pin_index(action, IMAGE, DIGEST, INDEX)


def test_command_line_edits_the_file_in_place(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text((ROOT / "action.yml").read_text(encoding="utf-8"), encoding="utf-8")
    manifest = tmp_path / "index.json"
    manifest.write_bytes(INDEX)
    # As the release job runs it: from the checkout, on a Python without site-packages.
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-m",
            "scripts.pin_image",
            "--image",
            IMAGE,
            "--index-manifest",
            str(manifest),
            "--action",
            str(action),
            INDEX_DIGEST,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert load(action.read_text(encoding="utf-8"))["runs"]["image"] == (
        f"docker://{IMAGE}@{INDEX_DIGEST}"
    )


def test_command_line_fails_without_touching_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    action = tmp_path / "action.yml"
    original = "runs:\n  using: docker\n  image: docker://ghcr.io/org/x@" + DIGEST + "\n"
    action.write_text(original, encoding="utf-8")
    manifest = tmp_path / "index.json"
    manifest.write_bytes(INDEX)
    argv = ["--action", str(action), "--image", IMAGE, "--index-manifest", str(manifest)]
    assert main([*argv, INDEX_DIGEST]) == 1
    assert action.read_text(encoding="utf-8") == original
    assert "expected 'Dockerfile'" in capsys.readouterr().err


def test_command_line_refuses_a_single_platform_digest_without_touching_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    action = tmp_path / "action.yml"
    original = (ROOT / "action.yml").read_text(encoding="utf-8")
    action.write_text(original, encoding="utf-8")
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(image_manifest(30_000_000))
    argv = ["--action", str(action), "--image", IMAGE, "--index-manifest", str(manifest)]
    assert main([*argv, digest_of(manifest.read_bytes())]) == 1
    assert action.read_text(encoding="utf-8") == original
    assert "single-platform image manifest" in capsys.readouterr().err


def test_command_line_needs_the_index_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--image", IMAGE, INDEX_DIGEST])
    assert exited.value.code == 2
    assert "--index-manifest" in capsys.readouterr().err
