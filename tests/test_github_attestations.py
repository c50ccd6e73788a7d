"""GitHub's attestation store, in-process through `cli.main`: the release signed against the
local Sigstore, uploaded to the local index, and its attestations stored in the index's
emulation of GitHub's store. Each branch: retries, an outage, a rate limit, refusals, the
notices when nothing is stored, and what `gh attestation verify` checks of a stored bundle.
The end-to-end runs are in test_attestations.py."""

from __future__ import annotations

import io
import json
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from oidc_publish.attest import TRUST_CONFIG_VARIABLE
from oidc_publish.cli import World, main
from tests.inprocess import FakeTime, runner_environ
from tests.localindex import clients, identity
from tests.localindex.dists import make_release, sha256
from tests.localindex.github_api import NotVerified, gh_attestation_verify
from tests.localindex.runner import Annotation, parse_commands, parse_outputs
from tests.localindex.server import Fault, LocalIndex
from tests.localindex.sigstore import PUBLISH_V1, SLSA_PROVENANCE_V1
from tests.summary import results as rows_results
from tests.summary import rows
from tests.test_cli import SIGNALS, cancel_when, held, settle

STORE = "github-attestations"
REPOSITORY_URL = f"https://github.com/{identity.REPOSITORY}"
DOWN = Fault.status(503, headers={"Retry-After": "1"})
NOTHING_STORED = "Nothing stored in GitHub's attestation store"


class Release:
    """One run of `main` in-process, signing against the index's Sigstore, and what it left."""

    def __init__(
        self, index: LocalIndex, workspace: Path, files: tuple[Path, Path] | None = None
    ) -> None:
        self.index = index
        self.workspace = workspace
        self.files = files or make_release(workspace)
        self.time = FakeTime()
        self.stdout = io.StringIO()
        self.code: int | None = None
        self.environ: dict[str, str] = {}

    def __call__(
        self,
        inputs: Mapping[str, str] | None = None,
        *,
        sign: bool = True,
        env: Mapping[str, str] | None = None,
        run_deadline: float | None = None,
    ) -> int:
        environ = runner_environ(
            self.index, self.workspace, {"github-attestations": "true", **(inputs or {})}
        )
        if sign:
            environ[TRUST_CONFIG_VARIABLE] = str(self.index.sigstore_trust_config)
        self.environ = {**environ, **(env or {})}
        world = World(
            identity=lambda audience: clients.id_token(self.index, audience),
            sleep=self.time.sleep,
            monotonic=self.time.clock,
            run_deadline=run_deadline,
        )
        self.code = main(self.environ, self.stdout, world)
        return self.code

    @property
    def annotations(self) -> list[Annotation]:
        return parse_commands(self.stdout.getvalue().splitlines())[0]

    def only(self, level: str) -> Annotation:
        [found] = [a for a in self.annotations if a.level == level]
        return found

    def github_urls(self) -> dict[str, str]:
        outputs = parse_outputs((self.workspace.parent / "outputs").read_text())
        return {f["name"]: f["github-attestation"] for f in json.loads(outputs["files"])}

    @property
    def summary(self) -> str:
        return (self.workspace.parent / "summary").read_text()

    def published_whole(self) -> bool:
        return self.code == 0 and self.index.files() == {f.name: sha256(f) for f in self.files}


@pytest.fixture
def release(signing: LocalIndex, workspace: Path) -> Release:
    return Release(signing, workspace)


def attestation_url(number: int) -> str:
    return f"{REPOSITORY_URL}/attestations/{number}"


def test_every_uploaded_file_is_stored_and_linked(release: Release) -> None:
    wheel, sdist = release.files

    release()

    assert release.published_whole(), release.stdout.getvalue()
    stored = release.index.github.stored
    assert [s.repository for s in stored] == [identity.REPOSITORY] * 2
    assert release.github_urls() == {wheel.name: attestation_url(1), sdist.name: attestation_url(2)}
    shown = {row.file: row.attestation_links for row in rows(release.summary)}
    assert shown == {
        wheel.name: {"GitHub": attestation_url(1)},
        sdist.name: {"GitHub": attestation_url(2)},
    }
    assert (
        f"`gh attestation verify {wheel.name} --repo {identity.REPOSITORY} "
        f"--predicate-type {PUBLISH_V1}`"
    ) in release.summary
    assert not [a for a in release.annotations if a.level != "notice"]
    # One certificate signed for PyPI and GitHub alike: nothing signed twice.
    assert release.index.sigstore.certificates_issued == 1
    assert release.index.sigstore.entries == 2


