"""oidc_publish.attest against the local index's Sigstore, in process, never sleeping for real."""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from oidc_publish.attest import TRUST_CONFIG_VARIABLE, File, sign_all
from oidc_publish.errors import Cancelled, SigningFailed
from oidc_publish.network import Transient
from oidc_publish.stop import Stop
from tests.inprocess import SIGNING_POLICY, Journal, Sleeps, attest
from tests.localindex import identity
from tests.localindex.clients import id_token
from tests.localindex.dists import make_wheel, sha256
from tests.localindex.oidc import Issuer, default_publisher
from tests.localindex.server import Fault, LocalIndex
from tests.localindex.sigstore import verify_upload


def wheels(folder: Path, count: int) -> list[Path]:
    return [make_wheel(folder, "sample-project", f"1.0.{n}") for n in range(count)]


def assert_pypi_accepts(
    index: LocalIndex, paths: list[Path], signed: dict[str, dict[str, Any]]
) -> None:
    assert list(signed) == [path.name for path in paths]
    for path in paths:
        verify_upload(
            [signed[path.name]],
            filename=path.name,
            sha256=sha256(path),
            publisher=default_publisher(),
            trust_config=index.sigstore_trust_config,
        )


def test_every_file_is_attested_with_one_token_and_one_certificate(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    paths = wheels(tmp_path / "dist", 12)
    before = sorted(p.name for p in tmp_path.rglob("*"))

    signed = attest(index, paths, workers=4)

    assert_pypi_accepts(index, paths, signed)
    assert len(index.issued_id_tokens) == 1
    assert index.sigstore.certificates_issued == 1
    assert index.sigstore.entries == 12
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "wrote into the workspace"


def test_a_rekor_502_and_a_reset_are_retried(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    paths = wheels(tmp_path, 3)
    # The reset comes once the entry (a few kB) is read: one while the client is still
    # sending reaches sign_all as requests' SSLError (SSLEOFError), which it reports as an
    # untrusted certificate rather than retrying.
    whole_entry = 1 << 20
    index.faults(
        "rekor",
        Fault.status(502, headers={"Retry-After": "7"}),
        Fault.reset(after_bytes=whole_entry),
    )
    sleeps, notices = Sleeps(), Journal()

    signed = attest(
        index, paths, policy=replace(SIGNING_POLICY, sleep=sleeps), reporter=notices, workers=1
    )

    assert_pypi_accepts(index, paths, signed)
    assert index.count("rekor", 502) == 1
    assert index.count("rekor", "reset") == 1
    assert index.sigstore.entries == 3
    assert sleeps.waits[0] == 7.0, "Retry-After is honoured"
    assert len(sleeps.waits) == 2
    assert "Sigstore (Rekor): attempt 1 failed (HTTP 502 Bad Gateway)" in notices.text()


def test_fulcio_down_for_good_is_one_error_naming_it(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    index.faults("fulcio", *[Fault.status(503)] * SIGNING_POLICY.attempts)

    with pytest.raises(SigningFailed) as failed:
        attest(index, wheels(tmp_path, 2))

    error = failed.value
    assert error.code == "signing-failed"
    assert error.message.startswith("Fulcio kept failing: 4 attempt(s), the last: `HTTP 503")
    assert "https://status.sigstore.dev" in error.message
    assert "`attestations: false`" in error.fix
    assert index.count("fulcio", 503) == SIGNING_POLICY.attempts
    assert index.sigstore.entries == 0
    assert index.issued_id_tokens
    assert not any(t in error.message + error.fix for t in index.issued_id_tokens)


def test_fulcio_refusing_the_token_is_not_retried(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    # A token for `sigstore`, but signed by a key the (local) GitHub issuer does not have.
    stranger = Issuer()
    sleeps = Sleeps()

    with pytest.raises(SigningFailed) as failed:
        attest(
            index,
            wheels(tmp_path, 1),
            identity_token=lambda: stranger.id_token("sigstore", identity.default_claims()),
            policy=replace(SIGNING_POLICY, sleep=sleeps),
        )

    assert failed.value.message.startswith(
        "Fulcio refused to sign: `HTTP 401 Unauthorized: "
        "There was an error processing the identity token`."
    )
    assert sleeps.waits == []
    assert index.count("fulcio") == 1


def test_an_identity_token_failure_is_retried_as_the_callable_says(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Transient("GitHub identity token: HTTP 503")
        return id_token(index, "sigstore")

    signed = attest(index, wheels(tmp_path, 1), identity_token=flaky)
    assert len(signed) == 1
    assert len(calls) == 2


def test_a_certificate_running_short_is_renewed_once_for_all_workers(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    paths = wheels(tmp_path, 16)
    local = index.sigstore
    start = local.clock()

    def clock() -> float:
        # After half the entries, 9 m 50 s have passed: the first certificate (10 minutes)
        # has less than the margin left; the second, issued then, has all of it.
        return start + (590.0 if local.entries >= 8 else 0.0)

    local.clock = clock

    signed = attest(index, paths, workers=4, clock=clock, renew_margin=60.0)

    assert_pypi_accepts(index, paths, signed)
    assert local.certificates_issued == 2
    assert len(index.issued_id_tokens) == 2
    certificates = {signed[p.name]["verification_material"]["certificate"] for p in paths}
    assert len(certificates) == 2


def test_concurrent_entries_never_exceed_the_workers(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    index.sigstore.rekor_delay = 0.02

    signed = attest(index, wheels(tmp_path, 18), workers=3)

    assert len(signed) == 18
    assert 1 <= index.sigstore.max_in_flight <= 3


@dataclass(frozen=True)
class Stopping:
    """A file whose signing, as it starts, finds the run stopped."""

    path: Path
    stop: Stop

    @property
    def sha256(self) -> str:
        self.stop.cancel(signal.SIGTERM)
        return sha256(self.path)


def test_no_log_entry_starts_once_the_run_is_stopped(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    first, second, third = wheels(tmp_path, 3)
    stop = Stop()

    with pytest.raises(Cancelled):
        sign_all(
            [File(first, sha256(first)), Stopping(second, stop), File(third, sha256(third))],
            identity_token=lambda: id_token(index, "sigstore"),
            environ={TRUST_CONFIG_VARIABLE: str(index.sigstore_trust_config)},
            policy=replace(SIGNING_POLICY, stop=stop),
            reporter=Journal(),
            workers=1,
        )

    assert index.count("rekor") == 1
    assert index.sigstore.entries == 1


def test_an_unreadable_trust_config_is_one_error(signing: LocalIndex, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(SigningFailed) as failed:
        attest(signing, wheels(tmp_path, 1), environ={TRUST_CONFIG_VARIABLE: str(missing)})
    assert str(missing) in failed.value.message


def test_nothing_to_sign_imports_nothing() -> None:
    signed = sign_all(
        [], identity_token=lambda: "", environ={}, policy=SIGNING_POLICY, reporter=Journal()
    )
    assert signed == {}
