"""The distributions to upload: found, read, hashed and checked before the first upload.

Everything that could make a release half-published is found here, while nothing has been
sent: unreadable or implausible archives, metadata PyPI would refuse, filenames that
disagree with their metadata, files of different projects or versions, two sdists. Archives
are looked at through their headers before any member is read, so a crafted one cannot
exhaust the runner.
"""

from __future__ import annotations

import errno
import hashlib
import io
import re
import stat
import threading
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from oidc_publish.errors import (
    Diagnostic,
    DistributionsRejected,
    InvalidInput,
    Level,
    NoDistributions,
    Problem,
)
from oidc_publish.runner import md_code
from oidc_publish.runner import shown as shown_name  # `shown` names a display here

if TYPE_CHECKING:
    from packaging.version import Version
    from twine.package import PackageFile

    from oidc_publish.report import Reporter
    from oidc_publish.run import Run

DEFAULT_FOLDER = "dist"
"""`packages-dir` when not given."""
# A release as PyPI files it: normalised project name, canonical version.
Key = tuple[str, str]

WHEEL = "bdist_wheel"
SDIST = "sdist"

# Metadata files are text a few kB long; a description with images inlined stays far below.
MAX_METADATA_BYTES = 8 * 1024 * 1024
# An sdist's members together, as their headers declare them: beyond this it is a bomb.
MAX_SDIST_UNPACKED_BYTES = 4 * 1024 * 1024 * 1024
ATTESTATION_SUFFIX = ".publish.attestation"

DOWNLOAD_ARTIFACT_HINT = (
    "`actions/download-artifact` writes the artifact's files into its `path:`; give this step "
    "the same folder as `packages-dir`, and upload the artifact from the build job with "
    "`path: dist/`."
)
# A folder without distributions most often means no build step ran before this one (or
# it wrote elsewhere); an artifact downloaded into another folder comes next.
NOTHING_BUILT_FIX = (
    "Build the distributions before this step: `python -m build` writes a wheel and an "
    "sdist into `dist/`, in this job or in the build job. If the build job made them, "
    + DOWNLOAD_ARTIFACT_HINT
)
_REBUILD = "Build the file again (`python -m build`) and check it with `twine check`."


class Blake2:
    """A file's BLAKE2b-256: a form field and the key of PyPI's file URL, which no decision
    before the first upload needs. The pass that sends the file computes it (`record`);
    whatever asks before that (a dry run, a file a refusal left unsent) has it computed
    then, once."""

    def __init__(self, path: Path, value: str | None = None) -> None:
        self._path = path
        self._value = value
        self._lock = threading.Lock()

    @property
    def value(self) -> str:
        with self._lock:
            if self._value is None:
                with self._path.open("rb") as file:
                    digest = hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=32))
                self._value = digest.hexdigest()
            return self._value

    def record(self, value: str) -> None:
        with self._lock:
            self._value = self._value or value


@dataclass(frozen=True)
class Distribution:
    path: Path
    display: str
    kind: str
    name: str
    version: str
    size: int
    sha256: str
    """Computed before the first upload: signing and the index's rules need it, and the
    upload checks every byte it sends against it."""
    blake2: Blake2
    package: PackageFile

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def blake2_256(self) -> str:
        return self.blake2.value


@dataclass(frozen=True)
class Release:
    """One version of one project and its files: what the index makes one release of.

    `files` keep the upload order: wheels first, so the first file to arrive (alone, and
    creating the release) is one that installs.
    """

    name: str
    """As the first file's metadata spells it."""
    version: str
    files: tuple[Distribution, ...]

    @property
    def project(self) -> str:
        """The name as the index compares it (PEP 503 normalised)."""
        from packaging.utils import canonicalize_name

        return canonicalize_name(self.name)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


def parse_version(text: str) -> Version | None:
    """`text` as a PEP 440 version, or None: not one, or too long to be one.

    packaging raises ValueError, not InvalidVersion, for a number past Python's
    4300-digit conversion limit; a tag or filename can carry one.
    """
    from packaging.version import Version

    try:
        return Version(text)
    except ValueError:
        return None


