"""Distributions as an attacker could craft them: refused from their headers, on the file.

Every archive here is made in a few kB; the sizes it declares are what a bomb would
declare. Nothing may read such a member, and every refusal is a problem on its file,
never an internal error.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oidc_publish import dists
from oidc_publish.errors import (
    DistributionsRejected,
    InvalidInput,
    Level,
    NoDistributions,
    Problem,
)
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from tests.localindex.dists import make_release, make_sdist, make_wheel

GIB = 1024**3
WHEEL = "sample_project-1.0.0-py3-none-any.whl"
SDIST = "sample_project-1.0.0.tar.gz"
# Far above what reading a few small archives takes, far below what reading a GiB would.
MEMORY_BOUND = 32 * 1024 * 1024


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    (workspace / "dist").mkdir(parents=True)
    return workspace


def reporter(workspace: Path) -> Reporter:
    context = RunnerContext.from_env({"GITHUB_WORKSPACE": str(workspace)})
    return Reporter(context, io.StringIO())


def releases(paths: list[Path], workspace: Path) -> list[dists.Release]:
    return dists.load(
        paths,
        workspace=workspace,
        verify_metadata=True,
        pypi_rules=True,
        reporter=reporter(workspace),
    )


def load(paths: list[Path], workspace: Path) -> list[dists.Distribution]:
    return [dist for release in releases(paths, workspace) for dist in release.files]


def problems(paths: list[Path], workspace: Path) -> list[Problem]:
    """The problems `load` finds, within a bounded amount of memory."""
    tracemalloc.start()
    try:
        with pytest.raises(DistributionsRejected) as rejected:
            load(paths, workspace)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated"
    return rejected.value.problems


def the_problem(path: Path, workspace: Path) -> Problem:
    [problem] = problems([path], workspace)
    assert problem.file == f"dist/{path.name}"
    assert path.name in problem.message
    return problem


# --- crafted archives -------------------------------------------------------------------


def _central_directory(data: bytes) -> Iterator[tuple[int, str]]:
    """(offset, name) of each central directory entry, read from the end record."""
    end = data.rindex(b"PK\x05\x06")
    count, _, offset = struct.unpack_from("<HII", data, end + 10)
    for _ in range(count):
        assert data[offset : offset + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        yield offset, data[offset + 46 : offset + 46 + name_len].decode()
        offset += 46 + name_len + extra_len + comment_len


def declare_size(wheel: Path, member: str, size: int) -> None:
    """Make `member` of `wheel` declare `size` bytes unpacked, in its local header and in
    the central directory, as a zip bomb does; its data stays a few bytes."""
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as archive:
        local = archive.getinfo(member).header_offset
    struct.pack_into("<I", data, local + 22, size)
    [central] = [offset for offset, name in _central_directory(bytes(data)) if name == member]
    struct.pack_into("<I", data, central + 24, size)
    wheel.write_bytes(bytes(data))


def sdist_declaring(dest: Path, member: str, size: int) -> Path:
    """An sdist whose first member's header declares `size` bytes; a few follow, then it ends."""
    info = tarfile.TarInfo(member)
    info.size = size
    info.mode = 0o644
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    dest.write_bytes(gzip.compress(header + b"Metadata-Version: 2.1\n" * 10, mtime=0))
    return dest


