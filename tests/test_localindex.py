"""The local index answers as GitHub and PyPI do; every other test relies on it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import ssl
import time
from datetime import datetime
from pathlib import Path

import httpx
import jwt
import pytest
from twine.commands.check import check

from tests.localindex import identity
from tests.localindex.clients import https_client, id_token, mint_token, pip_install, twine_upload
from tests.localindex.dists import BROKEN_RST, make_sdist, make_wheel, sha256
from tests.localindex.index_process import IndexProcess
from tests.localindex.oidc import default_publisher
from tests.localindex.runner import ActionRun, Annotation, run_action
from tests.localindex.server import Fault, LocalIndex

NOT_FOUND = (
    "valid token, but no corresponding publisher (Publisher with matching claims was not found)"
)
STATIC_TOKEN = "pypi-static-token-for-tests"
# Warehouse's words (forklift/legacy.py), whatever publisher minted the token.
NEW_PROJECT = (
    "Non-user identities cannot create new projects. This was probably caused by successfully "
    "using a pending publisher but specifying the project name incorrectly (either in the "
    "publisher or in your project's metadata). Please ensure that both match. See: "
    "https://docs.pypi.org/trusted-publishers/troubleshooting/"
)


def mint(index: LocalIndex, token: str, path: str = "/_/oidc/mint-token") -> httpx.Response:
    with https_client(index) as client:
        return client.post(path, json={"token": token})


def refusal(response: httpx.Response) -> dict[str, str]:
    """The one error of a 422 from the mint endpoint."""
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Token request failed"
    [error] = body["errors"]
    return dict(error)


def test_id_token_endpoint_wants_the_request_token_and_signs_githubs_claims(
    index: LocalIndex,
) -> None:
    url = f"{index.id_token_request_url}&audience=pypi"
    with https_client(index) as client:
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.get(
            url, headers={"Authorization": f"bearer {index.id_token_request_token}"}
        )

    token = answer.json()["value"]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "https://token.actions.githubusercontent.com"
    assert claims["aud"] == "pypi"
    assert (claims["exp"] - claims["iat"], claims["iat"] - claims["nbf"]) == (300, 600)
    assert claims["job_workflow_ref"] == identity.WORKFLOW_REF
    assert all(isinstance(v, str) for k, v in claims.items() if k not in {"iat", "nbf", "exp"})
    assert index.issued_id_tokens == [token]


def test_an_id_token_mints_once(index: LocalIndex) -> None:
    token = id_token(index)

    minted = mint(index, token)
    replayed = mint(index, token, "/_/oidc/github/mint-token")

    assert minted.status_code == 200
    body = minted.json()
    assert body["success"] is True
    assert body["token"].startswith("pypi-")
    assert body["expires"] == pytest.approx(time.time() + 900, abs=5)
    assert list(index.minted_tokens) == [body["token"]]
    assert refusal(replayed) == {
        "code": "invalid-reuse-token",
        "description": "invalid token: already used",
    }


@pytest.mark.parametrize(
    ("claims", "code", "description"),
    [
        ({"repository_owner_id": "999"}, "invalid-publisher", NOT_FOUND),
        # PyPI picks a publisher by environment, so a mismatch is "not found".
        ({"environment": "staging"}, "invalid-publisher", NOT_FOUND),
        (
            {"event_name": "pull_request_target"},
            "invalid-publisher",
            "valid token, but no corresponding publisher (Publishing from a workflow "
            "invoked via 'pull_request_target' is not supported.)",
        ),
        (
            {"job_workflow_ref": f"{identity.REPOSITORY}/.github/workflows/release.yml@main"},
            "invalid-publisher",
            "valid token, but no corresponding publisher (The job_workflow_ref claim does not "
            f"match, expecting one of ['{identity.REPOSITORY}/.github/workflows/release.yml"
            f"@{identity.SHA}', '{identity.WORKFLOW_REF}'], got "
            f"'{identity.REPOSITORY}/.github/workflows/release.yml@main')",
        ),
        ({"iss": "https://issuer.invalid"}, "invalid-payload", "unknown trusted publishing issuer"),
        ({"exp": 1}, "invalid-token", "malformed or invalid token"),
    ],
)
def test_mint_refuses_as_pypi_does(
    index: LocalIndex, claims: dict[str, str | int], code: str, description: str
) -> None:
    index.claims.update(claims)

    assert refusal(mint(index, id_token(index))) == {"code": code, "description": description}
    assert index.minted_tokens == {}


def test_mint_checks_audience_and_whether_trusted_publishing_is_on(index: LocalIndex) -> None:
    assert refusal(mint(index, id_token(index, "testpypi")))["code"] == "invalid-token"

    index.trusted_publishing = "disabled"
    with https_client(index) as client:
        audience = client.get("/_/oidc/audience")
    assert (audience.status_code, audience.json()) == (
        403,
        {"message": "Trusted publishing functionality not enabled"},
    )
    assert refusal(mint(index, id_token(index)))["code"] == "not-enabled"

    index.trusted_publishing = "absent"
    with https_client(index) as client:
        assert client.get("/_/oidc/audience").status_code == 404


def test_a_publisher_without_environment_accepts_any(index: LocalIndex) -> None:
    index.publishers = [dataclasses.replace(default_publisher(), environment=None)]
    index.claims["environment"] = "staging"

    assert mint(index, id_token(index)).status_code == 200


def test_twine_upload_is_stored_and_listed_with_its_sha256(
    index: LocalIndex, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")

    answer = twine_upload(index, wheel, mint_token(index))

    assert (answer.status_code, answer.text) == (200, "")
    assert index.log[-1] == ("upload", "POST", "/legacy/", 200)
    assert index.files() == {wheel.name: sha256(wheel)}
    with https_client(index) as client:
        page = client.get("/simple/sample-project/").text
    assert f"{wheel.name}#sha256={sha256(wheel)}" in page
    installed = pip_install(index, "sample-project==1.0.0", tmp_path / "site")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert '__version__ = "1.0.0"' in (tmp_path / "site/sample_project/__init__.py").read_text()


def test_same_bytes_again_are_fine_other_bytes_already_exist(
    index: LocalIndex, tmp_path: Path
) -> None:
    token = mint_token(index)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    other = make_wheel(tmp_path / "other", "sample-project", "1.0.0", summary="Changed")
    twine_upload(index, wheel, token)

    again = twine_upload(index, wheel, token)
    clash = twine_upload(index, other, token)

    assert (again.status_code, again.text) == (200, "")
    blake2 = hashlib.blake2b(other.read_bytes(), digest_size=32).hexdigest()
    assert (clash.status_code, clash.reason) == (
        400,
        f"File already exists ('{other.name}', with blake2_256 hash '{blake2}'). "
        "See https://pypi.org/help/#file-name-reuse for more information.",
    )
    assert index.files() == {wheel.name: sha256(wheel)}


def test_pypiserver_mode_answers_existing_files_as_pypiserver(
    index: LocalIndex, tmp_path: Path
) -> None:
    index.mode = "pypiserver"
    index.api_tokens.add(STATIC_TOKEN)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    twine_upload(index, wheel, STATIC_TOKEN)

    again = twine_upload(index, wheel, STATIC_TOKEN)

    # 409 for other clients; twine's User-Agent gets a 400 with the message in the body.
    assert (again.status_code, again.reason) == (400, "Bad Request")
    assert "already exists" in again.text


def test_upload_credentials_are_checked_as_pypi_checks_them(
    index: LocalIndex, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    index.api_tokens.add(STATIC_TOKEN)
    index.publishers = [dataclasses.replace(default_publisher(), projects={"other-project"})]
    index.projects.add("sample-project")

    assert twine_upload(index, wheel, STATIC_TOKEN, username="alice").reason == (
        "Username/Password authentication is no longer supported. Migrate to API Tokens or "
        "Trusted Publishers instead. See https://pypi.org/help/#apitoken and "
        "https://pypi.org/help/#trusted-publishers"
    )
    assert twine_upload(index, wheel, "pypi-unknown").reason == (
        "Invalid or non-existent authentication information. "
        "See https://pypi.org/help/#invalid-auth for more information."
    )
    assert twine_upload(index, wheel, mint_token(index)).reason == (
        "Invalid API Token: OIDC scoped token is not valid for project 'sample-project', "
        "project-scoped token is not valid for project: 'sample-project'"
    )
    assert index.files() == {}
    assert twine_upload(index, wheel, STATIC_TOKEN).status_code == 200
    assert index.count("upload", 403) == 3


def test_projects_exist_as_warehouse_knows_them(index: LocalIndex, tmp_path: Path) -> None:
    index.publishers = [dataclasses.replace(default_publisher(), projects={"Named_Project"})]
    index.projects.add("declared-project")
    index.add_file(make_wheel(tmp_path, "stored-project", "1.0"))

    with https_client(index) as client:

        def page(project: str) -> httpx.Response:
            accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
            return client.get(f"{index.simple_url}{project}/", headers=accept)

        for known in ("named-project", "declared-project"):
            answer = page(known)
            assert answer.status_code == 200, known
            assert answer.json()["files"] == []
        assert len(page("stored-project").json()["files"]) == 1
        assert page("unknown-project").status_code == 404
        names = client.get(
            index.simple_url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        assert [p["name"] for p in names.json()["projects"]] == [
            "declared-project",
            "named-project",
            "stored-project",
        ]


def test_a_publishers_token_uploading_to_a_project_that_does_not_exist_gets_warehouses_400(
    index: LocalIndex, tmp_path: Path
) -> None:
    index.publishers = [dataclasses.replace(default_publisher(), projects={"other-project"})]
    index.api_tokens.add(STATIC_TOKEN)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")

    refused = twine_upload(index, wheel, mint_token(index))

    assert (refused.status_code, refused.reason) == (400, NEW_PROJECT)
    assert index.files() == {}
    # A user's API token creates the project.
    assert twine_upload(index, wheel, STATIC_TOKEN).status_code == 200
    assert set(index.files()) == {wheel.name}


def test_token_expiry_is_judged_once_the_whole_body_has_arrived(
    index: LocalIndex, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0", payload_size=384 * 1024)
    # Valid when the upload starts, expired by the time 1.5 s of body has come in.
    index.token_lifetime = 1.0
    index.upload_throttle = 256 * 1024

    answer = twine_upload(index, wheel, mint_token(index))

    assert (answer.status_code, answer.reason) == (403, "Invalid API Token: token is expired")


def test_upload_content_is_checked_as_pypi_checks_it(index: LocalIndex, tmp_path: Path) -> None:
    index.api_tokens.add(STATIC_TOKEN)
    index.file_size_limit = 1024 * 1024
    broken = make_wheel(
        tmp_path, "broken", "1.0", description=BROKEN_RST, description_content_type="text/x-rst"
    )
    mislabelled = make_wheel(tmp_path, "mislabelled", "1.0", metadata_overrides={"Version": "9.9"})
    large = make_wheel(tmp_path, "large", "1.0", payload_size=1024 * 1024)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")

    assert twine_upload(index, broken, STATIC_TOKEN).reason == (
        "The description failed to render for 'text/x-rst'. "
        "See https://pypi.org/help/#description-content-type for more information."
    )
    assert twine_upload(index, mislabelled, STATIC_TOKEN).reason == (
        "Version in filename should be '9.9' not '1.0'."
    )
    assert twine_upload(index, large, STATIC_TOKEN).reason == (
        "File too large. Limit for project 'large' is 1 MB. See https://docs.pypi.org/"
        "project-management/storage-limits#requesting-a-file-size-limit-increase "
        "for more information."
    )
    form = {"name": "sample-project", "version": "1.0.0", "sha256_digest": "0" * 64}
    with https_client(index) as client:
        tampered = client.post(
            "/legacy/",
            auth=("__token__", STATIC_TOKEN),
            data={":action": "file_upload", "protocol_version": "1", **form},
            files={"content": (wheel.name, wheel.read_bytes(), "application/octet-stream")},
        )
    assert (tampered.status_code, tampered.reason_phrase) == (
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    )
    assert index.files() == {}


def form_after_the_file(
    fields: dict[str, str], path: Path, after: dict[str, str]
) -> tuple[bytes, str]:
    """A multipart upload form with `fields`, then the file, then `after`; and its type."""
    boundary = "form-boundary-" + "7" * 16

    def part(disposition: str, value: bytes) -> bytes:
        head = f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n"
        return head.encode() + value + b"\r\n"

    body = b"".join(part(f'name="{k}"', v.encode()) for k, v in fields.items())
    body += part(f'name="content"; filename="{path.name}"', path.read_bytes())
    body += b"".join(part(f'name="{k}"', v.encode()) for k, v in after.items())
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("wrong", ["md5_digest", "sha256_digest", "blake2_256_digest"])
def test_digests_after_the_file_are_checked_as_pypi_checks_them(
    index: LocalIndex, tmp_path: Path, wrong: str
) -> None:
    # Warehouse reads the whole form before judging it: a digest may follow the file.
    index.api_tokens.add(STATIC_TOKEN)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    data = wheel.read_bytes()
    digests = {
        "md5_digest": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": "sample-project",
        "version": "1.0.0",
    }

    def upload(after: dict[str, str]) -> httpx.Response:
        body, content_type = form_after_the_file(fields, wheel, after)
        with https_client(index) as client:
            return client.post(
                "/legacy/",
                auth=("__token__", STATIC_TOKEN),
                content=body,
                headers={"Content-Type": content_type},
            )

    refused = upload({**digests, wrong: "0" * len(digests[wrong])})
    assert (refused.status_code, refused.reason_phrase) == (
        400,
        "The digest supplied does not match a digest calculated from the uploaded file.",
    )
    assert index.files() == {}
    assert upload(digests).status_code == 200
    assert index.files() == {wheel.name: sha256(wheel)}


def test_dists_are_valid_and_breakable_on_purpose(tmp_path: Path) -> None:
    good = [make_wheel(tmp_path, "sample-project", "1.0.0"), make_sdist(tmp_path, "x.y", "2")]
    broken = make_sdist(
        tmp_path / "b", "broken", "1", description=BROKEN_RST, description_content_type="text/x-rst"
    )

    assert [path.name for path in good] == ["sample_project-1.0.0-py3-none-any.whl", "x_y-2.tar.gz"]
    assert check([str(path) for path in good]) is False  # check() returns "failed"
    assert check([str(broken)]) is True
    assert make_wheel(tmp_path / "again", "sample-project", "1.0.0").read_bytes() == (
        good[0].read_bytes()
    )


def test_faults_are_acted_out_once_each_in_order(index: LocalIndex, tmp_path: Path) -> None:
    index.faults("audience", Fault.status(503, headers={"Retry-After": "0"}), Fault.delay(30))
    index.faults("upload", Fault.reset(after_bytes=1000))
    index.api_tokens.add(STATIC_TOKEN)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0", payload_size=512 * 1024)

    with https_client(index, timeout=0.5) as client:
        unavailable = client.get("/_/oidc/audience")
        with pytest.raises(httpx.ReadTimeout):
            client.get("/_/oidc/audience")
        assert client.get("/_/oidc/audience").json() == {"audience": index.audience}
        # Not twine: after a TLS-level EOF its session retries the POST with a spent body.
        with pytest.raises(httpx.TransportError):
            client.post("/legacy/", content=wheel.read_bytes())

    assert (unavailable.status_code, unavailable.reason_phrase) == (503, "Service Unavailable")
    assert unavailable.headers["Retry-After"] == "0"
    assert twine_upload(index, wheel, STATIC_TOKEN).status_code == 200
    # The delayed request is still waiting: it is dropped, never logged.
    assert [(entry.endpoint, entry.status) for entry in index.log] == [
        ("audience", 503),
        ("audience", 200),
        ("upload", "reset"),
        ("upload", 200),
    ]


def test_misrouted_uploads_are_redirected_or_refused(index: LocalIndex) -> None:
    with https_client(index) as client:
        redirect = client.post("/legacy", content=b"x")
        assert client.get("/legacy/").status_code == 405
        assert client.get("/nowhere").status_code == 404

    assert (redirect.status_code, redirect.headers["Location"]) == (308, "/legacy/")


FAKE_ENTRYPOINT = """
import json, os, pathlib
pathlib.Path("env.json").write_text(json.dumps(dict(os.environ)))
print("::add-mask::s3cret")
print("::error file=dist/a.whl,line=3,title=Bad%3A thing%2C here::line one%0Aline two %25")
print("::stop-commands::pause-token")
print("::warning::ignored while commands are stopped")
print("::pause-token::")
print("  ::notice::indented")
pathlib.Path(os.environ["GITHUB_OUTPUT"]).write_text("a=b=c\\nfiles<<EOF_1\\n[1,\\n 2]\\nEOF_1\\n")
pathlib.Path(os.environ["GITHUB_STEP_SUMMARY"]).write_text("# Summary\\n")
print(os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "no token"))
"""


def test_runner_builds_the_containers_environment_and_reads_commands_back(
    index: LocalIndex, workspace: Path
) -> None:
    entrypoint = workspace.parent / "entrypoint.py"
    entrypoint.write_text(FAKE_ENTRYPOINT)

    result = run_action(index, workspace, {"verbose": "true"}, entrypoint=entrypoint)
    env = json.loads((workspace / "env.json").read_text())

    assert result.returncode == 0, result.stderr
    assert env["INPUT_REPOSITORY-URL"] == index.upload_url
    assert (env["INPUT_VERBOSE"], env["INPUT_PACKAGES-DIR"], env["INPUT_PASSWORD"]) == (
        "true",
        "dist",
        "",
    )
    assert env["GITHUB_WORKSPACE"] == str(workspace)
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == str(index.ca_pem)
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"] == index.id_token_request_url
    assert "PIP_CONFIG_FILE" not in env  # only PATH comes from the test process
    assert "OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG" not in env
    assert result.annotations == [
        Annotation("error", "line one\nline two %", "Bad: thing, here", "dist/a.whl", 3),
        Annotation("notice", "indented"),
    ]
    assert result.masks == ["s3cret"]
    assert result.outputs == {"a": "b=c", "files": "[1,\n 2]"}
    assert result.summary == "# Summary\n"
    assert result.leaked(index) == [index.id_token_request_token]

    without = run_action(index, workspace, entrypoint=entrypoint, id_token=False)
    env = json.loads((workspace / "env.json").read_text())

    assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in env
    assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in env
    assert without.leaked(index) == []

    run_action(index, workspace, entrypoint=entrypoint, sigstore=True)
    env = json.loads((workspace / "env.json").read_text())

    # The action signs against the index's Sigstore, reached through the index's CA.
    assert env["OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG"] == str(index.sigstore_trust_config)
    assert env["REQUESTS_CA_BUNDLE"] == str(index.ca_pem)
    with pytest.raises(ValueError, match="no-such-input"):
        run_action(index, workspace, {"no-such-input": "x"}, entrypoint=entrypoint)


def _client_hello(extensions: bytes) -> bytes:
    """A TLS record holding a ClientHello (TLS 1.2 form) with these extensions."""
    ciphers = bytes.fromhex("1301c02f")
    body = b"\x03\x03" + bytes(32) + b"\x00" + len(ciphers).to_bytes(2, "big") + ciphers
    body += b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def test_a_hello_the_server_refuses_is_noted_and_excuses_one_retry_notice_for_it(
    index: LocalIndex,
) -> None:
    # An empty server_name list: OpenSSL refuses it as it once refused, under load, a
    # hello from the action (BAD_EXTENSION, answered with a decode_error alert).
    with socket.create_connection(("127.0.0.1", index.port), timeout=10) as raw:
        raw.sendall(_client_hello(extensions=bytes.fromhex("000000020000")))
        answer = b"".join(iter(lambda: raw.recv(4096), b""))  # the server closes after noting

    assert answer == bytes.fromhex("15030300020232")  # fatal alert 50, decode_error
    assert index.failed_handshakes == ["BAD_EXTENSION"]

    retry = Annotation(
        "notice",
        "Attempt 1 failed (`cannot connect to 127.0.0.1 directly, with no proxy: [SSL: "
        "TLSV1_ALERT_DECODE_ERROR] tlsv1 alert decode error (_ssl.c:1006)`); retrying in 0.8s.",
        "Retrying the audience endpoint",
    )
    other = dataclasses.replace(retry, message="Attempt 1 failed (`HTTP 503`); retrying in 1s.")
    warning = dataclasses.replace(retry, level="warning")
    run = ActionRun(0, "", "", "", {}, "", [warning, retry, other, retry], [])

    assert run.annotations_besides(index.failed_handshakes) == [warning, other, retry]
    assert run.annotations_besides([]) == run.annotations
    index.reset()
    assert index.failed_handshakes == []


def test_an_index_in_a_process_of_its_own_serves_a_whole_run(workspace: Path) -> None:
    # The benchmark's index: every request of the run, and every reading, crosses into
    # the child process.
    wheel = make_wheel(workspace / "dist", "sample-project", "1.0.0")
    with IndexProcess() as index:
        index.add_api_token(STATIC_TOKEN)

        result = run_action(index, workspace)

        assert result.returncode == 0, result.stdout + result.stderr
        assert index.files() == {wheel.name: sha256(wheel)}
        assert STATIC_TOKEN in index.secrets()
        assert result.leaked(index) == []
        index.reset()
        assert (index.files(), index.secrets()) == ({}, [index.id_token_request_token])


def test_a_drip_sends_headers_at_once_then_a_byte_at_a_time(index: LocalIndex) -> None:
    index.faults("simple", Fault.drip(size=4, every=0.2))

    with https_client(index, timeout=0.5) as client:
        started = time.monotonic()
        with client.stream("GET", "/simple/sample-project/") as answer:
            headers_after = time.monotonic() - started
            body = answer.read()
        total = time.monotonic() - started

    assert headers_after < 0.2
    # No single read waited 0.5 s, yet the whole answer took longer than that.
    assert total >= 0.8
    assert (answer.status_code, answer.headers["Content-Length"], body) == (200, "4", b"{   ")
    assert index.log == [("simple", "GET", "/simple/sample-project/", 200)]


@pytest.mark.parametrize("kind", ["json", "html"])
def test_a_huge_body_is_generated_as_it_is_sent(index: LocalIndex, kind: str) -> None:
    size = 64 * 1024 * 1024 + 7
    index.faults("simple", Fault.huge(size, kind), Fault.huge(100_000, kind))  # type: ignore[arg-type]

    with https_client(index, timeout=30) as client:
        with client.stream("GET", "/simple/sample-project/") as answer:
            received = sum(len(chunk) for chunk in answer.iter_raw())
        small = client.get("/simple/sample-project/")

    assert received == size == int(answer.headers["Content-Length"])
    assert len(small.content) == 100_000
    if kind == "json":
        assert answer.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        assert small.json()["meta"] == {"api-version": "1.4"}
    else:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert small.text.endswith("</body></html>\n")


def test_a_huge_body_of_undeclared_length_ends_when_the_connection_closes(
    index: LocalIndex,
) -> None:
    size = 8 * 1024 * 1024 + 3
    index.faults("simple", Fault.huge(size, declared=False))

    with (
        https_client(index, timeout=30) as client,
        client.stream("GET", "/simple/sample-project/") as answer,
    ):
        received = sum(len(chunk) for chunk in answer.iter_raw())

    assert "Content-Length" not in answer.headers
    assert received == size


def test_a_huge_page_opens_with_its_heading(index: LocalIndex) -> None:
    heading = "Package 'x' <already> exists!"
    index.faults("upload", Fault.huge(100_000, "html", 400, heading=heading))

    with https_client(index, timeout=30) as client:
        answer = client.post("/legacy/")

    assert (answer.status_code, len(answer.content)) == (400, 100_000)
    assert answer.text.startswith(
        "<!DOCTYPE html><html><body>\n<h1>Package &#x27;x&#x27; &lt;already&gt; exists!</h1>\n"
    )
    assert answer.text.endswith("</body></html>\n")


def test_a_cut_answer_ends_short_of_its_length(index: LocalIndex) -> None:
    index.faults("upload", Fault.cut(400, 10_000, after_bytes=100))

    with (
        https_client(index, timeout=30) as client,
        client.stream("POST", "/legacy/") as answer,
        pytest.raises(httpx.RemoteProtocolError, match="received 100 bytes, expected 10000"),
    ):
        answer.read()

    assert (answer.status_code, answer.headers["Content-Length"]) == (400, "10000")
    assert index.log == [("upload", "POST", "/legacy/", 400)]


def test_a_reason_phrase_goes_out_raw_control_characters_included(index: LocalIndex) -> None:
    reason = "File already exists ##[stop-commands]x\r::add-mask::y"
    index.faults("upload", Fault.status(400, reason), Fault.status(400, reason))
    trust = ssl.create_default_context(cafile=str(index.ca_pem))
    request = b"POST /legacy/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"

    with (
        socket.create_connection(("127.0.0.1", index.port)) as raw,
        trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        status_line = tls.makefile("rb").readline()
    with https_client(index) as client, pytest.raises(httpx.RemoteProtocolError):
        # A strict client (h11) refuses the status line; a lax one reads it through.
        client.post("/legacy/")

    assert status_line == b"HTTP/1.1 400 " + reason.encode() + b"\r\n"


def test_a_body_announced_with_expect_100_continue_is_asked_for_at_once(
    index: LocalIndex,
) -> None:
    trust = ssl.create_default_context(cafile=str(index.ca_pem))
    head = (
        b"POST /legacy/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )

    with (
        socket.create_connection(("127.0.0.1", index.port)) as raw,
        trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        # Without the interim answer this read waits until the timeout, as curl would.
        tls.settimeout(10)
        tls.sendall(head)
        answer = tls.makefile("rb")
        interim = [answer.readline(), answer.readline()]
        tls.sendall(b"hello")
        final = answer.readline()

    assert interim == [b"HTTP/1.1 100 Continue\r\n", b"\r\n"]
    assert final.startswith(b"HTTP/1.1 403 ")
    assert index.log == [("upload", "POST", "/legacy/", 403)]


def test_a_redirect_to_plain_http_and_odd_headers(index: LocalIndex) -> None:
    index.faults(
        "simple",
        Fault.redirect(301),
        Fault.redirect(302, "/simple/other/"),
        Fault.status(503, headers={"Retry-After": "²"}),
    )

    with https_client(index) as client:
        moved = client.get("/simple/sample-project/?format=json")
        found = client.get("/simple/sample-project/")
        unavailable = client.get("/simple/")

    assert moved.status_code == 301
    assert moved.headers["Location"] == (
        f"http://127.0.0.1:{index.port}/simple/sample-project/?format=json"
    )
    assert (found.status_code, found.headers["Location"]) == (
        302,
        f"http://127.0.0.1:{index.port}/simple/other/",
    )
    assert (b"Retry-After", "²".encode("latin-1")) in unavailable.headers.raw


SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def simple_json(index: LocalIndex, project: str = "sample-project") -> httpx.Response:
    with https_client(index) as client:
        return client.get(
            f"/simple/{project}/", headers={"Accept": SIMPLE_JSON, "Cache-Control": "no-cache"}
        )


def test_simple_api_answers_json_when_asked_with_upload_times_and_status(
    index: LocalIndex, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    old = make_wheel(tmp_path, "sample-project", "0.9")
    index.add_file(old, uploaded_at=1_700_000_000.25)
    before = time.time()
    twine_upload(index, wheel, mint_token(index))

    answer = simple_json(index)
    with https_client(index) as client:
        page = client.get("/simple/sample-project/", headers={"Accept": "text/html"})
        root = client.get("/simple/", headers={"Accept": f"text/html;q=0.5, {SIMPLE_JSON}"})
        redirect = client.get("/simple/Sample_Project/")

    assert answer.headers["Content-Type"] == SIMPLE_JSON
    body = answer.json()
    assert body["meta"] == {"api-version": "1.4"}
    assert body["project-status"] == {"status": "active"}
    assert (body["name"], body["versions"]) == ("sample-project", ["0.9", "1.0.0"])
    by_name = {file["filename"]: file for file in body["files"]}
    assert by_name[old.name]["upload-time"] == "2023-11-14T22:13:20.250000Z"
    new = by_name[wheel.name]
    assert new["hashes"] == {"sha256": sha256(wheel)}
    assert new["url"] == f"{index.url}/packages/{wheel.name}"
    assert new["provenance"] is None
    assert new["size"] == wheel.stat().st_size
    uploaded = datetime.fromisoformat(new["upload-time"].replace("Z", "+00:00")).timestamp()
    assert before - 1 <= uploaded <= time.time()
    assert page.headers["Content-Type"] == "text/html"
    assert f"{wheel.name}#sha256={sha256(wheel)}" in page.text
    assert '<meta name="pypi:project-status" content="active">' in page.text
    assert root.json()["projects"] == [{"name": "sample-project"}]
    assert (redirect.status_code, redirect.headers["Location"]) == (301, "/simple/sample-project/")
    with https_client(index) as client:
        assert client.get(new["url"]).content == wheel.read_bytes()


def test_project_status_is_listed_and_closes_uploads(index: LocalIndex, tmp_path: Path) -> None:
    index.add_file(make_wheel(tmp_path, "sample-project", "0.9"))
    index.project_status["sample-project"] = "archived"
    index.project_status_reason["sample-project"] = "moved to other-project"

    refused = twine_upload(index, make_wheel(tmp_path, "sample-project", "1.0"), mint_token(index))

    assert simple_json(index).json()["project-status"] == {
        "status": "archived",
        "reason": "moved to other-project",
    }
    assert refused.status_code == 400
    index.project_status["sample-project"] = "quarantined"
    assert simple_json(index).json()["files"] == []


def test_no_new_files_in_a_release_older_than_14_days(index: LocalIndex, tmp_path: Path) -> None:
    token = mint_token(index)
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    index.add_file(wheel, uploaded_at=time.time() - 15 * 24 * 3600)

    again = twine_upload(index, wheel, token)
    sdist = twine_upload(index, make_sdist(tmp_path, "sample-project", "1.0.0"), token)
    other_release = twine_upload(index, make_wheel(tmp_path, "sample-project", "1.0.1"), token)

    assert again.status_code == 200  # the same bytes again change nothing
    assert (sdist.status_code, sdist.reason) == (
        400,
        "Uploading new files to releases older than 14 days is not allowed.",
    )
    assert other_release.status_code == 200


def test_only_one_sdist_per_release(index: LocalIndex, tmp_path: Path) -> None:
    token = mint_token(index)
    first = make_sdist(tmp_path, "sample-project", "1.0.0")
    second = make_sdist(tmp_path, "sample-project", "1.0.0", filename="sample-project-1.0.0.tar.gz")

    assert twine_upload(index, first, token).status_code == 200
    refused = twine_upload(index, second, token)

    assert (refused.status_code, refused.reason) == (
        400,
        "Only one sdist may be uploaded per release.",
    )


def test_a_new_file_is_listed_after_some_reads_or_never(index: LocalIndex, tmp_path: Path) -> None:
    token = mint_token(index)
    index.listing_delay = 2
    twine_upload(index, make_wheel(tmp_path, "sample-project", "1.0.0"), token)

    reads = [simple_json(index).status_code for _ in range(3)]

    assert reads == [404, 404, 200]
    assert [request.headers.get("Cache-Control") for request in index.simple_requests] == [
        "no-cache"
    ] * 3
    index.listing_delay = "never"
    hidden = make_wheel(tmp_path, "sample-project", "1.0.1")
    twine_upload(index, hidden, token)
    for _ in range(5):
        names = [file["filename"] for file in simple_json(index).json()["files"]]
        assert hidden.name not in names
    assert hidden.name in index.files()
