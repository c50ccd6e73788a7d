"""Rules a release must meet, checked before anything is uploaded.

The rules are pure functions:

- ``check_tag``: a workflow run for a tag publishes the version the tag names.
- ``check_index_rules``: what the index's project page (``simple_api.ProjectPage``) says
  the index will refuse: an archived or quarantined project (PEP 792, any index that reports
  it), and on PyPI and TestPyPI a new file for a release older than 14 days or a second
  sdist. These are Warehouse's own rules, so other indexes are not held to them.

The run's steps apply them: `check_names` (the file names and the tag), `read_pages` (each
project's page, read beside the rest), `obey` (the index's rules, every release) and
`upload_order` (projects the index does not have first).

Every error names the tag, input or file concerned and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import Version

from oidc_publish.dists import parse_version, release_of
from oidc_publish.errors import (
    ActionError,
    ProjectNotAcceptingUploads,
    ReleaseTooOld,
    SecondSdist,
    VersionTagMismatch,
)
from oidc_publish.runner import md_code
from oidc_publish.simple_api import ARCHIVED, QUARANTINED, IndexedFile, ProjectPage

if TYPE_CHECKING:
    from oidc_publish.dists import Release
    from oidc_publish.index import IndexClient
    from oidc_publish.index_urls import Index
    from oidc_publish.network import Pending
    from oidc_publish.run import Run

TAG_PREFIX = "refs/tags/"
# PyPI refuses new files for a release older than this.
NEW_FILES_WINDOW = timedelta(days=14)
_SEPARATORS = re.compile(r"[-_./@]")
_LEADING_NON_DIGITS = re.compile(r"^[^0-9]*")
_DIGITS_AND_DOTS = re.compile(r"[0-9][0-9.]*")


def _ignore(_: str) -> None:
    pass


# The tag.


def version_in_tag(ref: str, project: str) -> Version | None:
    """The version a tag ref names, or None: not a tag, or no version in it.

    A leading `<project>` and separator (`-`, `/`, `@`, ...; the name compared normalised,
    so `my_pkg-1.0` and `My.Pkg-1.0` count for `my-pkg`) and then any leading non-digits
    (`v`, `release-`) are taken off; what is left must be a whole PEP 440 version.
    """
    if not ref.startswith(TAG_PREFIX):
        return None
    _, rest = _readings(ref[len(TAG_PREFIX) :], [project])[0]
    return _version_of(rest)


def _readings(tag: str, projects: Sequence[str]) -> list[tuple[str | None, str]]:
    """Every way to read the tag, as (project, rest): one per project whose name and a
    separator start it, the longest name first, then the whole tag, naming no project.

    A dot is a separator too, so `v2.0` reads as project `v2` and `0`, or as no project and
    `v2.0`. A reading is dropped when a longer project's name ends before its version
    begins: `lib-plugin-v2` names `lib-plugin`, never `lib` with the prefix `plugin-v`, and
    `lib-v2` names `lib`, never no project.
    """
    wanted = {canonicalize_name(p): p for p in projects}
    # (project, where its name ends, where the rest begins); the whole tag names none.
    candidates: list[tuple[str | None, int, int]] = [
        (wanted[prefix], separator.start(), separator.end())
        for separator in _SEPARATORS.finditer(tag)
        if (prefix := canonicalize_name(tag[: separator.start()])) in wanted
    ]
    ends = [end for _, end, _ in candidates]
    candidates = [*reversed(candidates), (None, 0, 0)]
    readings: list[tuple[str | None, str]] = []
    for project, end, start in candidates:
        rest = tag[start:]
        digits = start + len(rest) - len(_LEADING_NON_DIGITS.sub("", rest, count=1))
        if not any(end < other < digits for other in ends):
            readings.append((project, rest))
    return readings


def _version_of(text: str) -> Version | None:
    return parse_version(_LEADING_NON_DIGITS.sub("", text, count=1))


@dataclass(frozen=True)
class _Reading:
    """One reading of the tag, and what it says of the run's releases."""

    named: str | None
    tagged: Version | None
    number: str
    """The rest without its leading non-digits: what had to parse as the version."""
    checked: list[tuple[str, str]]
    differ: list[tuple[str, str]]

    @classmethod
    def of(cls, named: str | None, rest: str, releases: Sequence[tuple[str, str]]) -> _Reading:
        checked = [r for r in releases if named and r[0] == named] or list(releases)
        tagged = _version_of(rest)
        # A version that is not PEP 440: the distribution checks or the index will say so.
        differ = [(n, v) for n, v in checked if (p := parse_version(v)) is not None and p != tagged]
        return cls(named, tagged, _LEADING_NON_DIGITS.sub("", rest, count=1), checked, differ)

    def describe(self, *, single: bool) -> str:
        if self.named and not single:
            return f"{self.named} {self.tagged}"
        return f"version {self.tagged}" if single else f"every release at version {self.tagged}"


