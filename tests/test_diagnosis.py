"""Every failure explains itself: what went wrong, why, and the change that fixes it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Run
from tests.localindex import identity
from tests.localindex.dists import make_release, make_sdist, make_wheel, sha256
from tests.localindex.runner import ActionRun, Annotation
from tests.localindex.server import Fault, LocalIndex, Publisher
from tests.summary import results


def the_error(result: ActionRun) -> Annotation:
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [a for a in result.annotations if a.level == "error"]
    assert len(errors) == 1, errors
    return errors[0]


# Preflight: found before any request.


def test_missing_id_token_permission_shows_the_yaml_to_add(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run(id_token=False)

    error = the_error(result)
    assert error.title == "The job cannot request an identity token"
    assert "id-token: write" in error.message
    assert "password" in error.message
    assert "```yaml\njobs:\n  publish:\n    permissions:\n      id-token: write" in result.summary
    assert index.log == []


def test_fork_pull_request_says_forks_never_get_a_token(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    event = {
        "pull_request": {
            "head": {"repo": {"full_name": "stranger/sample-project", "fork": True}},
            "base": {"repo": {"full_name": identity.REPOSITORY, "fork": False}},
        }
    }

    result = run(event=event, env={"GITHUB_EVENT_NAME": "pull_request"}, id_token=False)

    error = the_error(result)
    assert error.title == "Pull requests from forks cannot publish"
    assert "never gives" in error.message
    assert "`push`" in error.message
    assert "`release`" in error.message
    assert index.log == []


def test_pull_request_target_is_refused_before_trying(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run(env={"GITHUB_EVENT_NAME": "pull_request_target"})

    error = the_error(result)
    assert error.title == "PyPI refuses `pull_request_target` workflows"
    assert index.log == []


def test_enterprise_server_cannot_use_trusted_publishing_to_pypi(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run(
        {"repository-url": "https://upload.pypi.org/legacy/"},
        env={"GITHUB_SERVER_URL": "https://github.example.com"},
    )

    error = the_error(result)
    assert error.title == "PyPI does not trust GitHub Enterprise Server"
    assert "github.com" in error.message
    assert "https://github.example.com" in error.message


def test_wrong_repository_url_names_the_right_one(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    result = run({"repository-url": "https://pypi.org/simple/"})

    error = the_error(result)
    assert error.title == "`repository-url` is not an upload URL"
    assert "`repository-url`" in error.message
    assert "Use `https://upload.pypi.org/legacy/`." in error.message
    assert index.log == []


def test_distributions_that_cannot_go_up_together_are_all_annotated_before_uploading(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    dist = workspace / "dist"
    make_wheel(dist, "sample-project", "1.0.0")
    make_wheel(dist, "sample-project", "1.0.1")
    make_sdist(dist, "sample-project", "1.0.0")
    make_sdist(dist, "sample-project", "1.0.0", filename="sample-project-1.0.0.tar.gz")
    make_wheel(
        dist,
        "sample-project",
        "1.0.0",
        metadata_overrides={"Version": "9.9"},
        filename="sample_project-1.0.0-py2-none-any.whl",
    )
    (dist / "broken-1.0.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 truncated")

    result = run()

    assert result.returncode == 1
    errors = [a for a in result.annotations if a.level == "error"]
    by_file = {a.file: a.message for a in errors if a.file}
    assert "not a readable archive" in by_file["dist/broken-1.0.0-py3-none-any.whl"]
    assert "9.9" in by_file["dist/sample_project-1.0.0-py2-none-any.whl"]
    assert any("one sdist per release" in a.message for a in errors)
    assert any("1.0.1" in a.message and "versions of `sample-project`" in a.message for a in errors)
    # Each problem has a title of its own.
    assert {a.title for a in errors} >= {
        "Unreadable distribution",
        "Filename does not match the metadata",
        "More than one sdist",
        "Several versions of one project",
    }
    # Nothing was uploaded or signed, and the token the exchange minted meanwhile is burned.
    assert index.made_public() == []
    assert index.alive_tokens() == []


def test_rst_description_that_pypi_would_refuse(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_wheel(
        workspace / "dist",
        "sample-project",
        "1.0.0",
        description="Title\n=====\n\n.. broken:: directive\n\n`unclosed",
        description_content_type="text/x-rst",
    )

    checked = run()

    error = the_error(checked)
    assert error.title == "Description does not render"
    assert error.file == "dist/sample_project-1.0.0-py3-none-any.whl"
    assert "does not render" in error.message
    assert index.count("upload") == 0


# Trusted-publishing diagnosis.


def test_audience_404_means_no_trusted_publishing_there(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.trusted_publishing = "absent"

    error = the_error(run())

    assert error.title == "The index does not offer trusted publishing"
    assert f"{index.url}/_/oidc/audience answered 404" in error.message
    assert "does not offer trusted publishing" in error.message
    assert "`password`" in error.message


def test_environment_mismatch_names_the_environment_fix(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.publishers = [
        Publisher(
            identity.OWNER, identity.REPOSITORY_NAME, identity.OWNER_ID, "release.yml", "release"
        )
    ]

    result = run()

    error = the_error(result)
    assert "Publisher with matching claims was not found" in error.message
    assert "`environment:` is missing or misspelt" in error.message
    assert "environment `pypi`" in error.message
    assert "| Environment | `pypi` | `pypi` |" in result.summary
    assert index.count("mint") == 1


def test_renamed_repository_shows_the_owner_id_pypi_needs(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    index.publishers = [
        Publisher(identity.OWNER, identity.REPOSITORY_NAME, "999", "release.yml", "pypi")
    ]

    result = run()

    error = the_error(result)
    assert "renamed or transferred" in error.message
    assert f"| Owner id | `{identity.OWNER_ID}` | `{identity.OWNER_ID}` |" in result.summary


def test_reusable_workflow_warns_which_file_pypi_must_name(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    # PyPI accepts a reusable workflow of the same repository, at the caller's ref.
    index.claims["job_workflow_ref"] = (
        f"{identity.REPOSITORY}/.github/workflows/publish.yml@{identity.REF}"
    )
    index.publishers = [
        Publisher(
            identity.OWNER, identity.REPOSITORY_NAME, identity.OWNER_ID, "publish.yml", "pypi"
        )
    ]

    result = run()

    assert result.returncode == 0, result.stdout
    [warning] = [a for a in result.annotations if a.level == "warning"]
    assert warning.title == "Publishing from a reusable workflow"
    assert "`publish.yml`" in warning.message
    assert "limited" in warning.message


def test_html_from_the_mint_endpoint_is_named(index: LocalIndex, workspace: Path, run: Run) -> None:
    make_release(workspace)
    index.faults("mint", Fault.status(200, body="<html>Just a moment...</html>"))

    error = the_error(run())

    assert error.title == "The index answered something unexpected"
    assert "/_/oidc/mint-token" in error.message
    assert "text/html" in error.message
    assert index.count("upload") == 0


# Upload errors: PyPI's reason phrase becomes a titled annotation on the file.


def test_an_upload_refusal_is_titled_on_the_file_and_not_retried(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    reason = (
        "This filename was previously used by a file that has since been deleted. "
        "Use a different version."
    )
    index.faults("upload", Fault.status(400, reason))

    result = run()

    error = the_error(result)
    assert error.title == "Filename previously used"
    assert error.file == f"dist/{wheel.name}"
    assert reason in error.message
    assert "post-release" in error.message
    # Not retried, and the summary says what is where: the sdist never went up.
    assert index.count("upload") == 1
    assert results(result.summary) == {wheel.name: "failed", sdist.name: "not uploaded"}
    assert f"Not on the index: `{wheel.name}`, `{sdist.name}`." in result.summary


# Dry run.


def test_dry_run_proves_the_publisher_and_uploads_nothing(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)

    result = run({"dry-run": "true"})

    assert result.returncode == 0, result.stdout
    assert index.count("mint", 200) == 1
    assert index.count("upload") == 0
    assert index.files() == {}
    assert result.summary.startswith("## 🧪 Dry run: sample-project 1.0.0 would be published")
    assert results(result.summary) == {
        wheel.name: "would upload (dry run)",
        sdist.name: "would upload (dry run)",
    }
    assert json.loads(result.outputs["files"]) == []
    assert result.outputs["release-url"] == ""


def test_dry_run_judges_files_already_on_the_index(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    index.add_file(wheel)

    result = run({"dry-run": "true"})

    assert result.returncode == 0, result.stdout
    assert results(result.summary) == {
        wheel.name: "already on the index (its listing shows this sha256)",
        sdist.name: "would upload (dry run)",
    }
    assert index.count("upload") == 0
    assert index.files() == {wheel.name: sha256(wheel)}


def test_an_untrusted_certificate_says_how_to_trust_it_and_is_not_retried(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)

    # The container trusts only the system's CAs, which never signed the local index.
    result = run(env={"SSL_CERT_FILE": None, "REQUESTS_CA_BUNDLE": None})

    error = the_error(result)
    assert error.title == "The index's certificate is not trusted"
    assert "127.0.0.1" in error.message
    assert "SSL_CERT_FILE: /github/workspace/ca.pem" in error.message
    assert "retrying" not in result.stdout
    assert index.files() == {}
