"""PyPI's upload refusals turned into a title and a fix, by the words of its reason phrase."""

from __future__ import annotations

import time

import pytest

from oidc_publish.diagnosis import upload_refusal
from oidc_publish.index_urls import PYPI_UPLOAD, Index
from tests.localindex import pypi
from tests.localindex.oidc import Publisher

WHEEL = "sample_project-1.0.0-py3-none-any.whl"
# PyPI's two size limits, in warehouse's words (forklift/legacy.py).
FILE_TOO_LARGE = (
    "File too large. Limit for project 'sample-project' is 100 MB. "
    "See https://docs.pypi.org/project-management/storage-limits"
    "#requesting-a-file-size-limit-increase for more information"
)
PROJECT_TOO_LARGE = (
    "Project size too large. Limit for project 'sample-project' total size is 10 GB. "
    "See https://docs.pypi.org/project-management/storage-limits"
    "#requesting-a-project-size-limit-increase for more information"
)


def scoped_token_reason() -> str:
    """What the local PyPI answers a token scoped to another project, in warehouse's words."""
    publisher = Publisher("o", "r", "1", "release.yml", "pypi", projects=frozenset({"other"}))
    minted = pypi.MintedToken("pypi-x", time.time() + 900, publisher)
    with pytest.raises(pypi.Refusal) as refused:
        pypi.authorize(minted, "sample-project")
    return refused.value.reason


@pytest.mark.parametrize(
    ("code", "reason", "title", "fix_words"),
    [
        (
            400,
            "This filename was previously used by a file that has since been deleted. "
            "Use a different version.",
            "Filename previously used",
            "post-release",
        ),
        (400, FILE_TOO_LARGE, "File too large", "limit-request-file"),
        (400, PROJECT_TOO_LARGE, "Project too large", "project size increase"),
        (400, pypi.RELEASE_TOO_OLD, "Release too old for new files", "new version"),
        (400, pypi.NEW_PROJECT, "sample-project does not exist on PyPI", "pending publisher"),
        (
            403,
            "Read-only mode: Uploads are temporarily disabled.",
            "Index in read-only mode",
            "status.python.org",
        ),
        (
            400,
            "Invalid value for classifiers. Error: Classifier 'Foo :: Bar' is not valid.",
            "Metadata refused",
            "twine check",
        ),
        (
            400,
            "The description failed to render for 'text/x-rst'. See "
            "https://pypi.org/help/#description-content-type for more information.",
            "Metadata refused",
            "twine check",
        ),
        (403, scoped_token_reason(), "No trusted publisher on sample-project", "same publisher"),
        (
            403,
            "Invalid API Token: project-scoped token is not valid for project: 'sample-project'",
            "Token not allowed for this project",
            "scoped to this project",
        ),
        (
            403,
            "The user 'octo' isn't allowed to upload to project 'sample-project'. See "
            "https://pypi.org/help/#project-name for more information.",
            "Token not allowed for this project",
            "owns or maintains",
        ),
        (403, pypi.INVALID_AUTH, "Credentials refused", "__token__"),
        (400, pypi.ONE_SDIST, "A second sdist for this release", "one"),
        (400, pypi.DIGEST_MISMATCH, "The file changed in transit", "alters uploads"),
        (400, "Something new", "Upload refused", "index's reason"),
    ],
)
def test_a_refusal_is_titled_on_its_file_with_the_index_reason_quoted(
    code: int, reason: str, title: str, fix_words: str
) -> None:
    error = upload_refusal(
        Index(PYPI_UPLOAD), WHEEL, f"dist/{WHEEL}", code, reason, project="sample-project"
    )

    [diagnostic] = error.diagnostics()
    assert diagnostic.title == title
    assert diagnostic.file == f"dist/{WHEEL}"
    assert f"PyPI refused `{WHEEL}`: HTTP {code} " in diagnostic.message
    assert reason[:40] in diagnostic.message
    assert fix_words in diagnostic.fix


def test_the_scoped_token_reason_is_warehouses() -> None:
    assert scoped_token_reason().startswith(
        "Invalid API Token: OIDC scoped token is not valid for project 'sample-project'"
    )


def test_a_minted_token_refused_for_a_project_names_it_and_where_to_add_the_publisher() -> None:
    error = upload_refusal(
        Index(PYPI_UPLOAD),
        WHEEL,
        f"dist/{WHEEL}",
        403,
        scoped_token_reason(),
        project="sample-project",
    )

    [diagnostic] = error.diagnostics()
    assert diagnostic.title == "No trusted publisher on sample-project"
    assert (
        "Add the same publisher (owner, repository, workflow file and environment) to "
        "`sample-project` at https://pypi.org/manage/project/sample-project/settings/publishing/"
    ) in diagnostic.fix
    assert "pending publisher at https://pypi.org/manage/account/publishing/" in diagnostic.fix
    assert "one run at a time" in diagnostic.fix


def test_a_project_pypi_does_not_have_is_diagnosed_as_missing_not_as_a_misnamed_publisher() -> None:
    error = upload_refusal(
        Index(PYPI_UPLOAD),
        "my_plugin-1.0-py3-none-any.whl",
        "dist/my_plugin-1.0-py3-none-any.whl",
        400,
        pypi.NEW_PROJECT,
        project="My_Plugin",
    )

    [diagnostic] = error.diagnostics()
    assert diagnostic.title == "My_Plugin does not exist on PyPI"
    assert "HTTP 400 `Non-user identities cannot create new projects." in diagnostic.message
    assert "PyPI has no project `my-plugin`" in diagnostic.fix
    assert "a trusted publisher can create a project only through a pending publisher" in (
        diagnostic.fix
    )
    assert (
        "Add a pending publisher for the project `my-plugin`, with the same owner, "
        "repository, workflow file and environment, at https://pypi.org/manage/account/publishing/"
    ) in diagnostic.fix
    assert "one project per run" in diagnostic.fix
    assert "`my-plugin`, the distribution's name as PyPI normalises it" in diagnostic.fix


def test_each_size_limit_gets_its_own_fix() -> None:
    [project] = upload_refusal(
        Index(PYPI_UPLOAD), WHEEL, f"dist/{WHEEL}", 400, PROJECT_TOO_LARGE, project="sample-project"
    ).diagnostics()
    [file] = upload_refusal(
        Index(PYPI_UPLOAD), WHEEL, f"dist/{WHEEL}", 400, FILE_TOO_LARGE, project="sample-project"
    ).diagnostics()

    # The project's total: delete old files, or ask for more room where PyPI's message says.
    assert "Delete old releases or files" in project.fix
    assert "#requesting-a-project-size-limit-increase" in project.fix
    assert "smaller" not in project.fix
    assert "limit-request-file" not in project.fix
    # One file: make it smaller, or ask for a higher limit per file.
    assert "Make the file smaller" in file.fix
    assert "limit-request-file" in file.fix
    assert "Delete" not in file.fix
    assert "project-size" not in file.fix