def check_tag(
    ref: str,
    releases: Sequence[tuple[str, str]],
    *,
    debug: Callable[[str], None] = _ignore,
) -> None:
    """Raise ``VersionTagMismatch`` if no reading of the tag `ref` names the run's version.

    `ref` is `GITHUB_REF`; `releases` are the run's (project, version) pairs. A tag that
    names a project (`<project>-v1.2`, `<project>/v1.2`, `<project>@1.2`) is checked against
    that project's version; a tag that names none must name the version of every release
    (projects released in lockstep). A tag may be read several ways (`lib-2.0` as `lib`
    2.0, as `lib-2` 0, or as no project and 2.0): it passes when any reading matches. Not a
    tag: nothing to check. A tag with no version in it (such as `nightly`): one debug line,
    no check. The caller skips this under `verify-tag: false`.
    """
    if not ref.startswith(TAG_PREFIX) or not releases:
        return
    tag = ref[len(TAG_PREFIX) :]
    readings = [
        _Reading.of(named, rest, releases)
        for named, rest in _readings(tag, [name for name, _ in releases])
    ]
    versioned = [r for r in readings if r.tagged is not None]
    if any(not r.differ for r in versioned):
        return
    if not versioned:
        listed = ", ".join(f"{name} {version}" for name, version in readings[0].checked)
        if any(_DIGITS_AND_DOTS.fullmatch(r.number) for r in readings):
            # Made of a version's characters, yet too long to be one: a guard that cannot
            # compare must not pass the release.
            raise VersionTagMismatch(
                f"This run is for the tag {md_code(tag)}, whose version is too long to be "
                f"one; the run publishes {listed}.",
                fix="Tag the commit with the version it builds, or set `verify-tag: false` if "
                "this tag is not meant to name the version.",
            )
        debug(f"The tag {md_code(tag)} holds no version; not comparing it with {listed}.")
        return
    first, *others = versioned
    single = len(releases) == 1
    also = {
        r.describe(single=single)
        for r in others
        if r.describe(single=single) != first.describe(single=single)
    }
    besides = f" (read another way: {', '.join(sorted(also))}; none matches)" if also else ""
    tagged = first.tagged
    if single:
        ((project, version),) = releases
        raise VersionTagMismatch(
            f"This run is for the tag {md_code(tag)}, which names version {tagged}"
            f"{besides}, but the distributions are {project} {version}.",
            fix=f"Set the version to {tagged} and build again, or tag the commit whose version "
            f"is {version} (`v{version}`). Most often the tag was pushed before the version "
            "was bumped, or the build used a stale `dist/` folder: build in the same workflow "
            "run, into an empty folder. If this tag is not meant to name the version, set "
            "`verify-tag: false`.",
        )
    every = ", ".join(md_code(f"{name} {version}") for name, version in releases)
    named_here = (
        f"which names {first.named} {tagged}"
        if first.named
        else f"which names no project, so every release must be version {tagged}"
    )
    raise VersionTagMismatch(
        f"This run is for the tag {md_code(tag)}, {named_here}{besides}; the run publishes "
        f"{every}.",
        fix="Tag each project's release with its name (`<project>-v<version>`, "
        "`<project>/v<version>` or `<project>@<version>`) and publish it in that tag's run, "
        "or give every project the tagged version; if the tag is not meant to name the "
        "versions, set `verify-tag: false`.",
    )


# The index's rules.


def check_index_rules(
    page: ProjectPage | None,
    release_files: Mapping[str, str],
    now: datetime,
    *,
    project: str,
    version: str,
    index: Index,
) -> list[ActionError]:
    """What the index will refuse about this upload, most fundamental first; empty if nothing.

    `page` is the project's page (None when the index would not say: nothing to check);
    `release_files` maps each file name to upload to its sha256; `now` is in UTC.
    The caller raises the first error and reports the others' diagnostics.
    """
    if page is None:
        return []
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    errors: list[ActionError] = []
    status = _status_error(page, project, index)
    if status:
        errors.append(status)
    if not (index.is_pypi or index.is_testpypi):
        return errors
    released = {
        name: indexed
        for name, indexed in page.files.items()
        if release_of(name) == (canonicalize_name(project), _version(version))
    }
    new = [name for name in release_files if name not in page.files]
    too_old = _too_old(released, new, now, project=project, version=version, index=index)
    if too_old:
        errors.append(too_old)
    second = _second_sdist(released, release_files, project=project, version=version, index=index)
    if second:
        errors.append(second)
    return errors


def _status_error(page: ProjectPage, project: str, index: Index) -> ActionError | None:
    if page.status not in (ARCHIVED, QUARANTINED):
        return None
    where = _project_page(index, project)
    because = (
        f" The index gives the reason: {md_code(page.status_reason)}" if page.status_reason else ""
    )
    if page.status == ARCHIVED:
        fix = (
            f"If the project should take releases again, an owner can unarchive it in its "
            f"settings on {index.display_name} ({where}), then re-run this job."
        )
    else:
        fix = (
            f"Only {index.display_name}'s administrators can lift a quarantine; the project's "
            f"owners hear from them by email. See {where}, and re-run this job once the "
            "quarantine is lifted."
        )
    return ProjectNotAcceptingUploads(
        f"{index.display_name} marks the project {md_code(project)} as "
        f"{md_code(page.status)}, and refuses "
        f"new files for it.{because}",
        fix=fix,
    )