def release_of(filename: str) -> tuple[str, Version] | None:
    """The (normalised project, version) a wheel or sdist file name names, or None."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return str(name), version
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return str(name), version
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None
    return None


def canonical_version(version: str) -> str:
    """The version as PyPI files releases by it: `1.0` and `1.0.0` are one release."""
    from packaging.utils import canonicalize_version

    return canonicalize_version(version)


def named_releases(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """The releases the file names name, each once (versions compared as PyPI compares
    them), in the files' order: what the checks and requests that need a project and version
    start from, before any archive is read (reading checks that the names tell the truth)."""
    found: dict[tuple[str, str], str] = {}
    for path in paths:
        named = release_of(path.name)
        if named is not None:
            found.setdefault((named[0], canonical_version(str(named[1]))), str(named[1]))
    return [(project, version) for (project, _), version in found.items()]


def _several_versions(project: str, versions: Mapping[str, list[str]]) -> Problem:
    listed = "; ".join(
        f"{md_code(version)}: " + ", ".join(md_code(name) for name in names)
        for version, names in versions.items()
    )
    return Problem(
        "Several versions of one project",
        f"The folder holds {len(versions)} versions of {md_code(project)}: {listed}. A run "
        "publishes one version of each project; the others are most often a stale build "
        "left in the folder.",
        "Clean the folder before building (`rm -rf dist`), so that it holds only the version "
        "to publish.",
    )


def is_distribution(path: Path) -> bool:
    return path.is_file() and _named_as_distribution(path)


def _named_as_distribution(path: Path) -> bool:
    return path.name.endswith((".whl", ".tar.gz"))


def _not_a_file(path: Path) -> str | None:
    """What an entry is when it is no regular file (after its links); None for a file.

    Never opened: a FIFO would block the reader, a device would never end.
    """
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return LOOP
        if path.is_symlink():
            return "a link whose target does not exist"
        return f"unreadable ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((what for test, what in kinds if test(mode)), "not a regular file")


LOOP = "a link that leads back to itself (a loop)"


def _resolved(path: Path) -> Path | None:
    """`path` with its links followed; None when they loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # RuntimeError until Python 3.13, OSError after
        return None


@dataclass(frozen=True)
class Folder:
    """Where distributions are looked for, and how paths in it are shown."""

    workspace: Path

    def display(self, path: Path, *, follow: bool = True) -> str:
        """`path` relative to the workspace, with the bytes of its name that are not UTF-8
        shown as escapes; a link as where it leads, or (`follow=False`, or when it loops)
        where it lies."""
        lies = path.parent.resolve() / path.name
        where = (_resolved(path) or lies) if follow else lies
        try:
            return shown_name(where.relative_to(self.workspace.resolve()))
        except ValueError:
            return shown_name(path)

    def inside(self, path: Path) -> bool:
        resolved = _resolved(path)
        return resolved is not None and resolved.is_relative_to(self.workspace.resolve())


def locate(folder: Path, workspace: Path, reporter: Reporter) -> list[Path]:
    """The distribution files in `folder`, wheels first; one nested folder is followed."""
    place = Folder(workspace)
    if _resolved(folder) is None:
        raise NoDistributions(
            f"`packages-dir` {md_code(place.display(folder))} is {LOOP}.",
            fix="Point `packages-dir` at the folder that holds the distributions, or make the "
            "link point at it.",
        )
    if not place.inside(folder):
        # Its contents are not listed: they may be anything on the runner.
        raise InvalidInput(
            "Input `packages-dir` leads out of the workspace "
            f"({md_code(str(folder.resolve()))}); only the checkout's files are published.",
            fix="Set `packages-dir` to a folder inside the workspace, such as `dist`.",
        )
    shown = md_code(place.display(folder))
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise NoDistributions(
            f"`packages-dir` {shown} {what}.",
            fix="Build or download the distributions into that folder before this step, or "
            f"point `packages-dir` at them. {DOWNLOAD_ARTIFACT_HINT}",
        )
    entries = sorted(folder.iterdir())
    found = [p for p in entries if is_distribution(p)]
    if not found:
        nested = [
            d
            for d in entries
            if d.is_dir() and place.inside(d) and any(map(is_distribution, d.iterdir()))
        ]
        if len(nested) == 1:
            inner = md_code(place.display(nested[0]))
            reporter.add(
                Diagnostic(
                    Level.NOTICE,
                    "Distributions found one folder down",
                    f"{shown} holds no distributions but {inner} does, as "
                    "`actions/download-artifact` makes when the artifact kept its folder; "
                    "uploading those.",
                    fix="Set "
                    + md_code(f"packages-dir: {place.display(nested[0])}")
                    + " to make this explicit.",
                )
            )
            folder, shown = nested[0], inner
            entries = sorted(folder.iterdir())
            found = [p for p in entries if is_distribution(p)]
        elif nested:
            names = ", ".join(md_code(place.display(d)) for d in nested)
            raise NoDistributions(
                f"{shown} holds no distributions itself, but several folders inside it do: "
                f"{names}.",
                fix="Set `packages-dir` to the one folder to publish.",
            )
    _refuse_what_is_no_file(entries, place)
    _ignore_attestations(entries, reporter)
    others = [
        p
        for p in entries
        if p.is_file() and not is_distribution(p) and not p.name.endswith(ATTESTATION_SUFFIX)
    ]
    if not found:
        raise NoDistributions(_empty_reason(shown, others), fix=NOTHING_BUILT_FIX)
    if others:
        names = ", ".join(md_code(p.name) for p in others[:10])
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        reporter.add(
            Diagnostic(
                Level.NOTICE,
                "Files that are not distributions were left out",
                f"Only `*.whl` and `*.tar.gz` files are uploaded; ignored: {names}{more}.",
            )
        )
    return sorted(found, key=lambda p: (not p.name.endswith(".whl"), p.name))


