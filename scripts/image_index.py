"""Check a released image index before anything pins it, from the registry's own JSON.

A release builds the image natively on linux/amd64 and linux/arm64, pushes each by
digest, and merges the two into one image index (an OCI image index or a Docker
manifest list). action.yml pins the index's digest, so each runner pulls its own
platform. A single-platform digest would pin one platform and fail on the other
with `exec format error` before the entrypoint runs, so the release checks here,
from what `docker buildx imagetools inspect --raw` prints (the manifest's exact
bytes), that a digest names an index listing exactly those platforms, and reads
each platform image's digest from it:

    python3 -m scripts.image_index platforms index.json [--digest sha256:<index>]
        [--expect linux/amd64=sha256:<digest> ...]
    python3 -m scripts.image_index size manifest.json

`platforms` prints `digest=<the index's digest>` and `<arch>=<digest>` for each
platform (`amd64=...`, `arm64=...`), lines a workflow step appends to
$GITHUB_OUTPUT. `size` prints a platform image's compressed size: the sum of its
layers' sizes, which is what a runner downloads when it has none of them.

Standard library only, like pin_image.py: the release job runs it on the
runner's own Python without installing anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PLATFORMS = ("linux/amd64", "linux/arm64")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_IMAGE = "application/vnd.oci.image.manifest.v1+json"
DOCKER_IMAGE = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}
IMAGE_TYPES = {OCI_IMAGE, DOCKER_IMAGE}
# BuildKit lists its attestation manifests (provenance, SBOM) in the index under this
# platform; no runner pulls them.
UNKNOWN = "unknown/unknown"


class ManifestError(Exception):
    """The manifest is not the one a release may pin."""


def digest_of(raw: bytes) -> str:
    """The digest a registry gives these exact manifest bytes."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _load(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"not a JSON manifest: {error}") from None
    if not isinstance(document, dict):
        raise ManifestError("not a manifest: the JSON is not an object")
    if document.get("schemaVersion") != 2:
        raise ManifestError(f"schemaVersion is {document.get('schemaVersion')!r}, not 2")
    return document


def _is_index(document: Mapping[str, Any]) -> bool:
    """Whether the manifest is an index; refuses a media type that is neither kind."""
    media_type = document.get("mediaType")
    if media_type in INDEX_TYPES:
        return True
    if media_type in IMAGE_TYPES:
        return False
    if media_type is None:
        # An OCI manifest may leave its mediaType out; then its fields tell.
        if "manifests" in document and "layers" not in document:
            return True
        if "layers" in document and "manifests" not in document:
            return False
    raise ManifestError(f"neither an image index nor an image manifest (mediaType {media_type!r})")


def platform_name(platform: Any) -> str:
    """`os/architecture[/variant]`; arm64's default variant v8 is left out, as Docker does."""
    if not isinstance(platform, dict):
        raise ManifestError(f"an index entry's platform is {platform!r}, not an object")
    system, architecture = platform.get("os"), platform.get("architecture")
    if not isinstance(system, str) or not isinstance(architecture, str):
        raise ManifestError(f"an index entry's platform lacks os or architecture: {platform}")
    variant = platform.get("variant")
    if architecture == "arm64" and variant == "v8":
        variant = None
    return "/".join([system, architecture, *([variant] if variant else [])])


def _entry(entry: Any) -> tuple[str, str] | None:
    """An index entry's platform and image digest; None for an attestation manifest."""
    if not isinstance(entry, dict):
        raise ManifestError(f"an index entry is {entry!r}, not an object")
    if "platform" not in entry:
        raise ManifestError(
            f"the index's entry {entry.get('digest')} names no platform: no runner picks it"
        )
    name = platform_name(entry["platform"])
    if name == UNKNOWN:
        return None
    if entry.get("mediaType") not in IMAGE_TYPES:
        raise ManifestError(
            f"the index's {name} entry is a {entry.get('mediaType')!r}, not an image manifest"
        )
    digest = entry.get("digest")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ManifestError(f"the index's {name} entry has no sha256 digest: {digest!r}")
    return name, digest


