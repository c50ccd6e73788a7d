"""Real distributions, written directly: no build backend, no network.

Identical arguments give byte-identical files (fixed timestamps, seeded filler), so
a test can rebuild "the same" file, and change any argument to get other bytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

DEFAULT_SUMMARY = "A sample project"
DEFAULT_DESCRIPTION = "# Sample project\n\nA project that exists to be published.\n"
# readme_renderer rejects this (an interpreted-text role that is never closed), so
# `twine check` fails on it with description_content_type="text/x-rst".
BROKEN_RST = (
    "Sample project\n==============\n\nSee `the docs <https://example.invalid>`_ and `this\n"
)

_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024
_WHEEL = (
    "Wheel-Version: 1.0\nGenerator: tests.localindex\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
)


def filename_stem(name: str) -> str:
    """A project name as wheel and sdist filenames spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def make_wheel(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    payload_size: int = 0,
    summary: str = DEFAULT_SUMMARY,
    description: str = DEFAULT_DESCRIPTION,
    description_content_type: str = "text/markdown",
    metadata_overrides: Mapping[str, str | None] | None = None,
    filename: str | None = None,
) -> Path:
    """A pure-Python wheel with `{package}/__init__.py` setting `__version__`.

    `payload_size` pads it with that many bytes of incompressible data, written in
    chunks. `metadata_overrides` sets METADATA fields (None removes one), for
    metadata broken on purpose; `filename` names the file something else.
    """
    stem = filename_stem(name)
    dist_info = f"{stem}-{version}.dist-info"
    path = dest_dir / (filename or f"{stem}-{version}-py3-none-any.whl")
    dest_dir.mkdir(parents=True, exist_ok=True)
    record: list[str] = []
    with zipfile.ZipFile(path, "w") as wheel:

        def add(arcname: str, data: bytes) -> None:
            wheel.writestr(_zip_info(arcname, zipfile.ZIP_DEFLATED), data)
            record.append(_record_line(arcname, hashlib.sha256(data).digest(), len(data)))

        add(f"{stem}/__init__.py", f'__version__ = "{version}"\n'.encode())
        if payload_size:
            payload = _zip_info(f"{stem}/payload.bin", zipfile.ZIP_STORED)
            payload.file_size = payload_size  # lets zipfile choose ZIP64 up front if needed
            digest = hashlib.sha256()
            with wheel.open(payload, "w") as out:
                for chunk in _filler(f"{name}-{version}", payload_size):
                    out.write(chunk)
                    digest.update(chunk)
            record.append(_record_line(payload.filename, digest.digest(), payload_size))
        metadata = _metadata(
            name,
            version,
            summary=summary,
            description=description,
            content_type=description_content_type,
            overrides=metadata_overrides,
        )
        add(f"{dist_info}/METADATA", metadata.encode())
        add(f"{dist_info}/WHEEL", _WHEEL.encode())
        record.append(f"{dist_info}/RECORD,,")
        wheel.writestr(
            _zip_info(f"{dist_info}/RECORD", zipfile.ZIP_DEFLATED), "\n".join(record) + "\n"
        )
    return path


def make_sdist(
    dest_dir: Path,
    name: str,
    version: str,
    *,
    summary: str = DEFAULT_SUMMARY,
    description: str = DEFAULT_DESCRIPTION,
    description_content_type: str = "text/markdown",
    metadata_overrides: Mapping[str, str | None] | None = None,
    filename: str | None = None,
) -> Path:
    """A `.tar.gz` sdist: PKG-INFO, a minimal pyproject.toml and the package."""
    stem = filename_stem(name)
    root = f"{stem}-{version}"
    path = dest_dir / (filename or f"{root}.tar.gz")
    dest_dir.mkdir(parents=True, exist_ok=True)
    members = {
        "PKG-INFO": _metadata(
            name,
            version,
            summary=summary,
            description=description,
            content_type=description_content_type,
            overrides=metadata_overrides,
        ),
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ),
        f"{stem}/__init__.py": f'__version__ = "{version}"\n',
    }
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def make_release(workspace: Path, *, payload_size: int = 0) -> tuple[Path, Path]:
    """sample-project 1.0.0, a wheel and an sdist in `workspace/dist`, as a build job leaves it."""
    dist = workspace / "dist"
    return (
        make_wheel(dist, "sample-project", "1.0.0", payload_size=payload_size),
        make_sdist(dist, "sample-project", "1.0.0"),
    )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _metadata(
    name: str,
    version: str,
    *,
    summary: str,
    description: str,
    content_type: str,
    overrides: Mapping[str, str | None] | None,
) -> str:
    fields: dict[str, str | None] = {
        "Metadata-Version": "2.1",
        "Name": name,
        "Version": version,
        "Summary": summary,
        "Description-Content-Type": content_type,
        **(overrides or {}),
    }
    headers = "".join(f"{key}: {value}\n" for key, value in fields.items() if value is not None)
    return f"{headers}\n{description}"


def _zip_info(arcname: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _record_line(arcname: str, digest: bytes, size: int) -> str:
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{arcname},sha256={encoded},{size}"


def _filler(seed: str, size: int) -> Iterator[bytes]:
    """Incompressible bytes, the same for the same seed."""
    for number, offset in enumerate(range(0, size, _CHUNK)):
        yield hashlib.shake_256(f"{seed}/{number}".encode()).digest(min(_CHUNK, size - offset))