def test_a_stored_bundle_passes_gh_attestation_verify_for_its_repository_only(
    release: Release,
) -> None:
    wheel, sdist = release.files
    release()
    trust = release.index.sigstore_trust_config

    for stored, dist in zip(release.index.github.stored, (wheel, sdist), strict=True):
        statement = gh_attestation_verify(
            stored.bundle,
            trust_config=trust,
            repository=identity.REPOSITORY,
            predicate_type=PUBLISH_V1,
            sha256=sha256(dist),
        )
        assert statement["subject"][0]["name"] == dist.name

    bundle = release.index.github.stored[0].bundle
    with pytest.raises(NotVerified, match="OIDCSourceRepositoryURI does not match"):
        gh_attestation_verify(
            bundle,
            trust_config=trust,
            repository="octo-org/another-project",
            predicate_type=PUBLISH_V1,
            sha256=sha256(wheel),
        )
    # gh's default predicate type is SLSA provenance: the command must name PyPI's.
    with pytest.raises(NotVerified, match="predicate type"):
        gh_attestation_verify(
            bundle,
            trust_config=trust,
            repository=identity.REPOSITORY,
            predicate_type=SLSA_PROVENANCE_V1,
            sha256=sha256(wheel),
        )


def test_a_store_that_answers_503_twice_is_retried_and_every_file_stored(
    release: Release,
) -> None:
    release.index.faults(STORE, DOWN, DOWN)

    release()

    assert release.published_whole(), release.stdout.getvalue()
    assert release.index.count(STORE, 503) == 2
    assert release.index.count(STORE, 201) == 2
    assert release.time.sleeps == [1.0, 1.0]
    assert all(release.github_urls().values())
    assert "GitHub's attestation store, attempt 2 failed (\"HTTP 503" in release.stdout.getvalue()
    assert not [a for a in release.annotations if a.level == "warning"]


def test_a_store_that_stays_down_is_one_warning_naming_the_files_left_unstored(
    release: Release,
) -> None:
    wheel, sdist = release.files
    # The wheel is stored; for the sdist the store is down through every attempt.
    release.index.faults(STORE, Fault.delay(0), *[DOWN] * 6)

    release()

    assert release.published_whole(), release.stdout.getvalue()
    warning = release.only("warning")
    assert warning.title == "GitHub's attestation store did not answer"
    assert f"Left unstored: `{sdist.name}`." in warning.message
    assert wheel.name not in warning.message
    assert "6 time(s)" in warning.message
    assert "https://www.githubstatus.com" in warning.message
    assert release.github_urls() == {wheel.name: attestation_url(1), sdist.name: ""}
    assert release.index.count(STORE) == 7


def test_a_rerun_after_an_outage_stores_what_was_left(release: Release) -> None:
    release.index.faults(STORE, *[DOWN] * 6)
    release()
    assert release.index.github.stored == []

    again = Release(release.index, release.workspace, release.files)
    again()

    assert again.published_whole()
    assert len(release.index.github.stored) == 2
    assert all(again.github_urls().values())


def test_the_first_file_that_cannot_be_stored_stops_the_rest(release: Release) -> None:
    wheel, sdist = release.files
    release.index.faults(STORE, *[DOWN] * 6)

    release()

    assert release.published_whole()
    warning = release.only("warning")
    assert f"Left unstored: `{wheel.name}`, `{sdist.name}`." in warning.message
    assert release.index.count(STORE) == 6
    assert "gh attestation verify" not in release.summary


class DeadlineWhenStoring(io.StringIO):
    """A log that makes the run's deadline pass as soon as the store begins."""

    def write(self, text: str) -> int:
        if "::group::Storing" in text:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
        return super().write(text)


def test_the_runs_deadline_passing_while_storing_leaves_the_exit_code_alone(
    release: Release,
) -> None:
    release.index.faults(STORE, Fault.delay(30))
    release.stdout = DeadlineWhenStoring()

    release(run_deadline=3600)

    assert release.published_whole(), release.stdout.getvalue()
    warning = release.only("warning")
    assert warning.title == "Attestations not stored in GitHub"
    assert "did not finish within 60 minutes" in warning.message
    assert release.github_urls() == {f.name: "" for f in release.files}


def test_a_missing_permission_is_one_warning_naming_it(release: Release) -> None:
    release.index.github_permissions = {"contents": "read"}

    release()

    assert release.published_whole()
    warning = release.only("warning")
    assert warning.title == "GitHub's attestation store needs `attestations: write`"
    assert "HTTP 403 `Resource not accessible by integration`" in warning.message
    assert "beside `id-token: write`" in warning.message
    assert release.index.count(STORE) == 1
    assert release.github_urls() == {f.name: "" for f in release.files}


def test_a_secondary_rate_limit_is_waited_out_not_taken_for_a_refusal(release: Release) -> None:
    limited = Fault.status(
        403,
        body=json.dumps({"message": "You have exceeded a secondary rate limit."}),
        headers={"Retry-After": "7"},
        content_type="application/json",
    )
    release.index.faults(STORE, limited)

    release()

    assert release.published_whole()
    assert release.time.sleeps == [7.0]
    assert all(release.github_urls().values())
    assert not [a for a in release.annotations if a.level == "warning"]


def test_a_token_github_does_not_know_is_refused_and_never_shown(release: Release) -> None:
    token = "ghs_" + "x" * 36

    release({"github-token": token})

    assert release.published_whole()
    warning = release.only("warning")
    assert warning.title == "GitHub refused an attestation"
    assert "HTTP 401 `Bad credentials`" in warning.message
    assert "`github-token`" in warning.message
    log = release.stdout.getvalue()
    assert f"::add-mask::{token}" in log
    assert token not in log.replace(f"::add-mask::{token}", "") + release.summary