def platform_digests(
    raw: bytes, *, digest: str | None = None, platforms: Sequence[str] = PLATFORMS
) -> dict[str, str]:
    """Each of `platforms` -> the digest of its image, from the index `raw`.

    Refuses anything else: a single-platform manifest, an index that lacks one of
    the platforms, lists one twice, or lists another one (its image would be pinned
    without its provenance being verified), or `raw` that is not what `digest` names.
    Attestation manifests (platform unknown/unknown) are ignored.
    """
    if digest is not None:
        if not DIGEST.fullmatch(digest):
            raise ManifestError(f"not a sha256 digest (sha256: and 64 lower-case hex): {digest!r}")
        if digest_of(raw) != digest:
            raise ManifestError(
                f"these manifest bytes have digest {digest_of(raw)}, not {digest}: "
                "save exactly what `docker buildx imagetools inspect --raw` prints"
            )
    document = _load(raw)
    wanted = ", ".join(platforms)
    if not _is_index(document):
        raise ManifestError(
            "this is a single-platform image manifest, not an image index: pinned, it "
            "would run on one platform and fail with `exec format error` on the others; "
            f"a release pins the index that lists {wanted}"
        )
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise ManifestError("the index has no list of manifests")

    found: dict[str, str] = {}
    for entry in entries:
        image = _entry(entry)
        if image is None:
            continue
        name, entry_digest = image
        if name in found:
            raise ManifestError(f"the index lists {name} twice: a runner's pick is ambiguous")
        found[name] = entry_digest

    missing = [name for name in platforms if name not in found]
    extra = sorted(set(found) - set(platforms))
    if missing or extra:
        listed = ", ".join(found) or "no platform"
        problems = [f"lacks {', '.join(missing)}"] if missing else []
        problems += [f"also lists {', '.join(extra)}"] if extra else []
        raise ManifestError(
            f"the index {' and '.join(problems)} (it lists {listed}); a release pins an index "
            f"of exactly {wanted}, each built and attested by the release workflow"
        )
    return {name: found[name] for name in platforms}


def compressed_size(raw: bytes) -> int:
    """The sum of the layer sizes of the single-platform image manifest `raw`, in bytes."""
    document = _load(raw)
    if _is_index(document):
        raise ManifestError("this is an image index: give one platform's image manifest")
    layers = document.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ManifestError("the image manifest lists no layers")
    sizes = [layer.get("size") if isinstance(layer, dict) else None for layer in layers]
    counted = [size for size in sizes if type(size) is int and size >= 0]
    if len(counted) != len(sizes):
        raise ManifestError(f"a layer has no size in bytes: {sizes}")
    return sum(counted)


def output_name(platform: str) -> str:
    """A $GITHUB_OUTPUT name for a platform: its architecture (and variant), linux/ dropped."""
    return platform.removeprefix("linux/").replace("/", "-")


def _expectation(text: str) -> tuple[str, str]:
    platform, equals, digest = text.partition("=")
    if not equals or not DIGEST.fullmatch(digest):
        raise argparse.ArgumentTypeError(f"not PLATFORM=sha256:<64 hex>: {text!r}")
    return platform, digest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m scripts.image_index", description=__doc__.split("\n", 1)[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    platforms = commands.add_parser(
        "platforms", help="check an image index and print its platforms' digests"
    )
    platforms.add_argument("manifest", type=Path, help="the index's raw JSON")
    platforms.add_argument("--digest", help="the digest these bytes must have")
    platforms.add_argument(
        "--expect",
        type=_expectation,
        action="append",
        default=[],
        metavar="PLATFORM=DIGEST",
        help="the digest a platform's entry must have (repeatable)",
    )
    size = commands.add_parser("size", help="print an image manifest's compressed size")
    size.add_argument("manifest", type=Path, help="one platform's raw image manifest JSON")
    args = parser.parse_args(argv)

    try:
        raw = args.manifest.read_bytes()
        if args.command == "size":
            total = compressed_size(raw)
            print(f"{total} bytes ({total / 1_000_000:.1f} MB) compressed")
            return 0
        found = platform_digests(raw, digest=args.digest)
        for platform, expected in args.expect:
            if found.get(platform) != expected:
                raise ManifestError(
                    f"the index lists {platform} as {found.get(platform)}, "
                    f"but the release built {expected}"
                )
    except (OSError, ManifestError) as error:
        print(f"image_index: {error}", file=sys.stderr)
        return 1
    print(f"digest={digest_of(raw)}")
    for platform, digest in found.items():
        print(f"{output_name(platform)}={digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