def _refuse_what_is_no_file(entries: Sequence[Path], place: Folder) -> None:
    """An entry named as a distribution that is no file (a FIFO, a device, a link to nothing
    or in a loop) is refused by name: leaving it out would publish the release without it."""
    problems = [
        Problem(
            "Not a file",
            f"{md_code(place.display(entry, follow=False))} is {what}, not a distribution file.",
            "Remove it from `packages-dir`, or put the file it stands for in its place: a "
            "build or `actions/download-artifact` writes regular files.",
            place.display(entry, follow=False),
        )
        for entry in entries
        if _named_as_distribution(entry) and (what := _not_a_file(entry))
    ]
    if problems:
        raise DistributionsRejected(problems)


def _ignore_attestations(entries: Sequence[Path], reporter: Reporter) -> None:
    """Attestation files an earlier step left are never uploaded, and never fail the run."""
    stale = [p for p in entries if p.name.endswith(ATTESTATION_SUFFIX)]
    if stale:
        reporter.add(
            Diagnostic(
                Level.NOTICE,
                "Attestation files in the folder were ignored",
                f"{len(stale)} `*{ATTESTATION_SUFFIX}` file(s), left by an earlier step, are "
                "not uploaded: this action makes its own attestations, outside the workspace.",
            )
        )


def _empty_reason(shown: str, others: list[Path]) -> str:
    if not others:
        return f"`packages-dir` {shown} is empty."
    names = ", ".join(md_code(p.name) for p in others[:10])
    legacy = [p.name for p in others if p.name.endswith((".zip", ".egg", ".exe", ".tar.bz2"))]
    extra = (
        " PyPI accepts only wheels and `.tar.gz` sdists: build with `python -m build`."
        if legacy
        else ""
    )
    return f"`packages-dir` {shown} holds no `*.whl` or `*.tar.gz` files, only {names}.{extra}"


def read(run: Run) -> list[Release]:
    """The run's distributions, read, hashed and checked in a log group of their own, each
    logged with its digests when `print-hash` is on."""
    reporter, inputs = run.reporter, run.inputs
    with reporter.group("Checking distributions"):
        releases = load(
            run.target.paths,
            workspace=run.context.workspace,
            verify_metadata=inputs.verify_metadata,
            pypi_rules=run.index.is_pypi or run.index.is_testpypi,
            reporter=reporter,
        )
        for dist in (dist for release in releases for dist in release.files):
            reporter.log(f"{dist.display} ({dist.name} {dist.version}, {dist.size} bytes)")
            if inputs.print_hash:
                reporter.log(f"  sha256:      {dist.sha256}")
    return releases


def log_blake2(run: Run, dists: Sequence[Distribution]) -> None:
    """Each file's BLAKE2b-256, with `print-hash`, once the uploads computed them (a file
    that was not sent is hashed now)."""
    if run.inputs.print_hash:
        with run.reporter.group("BLAKE2b-256 digests"):
            for dist in dists:
                run.reporter.log(f"{dist.display}: {dist.blake2_256}")


