"""oidc_publish.attest against the local Sigstore, in process, never sleeping for real."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from oidc_publish.attest import TRUST_CONFIG_VARIABLE, File, sign_all
from oidc_publish.errors import SigningFailed
from oidc_publish.network import RetryPolicy, Transient
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext
from tests.localindex import identity
from tests.localindex.dists import make_wheel
from tests.localindex.oidc import Issuer, default_publisher
from tests.localindex.sigstore import Fault, LocalSigstore, Served, serve, verify_upload

POLICY = RetryPolicy(attempts=4, base=1.0, cap=30.0, budget=120.0)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve() as running:
        yield running


@pytest.fixture
def local(served: Served, monkeypatch: pytest.MonkeyPatch) -> LocalSigstore:
    served.sigstore.reset()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(served.ca_pem))
    return served.sigstore


class Tokens:
    """The caller's identity-token callable: GitHub tokens for `sigstore`, counted."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def __call__(self) -> str:
        token = self.served.issuer.id_token("sigstore", identity.default_claims())
        with self._lock:
            self.issued.append(token)
        return token


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Collecting(Reporter):
    """A reporter whose log a test can read."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        super().__init__(RunnerContext.from_env({}), self.stream)

    def text(self) -> str:
        return self.stream.getvalue()


def quiet() -> Collecting:
    return Collecting()


def wheels(folder: Path, count: int) -> list[File]:
    files = []
    for n in range(count):
        path = make_wheel(folder, "sample-project", f"1.0.{n}")
        files.append(File(path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return files


def environ(local: LocalSigstore) -> dict[str, str]:
    return {TRUST_CONFIG_VARIABLE: str(local.trust_config_path)}


def assert_pypi_accepts(
    local: LocalSigstore, files: list[File], signed: dict[str, dict[str, Any]]
) -> None:
    assert list(signed) == [f.path.name for f in files]
    for file in files:
        verify_upload(
            [signed[file.path.name]],
            filename=file.path.name,
            sha256=file.sha256,
            publisher=default_publisher(),
            trust_config=local.trust_config_path,
        )


def test_every_file_is_attested_with_one_token_and_one_certificate(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    files = wheels(tmp_path / "dist", 12)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    tokens = Tokens(served)

    signed = sign_all(
        files,
        identity_token=tokens,
        environ=environ(local),
        policy=POLICY,
        reporter=quiet(),
        workers=4,
    )

    assert_pypi_accepts(local, files, signed)
    assert len(tokens.issued) == 1
    assert local.certificates_issued == 1
    assert local.entries == 12
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "wrote into the workspace"


def test_a_rekor_502_and_a_reset_are_retried(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    files = wheels(tmp_path, 3)
    local.faults("rekor", Fault.status(502, headers={"Retry-After": "7"}), Fault.reset())
    sleeps, notices = Sleeps(), quiet()

    signed = sign_all(
        files,
        identity_token=Tokens(served),
        environ=environ(local),
        policy=replace(POLICY, sleep=sleeps),
        reporter=notices,
        workers=1,
    )

    assert_pypi_accepts(local, files, signed)
    assert local.count("rekor", 502) == 1
    assert local.count("rekor", "reset") == 1
    assert local.entries == 3
    assert sleeps.delays[0] == 7.0, "Retry-After is honoured"
    assert len(sleeps.delays) == 2
    assert "Sigstore (Rekor): attempt 1 failed (HTTP 502 Bad Gateway)" in notices.text()


def test_fulcio_down_for_good_is_one_error_naming_it(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    local.faults("fulcio", *[Fault.status(503)] * POLICY.attempts)
    tokens = Tokens(served)

    with pytest.raises(SigningFailed) as failed:
        sign_all(
            wheels(tmp_path, 2),
            identity_token=tokens,
            environ=environ(local),
            policy=replace(POLICY, sleep=Sleeps()),
            reporter=quiet(),
        )

    error = failed.value
    assert error.code == "signing-failed"
    assert error.message.startswith("Fulcio kept failing: 4 attempt(s), the last: `HTTP 503")
    assert "https://status.sigstore.dev" in error.message
    assert "`attestations: false`" in error.fix
    assert local.count("fulcio", 503) == POLICY.attempts
    assert local.entries == 0
    assert tokens.issued
    assert not any(t in error.message + error.fix for t in tokens.issued)


def test_fulcio_refusing_the_token_is_not_retried(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    # A token for `sigstore`, but signed by a key the (local) GitHub issuer does not have.
    stranger = Issuer()
    sleeps = Sleeps()

    with pytest.raises(SigningFailed) as failed:
        sign_all(
            wheels(tmp_path, 1),
            identity_token=lambda: stranger.id_token("sigstore", identity.default_claims()),
            environ=environ(local),
            policy=replace(POLICY, sleep=sleeps),
            reporter=quiet(),
        )

    assert failed.value.message.startswith(
        "Fulcio refused to sign: `HTTP 401 Unauthorized: "
        "There was an error processing the identity token`."
    )
    assert sleeps.delays == []
    assert local.count("fulcio") == 1


def test_an_identity_token_failure_is_retried_as_the_callable_says(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    calls = []
    tokens = Tokens(served)

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Transient("GitHub identity token: HTTP 503")
        return tokens()

    signed = sign_all(
        wheels(tmp_path, 1),
        identity_token=flaky,
        environ=environ(local),
        policy=replace(POLICY, sleep=Sleeps()),
        reporter=quiet(),
    )
    assert len(signed) == 1
    assert len(calls) == 2


def test_a_certificate_running_short_is_renewed_once_for_all_workers(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    files = wheels(tmp_path, 16)
    start = local.clock()

    def clock() -> float:
        # After half the entries, 9 m 50 s have passed: the first certificate (10 minutes)
        # has less than the margin left; the second, issued then, has all of it.
        return start + (590.0 if local.entries >= 8 else 0.0)

    local.clock = clock
    tokens = Tokens(served)

    signed = sign_all(
        files,
        identity_token=tokens,
        environ=environ(local),
        policy=POLICY,
        reporter=quiet(),
        workers=4,
        clock=clock,
        renew_margin=60.0,
    )

    assert_pypi_accepts(local, files, signed)
    assert local.certificates_issued == 2
    assert len(tokens.issued) == 2
    certificates = {signed[f.path.name]["verification_material"]["certificate"] for f in files}
    assert len(certificates) == 2


def test_concurrent_entries_never_exceed_the_workers(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    files = wheels(tmp_path, 18)
    local.rekor_delay = 0.02

    signed = sign_all(
        files,
        identity_token=Tokens(served),
        environ=environ(local),
        policy=POLICY,
        reporter=quiet(),
        workers=3,
    )

    assert len(signed) == 18
    assert 1 <= local.max_in_flight <= 3


def test_an_unreadable_trust_config_is_one_error(
    served: Served, local: LocalSigstore, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(SigningFailed) as failed:
        sign_all(
            wheels(tmp_path, 1),
            identity_token=Tokens(served),
            environ={TRUST_CONFIG_VARIABLE: str(missing)},
            policy=POLICY,
            reporter=quiet(),
        )
    assert str(missing) in failed.value.message


def test_nothing_to_sign_imports_nothing() -> None:
    signed = sign_all([], identity_token=lambda: "", environ={}, policy=POLICY, reporter=quiet())
    assert signed == {}
