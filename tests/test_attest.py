"""oidc_publish.attest against the local index's Sigstore, in process, never sleeping for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from oidc_publish.attest import TRUST_CONFIG_VARIABLE, File, sign_all
from oidc_publish.errors import Cancelled, SigningFailed
from oidc_publish.network import Transient
from oidc_publish.stop import Stop
from tests.inprocess import PATIENCE, SIGNING_POLICY, FakeTime, Journal, Sleeps, attest
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
    assert 'Sigstore (Rekor): attempt 1 failed ("HTTP 502 Bad Gateway")' in notices.text()


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
    assert failed.value.message == (
        f"{TRUST_CONFIG_VARIABLE} names `{missing}`, which cannot be opened "
        "(No such file or directory)."
    )


def fifo(folder: Path) -> Path:
    os.mkfifo(folder / "trust.json")
    return folder / "trust.json"


def two_mib_file(folder: Path) -> Path:
    path = folder / "trust.json"
    path.write_bytes(b" " * (2 << 20))
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        # No writer ever comes: opened to be read, it would wait for ever.
        (fifo, "is a FIFO (named pipe), not a regular file"),
        # Read whole, it never ends (it grew a run to 2.4 GB).
        (lambda _: Path("/dev/zero"), "is a character device, not a regular file"),
        (lambda folder: folder, "is a directory, not a regular file"),
        (two_mib_file, "is larger than 1 MiB"),
    ],
    ids=["fifo", "dev-zero", "directory", "2-mib-file"],
)
def test_a_trust_config_that_is_no_small_regular_file_is_refused_unread(
    signing: LocalIndex, tmp_path: Path, make: Any, why: str
) -> None:
    index = signing
    path = make(tmp_path)
    sleeps = Sleeps()

    with pytest.raises(SigningFailed) as failed:
        attest(
            index,
            wheels(tmp_path / "dist", 1),
            environ={TRUST_CONFIG_VARIABLE: str(path)},
            policy=replace(SIGNING_POLICY, sleep=sleeps),
            # Were the file read, the read would outlast this and end as a retried timeout.
            request_deadline=PATIENCE,
        )

    error = failed.value
    assert error.message == f"{TRUST_CONFIG_VARIABLE} names `{path}`, which {why}."
    assert error.fix.startswith(f"Point {TRUST_CONFIG_VARIABLE} at a client trust config file")
    assert "a regular file of at most 1 MiB" in error.fix
    assert sleeps.waits == []
    assert index.count("fulcio") == 0


# --- bounded in time and size ----------------------------------------------------------------


def test_a_dripping_fulcio_is_abandoned_at_the_request_deadline_and_asked_again(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    paths = wheels(tmp_path, 2)
    # A byte every 0.1 s: no wait for a byte reaches the 1 s timeout, and the whole answer
    # would take 100 s.
    index.faults("fulcio", Fault.drip(size=1000, every=0.1))
    notices = Journal()

    started = time.monotonic()
    signed = attest(index, paths, reporter=notices, timeout=1.0, request_deadline=0.5)
    elapsed = time.monotonic() - started

    assert_pypi_accepts(index, paths, signed)
    assert elapsed < 10
    assert index.count("fulcio") == 2
    assert index.sigstore.certificates_issued == 1
    [retry] = notices.lines
    assert retry.startswith('Sigstore (Fulcio): attempt 1 failed ("no complete answer within ')


def test_a_rekor_that_always_drips_ends_as_one_error_within_the_policy(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    policy = replace(SIGNING_POLICY, attempts=2)
    index.faults("rekor", *[Fault.drip(size=1000, every=0.1)] * 2)

    started = time.monotonic()
    with pytest.raises(SigningFailed) as failed:
        attest(index, wheels(tmp_path, 1), policy=policy, timeout=1.0, request_deadline=0.5)
    elapsed = time.monotonic() - started

    assert failed.value.message.startswith(
        "Rekor kept failing: 2 attempt(s), the last: `no complete answer within "
    )
    assert elapsed < 10
    assert index.count("rekor") == 2
    assert index.sigstore.entries == 0


def test_the_signing_step_ends_at_its_own_deadline(signing: LocalIndex, tmp_path: Path) -> None:
    index = signing
    clock = FakeTime()
    # Each failure asks for 4 s; the step has 10 s: after two waits the third would pass it.
    index.faults("fulcio", *[Fault.status(503, headers={"Retry-After": "4"})] * 3)
    policy = replace(SIGNING_POLICY, attempts=6, sleep=clock.sleep, clock=clock.clock)

    with pytest.raises(SigningFailed) as failed:
        attest(index, wheels(tmp_path, 3), policy=policy, deadline=10.0)

    assert failed.value.message == (
        "Signing did not finish within its deadline of 10s for 3 file(s); the last failure, "
        "from Fulcio: `HTTP 503 Service Unavailable`. Sigstore's status: "
        "https://status.sigstore.dev"
    )
    assert clock.sleeps == [4.0, 4.0]
    assert index.count("fulcio") == 3
    assert index.sigstore.entries == 0


@pytest.fixture
def stuck_trust_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Sigstore's production trust root, as a TUF repository that never answers.

    ClientTrustConfig.production() asks tuf-repo-cdn.sigstore.dev, which no local server
    can stand in for; its stand-in waits until the test ends.
    """
    from sigstore.models import ClientTrustConfig

    released = threading.Event()

    def production(*_: object, **__: object) -> ClientTrustConfig:
        released.wait(PATIENCE)
        raise AssertionError("the trust root was waited for past the request deadline")

    monkeypatch.setattr(ClientTrustConfig, "production", production)
    yield released
    released.set()


