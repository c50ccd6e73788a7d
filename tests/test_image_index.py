"""scripts/image_index.py: what the release checks of its image index before it pins it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.image_index import (
    DOCKER_IMAGE,
    DOCKER_LIST,
    OCI_IMAGE,
    OCI_INDEX,
    ManifestError,
    compressed_size,
    main,
    platform_digests,
)
from tests.manifests import (
    AMD64,
    ARM64,
    attestation,
    digest,
    digest_of,
    entry,
    image_manifest,
    index,
    release_index,
)
from tests.tools import ROOT

BOTH = {"linux/amd64": AMD64, "linux/arm64": ARM64}


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_an_index_of_both_platforms_gives_their_digests(media_type: str) -> None:
    raw = release_index(media_type=media_type)
    assert platform_digests(raw) == BOTH
    assert platform_digests(raw, digest=digest_of(raw)) == BOTH


def test_attestation_manifests_are_ignored() -> None:
    # What BuildKit pushes with provenance on: each image's attestation under unknown/unknown.
    raw = index(
        entry("linux", "arm64", ARM64, variant="v8"),
        attestation(ARM64),
        entry("linux", "amd64", AMD64),
        attestation(AMD64),
    )
    assert platform_digests(raw) == BOTH
    assert list(platform_digests(raw)) == ["linux/amd64", "linux/arm64"]


def test_arm64_is_found_with_or_without_its_default_variant() -> None:
    for variant in (None, "v8"):
        raw = index(entry("linux", "amd64", AMD64), entry("linux", "arm64", ARM64, variant=variant))
        assert platform_digests(raw)["linux/arm64"] == ARM64


def test_an_oci_index_without_a_media_type_is_read_by_its_fields() -> None:
    raw = index(entry("linux", "amd64", AMD64), entry("linux", "arm64", ARM64), media_type=None)
    assert platform_digests(raw) == BOTH


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (image_manifest(100, 200), "single-platform image manifest, not an image index"),
        (image_manifest(100, media_type=DOCKER_IMAGE), "single-platform image manifest"),
        (
            index(entry("linux", "amd64", AMD64, variant=None), attestation(AMD64)),
            r"lacks linux/arm64 \(it lists linux/amd64\)",
        ),
        (index(attestation(AMD64)), r"lacks linux/amd64, linux/arm64 \(it lists no platform\)"),
        (
            index(
                entry("linux", "amd64", AMD64),
                entry("linux", "arm64", ARM64),
                entry("linux", "arm", digest("armv7"), variant="v7"),
            ),
            "also lists linux/arm/v7",
        ),
        (
            index(entry("linux", "amd64", AMD64), entry("linux", "arm64", ARM64, variant="v9")),
            "lacks linux/arm64 and also lists linux/arm64/v9",
        ),
        (
            index(
                entry("linux", "amd64", AMD64),
                entry("linux", "amd64", digest("another amd64")),
                entry("linux", "arm64", ARM64),
            ),
            "lists linux/amd64 twice",
        ),
        (
            index(
                entry("linux", "amd64", AMD64),
                {"mediaType": OCI_IMAGE, "digest": ARM64, "size": 1},
            ),
            f"entry {ARM64} names no platform",
        ),
        (
            index(
                entry("linux", "amd64", AMD64), entry("linux", "arm64", ARM64, media_type=OCI_INDEX)
            ),
            "linux/arm64 entry is a .*index.*, not an image manifest",
        ),
        (
            index(entry("linux", "amd64", AMD64), entry("linux", "arm64", "sha256:abc")),
            "linux/arm64 entry has no sha256 digest",
        ),
        (b"not json", "not a JSON manifest"),
        (b"[]", "not an object"),
        (json.dumps({"schemaVersion": 1, "name": "x"}).encode(), "schemaVersion is 1"),
        (
            json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.artifact"}).encode(),
            "neither an image index nor an image manifest",
        ),
    ],
)
def test_anything_but_an_index_of_exactly_both_platforms_is_refused(
    raw: bytes, message: str
) -> None:
    with pytest.raises(ManifestError, match=message):
        platform_digests(raw)


def test_bytes_that_are_not_what_the_digest_names_are_refused() -> None:
    raw = release_index()
    # The same JSON, serialised again: another digest, so not the index that was pushed.
    reserialised = json.dumps(json.loads(raw)).encode()
    with pytest.raises(ManifestError, match=f"have digest {digest_of(reserialised)}"):
        platform_digests(reserialised, digest=digest_of(raw))
    with pytest.raises(ManifestError, match="not a sha256 digest"):
        platform_digests(raw, digest=digest_of(raw).upper())


@pytest.mark.parametrize("media_type", [OCI_IMAGE, DOCKER_IMAGE])
def test_compressed_size_is_the_sum_of_the_layers(media_type: str) -> None:
    # The config blob is not a layer: it is not counted.
    assert compressed_size(
        image_manifest(29_000_000, 1_500, 12_345_678, media_type=media_type)
    ) == (29_000_000 + 1_500 + 12_345_678)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (release_index(), "image index: give one platform's image manifest"),
        (image_manifest(), "lists no layers"),
        (image_manifest(1).replace(b'"size": 1', b'"size": "1"'), "a layer has no size"),
        (image_manifest(-1), "a layer has no size"),
    ],
)
def test_compressed_size_refuses_what_is_not_one_image(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        compressed_size(raw)


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    # -S: no site-packages, as on the runner's own Python; the module runs from the checkout.
    return subprocess.run(
        [sys.executable, "-S", "-m", "scripts.image_index", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_command_line_prints_github_outputs_for_the_index(tmp_path: Path) -> None:
    raw = release_index()
    saved = tmp_path / "index.json"
    saved.write_bytes(raw)

    done = run_module(
        "platforms",
        str(saved),
        "--digest",
        digest_of(raw),
        "--expect",
        f"linux/amd64={AMD64}",
        "--expect",
        f"linux/arm64={ARM64}",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"digest={digest_of(raw)}",
        f"amd64={AMD64}",
        f"arm64={ARM64}",
    ]


def test_command_line_refuses_an_index_of_other_images_than_the_release_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "index.json"
    saved.write_bytes(release_index())
    built = digest("what the arm64 job pushed")

    assert main(["platforms", str(saved), "--expect", f"linux/arm64={built}"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"lists linux/arm64 as {ARM64}, but the release built {built}" in captured.err


def test_command_line_refuses_a_single_platform_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "manifest.json"
    saved.write_bytes(image_manifest(10))
    assert main(["platforms", str(saved)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "single-platform image manifest" in captured.err


def test_command_line_prints_the_compressed_size(tmp_path: Path) -> None:
    saved = tmp_path / "manifest.json"
    saved.write_bytes(image_manifest(41_000_000, 6_600_000, 10_100_000))
    done = run_module("size", str(saved))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "57700000 bytes (57.7 MB) compressed\n"
