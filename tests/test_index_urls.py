"""What the upload URL says about the index behind it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from oidc_publish.index_urls import PYPI_UPLOAD, TESTPYPI_UPLOAD, Index


def test_pypi_addresses() -> None:
    pypi = Index(PYPI_UPLOAD)
    assert pypi.is_pypi
    assert pypi.audience_url == "https://upload.pypi.org/_/oidc/audience"
    assert pypi.mint_url == "https://upload.pypi.org/_/oidc/mint-token"
    assert pypi.simple_url == "https://pypi.org/simple/"
    assert (
        pypi.release_url("sample-project", "1.0") == "https://pypi.org/project/sample-project/1.0/"
    )


def test_testpypi_addresses() -> None:
    test = Index(TESTPYPI_UPLOAD)
    assert test.is_testpypi
    assert test.simple_url == "https://test.pypi.org/simple/"
    assert test.release_url("x", "1") == "https://test.pypi.org/project/x/1/"


def test_other_index_has_no_release_page_and_a_sibling_simple_api() -> None:
    other = Index("https://127.0.0.1:8443/legacy/")
    assert other.release_url("x", "1") is None
    assert other.simple_url == "https://127.0.0.1:8443/simple/"
    assert (
        other.project_simple_url("sample-project")
        == "https://127.0.0.1:8443/simple/sample-project/"
    )


def test_publisher_form_is_prefilled() -> None:
    url = Index(PYPI_UPLOAD).publisher_form_url("sample", "octo", "repo", "release.yml", "pypi")
    assert url is not None
    parts = urlsplit(url)
    assert parts.path == "/manage/project/sample/settings/publishing/"
    query = parse_qs(parts.query)
    assert query == {
        "provider": ["github"],
        "owner": ["octo"],
        "repository": ["repo"],
        "workflow_filename": ["release.yml"],
        "environment": ["pypi"],
    }


def test_pypi_file_urls_follow_from_the_blake2_digest() -> None:
    digest = "69acb06b2d9d27ced376b819aa69f9853749179ebce7253629103ab3576d21dd"
    assert Index(PYPI_UPLOAD).file_url("x-1.0-py3-none-any.whl", digest) == (
        "https://files.pythonhosted.org/packages/69/ac/"
        "b06b2d9d27ced376b819aa69f9853749179ebce7253629103ab3576d21dd/x-1.0-py3-none-any.whl"
    )
    assert Index(TESTPYPI_UPLOAD).file_url("x.tar.gz", digest) is not None
    assert Index("https://127.0.0.1:8443/legacy/").file_url("x.tar.gz", digest) is None