def test_a_trust_root_that_never_comes_is_abandoned_at_the_request_deadline(
    signing: LocalIndex, tmp_path: Path, stuck_trust_root: threading.Event
) -> None:
    with pytest.raises(SigningFailed) as failed:
        attest(
            signing,
            wheels(tmp_path, 1),
            environ={},
            policy=replace(SIGNING_POLICY, attempts=2),
            request_deadline=0.2,
        )

    assert failed.value.message.startswith(
        "the trust root kept failing: 2 attempt(s), the last: `no complete answer within "
    )
    assert signing.count("fulcio") == 0


# A child process signs, so that its peak resident memory is the signing's alone.
SIGN_IN_A_CHILD = """
import io, json, resource, sys
from pathlib import Path
from oidc_publish.attest import TRUST_CONFIG_VARIABLE, File, sign_all
from oidc_publish.errors import SigningFailed
from oidc_publish.network import RetryPolicy
from oidc_publish.report import Reporter
from oidc_publish.runner import RunnerContext

job = json.load(sys.stdin)
errors = []
for token in job["tokens"]:
    try:
        sign_all(
            [File(Path(job["path"]), job["sha256"])],
            identity_token=lambda token=token: token,
            environ={TRUST_CONFIG_VARIABLE: job["trust_config"]},
            policy=RetryPolicy(attempts=1),
            reporter=Reporter(RunnerContext.from_env({}), sys.stderr),
        )
        errors.append(None)
    except SigningFailed as error:
        errors.append(error.message)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"errors": errors, "peak_bytes": peak}))
"""
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("service", "status"), [("Fulcio", 200), ("Rekor", 201)])
def test_a_1_gib_answer_is_refused_within_150_mb(
    signing: LocalIndex, tmp_path: Path, service: str, status: int
) -> None:
    index = signing
    endpoint = service.lower()
    gib = 1 << 30
    # Once with its length declared (refused before reading), once ending only when the
    # connection closes (read until it passes the cap). Both generated as they are sent.
    index.faults(
        endpoint, Fault.huge(gib, code=status), Fault.huge(gib, code=status, declared=False)
    )
    wheel = make_wheel(tmp_path, "sample-project", "1.0.0")
    job = {
        "tokens": [id_token(index, "sigstore") for _ in range(2)],
        "path": str(wheel),
        "sha256": sha256(wheel),
        "trust_config": str(index.sigstore_trust_config),
    }

    child = subprocess.run(
        [sys.executable, "-c", SIGN_IN_A_CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )

    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    refused = (
        f"{service} sent an answer over 1 MiB, far more than a certificate or a log entry "
        "takes: refused, unread. Sigstore's status: https://status.sigstore.dev"
    )
    assert outcome["peak_bytes"] < 150 * 1024 * 1024, f"peak RSS {outcome['peak_bytes']} bytes"
    assert outcome["errors"] == [refused, refused]
    assert index.count(endpoint, status) == 2


def test_a_forged_line_in_a_sigstore_reason_stays_inside_its_retry_line(
    signing: LocalIndex, tmp_path: Path
) -> None:
    index = signing
    reason = "Service Unavailable\r::error::forged"
    index.faults("fulcio", *[Fault.status(503, reason, headers={"Retry-After": "0"})] * 2)
    notices = Journal()

    attest(index, wheels(tmp_path, 1), reporter=notices)

    shown = "Service Unavailable\\r::error::forged"
    assert notices.text().splitlines() == [
        f'Sigstore (Fulcio): attempt {n} failed ("HTTP 503 {shown}"); retrying in 0.0s'
        for n in (1, 2)
    ]


def test_nothing_to_sign_imports_nothing() -> None:
    signed = sign_all(
        [], identity_token=lambda: "", environ={}, policy=SIGNING_POLICY, reporter=Journal()
    )
    assert signed == {}