def _too_old(
    released: Mapping[str, IndexedFile],
    new: list[str],
    now: datetime,
    *,
    project: str,
    version: str,
    index: Index,
) -> ActionError | None:
    times = [f.upload_time for f in released.values() if f.upload_time is not None]
    if not new or not times:
        return None
    first = min(times)
    if now - first <= NEW_FILES_WINDOW:
        return None
    names = ", ".join(md_code(name) for name in new)
    return ReleaseTooOld(
        f"{project} {version} was first uploaded to {index.display_name} on "
        f"{first:%Y-%m-%d} ({(now - first).days} days ago), and {index.display_name} refuses "
        f"new files for releases older than 14 days; this upload would add {names}.",
        fix=f"Publish these files under a new version: bump it (for example to "
        f"{_post_release(version)} if only the packaging changed), tag that, and build again. "
        "Files already on the index can be uploaded again as they are.",
    )


def _second_sdist(
    released: Mapping[str, IndexedFile],
    release_files: Mapping[str, str],
    *,
    project: str,
    version: str,
    index: Index,
) -> ActionError | None:
    ours = [name for name in release_files if _is_sdist(name)]
    theirs = sorted(name for name in released if _is_sdist(name) and name not in ours)
    if not ours or not theirs:
        return None
    return SecondSdist(
        f"{project} {version} on {index.display_name} already has the sdist "
        f"{md_code(theirs[0])}, so "
        f"{md_code(ours[0])} cannot be added: {index.display_name} allows one sdist per release.",
        fix=f"Leave {md_code(ours[0])} out of this upload (upload the wheels only), or "
        "publish a new "
        "version. The names differ when the build backend changed how it names sdists, as "
        "setuptools 69.3 did (`my_project-1.0.tar.gz`, formerly `my-project-1.0.tar.gz`).",
    )


def _is_sdist(filename: str) -> bool:
    return filename.endswith((".tar.gz", ".zip"))


def _version(version: str) -> Version | str:
    return parse_version(version) or version


def _post_release(version: str) -> str:
    parsed = parse_version(version)
    if parsed is None or parsed.dev is not None:
        return "a new version"
    if parsed.post is not None:
        return f"{parsed.base_version}.post{parsed.post + 1}"
    return f"{parsed.public}.post1"


def _project_page(index: Index, project: str) -> str:
    web = index.web
    name = canonicalize_name(project)
    return f"{web}/project/{name}/" if web else index.project_simple_url(name)


# The run's steps.


def check_names(run: Run, named: Sequence[tuple[str, str]]) -> None:
    """What the file names alone show to be wrong, found before the first upload: a project
    in several versions, most often a stale build (every file is read now, and every
    problem reported at once), and a tag that names another version."""
    from oidc_publish.dists import read

    if len({project for project, _ in named}) < len(named):
        read(run)
    if run.inputs.verify_tag:
        check_tag(run.context.ref, named, debug=run.reporter.debug)


def read_pages(
    holdings: IndexClient, named: Sequence[tuple[str, str]]
) -> dict[str, Pending[ProjectPage | None]]:
    """Each project's page on the index, read in a thread of its own beside the run."""
    from functools import partial

    from oidc_publish.network import Pending

    return {
        project: Pending(partial(holdings.project_page, project), f"{project}'s page")
        for project in dict.fromkeys(project for project, _ in named)
    }


def obey(
    run: Run, pages: Mapping[str, Pending[ProjectPage | None]], releases: Sequence[Release]
) -> None:
    """What the index would refuse, found before the first upload; every finding reported,
    each naming its release."""
    now = datetime.fromtimestamp(run.world.wall(), UTC)
    refusals = []
    for release in releases:
        page = pages.get(release.project)
        refusals += check_index_rules(
            page.result() if page else None,
            {d.filename: d.sha256 for d in release.files},
            now,
            project=release.name,
            version=release.version,
            index=run.index,
        )
    if refusals:
        for other in refusals[1:]:
            for diagnostic in other.diagnostics():
                run.reporter.add(diagnostic)
        raise refusals[0]


def upload_order(
    run: Run,
    releases: Sequence[Release],
    pages: Mapping[str, Pending[ProjectPage | None]],
    holdings: IndexClient,
) -> list[Release]:
    """The releases in the order to upload them: those of a project the index does not have
    first. Its page answered 404, and still does now the token exchange is done (a pending
    publisher creates its project at the mint): if the index refuses it, nothing of the run
    is on the index."""
    from oidc_publish.dists import new_projects_first

    if len(releases) < 2:
        return list(releases)

    def missing(page: ProjectPage | None) -> bool:
        return page is not None and not page.exists

    absent = [
        r.project for r in releases if r.project in pages and missing(pages[r.project].result())
    ]
    new = {project for project in absent if missing(holdings.project_page(project))}
    order = new_projects_first(releases, new)
    rank = {release.label: position for position, release in enumerate(order)}
    publication = run.publication
    publication.releases = sorted(publication.releases, key=lambda r: rank[r.label])
    return order