def load(
    paths: list[Path],
    *,
    workspace: Path,
    verify_metadata: bool,
    pypi_rules: bool,
    reporter: Reporter,
) -> list[Release]:
    """Read, hash and check every file; raise with every problem found, or return them all,
    grouped into releases in the order they are published."""
    place = Folder(workspace)
    problems: list[Problem] = []
    dists: list[Distribution] = []
    for path in paths:
        shown = place.display(path)
        try:
            if not place.inside(path):
                raise _Unreadable(
                    "Link out of the workspace",
                    f"{md_code(shown)} is a link to a file outside the workspace.",
                    "Copy the file into `packages-dir` instead of linking to it.",
                )
            _check_archive(path)
            dist = _read(path, shown)
        except _Unreadable as error:
            problems.append(Problem(error.title, str(error), error.fix, shown))
            continue
        file_problems = _check_filename(dist, pypi_rules)
        if verify_metadata and not file_problems:
            file_problems += _check_description(dist, reporter)
        problems += file_problems
        dists.append(dist)

    grouped = group(dists)
    problems += _check_releases(grouped)
    if problems:
        raise DistributionsRejected(problems)
    return grouped


def group(dists: Sequence[Distribution]) -> list[Release]:
    """The files as releases, in the order to publish them.

    A release goes after the releases of this run that it requires (a plugin after its
    library), so that each one installs the moment it appears; otherwise by name. Files
    keep their order within a release.
    """
    from packaging.utils import canonicalize_name

    by_release: dict[Key, list[Distribution]] = {}
    for dist in dists:
        key = (str(canonicalize_name(dist.name)), canonical_version(dist.version))
        by_release.setdefault(key, []).append(dist)
    releases = {
        key: Release(files[0].name, files[0].version, tuple(files))
        for key, files in by_release.items()
    }
    projects = {key[0]: key for key in releases}
    needs = {
        key: {
            projects[required]
            for dist in release.files
            for required in _required(dist)
            if required in projects and required != key[0]
        }
        for key, release in releases.items()
    }
    return [releases[key] for key in _publishing_order(needs)]


def new_projects_first(releases: Sequence[Release], new: Set[str]) -> list[Release]:
    """The releases of `new` projects (normalised names: those the index does not have)
    first, then the others, each in the order they had.

    A trusted publisher's token cannot create a project: the index refuses its first file.
    Going first, that refusal comes before anything of the run is on the index.
    """
    return sorted(releases, key=lambda release: release.project not in new)


