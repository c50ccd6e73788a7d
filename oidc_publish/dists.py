"""The distributions to upload: found, read, hashed and checked before the first upload.

Everything that could make a release half-published is found here, while nothing has been
sent: unreadable archives, metadata PyPI would refuse, filenames that disagree with their
metadata, files of different projects or versions, two sdists.
"""

from __future__ import annotations

import email.message
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oidc_publish.errors import Diagnostic, DistributionsRejected, Level, NoDistributions, Problem

if TYPE_CHECKING:
    from twine.package import PackageFile

WHEEL = "bdist_wheel"
SDIST = "sdist"

DOWNLOAD_ARTIFACT_HINT = (
    "`actions/download-artifact` writes the artifact's files into its `path:`; give this step "
    "the same folder as `packages-dir`, and upload the artifact from the build job with "
    "`path: dist/`."
)


@dataclass(frozen=True)
class Distribution:
    path: Path
    display: str
    kind: str
    name: str
    version: str
    size: int
    sha256: str
    blake2_256: str
    package: PackageFile

    @property
    def filename(self) -> str:
        return self.path.name


def is_distribution(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".whl", ".tar.gz"))


def locate(
    folder: Path, display: Callable[[Path], str], notify: Callable[[Diagnostic], None]
) -> list[Path]:
    """The distribution files in `folder`, wheels first; one nested folder is followed."""
    shown = display(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise NoDistributions(
            f"`packages-dir` `{shown}` {what}.",
            fix="Build or download the distributions into that folder before this step, or "
            f"point `packages-dir` at them. {DOWNLOAD_ARTIFACT_HINT}",
        )
    entries = sorted(folder.iterdir())
    found = [p for p in entries if is_distribution(p)]
    if not found:
        nested = [d for d in entries if d.is_dir() and any(map(is_distribution, d.iterdir()))]
        if len(nested) == 1:
            notify(
                Diagnostic(
                    Level.NOTICE,
                    "Distributions found one folder down",
                    f"`{shown}` holds no distributions but `{display(nested[0])}` does, as "
                    "`actions/download-artifact` makes when the artifact kept its folder; "
                    "uploading those.",
                    fix=f"Set `packages-dir: {display(nested[0])}` to make this explicit.",
                )
            )
            folder, shown = nested[0], display(nested[0])
            entries = sorted(folder.iterdir())
            found = [p for p in entries if is_distribution(p)]
        elif nested:
            names = ", ".join(f"`{display(d)}`" for d in nested)
            raise NoDistributions(
                f"`{shown}` holds no distributions itself, but several folders inside it do: "
                f"{names}.",
                fix="Set `packages-dir` to the one folder to publish.",
            )
    others = [p for p in entries if p.is_file() and not is_distribution(p)]
    if not found:
        raise NoDistributions(_empty_reason(shown, others), fix=DOWNLOAD_ARTIFACT_HINT)
    if others:
        names = ", ".join(f"`{p.name}`" for p in others[:10])
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        notify(
            Diagnostic(
                Level.NOTICE,
                "Files that are not distributions were left out",
                f"Only `*.whl` and `*.tar.gz` files are uploaded; ignored: {names}{more}.",
            )
        )
    return sorted(found, key=lambda p: (not p.name.endswith(".whl"), p.name))


def _empty_reason(shown: str, others: list[Path]) -> str:
    if not others:
        return f"`packages-dir` `{shown}` is empty."
    names = ", ".join(f"`{p.name}`" for p in others[:10])
    legacy = [p.name for p in others if p.name.endswith((".zip", ".egg", ".exe", ".tar.bz2"))]
    extra = (
        " PyPI accepts only wheels and `.tar.gz` sdists: build with `python -m build`."
        if legacy
        else ""
    )
    return f"`packages-dir` `{shown}` holds no `*.whl` or `*.tar.gz` files, only {names}.{extra}"


def load(
    paths: list[Path],
    *,
    verify_metadata: bool,
    pypi_rules: bool,
    display: Callable[[Path], str],
    notify: Callable[[Diagnostic], None],
) -> list[Distribution]:
    """Read, hash and check every file; raise with every problem found, or return them all."""
    from packaging.utils import canonicalize_name

    problems: list[Problem] = []
    dists: list[Distribution] = []
    for path in paths:
        shown = display(path)
        try:
            dist = _read(path, shown)
        except _Unreadable as error:
            problems.append(Problem(str(error), error.fix, shown))
            continue
        file_problems = _check_filename(dist, pypi_rules)
        if verify_metadata and not file_problems:
            file_problems += _check_description(dist, notify)
        problems += [Problem(message, fix, shown) for message, fix in file_problems]
        dists.append(dist)

    releases = sorted({(canonicalize_name(d.name), d.version) for d in dists})
    if len(releases) > 1:
        listed = ", ".join(f"{name} {version}" for name, version in releases)
        problems.append(
            Problem(
                f"The distributions belong to {len(releases)} releases: {listed}. One run "
                "publishes one release, so a failure cannot leave several half-published.",
                "Clean the folder before building (`rm -rf dist`), or publish each project in "
                "its own step with its own `packages-dir`.",
            )
        )
    sdists = [d for d in dists if d.kind == SDIST]
    if len(sdists) > 1:
        problems.append(
            Problem(
                "PyPI accepts one sdist per release; found "
                + ", ".join(f"`{d.filename}`" for d in sdists)
                + ".",
                "Keep one sdist: clean the folder before building.",
                sdists[1].display,
            )
        )
    if problems:
        raise DistributionsRejected(problems)
    return dists


class _Unreadable(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _read(path: Path, shown: str) -> Distribution:
    from twine.exceptions import InvalidDistribution
    from twine.package import PackageFile

    rebuild = "Build the file again (`python -m build`) and check it with `twine check`."
    try:
        package = PackageFile.from_filename(str(path), comment=None)
    except InvalidDistribution as error:
        message = str(error).replace(str(path.resolve()), shown).replace(str(path), shown)
        raise _Unreadable(f"`{shown}` cannot be uploaded: {message}", rebuild) from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
        raise _Unreadable(
            f"`{shown}` is not a readable archive ({type(e).__name__}: {e}); it may be "
            "truncated or corrupt.",
            rebuild,
        ) from None
    return Distribution(
        path=path,
        display=shown,
        kind=package.filetype,
        name=package.metadata["name"],
        version=package.metadata["version"],
        size=path.stat().st_size,
        sha256=package.sha2_digest or "",
        blake2_256=package.blake2_256_digest or "",
        package=package,
    )


def _check_filename(dist: Distribution, pypi_rules: bool) -> list[tuple[str, str]]:
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        canonicalize_name,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import InvalidVersion, Version

    rebuild = "Rebuild with a current build backend (`python -m build`); do not rename built files."
    try:
        if dist.kind == WHEEL:
            name, version, _, tags = parse_wheel_filename(dist.filename)
        else:
            name, version = parse_sdist_filename(dist.filename)
            tags = frozenset()
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as error:
        return [(f"`{dist.filename}` is not a valid distribution filename: {error}.", rebuild)]
    problems: list[tuple[str, str]] = []
    try:
        metadata_version = Version(dist.version)
    except InvalidVersion:
        return [(f"The metadata version `{dist.version}` is not a valid version.", rebuild)]
    if canonicalize_name(dist.name) != name or metadata_version != version:
        problems.append(
            (
                f"The filename says {name} {version} but the metadata inside says "
                f"{dist.name} {dist.version}.",
                rebuild,
            )
        )
    if pypi_rules:
        bad = sorted({t.platform for t in tags if t.platform.startswith("linux_")})
        if bad:
            problems.append(
                (
                    f"PyPI refuses wheels with the platform tag `{bad[0]}`: they only run on "
                    "the machine that built them.",
                    "Repair the wheel to a `manylinux` tag with `auditwheel repair`, or build "
                    "it with cibuildwheel.",
                )
            )
    return problems


def _check_description(
    dist: Distribution, notify: Callable[[Diagnostic], None]
) -> list[tuple[str, str]]:
    """PyPI renders the long description and refuses reStructuredText that fails to."""
    metadata = dist.package.metadata_dictionary()
    description = metadata.get("description")
    content_type = metadata.get("description_content_type") or "text/x-rst"
    message = email.message.EmailMessage()
    message["content-type"] = content_type
    if not description or description.rstrip() == "UNKNOWN":
        notify(
            Diagnostic(
                Level.WARNING,
                "No long description",
                f"`{dist.filename}` has no long description; the PyPI page will be empty.",
                fix="Set `readme` in pyproject.toml.",
                file=dist.display,
            )
        )
        return []
    if message.get_content_type() != "text/x-rst":
        return []
    import readme_renderer.rst

    stream = io.StringIO()
    if readme_renderer.rst.render(description, stream=stream) is None:
        report = stream.getvalue().strip().replace("<string>:", "line ")
        return [
            (
                "The long description is reStructuredText that does not render, so PyPI "
                f"would refuse the upload: {report}",
                "Fix the markup in the README (check it with `twine check --strict`), or set "
                '`readme = {file = "README.md", content-type = "text/markdown"}`.',
            )
        ]
    return []
