"""The one notice that points API-token users to trusted publishing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from oidc_publish.diagnosis import password_notice
from oidc_publish.index_urls import PYPI_UPLOAD, TESTPYPI_UPLOAD, Index
from oidc_publish.runner import RunnerContext


def context(**changes: object) -> RunnerContext:
    fields: dict[str, object] = {
        "event_name": "push",
        "event": {},
        "server_url": "https://github.com",
        "repository": "octo-org/sample-project",
        "workflow_ref": "octo-org/sample-project/.github/workflows/release.yml@refs/tags/v1",
        "ref": "refs/tags/v1",
        "workspace": Path(),
        "can_request_id_token": False,
        "summary_path": None,
        "output_path": None,
    }
    fields.update(changes)
    return RunnerContext(**fields)  # type: ignore[arg-type]


def test_api_token_on_pypi_gets_a_prefilled_publisher_link() -> None:
    notice = password_notice(context(), Index(PYPI_UPLOAD), "sample-project")

    assert notice is not None
    assert notice.level == "notice"
    link = next(word for word in notice.fix.split() if word.startswith("https://"))
    parts = urlsplit(link)
    assert parts.netloc == "pypi.org"
    assert parts.path == "/manage/project/sample-project/settings/publishing/"
    query = parse_qs(parts.query)
    assert query["owner"] == ["octo-org"]
    assert query["repository"] == ["sample-project"]
    assert query["workflow_filename"] == ["release.yml"]


def test_testpypi_link_goes_to_testpypi() -> None:
    notice = password_notice(context(), Index(TESTPYPI_UPLOAD), "sample-project")
    assert notice is not None
    assert "https://test.pypi.org/manage/project/sample-project/" in notice.fix


def test_no_notice_where_trusted_publishing_could_not_work() -> None:
    pypi = Index(PYPI_UPLOAD)
    assert password_notice(context(), Index("https://devpi.example/acme/"), "x") is None
    assert password_notice(context(server_url="https://ghe.example"), pypi, "x") is None
    assert password_notice(context(event_name="pull_request_target"), pypi, "x") is None
