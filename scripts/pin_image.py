"""Pin action.yml's `runs.image` to a released image index's digest.

Between releases action.yml says `image: Dockerfile` and the runner builds the
image on every use. The release workflow pushes one image per platform and an
index of them, then runs this script on a release commit so that the tag users
pin runs exactly the images whose provenance was attested, by the index's digest
(each runner pulls its own platform from it). From the checkout's root:

    python3 -m scripts.pin_image --image ghcr.io/owner/name \
        --index-manifest index.json sha256:<64 hex>

index.json is what `docker buildx imagetools inspect --raw <image>@<digest>`
prints. The digest must be that of these exact bytes, and they must be an index
of linux/amd64 and linux/arm64 (scripts/image_index.py): a single-platform
image's digest is refused, since it would fail on every other platform.

It edits the one line in place instead of re-serialising the YAML, so comments
and formatting survive and the release commit's diff is that one line. It uses
only the standard library: the release job runs it on the runner's own Python
without installing anything into a job that can push tags.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from scripts.image_index import ManifestError, platform_digests

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# A registry host, then lower-case path components; no tag and no digest,
# since the digest is the only reference this pin may carry.
IMAGE = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+")
TOP_LEVEL_KEY = re.compile(r"(?P<key>[A-Za-z0-9_-]+):")
RUNS_ENTRY = re.compile(
    r"(?P<indent>[ ]+)(?P<key>[A-Za-z0-9_-]+):[ ]*(?P<value>[^#]*?)[ ]*(?P<comment>#.*)?"
)
UNPINNED = "Dockerfile"


class PinError(Exception):
    """action.yml or the arguments are not what a release can pin."""


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _runs_entries(lines: list[str]) -> Iterator[tuple[int, re.Match[str]]]:
    """Yield (line number, match) for each direct child key of the top-level `runs:`."""
    in_runs = False
    runs_indent: str | None = None
    for number, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        top = TOP_LEVEL_KEY.match(line)
        if top:
            in_runs = top["key"] == "runs"
            continue
        entry = RUNS_ENTRY.fullmatch(line)
        if not in_runs or entry is None:
            continue
        # The first key fixes the children's indent; deeper keys (under env:) are skipped.
        runs_indent = runs_indent or entry["indent"]
        if entry["indent"] == runs_indent:
            yield number, entry


def pin(action_yml: str, image: str, digest: str) -> str:
    """Return `action_yml` with `runs.image` set to `docker://<image>@<digest>`."""
    if not IMAGE.fullmatch(image):
        raise PinError(f"not a lower-case image name without tag or digest: {image!r}")
    if not DIGEST.fullmatch(digest):
        raise PinError(f"not a sha256 digest (sha256: and 64 lower-case hex): {digest!r}")

    lines = action_yml.split("\n")
    entries: dict[str, tuple[int, re.Match[str]]] = {}
    for number, entry in _runs_entries(lines):
        if entry["key"] in entries:
            raise PinError(f"action.yml has more than one runs.{entry['key']}")
        entries[entry["key"]] = (number, entry)

    using = _unquote(entries["using"][1]["value"]) if "using" in entries else None
    if using != "docker":
        raise PinError(f"runs.using is {using!r}, not 'docker'")
    if "image" not in entries:
        raise PinError("action.yml has no runs.image")
    number, entry = entries["image"]
    if _unquote(entry["value"]) != UNPINNED:
        # A release commit already pins an image: pinning again would stack a
        # second release commit on top of the first.
        raise PinError(f"runs.image is {entry['value']!r}, expected {UNPINNED!r}")
    comment = f"  {entry['comment']}" if entry["comment"] else ""
    lines[number] = f"{entry['indent']}image: docker://{image}@{digest}{comment}"
    return "\n".join(lines)


def pin_index(action_yml: str, image: str, digest: str, index_manifest: bytes) -> str:
    """`pin`, once `index_manifest` has shown that `digest` names an index of every platform."""
    try:
        platform_digests(index_manifest, digest=digest)
    except ManifestError as error:
        raise PinError(f"{digest} cannot be pinned: {error}") from None
    return pin(action_yml, image, digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m scripts.pin_image",
        description="Pin action.yml's runs.image to a released image index's digest.",
    )
    parser.add_argument("digest", help="the pushed image index's digest, sha256:<64 hex>")
    parser.add_argument("--image", required=True, help="e.g. ghcr.io/owner/pypi-oidc-action")
    parser.add_argument(
        "--index-manifest",
        type=Path,
        required=True,
        help="the index's raw JSON, as `docker buildx imagetools inspect --raw` prints it",
    )
    parser.add_argument("--action", type=Path, default=Path("action.yml"), help="file to edit")
    args = parser.parse_args(argv)
    try:
        text = args.action.read_text(encoding="utf-8")
        manifest = args.index_manifest.read_bytes()
        pinned = pin_index(text, args.image, args.digest, manifest)
    except (OSError, PinError) as error:
        print(f"pin_image: {error}", file=sys.stderr)
        return 1
    args.action.write_text(pinned, encoding="utf-8")
    print(f"pin_image: {args.action} runs docker://{args.image}@{args.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