def _required(dist: Distribution) -> list[str]:
    """The projects `dist` always requires (normalised): a requirement under an extra
    (`; extra == "plugins"`) is optional, so it orders nothing."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = []
    for line in dist.package.metadata_dictionary().get("requires_dist") or ():
        try:
            requirement = Requirement(str(line))
        except InvalidRequirement:
            continue
        marker = requirement.marker
        # The marker's words outside its quoted values: `extra` is one of its variables.
        if marker is None or not _EXTRA.search(_QUOTED.sub("", str(marker))):
            names.append(str(canonicalize_name(requirement.name)))
    return names


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_EXTRA = re.compile(r"\bextra\b")


def _publishing_order(needs: Mapping[Key, set[Key]]) -> list[Key]:
    """Each key after the keys it needs, otherwise in sorted order, in rounds: all that are
    ready, sorted, then the next. Keys in a cycle (each needing the others, at some remove)
    form a group that goes as one, sorted inside: the cycle is broken there and nowhere
    else, so every other key keeps its order."""
    from graphlib import TopologicalSorter

    keys = sorted(needs)
    reach = {key: _reachable(key, needs) for key in keys}
    group_of = {
        key: tuple(
            other for other in keys if other == key or (other in reach[key] and key in reach[other])
        )
        for key in keys
    }
    groups = sorted(set(group_of.values()))
    sorter = TopologicalSorter(
        {g: sorted({group_of[n] for key in g for n in needs[key]} - {g}) for g in groups}
    )
    sorter.prepare()  # the groups' graph has no cycle left
    order: list[Key] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order += [key for g in ready for key in g]
        sorter.done(*ready)
    return order


def _reachable(start: Key, needs: Mapping[Key, set[Key]]) -> set[Key]:
    """Every key `start` needs, directly or through others."""
    seen: set[Key] = set()
    pending = list(needs[start])
    while pending:
        key = pending.pop()
        if key not in seen:
            seen.add(key)
            pending.extend(needs.get(key, ()))
    return seen


def _check_releases(releases: Sequence[Release]) -> list[Problem]:
    """What makes a set of releases unpublishable as a whole: a project in two versions (a
    stale build left in the folder), a release with two sdists."""
    problems: list[Problem] = []
    versions: dict[str, list[Release]] = {}
    for release in releases:
        versions.setdefault(release.project, []).append(release)
    problems += [
        _several_versions(same[0].name, {r.version: [d.filename for d in r.files] for r in same})
        for same in versions.values()
        if len(same) > 1
    ]
    for release in releases:
        sdists = [d for d in release.files if d.kind == SDIST]
        if len(sdists) > 1:
            problems.append(
                Problem(
                    "More than one sdist",
                    f"PyPI accepts one sdist per release; {md_code(release.label)} has "
                    + ", ".join(md_code(d.filename) for d in sdists)
                    + ".",
                    "Keep one sdist: clean the folder before building.",
                    sdists[1].display,
                )
            )
    return problems


class _Unreadable(Exception):
    def __init__(self, title: str, message: str, fix: str = _REBUILD) -> None:
        super().__init__(message)
        self.title = title
        self.fix = fix


def _corrupt(shown: str, error: Exception) -> _Unreadable:
    return _Unreadable(
        "Unreadable distribution",
        f"{md_code(shown)} is not a readable archive ({type(error).__name__}); it may be "
        "truncated or corrupt.",
    )


def _check_archive(path: Path) -> None:
    """Refuse archives that would make reading their metadata unsafe, from headers alone."""
    import tarfile
    import zipfile

    shown = md_code(path.name)
    try:
        if path.name.endswith(".whl"):
            with zipfile.ZipFile(path) as archive:
                members = [(i.filename, i.file_size) for i in archive.infolist()]
            metadata = [(n, s) for n, s in members if "METADATA" in n or n.endswith("/WHEEL")]
        else:
            members = []
            total = 0
            with tarfile.open(path, "r|gz") as archive:
                for member in archive:
                    members.append((member.name, member.size))
                    total += member.size
                    if PurePosixPath(member.name).name == "PKG-INFO":
                        # Refused at its header: going on to the next member would
                        # decompress all the bytes it declares.
                        _refuse_oversized(shown, member.name, member.size)
                    if total > MAX_SDIST_UNPACKED_BYTES:
                        raise _Unreadable(
                            "Archive too large when unpacked",
                            f"{shown} declares more than "
                            f"{MAX_SDIST_UNPACKED_BYTES // 1024**3} GiB of contents.",
                        )
            metadata = [(n, s) for n, s in members if PurePosixPath(n).name == "PKG-INFO"]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise _corrupt(path.name, e) from None
    if not members:
        raise _Unreadable("Empty distribution", f"{shown} is an archive with nothing in it.")
    unsafe = [n for n, _ in members if n.startswith(("/", "\\")) or ".." in PurePosixPath(n).parts]
    if unsafe:
        raise _Unreadable(
            "Unsafe paths in the archive",
            f"{shown} has members with absolute or parent-folder paths, such as "
            f"{md_code(unsafe[0])}; no build backend writes those.",
        )
    for name, size in metadata:
        _refuse_oversized(shown, name, size)


def _refuse_oversized(shown: str, name: str, size: int) -> None:
    if size > MAX_METADATA_BYTES:
        raise _Unreadable(
            "Metadata too large",
            f"{shown} declares its metadata file {md_code(name)} to be {size} bytes "
            f"unpacked, more than the {MAX_METADATA_BYTES // 1024**2} MiB any real "
            "project needs; it is not read.",
        )


def _read(path: Path, shown: str) -> Distribution:
    import tarfile
    import zipfile

    from twine.exceptions import InvalidDistribution

    try:
        package = _package(path)
        with path.open("rb") as file:
            sha256 = hashlib.file_digest(file, "sha256")
    except InvalidDistribution as error:
        message = str(error).replace(str(path.resolve()), shown).replace(str(path), shown)
        raise _Unreadable(
            "Unreadable distribution", f"{md_code(shown)} cannot be uploaded: {md_code(message)}"
        ) from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
        raise _corrupt(shown, e) from None
    return Distribution(
        path=path,
        display=shown,
        kind=package.filetype,
        name=package.metadata["name"],
        version=package.metadata["version"],
        size=path.stat().st_size,
        sha256=sha256.hexdigest(),
        blake2=Blake2(path),
        package=package,
    )


def _package(path: Path) -> PackageFile:
    """twine's PackageFile for `path`, its metadata read and checked as twine reads it,
    without the digests twine's constructor computes: the action computes each digest once,
    when something needs it, and the upload's form carries them."""
    from twine.package import PackageFile, _safe_name

    class Package(PackageFile):
        # Everything PackageFile's constructor sets (twine 7, pinned), but its digests.
        def __init__(
            self,
            filename: str,
            comment: str | None,
            metadata: Any,
            python_version: str,
            filetype: str,
        ) -> None:
            self.filename = filename
            self.basefilename = Path(filename).name
            self.comment = comment
            self.metadata = metadata
            self.python_version = python_version
            self.filetype = filetype
            self.safe_name = _safe_name(metadata["name"])
            self.version = metadata["version"]
            self.signed_filename = filename + ".asc"
            self.signed_basefilename = self.basefilename + ".asc"
            self.gpg_signature = None
            self.attestations = None
            self.sha2_digest = None
            self.blake2_256_digest = None

    return Package.from_filename(str(path), comment=None)