def tar_gz(dest: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(dest, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return dest


# --- bounded memory ---------------------------------------------------------------------


def test_a_wheel_declaring_a_gibibyte_of_metadata_is_refused_unread(workspace: Path) -> None:
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    declare_size(wheel, "sample_project-1.0.0.dist-info/METADATA", GIB)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.getinfo("sample_project-1.0.0.dist-info/METADATA").file_size == GIB

    problem = the_problem(wheel, workspace)

    assert problem.title == "Metadata too large"
    assert f"{GIB} bytes" in problem.message
    assert "`sample_project-1.0.0.dist-info/METADATA`" in problem.message
    assert f"{dists.MAX_METADATA_BYTES // 1024**2} MiB" in problem.message


def test_a_wheel_whose_wheel_file_is_oversized_is_refused_too(workspace: Path) -> None:
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    declare_size(wheel, "sample_project-1.0.0.dist-info/WHEEL", dists.MAX_METADATA_BYTES + 1)

    assert the_problem(wheel, workspace).title == "Metadata too large"


def test_metadata_at_the_cap_is_read(workspace: Path) -> None:
    # The cap refuses what is over it, not a large honest description.
    description = "x" * (dists.MAX_METADATA_BYTES - 4096)
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0", description=description)

    [dist] = load([wheel], workspace)

    assert dist.filename == WHEEL


def test_an_sdist_declaring_a_gibibyte_pkg_info_is_refused_from_its_tar_header(
    workspace: Path,
) -> None:
    sdist = sdist_declaring(workspace / "dist" / SDIST, "sample_project-1.0.0/PKG-INFO", GIB)
    assert sdist.stat().st_size < 4096

    problem = the_problem(sdist, workspace)

    assert problem.title == "Metadata too large"
    assert f"{GIB} bytes" in problem.message
    assert "`sample_project-1.0.0/PKG-INFO`" in problem.message


# --- archives that are not what they claim ------------------------------------------------


def test_an_empty_wheel_is_named_as_such(workspace: Path) -> None:
    wheel = workspace / "dist" / WHEEL
    zipfile.ZipFile(wheel, "w").close()

    problem = the_problem(wheel, workspace)

    assert problem.title == "Empty distribution"
    assert "nothing in it" in problem.message


def test_an_empty_sdist_is_named_as_such(workspace: Path) -> None:
    sdist = tar_gz(workspace / "dist" / SDIST, {})

    problem = the_problem(sdist, workspace)

    assert problem.title == "Empty distribution"


def test_a_zero_byte_file_is_unreadable_not_an_internal_error(workspace: Path) -> None:
    wheel, sdist = workspace / "dist" / WHEEL, workspace / "dist" / SDIST
    wheel.write_bytes(b"")
    sdist.write_bytes(b"")

    found = problems([wheel, sdist], workspace)

    assert [(p.title, p.file) for p in found] == [
        ("Unreadable distribution", f"dist/{WHEEL}"),
        ("Unreadable distribution", f"dist/{SDIST}"),
    ]


@pytest.mark.parametrize("member", ["/etc/cron.d/evil", "../../evil.py", "pkg/../../evil.py"])
def test_a_wheel_with_an_absolute_or_parent_path_is_refused(workspace: Path, member: str) -> None:
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr(zipfile.ZipInfo(member), b"evil")

    problem = the_problem(wheel, workspace)

    assert problem.title == "Unsafe paths in the archive"
    assert f"`{member}`" in problem.message


@pytest.mark.parametrize("member", ["/usr/lib/evil", "sample_project-1.0.0/../../evil"])
def test_an_sdist_with_an_absolute_or_parent_path_is_refused(workspace: Path, member: str) -> None:
    good = make_sdist(workspace / "elsewhere", "sample-project", "1.0.0")
    with tarfile.open(good) as archive:
        members = {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }
    sdist = tar_gz(workspace / "dist" / SDIST, {**members, member: b"evil"})

    problem = the_problem(sdist, workspace)

    assert problem.title == "Unsafe paths in the archive"
    assert f"`{member}`" in problem.message


def test_every_bad_file_is_a_problem_of_its_own_and_good_ones_pass(workspace: Path) -> None:
    wheel, sdist = make_release(workspace)
    declare_size(wheel, "sample_project-1.0.0.dist-info/METADATA", GIB)

    found = problems([wheel, sdist], workspace)

    assert [(p.title, p.file) for p in found] == [("Metadata too large", f"dist/{WHEEL}")]


# --- the workspace's edges ----------------------------------------------------------------


def test_a_link_to_a_wheel_outside_the_workspace_is_refused(
    workspace: Path, tmp_path: Path
) -> None:
    outside = make_wheel(tmp_path / "elsewhere", "sample-project", "1.0.0")
    link = workspace / "dist" / WHEEL
    link.symlink_to(outside)

    [found] = dists.locate(workspace / "dist", workspace, reporter(workspace))
    [problem] = problems([found], workspace)

    assert problem.title == "Link out of the workspace"
    assert WHEEL in problem.message
    assert str(outside.parent) not in problem.message
    assert problem.file is not None
    assert problem.file.endswith(f"dist/{WHEEL}")


def test_a_link_inside_the_workspace_is_fine(workspace: Path) -> None:
    real = make_wheel(workspace / "build", "sample-project", "1.0.0")
    (workspace / "dist" / WHEEL).symlink_to(real)

    [dist] = load(dists.locate(workspace / "dist", workspace, reporter(workspace)), workspace)

    assert dist.filename == WHEEL


@pytest.mark.parametrize("folder", ["..", "/etc", "dist/../.."])
def test_packages_dir_out_of_the_workspace_is_refused_without_listing_it(
    workspace: Path, tmp_path: Path, folder: str
) -> None:
    (tmp_path / "private-key.pem").write_text("secret")
    make_wheel(tmp_path, "sample-project", "1.0.0")
    target = (workspace / folder).resolve()
    contents = ["private-key.pem", WHEEL] if target == tmp_path else ["passwd", "hostname"]
    assert all((target / name).exists() for name in contents)

    with pytest.raises(InvalidInput) as refused:
        dists.locate(workspace / folder, workspace, reporter(workspace))

    message = refused.value.message
    assert "leads out of the workspace" in message
    assert f"`{target}`" in message
    assert not [name for name in contents if name in message]
    assert "`packages-dir`" in message


def test_packages_dir_linked_out_of_the_workspace_is_refused(
    workspace: Path, tmp_path: Path
) -> None:
    make_release(tmp_path / "outside")
    (workspace / "linked").symlink_to(tmp_path / "outside" / "dist")

    with pytest.raises(InvalidInput) as refused:
        dists.locate(workspace / "linked", workspace, reporter(workspace))

    assert "leads out of the workspace" in refused.value.message
    assert ".whl" not in refused.value.message


def test_a_nested_folder_linked_out_of_the_workspace_is_not_followed(
    workspace: Path, tmp_path: Path
) -> None:
    make_release(tmp_path / "outside")
    (workspace / "dist" / "artifact").symlink_to(tmp_path / "outside" / "dist")

    with pytest.raises(NoDistributions) as empty:
        dists.locate(workspace / "dist", workspace, reporter(workspace))

    assert ".whl`" not in empty.value.message


def test_stale_attestation_files_are_ignored_with_one_notice(workspace: Path) -> None:
    wheel, sdist = make_release(workspace)
    for path in (wheel, sdist):
        (path.parent / f"{path.name}{dists.ATTESTATION_SUFFIX}").write_text("{}")
    report = reporter(workspace)

    found = dists.locate(workspace / "dist", workspace, report)

    assert found == [wheel, sdist]
    [notice] = report.diagnostics
    assert notice.level is Level.NOTICE
    assert notice.title == "Attestation files in the folder were ignored"
    assert notice.message.startswith("2 `*.publish.attestation` file(s)")


# --- what is in the folder ----------------------------------------------------------------


def test_a_missing_packages_dir_is_named_with_the_download_artifact_hint(
    workspace: Path,
) -> None:
    with pytest.raises(NoDistributions) as missing:
        dists.locate(workspace / "wheelhouse", workspace, reporter(workspace))

    assert "`packages-dir` `wheelhouse` does not exist." in missing.value.message
    assert "download-artifact" in missing.value.fix


def test_a_folder_of_other_files_names_them_and_what_pypi_takes(workspace: Path) -> None:
    (workspace / "dist" / "sample_project-1.0.0.zip").write_bytes(b"PK")
    (workspace / "dist" / "notes.txt").write_text("hi")

    with pytest.raises(NoDistributions) as empty:
        dists.locate(workspace / "dist", workspace, reporter(workspace))

    assert "`notes.txt`" in empty.value.message
    assert "`sample_project-1.0.0.zip`" in empty.value.message
    assert "only wheels and `.tar.gz` sdists" in empty.value.message


@pytest.mark.parametrize(
    "legacy", [None, "sample_project-1.0.0-py3.11.egg", "sample_project-1.0.0.zip"]
)
def test_a_folder_without_distributions_names_the_build_step_then_the_artifact(
    workspace: Path, legacy: str | None
) -> None:
    if legacy:
        (workspace / "dist" / legacy).write_bytes(b"PK")

    with pytest.raises(NoDistributions) as empty:
        dists.locate(workspace / "dist", workspace, reporter(workspace))

    fix = empty.value.fix
    assert fix.startswith("Build the distributions before this step: `python -m build`")
    assert fix.index("python -m build") < fix.index("actions/download-artifact")
    assert "same folder as `packages-dir`" in fix


def test_one_nested_folder_is_followed_with_a_notice(workspace: Path) -> None:
    wheel = make_wheel(workspace / "dist" / "dist", "sample-project", "1.0.0")
    report = reporter(workspace)

    assert dists.locate(workspace / "dist", workspace, report) == [wheel]

    [notice] = report.diagnostics
    assert notice.title == "Distributions found one folder down"
    assert "`dist/dist`" in notice.message
    assert "`packages-dir: dist/dist`" in notice.fix


def test_files_that_are_not_distributions_are_one_notice(workspace: Path) -> None:
    make_release(workspace)
    (workspace / "dist" / "checksums.txt").write_text("x")
    (workspace / "dist" / "sample_project-1.0.0.tar.gz.asc").write_text("sig")
    report = reporter(workspace)

    assert len(dists.locate(workspace / "dist", workspace, report)) == 2

    [notice] = report.diagnostics
    assert notice.title == "Files that are not distributions were left out"
    assert "`checksums.txt`" in notice.message
    assert "`sample_project-1.0.0.tar.gz.asc`" in notice.message


def test_a_description_pypi_would_refuse_is_checked_only_when_asked(workspace: Path) -> None:
    wheel = make_wheel(
        workspace / "dist",
        "sample-project",
        "1.0.0",
        description="Title\n=====\n\n.. broken:: directive\n\n`unclosed",
        description_content_type="text/x-rst",
    )

    [problem] = problems([wheel], workspace)
    unchecked = dists.load(
        [wheel],
        workspace=workspace,
        verify_metadata=False,
        pypi_rules=True,
        reporter=reporter(workspace),
    )

    assert (problem.title, problem.file) == ("Description does not render", f"dist/{WHEEL}")
    assert [d.filename for r in unchecked for d in r.files] == [WHEEL]


def test_a_distribution_whose_name_is_not_utf8_is_refused_with_the_name_shown(
    workspace: Path,
) -> None:
    # packaging takes `any\xff` for a platform tag; the upload's form could not carry it.
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    odd = Path(
        os.fsdecode(os.fsencode(wheel.parent) + b"/sample_project-1.0.0-py3-none-any\xff.whl")
    )
    wheel.rename(odd)

    [problem] = problems([odd], workspace)

    assert problem.title == "Invalid distribution filename"
    assert problem.file == "dist/sample_project-1.0.0-py3-none-any\\xff.whl"
    assert problem.message.startswith("`sample_project-1.0.0-py3-none-any\\xff.whl` has bytes")
    assert "not UTF-8" in problem.message


# Several projects in one folder.


def monorepo(workspace: Path) -> list[Path]:
    """A library and its plugin, an sdist and a wheel each; the plugin sorts first by name
    and requires the library."""
    dist = workspace / "dist"
    requires = {"Requires-Dist": "zlib-core>=2"}
    return [
        make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides=requires),
        make_wheel(dist, "zlib-core", "2.0.0"),
        make_sdist(dist, "a-plugin", "0.3.0", metadata_overrides=requires),
        make_sdist(dist, "zlib-core", "2.0.0"),
    ]


def test_projects_become_releases_each_after_the_releases_it_requires(workspace: Path) -> None:
    monorepo(workspace)
    found = dists.locate(workspace / "dist", workspace, reporter(workspace))

    grouped = releases(found, workspace)

    assert [(r.name, r.version) for r in grouped] == [("zlib-core", "2.0.0"), ("a-plugin", "0.3.0")]
    assert [[d.filename for d in r.files] for r in grouped] == [
        ["zlib_core-2.0.0-py3-none-any.whl", "zlib_core-2.0.0.tar.gz"],
        ["a_plugin-0.3.0-py3-none-any.whl", "a_plugin-0.3.0.tar.gz"],
    ]


def test_releases_that_require_nothing_of_each_other_go_by_name(workspace: Path) -> None:
    dist = workspace / "dist"
    paths = [make_wheel(dist, "b-sdk", "1.0"), make_wheel(dist, "a-sdk", "3.1")]

    assert [r.label for r in releases(paths, workspace)] == ["a-sdk 3.1", "b-sdk 1.0"]


def test_a_dependency_under_an_extra_is_no_ordering_edge(workspace: Path) -> None:
    dist = workspace / "dist"
    optional = {"Requires-Dist": 'a-plugin[fast]>=0.3; extra == "plugins"'}
    paths = [
        make_wheel(dist, "core", "2.0.0", metadata_overrides=optional),
        make_wheel(dist, "a-plugin", "0.3.0", metadata_overrides={"Requires-Dist": "core>=2"}),
    ]

    assert [r.label for r in releases(paths, workspace)] == ["core 2.0.0", "a-plugin 0.3.0"]


def test_a_cycle_is_broken_inside_its_group_and_the_rest_keeps_its_order(
    workspace: Path,
) -> None:
    dist = workspace / "dist"

    def wheel(name: str, *requires: str) -> Path:
        overrides = {"Requires-Dist": requires[0]} if requires else None
        return make_wheel(dist, name, "1.0", metadata_overrides=overrides)

    # a-x and b-y require each other; each other release requires one outside its own name
    # order.
    paths = [
        wheel("aa-app", "a-x"),
        wheel("a-x", "b-y"),
        wheel("b-y", "a-x>=1"),
        wheel("a-user", "zz-lib"),
        wheel("zz-lib"),
    ]

    assert [r.name for r in releases(paths, workspace)] == [
        "a-x",
        "b-y",
        "zz-lib",
        "a-user",
        "aa-app",
    ]


def test_projects_the_index_does_not_have_go_first_each_group_in_its_order(
    workspace: Path,
) -> None:
    dist = workspace / "dist"
    paths = [
        make_wheel(dist, "core", "1.0"),
        make_wheel(dist, "b-plugin", "1.0", metadata_overrides={"Requires-Dist": "core"}),
        make_wheel(dist, "new-lib", "1.0"),
        make_wheel(dist, "a-new-plugin", "1.0", metadata_overrides={"Requires-Dist": "new-lib"}),
    ]
    grouped = releases(paths, workspace)
    assert [r.name for r in grouped] == ["core", "new-lib", "a-new-plugin", "b-plugin"]

    ordered = dists.new_projects_first(grouped, {"new-lib", "a-new-plugin"})

    assert [r.name for r in ordered] == ["new-lib", "a-new-plugin", "core", "b-plugin"]


def test_one_sdist_per_release_is_fine_and_two_in_one_release_name_that_release(
    workspace: Path,
) -> None:
    paths = monorepo(workspace)
    assert len(releases(paths, workspace)) == 2

    second = make_sdist(workspace / "dist", "zlib-core", "2.0.0", filename="zlib-core-2.0.0.tar.gz")
    [problem] = problems([*paths, second], workspace)

    assert problem.title == "More than one sdist"
    assert "`zlib-core 2.0.0` has" in problem.message
    assert "`zlib-core-2.0.0.tar.gz`" in problem.message
    assert "a_plugin" not in problem.message


def test_two_versions_of_one_project_name_each_version_and_its_files(workspace: Path) -> None:
    dist = workspace / "dist"
    paths = [
        *monorepo(workspace),
        make_wheel(dist, "zlib-core", "1.9.0"),
        make_sdist(dist, "zlib-core", "1.9.0"),
    ]

    [problem] = problems(paths, workspace)

    assert problem.title == "Several versions of one project"
    assert "2 versions of `zlib-core`" in problem.message
    assert "`1.9.0`: `zlib_core-1.9.0-py3-none-any.whl`, `zlib_core-1.9.0.tar.gz`" in (
        problem.message
    )
    assert "`2.0.0`: `zlib_core-2.0.0-py3-none-any.whl`" in problem.message
    assert "rm -rf dist" in problem.fix


def test_a_name_with_a_version_of_thousands_of_digits_is_no_release_and_no_crash() -> None:
    # No file system takes such a name, but an index's listing can hold one.
    name = f"sample_project-{'9' * 5000}-py3-none-any.whl"

    assert dists.release_of(name) is None
    assert dists.named_releases([Path(name)]) == []
    assert dists.parse_version("9" * 5000) is None


# --- entries that are not files -------------------------------------------------------------


def fifo(entry: Path) -> None:
    os.mkfifo(entry)


def device(entry: Path) -> None:
    entry.symlink_to("/dev/null")


def dangling(entry: Path) -> None:
    entry.symlink_to(entry.parent / "gone.whl")


def looping(entry: Path) -> None:
    entry.symlink_to(entry)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (fifo, "a named pipe (FIFO)"),
        (device, "a device"),
        (dangling, "a link whose target does not exist"),
        (looping, "a link that leads back to itself (a loop)"),
    ],
    ids=["fifo", "device", "dangling-link", "looping-link"],
)
@pytest.mark.parametrize("name", ["extra-1.0.0-py3-none-any.whl", "extra-1.0.0.tar.gz"])
def test_an_entry_named_as_a_distribution_that_is_no_file_is_refused_by_name(
    workspace: Path, make: Callable[[Path], None], what: str, name: str
) -> None:
    make_release(workspace)
    make(workspace / "dist" / name)

    with pytest.raises(DistributionsRejected) as rejected:
        dists.locate(workspace / "dist", workspace, reporter(workspace))

    [problem] = rejected.value.problems
    assert problem.title == "Not a file"
    assert problem.file == f"dist/{name}"
    assert f"`dist/{name}` is {what}" in problem.message
    assert "Remove it" in problem.fix


def test_a_packages_dir_that_is_a_looping_link_is_named_not_an_internal_error(
    workspace: Path,
) -> None:
    (workspace / "loop").symlink_to(workspace / "loop")

    with pytest.raises(NoDistributions) as refused:
        dists.locate(workspace / "loop", workspace, reporter(workspace))

    assert refused.value.message == (
        "`packages-dir` `loop` is a link that leads back to itself (a loop)."
    )


def test_versions_equal_as_pypi_compares_them_are_one_release(workspace: Path) -> None:
    dist = workspace / "dist"
    paths = [make_wheel(dist, "sample-project", "1.0"), make_sdist(dist, "sample-project", "1.0.0")]

    [release] = releases(paths, workspace)

    assert release.label == "sample-project 1.0"
    assert [d.filename for d in release.files] == [paths[0].name, paths[1].name]
    assert dists.named_releases(paths) == [("sample-project", "1.0")]
