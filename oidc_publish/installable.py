"""Wait until the index lists every uploaded file, so the release is installable when the job ends.

An upload's 200 means the index stored the file; its simple API (and the CDN before it) may
list the file a little later. A job that installs the release right after publishing can
fail in between. ``wait_until_installable`` polls a fetch function with a growing delay until
every file is listed with its sha256, or the deadline passes, which is only a warning: the
upload itself succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oidc_publish.errors import Diagnostic, Level
from oidc_publish.runner import md_code
from oidc_publish.simple_api import IndexedFile

if TYPE_CHECKING:
    from oidc_publish.index import IndexClient
    from oidc_publish.run import Run

# Seconds; documented in the README with the `wait-until-installable` input.
DEFAULT_DEADLINE = 300.0
FIRST_DELAY = 1.0
GROWTH = 2.0
MAX_DELAY = 15.0


@dataclass(frozen=True)
class Waited:
    """How the wait ended."""

    # Seconds until every file was listed; None when the deadline passed first.
    seconds: float | None
    # Files not listed (with their sha256) at the last look that got an answer; every file
    # if no look did.
    missing: tuple[str, ...]
    looks: int
    # Looks the index answered; 0 means every look failed.
    answered: int

    @property
    def output(self) -> str:
        """The `installable-after` output: whole seconds, rounded up, or empty."""
        if self.seconds is None:
            return ""
        return str(int(-(-self.seconds // 1)))

    def warning(self, deadline: float, index_name: str) -> Diagnostic | None:
        """The warning to report when the deadline passed; None when the files were listed."""
        if self.seconds is not None:
            return None
        names = ", ".join(md_code(name) for name in self.missing)
        if self.answered == 0:
            seen = f"{index_name}'s simple API did not answer any of {self.looks} looks"
        else:
            seen = f"{index_name}'s simple API did not list {names} yet"
        return Diagnostic(
            Level.WARNING,
            "Uploaded, but not installable yet",
            f"After {deadline:.0f} seconds, {seen}. The upload succeeded; the index usually "
            "lists new files within minutes.",
            fix="A later job that installs this release should retry the install for a few "
            "minutes. If this happens every time, turn `wait-until-installable` off.",
        )


def _listed(files: Mapping[str, IndexedFile], name: str, sha256: str) -> bool:
    indexed = files.get(name)
    if indexed is None:
        return False
    # An index that publishes no hashes cannot say more than that the file is there.
    return indexed.sha256 is None or indexed.sha256.lower() == sha256.lower()


def wait_until_installable(
    fetch: Callable[[], dict[str, IndexedFile] | None],
    expected: Mapping[str, str],
    *,
    deadline: float = DEFAULT_DEADLINE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """Poll `fetch` until it lists every file of `expected` (file name -> sha256).

    `fetch` returns the index's listing, or None when a look failed (the wait goes on).
    The delay starts at one second and doubles up to fifteen; the last sleep ends at the
    deadline, and one last look is made there.
    """
    start = clock()
    missing = tuple(expected)
    delay = FIRST_DELAY
    looks = answered = 0
    while missing:
        files = fetch()
        looks += 1
        if files is not None:
            answered += 1
            missing = tuple(n for n, sha in expected.items() if not _listed(files, n, sha))
            if not missing:
                break
        remaining = deadline - (clock() - start)
        if remaining <= 0:
            return Waited(None, missing, looks, answered)
        sleep(min(delay, remaining))
        delay = min(delay * GROWTH, MAX_DELAY)
    return Waited(clock() - start, (), looks, answered)


def wait(run: Run, holdings: IndexClient) -> None:
    """The run's last step, with `wait-until-installable`: until the index lists every file
    on it from this run; past the deadline, or whatever ends it, is one warning."""
    from oidc_publish.report import advisory

    publication, reporter, world = run.publication, run.reporter, run.world
    on_index = {r.dist.filename: r.dist.sha256 for r in publication.results if r.outcome.on_index}
    projects = list(dict.fromkeys(r.dist.name for r in publication.results if r.outcome.on_index))

    def listed() -> dict[str, IndexedFile] | None:
        looks = [holdings.fresh_files(project) for project in projects]
        answered = [files for files in looks if files is not None]
        return {name: f for files in answered for name, f in files.items()} if answered else None

    title = "Waiting until the index lists every file"
    with advisory(reporter, title):
        with reporter.group(title):
            waited = wait_until_installable(
                listed, on_index, clock=world.monotonic, sleep=world.sleep
            )
        publication.waited_for_index = True
        publication.installable_after = waited.seconds
        warning = waited.warning(DEFAULT_DEADLINE, holdings.index.display_name)
        if warning:
            reporter.add(warning)
