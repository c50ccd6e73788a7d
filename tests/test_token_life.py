"""Every credential goes only where it must, and dies when its work is done, end to end.

PyPI's audience is known and never asked for; another index may not claim a reserved one;
every upload token is burned after its last use, however the run ends; nothing public (a
transparency-log entry) is made for files that are not going to be uploaded. Every run here
is also checked by the `run` fixture: each identity token reached only the endpoint its
audience belongs to.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from oidc_publish.index_urls import PYPI_UPLOAD
from tests.conftest import Run
from tests.localindex.carried import Carried
from tests.localindex.dists import make_release, make_wheel, sha256
from tests.localindex.oidc import default_publisher
from tests.localindex.server import Fault, LocalIndex

UNAVAILABLE = Fault.status(503, headers={"Retry-After": "0"})


def test_publishing_to_pypi_asks_no_audience_and_burns_the_token_after_the_uploads(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)

    # PyPI's hosts are the index, reached through its proxy; its CA is the only one trusted.
    result = run(
        {"repository-url": PYPI_UPLOAD}, env={"HTTPS_PROXY": index.proxy.url}, sigstore=True
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert "upload.pypi.org" in index.proxy.hosts()
    # No audience asked for: the first request to the index is the mint. The last is the
    # burn, after which the token was never used.
    assert [e.endpoint for e in index.log if e.endpoint in ("audience", "mint")] == ["mint"]
    assert [e.endpoint for e in index.log if e.endpoint in ("upload", "burn")][-1] == "burn"
    assert index.alive_tokens() == []
    assert index.count("upload", 403) == 0
    assert "Revoked the upload token at upload.pypi.org." in result.stdout
    assert result.outputs["release-url"] == "https://pypi.org/project/sample-project/1.0.0/"


@pytest.mark.parametrize("claimed", ["pypi", "Sigstore "])
def test_an_index_that_claims_a_reserved_audience_gets_no_identity_token(
    index: LocalIndex, workspace: Path, run: Run, claimed: str
) -> None:
    make_release(workspace)
    index.audience = claimed

    result = run()

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The index asks for another service's audience"
    assert "127.0.0.1 answered its audience endpoint" in error.message
    assert "`OIDC_AUDIENCE`" in error.message
    # Besides the index's public pages, it was asked for its audience, and nothing else.
    assert index.issued_id_tokens == []
    assert [e.endpoint for e in index.log if e.endpoint != "simple"] == ["audience"]


@pytest.mark.parametrize(
    ("inputs", "fault", "code"),
    [
        pytest.param({}, Fault.status(400, "Invalid distribution"), 1, id="uploads-refused"),
        pytest.param({"dry-run": "true"}, None, 0, id="dry-run"),
        pytest.param({"verbose": "maybe"}, None, 1, id="a-bad-input-found-after-the-exchange"),
    ],
)
def test_the_token_is_burned_however_the_run_ends(
    index: LocalIndex,
    workspace: Path,
    run: Run,
    inputs: dict[str, str],
    fault: Fault | None,
    code: int,
) -> None:
    make_release(workspace)
    if fault is not None:
        index.faults("upload", fault)

    result = run(inputs)

    assert result.returncode == code, result.stdout
    assert index.count("mint", 200) == 1
    assert index.count("burn", 202) == 1
    assert index.alive_tokens() == []


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda index: setattr(index, "burn_endpoint", False), id="no-endpoint"),
        pytest.param(lambda index: index.faults("burn", UNAVAILABLE, UNAVAILABLE), id="down"),
    ],
)
def test_a_burn_the_index_cannot_take_never_changes_the_verdict(
    index: LocalIndex, workspace: Path, run: Run, break_it: object
) -> None:
    wheel, sdist = make_release(workspace)
    break_it(index)  # type: ignore[operator]

    result = run({"attestations": "false"})

    assert result.returncode == 0, result.stdout
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert result.annotations_besides(index.failed_handshakes) == []
    assert result.summary.startswith("## ✅")
    assert [f["name"] for f in json.loads(result.outputs["files"])] == [wheel.name, sdist.name]


@pytest.mark.parametrize("refusal", ["a refused mint", "an archived project"])
def test_files_that_are_not_uploaded_get_no_transparency_log_entry(
    index: LocalIndex, workspace: Path, run: Run, refusal: str
) -> None:
    make_release(workspace)
    if refusal == "a refused mint":
        index.publishers = [replace(default_publisher(), workflow="publish.yml")]
    else:
        index.add_file(make_wheel(workspace.parent / "older", "sample-project", "0.9.0"))
        index.project_status["sample-project"] = "archived"

    result = run(sigstore=True)

    assert result.returncode == 1, result.stdout
    assert index.count("rekor") == 0
    assert index.count("upload") == 0
    assert index.alive_tokens() == []


# SECURITY.md's table of credentials, held to what the requests carried.

SECURITY = (Path(__file__).resolve().parent.parent / "SECURITY.md").read_text(encoding="utf-8")
# The table's words for each endpoint and carrier, and the local index's.
ENDPOINTS = {
    "GET <ACTIONS_ID_TOKEN_REQUEST_URL>": "id-token",
    "POST <index>/_/oidc/mint-token": "mint",
    "POST <index>/_/oidc/burn-token": "burn",
    "POST <repository-url>": "upload",
    "POST <Fulcio>/api/v2/signingCert": "fulcio",
    "POST <GITHUB_API_URL>/repos/<owner>/<repo>/attestations": "github-attestations",
    "CONNECT <proxy>": "proxy",
}
CARRIERS = {
    "`Authorization: Bearer`": "Authorization: Bearer",
    "`Authorization: Basic` (the password)": "Authorization: Basic",
    "`Proxy-Authorization: Basic` (the password)": "Proxy-Authorization: Basic",
    "JSON field `token`": 'JSON body "token"',
}
CREDENTIALS = {
    "`ACTIONS_ID_TOKEN_REQUEST_TOKEN`": "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "Identity token for the index": "identity token (index)",
    "Identity token for Sigstore": "identity token (sigstore)",
    "Upload token": "upload token",
    "`password` (an API token)": "API token",
    "`github-token`": "github-token",
    "Proxy credentials": "proxy credentials",
}


def documented() -> set[Carried]:
    """(credential, endpoint, carrier) as SECURITY.md's table of credentials states them."""
    section = SECURITY.split("## Credentials", 1)[1].split("\n#", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line[:2] == "| "]
    found = set()
    for cells in rows[2:]:  # after the heading and its rule
        credential, _, sent, *_ = (cell.strip() for cell in cells)
        for destination in sent.split("; "):
            endpoint, _, carrier = destination.partition(": ")
            found.add(
                Carried(CREDENTIALS[credential], ENDPOINTS[endpoint.strip("`")], CARRIERS[carrier])
            )
    return found


def test_security_md_names_every_credential_the_requests_carried_and_no_other(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    seen: set[Carried] = set()

    def outcome(inputs: dict[str, str] | None = None, **options: object) -> int:
        run(inputs, **options)  # type: ignore[arg-type]
        seen.update(index.carried())
        mints = index.count("mint", 200)
        index.reset()
        return mints

    outcome({"github-attestations": "true"}, sigstore=True)
    # A token that nears its end before the second upload: renewed, the first burned.
    index.token_lifetime, index.latency = 2, {"upload": 1.0}
    assert outcome({"attestations": "false"}) == 2
    outcome({"dry-run": "true"})
    index.publishers = [replace(default_publisher(), workflow="publish.yml")]
    outcome()
    index.api_tokens.add("pypi-static-api-token")
    outcome({"password": "pypi-static-api-token"}, id_token=False)
    # Behind a proxy that asks for credentials, GitHub's token service included.
    index.proxy.credentials = ("octo-runner", "pr0xy-s3cret")
    outcome(env={"HTTPS_PROXY": index.proxy.url, "NO_PROXY": None})

    assert seen == documented()
