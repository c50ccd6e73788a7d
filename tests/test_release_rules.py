"""The rules checked before the first upload: the tag against the version, and what the
index's project page says it will refuse. In-process; the index is an httpx.MockTransport."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from packaging.version import Version

from oidc_publish.errors import (
    ProjectNotAcceptingUploads,
    ReleaseTooOld,
    SecondSdist,
    VersionTagMismatch,
    catalogue,
)
from oidc_publish.index import IndexClient
from oidc_publish.index_urls import PYPI_UPLOAD, TESTPYPI_UPLOAD, Index
from oidc_publish.network import MAX_PAGE_BYTES, RetryPolicy
from oidc_publish.release_rules import check_index_rules, check_tag, version_in_tag
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from oidc_publish.simple_api import (
    JSON_ONLY,
    IndexedFile,
    ProjectPage,
    parse,
    parse_project_page,
)

PYPI = Index(PYPI_UPLOAD)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WHEEL = "pkg-1.0.0-py3-none-any.whl"
SDIST = "pkg-1.0.0.tar.gz"
OURS = {WHEEL: "a" * 64, SDIST: "b" * 64}

# The tag.


@pytest.mark.parametrize(
    "tag", ["v1.0.0", "1.0", "pkg-1.0.0", "release-1.0.0", "v1", "PKG_1.0.0", "pkg/v1.0.0"]
)
def test_a_tag_naming_the_version_passes(tag: str) -> None:
    check_tag(f"refs/tags/{tag}", [("pkg", "1.0.0")])


def test_the_version_is_found_after_a_project_name_holding_digits() -> None:
    assert version_in_tag("refs/tags/py3status-2.1", "py3status") == Version("2.1")
    check_tag("refs/tags/py3status-2.1", [("py3status", "2.1.0")])


def test_a_tag_without_a_version_is_not_checked_and_says_so_once() -> None:
    said: list[str] = []
    check_tag("refs/tags/nightly", [("pkg", "1.0.0")], debug=said.append)
    assert version_in_tag("refs/tags/nightly", "pkg") is None
    assert len(said) == 1
    assert "nightly" in said[0]


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/pull/3/merge", ""])
def test_a_run_not_for_a_tag_is_not_checked(ref: str) -> None:
    check_tag(ref, [("pkg", "1.0.0")])
    assert version_in_tag(ref, "pkg") is None


def test_a_tag_naming_another_version_is_an_error_naming_both_and_the_fix() -> None:
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag("refs/tags/v1.0.1", [("pkg", "1.0.0")])
    error = caught.value
    assert error.title == "The tag and the version differ"
    assert "v1.0.1" in error.message
    assert "1.0.0" in error.message
    assert "tag the commit" in error.fix
    assert "stale `dist/`" in error.fix
    assert "`verify-tag: false`" in error.fix


# The tag and several releases.

LIB = ("mylib", "1.4.0")
PLUGIN = ("mylib-plugin", "0.3.0")


@pytest.mark.parametrize(
    "tag", ["mylib-plugin-v0.3.0", "mylib-plugin/v0.3.0", "mylib_plugin@0.3.0", "MyLib.Plugin-0.3"]
)
def test_a_tag_naming_a_project_is_checked_against_that_project_only(tag: str) -> None:
    check_tag(f"refs/tags/{tag}", [LIB, PLUGIN])


@pytest.mark.parametrize("tag", ["mylib-v1.4.0", "mylib/v1.4", "mylib@1.4.0"])
def test_the_longest_project_name_wins_so_the_library_is_not_taken_for_its_plugin(
    tag: str,
) -> None:
    check_tag(f"refs/tags/{tag}", [PLUGIN, LIB])
    with pytest.raises(VersionTagMismatch):
        check_tag(f"refs/tags/{tag}", [PLUGIN, ("mylib", "1.5.0")])


def test_a_tag_naming_a_project_with_another_version_lists_every_release_and_both_fixes() -> None:
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag("refs/tags/mylib-plugin-v0.4.0", [LIB, PLUGIN])
    error = caught.value
    assert "`mylib 1.4.0`" in error.message
    assert "`mylib-plugin 0.3.0`" in error.message
    assert "which names mylib-plugin 0.4.0; the run publishes" in error.message
    assert "<project>-v<version>" in error.fix
    assert "`verify-tag: false`" in error.fix


def test_a_tag_naming_no_project_must_name_every_release_version() -> None:
    check_tag("refs/tags/v2.0.0", [("core", "2.0.0"), ("core-stubs", "2.0")])
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag("refs/tags/v1.4.0", [LIB, PLUGIN])
    assert "names no project, so every release must be version 1.4.0" in caught.value.message


@pytest.mark.parametrize(
    ("tag", "releases"),
    [
        # `v2` and `.0`, or no project and version 2.0: the second reading matches.
        ("v2.0", [("v2", "2.0")]),
        # `lib-2` and `.0`, `lib` and `2.0`, or no project: `lib 2.0` matches.
        ("lib-2.0", [("lib", "2.0"), ("lib-2", "0.5")]),
        ("lib-2.0", [("lib-2", "0.5"), ("lib", "2.0.0")]),
    ],
)
def test_a_tag_passes_when_any_reading_of_it_matches(
    tag: str, releases: list[tuple[str, str]]
) -> None:
    check_tag(f"refs/tags/{tag}", releases)


def test_a_tag_is_refused_only_when_no_reading_matches() -> None:
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag("refs/tags/lib-2.0", [("lib", "1.0"), ("lib-2", "0.5")])
    assert (
        "which names lib-2 0 (read another way: lib 2.0; none matches); the run publishes"
        in caught.value.message
    )
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag("refs/tags/v2.0", [("v2", "3.0")])
    assert (
        "which names version 0 (read another way: version 2.0; none matches), but the "
        "distributions are v2 3.0" in caught.value.message
    )


@pytest.mark.parametrize("tag", ["v" + "9" * 5000, "mylib-v" + "1" * 5000 + ".0"])
def test_a_tag_with_thousands_of_digits_is_refused_not_passed_and_no_crash(tag: str) -> None:
    said: list[str] = []
    with pytest.raises(VersionTagMismatch) as caught:
        check_tag(f"refs/tags/{tag}", [LIB], debug=said.append)
    assert "whose version is too long to be one; the run publishes mylib 1.4.0" in (
        caught.value.message
    )
    assert "`verify-tag: false`" in caught.value.fix
    assert version_in_tag(f"refs/tags/{tag}", "mylib") is None


# The project page, as the index serves it.


def page_json(files: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"meta": {"api-version": "1.4"}, "name": "pkg", "files": files, **top}


def entry(
    filename: str, sha256: str = "0" * 64, uploaded: datetime | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "filename": filename,
        "url": f"../../packages/{filename}",
        "hashes": {"sha256": sha256},
    }
    if uploaded is not None:
        data["upload-time"] = uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return data


def page(files: list[dict[str, Any]], **top: Any) -> ProjectPage:
    url = "https://pypi.org/simple/pkg/"
    parsed = parse_project_page(url, json.dumps(page_json(files, **top)).encode())
    assert parsed is not None
    return parsed


def rules(
    project_page: ProjectPage | None, ours: dict[str, str] = OURS, index: Index = PYPI
) -> list[str]:
    errors = check_index_rules(project_page, ours, NOW, project="pkg", version="1.0.0", index=index)
    return [e.title for e in errors]


def test_a_release_first_uploaded_fifteen_days_ago_takes_no_new_file() -> None:
    old = page([entry(WHEEL, OURS[WHEEL], NOW - timedelta(days=15))])
    [error] = check_index_rules(old, OURS, NOW, project="pkg", version="1.0.0", index=PYPI)
    assert isinstance(error, ReleaseTooOld)
    assert error.title == "The release is too old for new files"
    assert "2026-02-14" in error.message
    assert SDIST in error.message
    assert WHEEL not in error.message  # already there: uploading it again is fine
    assert "1.0.0.post1" in error.fix


def test_a_naive_now_is_taken_as_utc() -> None:
    old = page([entry(WHEEL, OURS[WHEEL], NOW - timedelta(days=15))])
    naive = NOW.replace(tzinfo=None)
    errors = check_index_rules(old, OURS, naive, project="pkg", version="1.0.0", index=PYPI)
    assert [e.title for e in errors] == ["The release is too old for new files"]


def test_a_release_thirteen_days_old_still_takes_new_files() -> None:
    recent = page([entry(WHEEL, OURS[WHEEL], NOW - timedelta(days=13))])
    assert rules(recent) == []


def test_an_old_release_may_be_uploaded_again_as_it_is() -> None:
    old = NOW - timedelta(days=400)
    complete = page([entry(WHEEL, OURS[WHEEL], old), entry(SDIST, OURS[SDIST], old)])
    assert rules(complete) == []


def test_a_release_that_does_not_exist_takes_files_whatever_the_other_releases_age() -> None:
    others = page([entry("pkg-0.9.0.tar.gz", uploaded=NOW - timedelta(days=900))])
    assert rules(others) == []
    assert rules(ProjectPage()) == []  # a new project (404)


def test_the_release_age_is_that_of_its_first_file() -> None:
    mixed = page(
        [
            entry("pkg-1.0.0-cp312-cp312-manylinux_2_28_x86_64.whl", uploaded=NOW),
            entry("pkg-1.0-py2-none-any.whl", uploaded=NOW - timedelta(days=20)),
        ]
    )
    assert rules(mixed) == ["The release is too old for new files"]


def test_an_sdist_under_another_name_is_a_second_sdist() -> None:
    other = page([entry("pkg-1.0.0.zip", uploaded=NOW - timedelta(days=1))])
    [error] = check_index_rules(other, OURS, NOW, project="pkg", version="1.0.0", index=PYPI)
    assert isinstance(error, SecondSdist)
    assert error.title == "The release already has another sdist"
    assert "pkg-1.0.0.zip" in error.message
    assert SDIST in error.message
    assert "wheels only" in error.fix


def test_the_same_sdist_name_is_not_a_second_sdist() -> None:
    same = page([entry(SDIST, "c" * 64, NOW - timedelta(days=1))])
    assert rules(same) == []


def test_an_sdist_of_another_release_is_not_a_second_sdist() -> None:
    assert rules(page([entry("pkg-0.9.0.tar.gz", uploaded=NOW)])) == []


def test_uploading_only_wheels_beside_an_sdist_is_fine() -> None:
    assert rules(page([entry("Pkg-1.0.0.tar.gz", uploaded=NOW)]), {WHEEL: "a" * 64}) == []


@pytest.mark.parametrize("status", ["archived", "quarantined"])
def test_an_archived_or_quarantined_project_takes_no_uploads(status: str) -> None:
    marked = page([], **{"project-status": {"status": status, "reason": "by request"}})
    [error] = check_index_rules(marked, OURS, NOW, project="pkg", version="1.0.0", index=PYPI)
    assert isinstance(error, ProjectNotAcceptingUploads)
    assert error.title == "The project does not accept uploads"
    assert status in error.message
    assert "by request" in error.message
    assert "https://pypi.org/project/pkg/" in error.fix


@pytest.mark.parametrize(
    "top",
    [
        {"project-status": {"status": "active"}},
        {"project-status": {"status": "deprecated"}},
        {"project-status": {"status": "haunted"}},  # future statuses are ignored
        {},
    ],
)
def test_an_active_deprecated_or_unmarked_project_takes_uploads(top: dict[str, Any]) -> None:
    assert rules(page([], **top)) == []


def test_the_status_is_also_read_from_meta_as_the_specifications_example_shows() -> None:
    marked = parse_project_page(
        "https://pypi.org/simple/pkg/",
        json.dumps(
            {"meta": {"api-version": "1.4", "project-status": "Archived"}, "files": []}
        ).encode(),
    )
    assert marked is not None
    assert marked.status == "archived"


def test_the_status_holds_on_any_index_but_warehouse_rules_only_on_pypi() -> None:
    other = Index("https://pkgs.example.com/legacy/")
    old = NOW - timedelta(days=90)
    both = page(
        [entry("pkg-1.0.0.zip", uploaded=old)], **{"project-status": {"status": "archived"}}
    )
    assert rules(both, index=other) == ["The project does not accept uploads"]
    assert rules(both, index=Index(TESTPYPI_UPLOAD)) == [
        "The project does not accept uploads",
        "The release is too old for new files",
        "The release already has another sdist",
    ]


def test_no_page_means_nothing_to_check() -> None:
    assert rules(None) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"files": {}}',
        b'{"files": [{"filename": 3}]}',
        b'{"meta": {"api-version": "2.0"}, "files": []}',
        b"[" * 100_000,
    ],
)
def test_a_malformed_page_is_the_index_not_saying(body: bytes) -> None:
    assert parse_project_page("https://pypi.org/simple/pkg/", body) is None


def test_a_bad_upload_time_is_left_out_not_fatal() -> None:
    bad = page([{**entry(WHEEL), "upload-time": "yesterday"}])
    assert bad.files[WHEEL].upload_time is None


def test_the_existing_parser_keeps_working_and_gains_upload_times() -> None:
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = json.dumps(page_json([entry(WHEEL, "d" * 64, when)])).encode()
    files = parse("https://pypi.org/simple/pkg/", "application/vnd.pypi.simple.v1+json", body)
    assert files is not None
    assert files[WHEEL] == IndexedFile(
        "https://pypi.org/packages/" + WHEEL, "d" * 64, upload_time=when
    )
    html = b'<a href="/p/pkg-1.0.0.tar.gz#sha256=ee">pkg-1.0.0.tar.gz</a>'
    listed = parse("https://x/simple/pkg/", "text/html", html)
    assert listed is not None
    assert listed[SDIST].upload_time is None


@pytest.mark.parametrize("bad", ["https://[x/f.whl", "https://a]b/f.whl"])
def test_a_file_url_that_does_not_parse_is_left_out_with_one_debug_line(bad: str) -> None:
    said: list[str] = []
    html = f'<a href="{bad}">{WHEEL}</a><a href="/p/{SDIST}#sha256=ee">{SDIST}</a>'.encode()

    listed = parse("https://x/simple/pkg/", "text/html", html, debug=said.append)

    assert listed == {SDIST: IndexedFile(f"https://x/p/{SDIST}", "ee")}
    body = json.dumps(page_json([{**entry(WHEEL), "url": bad}, entry(SDIST)])).encode()
    project = parse_project_page("https://pypi.org/simple/pkg/", body, debug=said.append)
    assert project is not None
    assert list(project.files) == [SDIST]
    assert len(said) == 2
    assert all("1 file(s) whose URL does not parse" in line for line in said)


# The read itself.


NO_WAIT = RetryPolicy(attempts=3, sleep=lambda _: None)


def holdings(http: httpx.Client) -> IndexClient:
    return IndexClient(PYPI, http, NO_WAIT, Reporter(RunnerContext.from_env({}), io.StringIO()))


def read(handler: Callable[[httpx.Request], httpx.Response]) -> ProjectPage | None:
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return holdings(http).project_page("Pkg_Name")


def test_the_page_is_read_once_in_json_under_the_normalised_name() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            headers={"content-type": JSON_ONLY},
            json=page_json(
                [entry(WHEEL, uploaded=NOW)], **{"project-status": {"status": "archived"}}
            ),
        )

    result = read(handler)
    assert result is not None
    assert result.status == "archived"
    assert result.files[WHEEL].upload_time == NOW
    assert [str(r.url) for r in seen] == ["https://pypi.org/simple/pkg-name/"]
    assert seen[0].headers["accept"] == JSON_ONLY


def test_a_project_the_index_does_not_have_has_an_empty_page_that_says_so() -> None:
    assert read(lambda _: httpx.Response(404)) == ProjectPage(exists=False)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, headers={"content-type": "text/html"}, text="<a href='x'>x</a>"),
        httpx.Response(200, headers={"content-type": JSON_ONLY}, text="{not json"),
        httpx.Response(403),
        httpx.Response(503),
    ],
)
def test_an_answer_that_is_not_a_json_page_is_the_index_not_saying(
    response: httpx.Response,
) -> None:
    assert read(lambda _: response) is None


def test_a_connection_that_keeps_failing_is_the_index_not_saying() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    assert read(handler) is None
    assert calls == 3


def test_a_transient_failure_is_retried() -> None:
    answers = iter(
        [
            httpx.Response(502),
            httpx.Response(200, headers={"content-type": JSON_ONLY}, json=page_json([])),
        ]
    )
    assert read(lambda _: next(answers)) == ProjectPage()


def test_an_oversized_answer_is_not_read_whole() -> None:
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        # A page that never ends, with no Content-Length to go by.
        yield b'{"meta": {"api-version": "1.1"}, "files": ['
        while True:
            sent.append(1)
            yield b" " * 1024 * 1024

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": JSON_ONLY}, content=endless())

    assert read(handler) is None
    assert len(sent) * 1024 * 1024 <= MAX_PAGE_BYTES + 2 * 1024 * 1024


def test_the_new_errors_are_in_the_catalogue_with_distinct_codes() -> None:
    codes = [error.code for error in catalogue()]
    assert len(codes) == len(set(codes))
    for error in (VersionTagMismatch, ProjectNotAcceptingUploads, ReleaseTooOld, SecondSdist):
        assert error.code in codes
        assert codes.index(error.code) < codes.index("upload-rejected")


def test_a_listed_name_with_thousands_of_digits_is_no_release_of_ours_and_no_crash() -> None:
    huge = f"pkg-{'9' * 5000}-py3-none-any.whl"
    listed = page([entry(huge, uploaded=NOW - timedelta(days=30))])

    assert rules(listed) == []