def test_the_token_goes_to_no_api_but_an_https_one(release: Release) -> None:
    api = release.index.url.replace("https://", "http://")

    release(env={"GITHUB_API_URL": api})

    assert release.published_whole()
    warning = release.only("warning")
    assert warning.title == "Attestations not stored in GitHub"
    assert "not an https:// URL" in warning.message
    assert release.index.count(STORE) == 0


@pytest.mark.parametrize(
    ("inputs", "sign", "why"),
    [
        ({"attestations": "false"}, True, "`attestations: false`"),
        ({"password": "pypi-static-api-token"}, True, "not an API token"),
        ({}, False, "127.0.0.1 is not PyPI or TestPyPI"),
    ],
    ids=["attestations-false", "api-token", "another-index"],
)
def test_without_attestations_one_notice_says_why_and_github_is_not_asked(
    release: Release, inputs: dict[str, str], sign: bool, why: str
) -> None:
    release.index.api_tokens.add("pypi-static-api-token")

    release(inputs, sign=sign)

    assert release.published_whole(), release.stdout.getvalue()
    [notice] = [a for a in release.annotations if a.title == NOTHING_STORED]
    assert "no attestations were made" in notice.message
    assert why in notice.message
    assert release.index.count(STORE) == 0
    assert not [a for a in release.annotations if a.level == "warning"]


def test_a_reusable_workflow_stores_nothing_and_says_why(release: Release) -> None:
    release.index.claims["workflow_ref"] = (
        f"{identity.REPOSITORY}/.github/workflows/ci.yml@{identity.REF}"
    )

    release()

    assert release.published_whole()
    [notice] = [a for a in release.annotations if a.title == NOTHING_STORED]
    assert "reusable workflow" in notice.message
    assert release.index.count(STORE) == 0


def test_files_already_on_the_index_store_nothing(release: Release) -> None:
    for dist in release.files:
        release.index.add_file(dist)
    release.index.mode = "pypiserver"  # "already exists", not PyPI's 200 for the same bytes

    release()

    assert release.code == 0, release.stdout.getvalue()
    [notice] = [a for a in release.annotations if a.title == NOTHING_STORED]
    assert "uploaded no file with an attestation" in notice.message
    assert release.index.count(STORE) == 0


def test_a_dry_run_says_what_it_would_store_and_asks_github_nothing(release: Release) -> None:
    release({"dry-run": "true"})

    assert release.code == 0, release.stdout.getvalue()
    notice = release.only("notice")
    assert notice.title == "Dry run: nothing stored in GitHub's attestation store"
    assert "each file it uploads (2 now)" in notice.message
    assert f"`{identity.REPOSITORY}`" in notice.message
    assert release.index.count(STORE) == release.index.count("fulcio") == 0
    assert release.index.files() == {}


@SIGNALS
def test_a_cancellation_while_storing_stops_the_store_and_ends_the_run_as_cancelled(
    release: Release, signum: int
) -> None:
    wheel, sdist = release.files
    release.index.faults(STORE, Fault.hold())
    cancel_when(release.index, signum, held(STORE))
    before = set(threading.enumerate())

    code = release()

    assert code == 128 + signum, release.stdout.getvalue()
    assert release.index.files() == {f.name: sha256(f) for f in release.files}
    [error] = [a for a in release.annotations if a.level == "error"]
    assert error.title == "The run was cancelled"
    assert "once every file was on the index" in error.message
    assert not [a for a in release.annotations if a.level == "warning"]
    assert rows_results(release.summary) == {wheel.name: "uploaded", sdist.name: "uploaded"}
    assert release.github_urls() == {wheel.name: "", sdist.name: ""}
    settle(release.index, before)
    # The sdist's attestation was never sent: the cancellation stopped the store.
    assert release.index.count(STORE) == 1


@pytest.mark.parametrize(
    "api",
    [
        "https://[::1",
        "https://a]b",
        "{url}#",
        "{url}/?",
        " {url}",
        "{url}/#/",
        "https://127.0.0.1:99999",
    ],
)
def test_a_malformed_github_api_url_is_one_warning_and_no_request(
    release: Release, api: str
) -> None:
    release(env={"GITHUB_API_URL": api.format(url=release.index.url)})

    assert release.published_whole(), release.stdout.getvalue()
    warning = release.only("warning")
    assert warning.title == "Attestations not stored in GitHub"
    assert "GITHUB_API_URL is" in warning.message
    assert release.index.count(STORE) == 0
    assert release.index.count("other") == 0


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_rate_limit_reset_too_large_to_be_a_time_is_the_usual_capped_wait(
    release: Release, digits: int
) -> None:
    limited = Fault.status(
        403,
        body=json.dumps({"message": "API rate limit exceeded for installation."}),
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" * digits},
        content_type="application/json",
    )
    release.index.faults(STORE, limited)

    release()

    assert release.published_whole(), release.stdout.getvalue()
    assert release.time.sleeps == [30.0]
    assert all(release.github_urls().values())
    assert not [a for a in release.annotations if a.level == "warning"]