def _check_filename(dist: Distribution, pypi_rules: bool) -> list[Problem]:
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

    rebuild = "Rebuild with a current build backend (`python -m build`); do not rename built files."
    shown = dist.display
    try:
        dist.filename.encode("utf-8")
    except UnicodeEncodeError:
        # packaging reads such bytes into a wheel's tags without complaint; the upload's
        # form could not carry the name.
        return [
            Problem(
                "Invalid distribution filename",
                f"{md_code(dist.filename)} has bytes in its name that are not UTF-8, "
                "which no index takes in a file name.",
                rebuild,
                shown,
            )
        ]
    try:
        if dist.kind == WHEEL:
            name, version, _, tags = parse_wheel_filename(dist.filename)
        else:
            name, version = parse_sdist_filename(dist.filename)
            tags = frozenset()
    except ValueError as error:  # the name is not one, or its version is too long to be one
        return [
            Problem(
                "Invalid distribution filename",
                f"{md_code(dist.filename)} is not a valid distribution filename: "
                f"{md_code(str(error))}.",
                rebuild,
                shown,
            )
        ]
    metadata_version = parse_version(dist.version)
    if metadata_version is None:
        return [
            Problem(
                "Invalid version in the metadata",
                f"The metadata version {md_code(dist.version)} is not a valid version.",
                rebuild,
                shown,
            )
        ]
    problems: list[Problem] = []
    if canonicalize_name(dist.name) != name or metadata_version != version:
        problems.append(
            Problem(
                "Filename does not match the metadata",
                f"The filename says {md_code(f'{name} {version}')} but the metadata inside "
                f"says {md_code(f'{dist.name} {dist.version}')}.",
                rebuild,
                shown,
            )
        )
    if pypi_rules:
        bad = sorted({t.platform for t in tags if t.platform.startswith("linux_")})
        if bad:
            problems.append(
                Problem(
                    "Platform tag PyPI refuses",
                    f"PyPI refuses wheels with the platform tag {md_code(bad[0])}: they only "
                    "run on the machine that built them.",
                    "Repair the wheel to a `manylinux` tag with `auditwheel repair`, or build "
                    "it with cibuildwheel.",
                    shown,
                )
            )
    return problems


def _check_description(dist: Distribution, reporter: Reporter) -> list[Problem]:
    """PyPI renders the long description and refuses reStructuredText that fails to."""
    import email.message

    metadata = dist.package.metadata_dictionary()
    description = metadata.get("description")
    content_type = metadata.get("description_content_type") or "text/x-rst"
    message = email.message.EmailMessage()
    message["content-type"] = content_type
    if not description or description.rstrip() == "UNKNOWN":
        reporter.add(
            Diagnostic(
                Level.WARNING,
                "No long description",
                f"{md_code(dist.filename)} has no long description; the PyPI page will be empty.",
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
            Problem(
                "Description does not render",
                "The long description is reStructuredText that does not render, so PyPI "
                f"would refuse the upload: {md_code(report)}",
                "Fix the markup in the README (check it with `twine check --strict`), or set "
                '`readme = {file = "README.md", content-type = "text/markdown"}`.',
                dist.display,
            )
        ]
    return []
