"""Registry manifests as `docker buildx imagetools inspect --raw` prints them, for the tests.

Shapes follow what BuildKit and `imagetools create` push: an OCI image index (or
a Docker manifest list) whose entries carry a platform, BuildKit's attestation
manifests listed under platform unknown/unknown, and single-platform image
manifests with their layers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from scripts.image_index import DOCKER_IMAGE, DOCKER_LIST, OCI_IMAGE, OCI_INDEX

AMD64 = "sha256:" + hashlib.sha256(b"linux/amd64 image").hexdigest()
ARM64 = "sha256:" + hashlib.sha256(b"linux/arm64 image").hexdigest()


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def entry(
    os: str,
    architecture: str,
    image: str,
    *,
    variant: str | None = None,
    media_type: str = OCI_IMAGE,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    platform = {"architecture": architecture, "os": os}
    if variant is not None:
        platform["variant"] = variant
    found: dict[str, Any] = {
        "mediaType": media_type,
        "digest": image,
        "size": 1_234,
        "platform": platform,
    }
    if annotations:
        found["annotations"] = annotations
    return found


def attestation(of: str) -> dict[str, Any]:
    """BuildKit's attestation manifest for the image `of`."""
    return entry(
        "unknown",
        "unknown",
        digest(f"attestation of {of}"),
        annotations={
            "vnd.docker.reference.digest": of,
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )


def index(*entries: dict[str, Any], media_type: str | None = OCI_INDEX) -> bytes:
    document: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        document["mediaType"] = media_type
    document["manifests"] = list(entries)
    return json.dumps(document, indent=2).encode()


def release_index(*, media_type: str = OCI_INDEX) -> bytes:
    """The index a release pushes: both platforms, as `imagetools create` lists them."""
    image = DOCKER_IMAGE if media_type == DOCKER_LIST else OCI_IMAGE
    return index(
        entry("linux", "amd64", AMD64, media_type=image),
        entry("linux", "arm64", ARM64, media_type=image),
        media_type=media_type,
    )


def image_manifest(*layer_sizes: int, media_type: str = OCI_IMAGE) -> bytes:
    """One platform's image manifest with layers of these compressed sizes."""
    docker = media_type == DOCKER_IMAGE
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json"
            if docker
            else "application/vnd.oci.image.config.v1+json",
            "digest": digest("config"),
            "size": 7_023,
        },
        "layers": [
            {"mediaType": layer_type, "digest": digest(f"layer {n}"), "size": size}
            for n, size in enumerate(layer_sizes)
        ],
    }
    return json.dumps(document, indent=3).encode()


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
