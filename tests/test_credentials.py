"""The credential: the notice that points API-token users to trusted publishing, and
trusted publishing itself in process against the local index."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from oidc_publish.credentials import ApiToken, TrustedPublishing
from oidc_publish.diagnosis import password_notice
from oidc_publish.errors import (
    PublisherMismatch,
    ReservedAudience,
    TrustedPublishingUnavailable,
    UnexpectedResponse,
)
from oidc_publish.identity import github_identity_token
from oidc_publish.index_urls import PYPI_UPLOAD, TESTPYPI_UPLOAD, Index
from oidc_publish.network import Transient, Unreachable
from oidc_publish.report import Publication
from oidc_publish.runner import RunnerContext, md_code
from tests.inprocess import (
    UNAVAILABLE,
    Clock,
    Identity,
    Journal,
    Sleeps,
    http_client,
    policy,
    secret_lines,
    trusted_publishing,
)
from tests.localindex import identity
from tests.localindex.clients import twine_upload
from tests.localindex.dists import make_wheel
from tests.localindex.oidc import default_publisher
from tests.localindex.pypi import INVALID_AUTH
from tests.localindex.server import Fault, LocalIndex


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


# Trusted publishing in process, against the local index, never sleeping for real.


@pytest.fixture
def journal() -> Journal:
    return Journal(verbose=True)  # debug lines in the log, where a leak would show


@pytest.fixture
def http(index: LocalIndex, journal: Journal) -> Iterator[httpx.Client]:
    with http_client(index, journal) as client:
        yield client


def publishing(
    index: LocalIndex,
    journal: Journal,
    http: httpx.Client,
    *,
    clock: Clock | None = None,
    sleeps: Sleeps | None = None,
    **policy_changes: Any,
) -> TrustedPublishing:
    return trusted_publishing(
        index, journal, http, sleeps or Sleeps(), clock=clock, **policy_changes
    )


def test_each_mint_attempt_presents_a_fresh_identity_token(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    index.faults("mint", UNAVAILABLE, UNAVAILABLE)
    sleeps = Sleeps()

    token = publishing(index, journal, http, sleeps=sleeps).token()

    assert token in index.minted_tokens
    assert index.count("mint", 503) == 2
    assert index.count("mint", 200) == 1
    # PyPI takes each identity token once: every attempt asked GitHub again.
    assert len(index.issued_id_tokens) == 3
    assert len(set(index.issued_id_tokens)) == 3
    assert sleeps.waits == [0.0, 0.0]
    assert journal.text().count("the token exchange: Attempt") == 2


def test_a_publisher_mismatch_shows_the_claims_and_names_the_workflow(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    index.publishers = [replace(default_publisher(), workflow="publish.yml")]

    with pytest.raises(PublisherMismatch) as caught:
        publishing(index, journal, http).token()

    error = caught.value
    assert "invalid-publisher" in error.message
    assert index.count("mint", 422) == 1
    assert len(index.issued_id_tokens) == 1  # a refusal is not retried
    # The claims table: what this run's token says beside what PyPI would need.
    assert "| Workflow | `" + identity.WORKFLOW_REF + "` | `release.yml` |" in error.details
    assert f"`{identity.REPOSITORY}`" in error.details
    assert "`release.yml`" in error.fix
    assert index.minted_tokens == {}


@pytest.mark.parametrize(
    ("setting", "status", "words"),
    [("disabled", 403, "disabled"), ("absent", 404, "does not offer trusted publishing")],
)
def test_an_index_without_trusted_publishing_says_so_at_the_audience(
    index: LocalIndex,
    journal: Journal,
    http: httpx.Client,
    setting: Literal["disabled", "absent"],
    status: int,
    words: str,
) -> None:
    index.trusted_publishing = setting

    with pytest.raises(TrustedPublishingUnavailable) as caught:
        publishing(index, journal, http).token()

    assert words in caught.value.message
    assert index.count("audience", status) == 1
    # The identity token is asked for alongside the audience, so one may be issued; it is
    # never sent anywhere.
    assert index.count("mint") == 0


def test_a_mint_answer_beyond_the_cap_is_refused_unread(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    # A terabyte: read whole, the test would never end.
    index.faults("mint", Fault.huge(1 << 40))

    with pytest.raises(UnexpectedResponse) as caught:
        publishing(index, journal, http).token()

    assert "larger than any token exchange" in caught.value.message
    assert index.count("mint") == 1


def test_absurdly_nested_json_from_the_mint_is_an_unexpected_answer(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    nested = Fault.status(200, body="[" * 100_000, content_type="application/json")
    index.faults("mint", nested)

    with pytest.raises(UnexpectedResponse) as caught:
        publishing(index, journal, http).token()

    assert "HTTP 200 with `application/json`" in caught.value.message


@pytest.mark.parametrize(
    "expires",
    [
        pytest.param(-3600.0, id="in-the-past"),
        pytest.param(10.0**9, id="far-in-the-future"),
        pytest.param(None, id="missing"),
    ],
)
def test_an_implausible_expiry_is_taken_as_fifteen_minutes(
    index: LocalIndex, journal: Journal, http: httpx.Client, expires: float | None
) -> None:
    """Neither a mint per call (an expiry in the past) nor a token never renewed."""
    clock = Clock(time.time())

    def mint_answer() -> Fault:
        body: dict[str, object] = {"success": True, "token": f"pypi-{secrets.token_hex(8)}"}
        if expires is not None:
            body["expires"] = int(clock.now + expires)
        return Fault.status(200, body=json.dumps(body), content_type="application/json")

    credential = publishing(index, journal, http, clock=clock)
    index.faults("mint", mint_answer())
    first = credential.token()
    for _ in range(20):
        clock.now += 10.0
        assert credential.token() == first
    assert index.count("mint") == 1

    clock.now += 701.0  # 901 s after the first mint
    index.faults("mint", mint_answer())
    second = credential.token()
    for _ in range(20):
        assert credential.token() == second
    assert second != first
    assert index.count("mint") == 2


def test_the_minted_token_is_masked_before_anything_mentions_it(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    token = publishing(index, journal, http).token()

    lines = journal.text().splitlines()
    mentions = [n for n, line in enumerate(lines) if token in line]
    assert mentions
    assert lines[mentions[0]] == f"::add-mask::{token}"
    assert secret_lines(journal.text(), index.secrets()) == []


def test_a_token_in_a_malformed_mint_answer_is_masked_too(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    body = json.dumps({"success": True, "token": "pypi-leaked-secret", "expires": "soon"})
    index.faults("mint", Fault.status(200, body=body, content_type="application/json"))

    with pytest.raises(UnexpectedResponse) as caught:
        publishing(index, journal, http).token()

    assert "::add-mask::pypi-leaked-secret" in journal.text().splitlines()
    journal.finish(Publication(), caught.value)
    assert secret_lines(journal.text(), ["pypi-leaked-secret", *index.secrets()]) == []


# The audience: known on PyPI, never a reserved one anywhere else.


@pytest.mark.parametrize(
    ("url", "audience"), [(PYPI_UPLOAD, "pypi"), (TESTPYPI_UPLOAD, "testpypi")]
)
def test_pypi_and_testpypi_audiences_are_known_and_never_asked_for(
    index: LocalIndex, journal: Journal, monkeypatch: pytest.MonkeyPatch, url: str, audience: str
) -> None:
    # The index's proxy is the only way to PyPI's hosts: it takes them to the index.
    monkeypatch.setenv("HTTPS_PROXY", index.proxy.url)
    identity = Identity(index)
    with http_client(index, journal) as http:
        publishing = TrustedPublishing(
            index=Index(url),
            http=lambda: http,
            policy=policy(Sleeps()),
            reporter=journal,
            project="sample-project",
            identity=identity,
        )
        token = publishing.token()

    assert token in index.minted_tokens
    assert identity.audiences == [audience]
    assert index.count("audience") == 0
    assert [e.endpoint for e in index.log if e.endpoint != "id-token"] == ["mint"]
    assert Index(url).host in index.proxy.hosts()


@pytest.mark.parametrize("claimed", ["pypi", " PyPI\n", "testpypi", "Sigstore"])
def test_another_index_may_not_claim_a_reserved_audience(
    index: LocalIndex, journal: Journal, http: httpx.Client, claimed: str
) -> None:
    index.audience = claimed

    with pytest.raises(ReservedAudience) as caught:
        publishing(index, journal, http).token()

    # Asked for nothing: no identity token exists that the index could use elsewhere.
    assert index.issued_id_tokens == []
    assert [e.endpoint for e in index.log] == ["audience"]
    error = caught.value
    service = {"pypi": "PyPI", "testpypi": "TestPyPI", "sigstore": "Sigstore"}[
        claimed.strip().lower()
    ]
    assert f"127.0.0.1 answered its audience endpoint with {md_code(claimed)}" in error.message
    assert f"accepted by {service}" in error.message
    assert "`OIDC_AUDIENCE`" in error.fix


# The burn: every token dies once nothing will use it again.


def test_closing_burns_the_token_and_the_index_refuses_it_from_then_on(
    index: LocalIndex, journal: Journal, http: httpx.Client, tmp_path: Path
) -> None:
    credential = publishing(index, journal, http)
    token = credential.token()

    credential.close()

    assert index.count("burn", 202) == 1
    assert index.alive_tokens() == []
    assert "Revoked the upload token at 127.0.0.1." in journal.lines
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    refused = twine_upload(index, wheel, token)
    assert (refused.status_code, refused.reason) == (403, INVALID_AUTH)
    assert secret_lines(journal.text(), index.secrets()) == []


def test_a_closed_credential_mints_no_new_token(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    credential = publishing(index, journal, http)
    credential.token()
    credential.close()

    with pytest.raises(Transient), credential.lease():
        pass

    assert index.count("mint") == 1


@pytest.mark.parametrize(
    ("faults", "attempts", "why"),
    [
        pytest.param([], 1, "HTTP 404", id="no-endpoint"),
        pytest.param([UNAVAILABLE, UNAVAILABLE], 2, "HTTP 503", id="down"),
        pytest.param([Fault.reset(), Fault.reset()], 2, "Error", id="reset"),
        pytest.param([Fault.huge(4 * 1024 * 1024)], 1, "TooLarge", id="huge"),
    ],
)
def test_a_burn_the_index_cannot_take_is_one_debug_line_and_never_an_error(
    index: LocalIndex,
    journal: Journal,
    http: httpx.Client,
    faults: list[Fault],
    attempts: int,
    why: str,
) -> None:
    credential = publishing(index, journal, http)
    credential.token()
    index.burn_endpoint = bool(faults)
    index.faults("burn", *faults)

    credential.close()

    assert index.count("burn") == attempts
    [line] = [line for line in journal.lines if "burn-token" in line and "not revoked" in line]
    assert why in line
    assert "expires on its own" in line
    assert journal.diagnostics == []


def test_an_api_token_is_never_sent_to_the_burn_endpoint(index: LocalIndex) -> None:
    credential = ApiToken("__token__", "pypi-static")
    with credential.lease() as token:
        assert token == "pypi-static"

    credential.close()

    assert index.log == []


def test_a_replaced_token_is_burned_when_its_last_upload_ends(
    index: LocalIndex, journal: Journal, http: httpx.Client
) -> None:
    clock = Clock(time.time())
    credential = publishing(index, journal, http, clock=clock)

    with credential.lease() as old:
        clock.now += 870.0  # the renewal margin reached
        with credential.lease() as new:
            assert new != old
            assert not index.minted_tokens[old].burned  # an upload still sends it
        assert not index.minted_tokens[old].burned
    assert index.minted_tokens[old].burned
    assert index.alive_tokens() == [new]


# GitHub's identity token: through `id`, or the action's own client where a proxy applies.


@pytest.mark.parametrize("through", ["id", "the action's client"])
def test_a_token_endpoint_that_cannot_be_reached_is_not_called_a_timeout(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once the probe is closed
    environ = {
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"https://127.0.0.1:{closed}/token?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
    }
    if through != "id":
        # A proxy that nothing answers either: the request is sent to it, not direct.
        environ["HTTPS_PROXY"] = f"http://127.0.0.1:{closed}"
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with httpx.Client() as http:
        fetch = github_identity_token(journal, lambda: http, environ)
        with pytest.raises(Unreachable) as caught:
            fetch("pypi")

    assert caught.value.host == "127.0.0.1"
    assert caught.value.error == "Connection refused"
    assert caught.value.proxy == (None if through == "id" else f"http://127.0.0.1:{closed}")
    assert "timed out" not in str(caught.value)
