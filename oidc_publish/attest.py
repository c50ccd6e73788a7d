"""PEP 740 attestations: one identity token, one signer, Rekor entries in parallel.

`sign_all()` signs a "publish" attestation for each distribution through Sigstore (a Fulcio
certificate for a GitHub identity token with the audience `sigstore`, then one Rekor v1 entry
per file) and returns them as JSON objects, ready for the upload's `attestations` field. It
writes nothing into the workspace.

- One identity token and one certificate serve the release. Before each entry the
  certificate's remaining life is checked against `renew_margin`; when it runs short, one
  worker fetches a new identity token and certificate under a lock while the others wait.
- Entries are made by at most `workers` threads at once.
- Fulcio, Rekor and the trust root fetch are retried under the project's `RetryPolicy` on
  connection failures, timeouts, 408, 429 (honouring Retry-After) and 5xx. When a service
  stays down, or answers something retrying cannot change, `SigningFailed` names it.
- Trust: `OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG` (in the `environ` mapping passed in) may name a
  client trust config file, for a private or test Sigstore; otherwise Sigstore's production
  trust root is fetched over TUF. Rekor v1 is forced: PEP 740 bundles need its inclusion
  promise. TLS always verifies, against the CAs `requests` finds (REQUESTS_CA_BUNDLE).

sigstore and pypi_attestations are imported inside the functions: a run without
attestations never loads them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from oidc_publish.errors import SIGSTORE_STATUS_PAGE, SigningFailed
from oidc_publish.network import (
    GaveUp,
    RetryNotice,
    RetryPolicy,
    Transient,
    is_certificate_failure,
    is_transient_status,
    parse_retry_after,
    retrying,
)
from oidc_publish.runner import md_code

if TYPE_CHECKING:
    import requests
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import Signer, SigningContext

    from oidc_publish.report import Reporter

T = TypeVar("T")

TRUST_CONFIG_VARIABLE = "OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG"
AUDIENCE = "sigstore"

Service = Literal["Fulcio", "Rekor", "the trust root"]


class Signable(Protocol):
    """What sign_all needs of a distribution: its file and the file's sha256 (hex)."""

    @property
    def path(self) -> Path: ...

    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class File:
    """A Signable for callers without one."""

    path: Path
    sha256: str


def sign_all(
    dists: Sequence[Signable],
    *,
    identity_token: Callable[[], str],
    environ: Mapping[str, str],
    policy: RetryPolicy,
    reporter: Reporter,
    workers: int = 8,
    clock: Callable[[], float] = time.time,
    timeout: float = 30.0,
    renew_margin: float = 90.0,
) -> dict[str, dict[str, Any]]:
    """Signs one PEP 740 publish attestation per file; returns them by file name.

    `identity_token` returns a fresh GitHub identity token for the audience `sigstore`; it is
    called once, and again only when the certificate must be renewed or the token has
    expired before Fulcio answered. It may raise `Transient` (retried) or an `ActionError`.
    `reporter` gets one line per retry, never a token. `clock` (and the policy's sleep) are
    for tests;
    `timeout` bounds each HTTP request to Sigstore; `renew_margin` is the certificate life
    (seconds) an entry must have left to start, or a new certificate is fetched first.

    Raises `SigningFailed` when Sigstore does not sign (after retries for transient
    failures); exceptions from `identity_token` propagate. Once the policy's stop is set, no
    request to Sigstore starts: `Cancelled`.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not dists:
        return {}
    from pypi_attestations import Attestation, AttestationError, Distribution
    from sigstore._internal.fulcio import ExpiredCertificate
    from sigstore.oidc import ExpiredIdentity
    from sigstore.sign import SigningContext

    trust = _call("the trust root", lambda: load_trust(environ), policy, reporter)
    context = SigningContext.from_trust_config(trust)
    _bound_fulcio(context, timeout)
    certificates = _Certificates(
        context, identity_token, policy=policy, reporter=reporter, clock=clock,
        margin=renew_margin, timeout=timeout,
    )  # fmt: skip
    stop = threading.Event()

    def attest(dist: Signable) -> tuple[str, dict[str, Any]]:
        distribution = Distribution(name=dist.path.name, digest=dist.sha256)

        def attempt() -> Any:
            if stop.is_set():
                raise _Stopped
            signer = certificates.signer()
            _bound_rekor(context, timeout)
            try:
                return Attestation.sign(signer, distribution)
            except AttestationError as error:
                # An expired certificate (a slow entry outlived the margin): renew and retry.
                if isinstance(error.__context__, ExpiredCertificate | ExpiredIdentity):
                    certificates.expire()
                    raise Transient("the signing certificate expired") from None
                raise _refused("Rekor", f"{type(error).__name__}: {error}") from None
            except Exception as error:
                raise _classify("Rekor", error) from None

        attestation = _call("Rekor", attempt, policy, reporter)
        return dist.path.name, attestation.model_dump(mode="json")

    certificates.signer()  # the first certificate, before any worker starts
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attest") as pool:
        futures: list[Future[tuple[str, dict[str, Any]]]] = [
            pool.submit(attest, dist) for dist in dists
        ]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:
            stop.set()
            for future in pending:
                future.cancel()
            wait(pending)
        for future in futures:
            error = None if future.cancelled() else future.exception()
            if error is not None and not isinstance(error, _Stopped):
                raise error
        for future in done:
            name, attestation = future.result()
            results[name] = attestation
    return {dist.path.name: results[dist.path.name] for dist in dists}


def load_trust(environ: Mapping[str, str]) -> ClientTrustConfig:
    """The Sigstore instance to sign against, Rekor v1 forced; one attempt.

    Raises `Transient` when fetching the production trust root failed in a way another
    attempt may not, `SigningFailed` otherwise.
    """
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig

    path = environ.get(TRUST_CONFIG_VARIABLE, "").strip()
    if path:
        try:
            config = ClientTrustConfig.from_json(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, SigstoreError) as error:
            raise SigningFailed(
                f"{TRUST_CONFIG_VARIABLE} names {path}, which is not a readable Sigstore client "
                f"trust config: {md_code(f'{type(error).__name__}: {error}')}",
                fix=f"Point {TRUST_CONFIG_VARIABLE} at a client trust config "
                "(application/vnd.dev.sigstore.clienttrustconfig.v0.1+json), or unset it to "
                "sign with Sigstore's public instance.",
            ) from None
    else:
        try:
            config = ClientTrustConfig.production()
        except Exception as error:
            raise _classify("the trust root", error) from None
    # The attribute sigstore 4.x reads in `signing_config` to keep only Rekor v1 logs.
    config.force_tlog_version = 1
    return config


class _Stopped(Exception):
    """Another file's signing failed: this one is not attempted again."""


class _Certificates:
    """The release's signer: one identity token and one certificate, renewed once when short."""

    def __init__(
        self,
        context: SigningContext,
        identity_token: Callable[[], str],
        *,
        policy: RetryPolicy,
        reporter: Reporter,
        clock: Callable[[], float],
        margin: float,
        timeout: float,
    ) -> None:
        self._context = context
        self._identity_token = identity_token
        self._policy = policy
        self._reporter = reporter
        self._clock = clock
        self._margin = margin
        self._timeout = timeout
        self._lock = threading.Lock()
        self._signer: Signer | None = None
        self._not_after = 0.0
        self._token: IdentityToken | None = None

    def signer(self) -> Signer:
        """A signer whose certificate has at least the margin left; renews it if not."""
        with self._lock:
            if self._signer is None or self._not_after - self._clock() < self._margin:
                self._signer = None
                self._token = None  # a new certificate comes with a new identity token
                self._signer = _call("Fulcio", self._new_signer, self._policy, self._reporter)
            return self._signer

    def expire(self) -> None:
        with self._lock:
            self._not_after = 0.0

    def _new_signer(self) -> Signer:
        from sigstore.oidc import IdentityError, IdentityToken
        from sigstore.sign import Signer

        if self._token is None or self._token._exp - self._clock() < self._timeout:
            try:
                self._token = IdentityToken(self._identity_token(), client_id=AUDIENCE)
            except IdentityError as error:
                raise SigningFailed(
                    "The GitHub identity token for Sigstore was refused before use: "
                    f"{md_code(str(error))}",
                    fix="Re-run the job; if it fails again, report it with the log attached.",
                ) from None
        try:
            signer = Signer(self._token, self._context, cache=True)
        except Exception as error:
            raise _classify("Fulcio", error) from None
        certificate = signer._signing_cert()
        self._not_after = certificate.not_valid_after_utc.timestamp()
        return signer


def _call(
    service: Service,
    attempt: Callable[[], T],
    policy: RetryPolicy,
    reporter: Reporter,
) -> T:
    def on_retry(notice: RetryNotice) -> None:
        reporter.log(
            f"Sigstore ({service}): attempt {notice.attempt} failed ({notice.reason}); "
            f"retrying in {notice.delay:.1f}s"
        )

    try:
        return retrying(attempt, policy, on_retry)
    except GaveUp as gave_up:
        raise SigningFailed(
            f"{service} kept failing: {gave_up.attempts} attempt(s), the last: "
            f"{md_code(gave_up.last.reason)}. Sigstore's status: {SIGSTORE_STATUS_PAGE}",
            fix=_FIX,
        ) from None


_FIX = (
    f"This is on Sigstore's side: check {SIGSTORE_STATUS_PAGE} and re-run the job; nothing was "
    "uploaded. To publish without attestations meanwhile, set `attestations: false`."
)


def _refused(service: Service, why: str) -> SigningFailed:
    return SigningFailed(
        f"{service} refused to sign: {md_code(why)}. Sigstore's status: {SIGSTORE_STATUS_PAGE}",
        fix=_FIX,
    )


def _classify(service: Service, error: BaseException) -> Exception:
    """A Sigstore failure as `Transient` (worth another attempt) or `SigningFailed`."""
    if isinstance(error, Transient | SigningFailed | _Stopped):
        return error
    # sigstore wraps HTTP errors: Fulcio's client `from` the HTTPError (often with an empty
    # message), Rekor's inside an `except` (so as the context), TUF's `from` its own error.
    for link in _causes(error):
        found = _from_requests(service, link) or _from_tuf(service, link)
        if found is not None:
            return found
    text = str(error)
    return _refused(service, f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _from_requests(service: Service, link: BaseException) -> Exception | None:
    import requests

    if isinstance(link, requests.HTTPError) and link.response is not None:
        response = link.response
        reason = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        if is_transient_status(response.status_code):
            return Transient(reason, parse_retry_after(response.headers.get("retry-after")))
        return _refused(service, f"{reason}{_message(response)}")
    # Only a failed verification is final: an SSLError is also what a connection reset
    # mid-handshake or mid-body looks like, and another attempt may get through.
    if isinstance(link, Exception) and is_certificate_failure(link):
        return SigningFailed(
            f"{service}'s TLS certificate is not trusted (CERTIFICATE_VERIFY_FAILED).",
            fix="Give the container the CA that signs it: `REQUESTS_CA_BUNDLE` must name "
            "its PEM file. Verification cannot be turned off.",
        )
    if isinstance(link, requests.ConnectionError | requests.Timeout):
        return Transient(f"{type(link).__name__}: {_short(link)}")
    return None


def _from_tuf(service: Service, link: BaseException) -> Exception | None:
    from tuf.api import exceptions as tuf_errors

    if isinstance(link, tuf_errors.DownloadHTTPError):
        if is_transient_status(link.status_code):
            return Transient(f"HTTP {link.status_code} from the TUF repository")
        return _refused(service, f"HTTP {link.status_code} from the TUF repository")
    if isinstance(link, tuf_errors.DownloadError):
        return Transient(f"{type(link).__name__}: {_short(link)}")
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _message(response: requests.Response) -> str:
    """Sigstore's JSON error message, if any: never a request header or token."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {message}" if isinstance(message, str) and message else ""


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def _bound_fulcio(context: SigningContext, timeout: float) -> None:
    """Gives the Fulcio client's requests a timeout; sigstore sets none."""
    session = getattr(context._fulcio, "session", None)
    if session is not None:
        _mount_timeout(session, timeout)


def _bound_rekor(context: SigningContext, timeout: float) -> None:
    """Gives this thread's Rekor session a timeout; sigstore makes one session per thread."""
    session = getattr(context._rekor, "_session", None)
    if session is not None:
        _mount_timeout(session, timeout)


def _mount_timeout(session: requests.Session, timeout: float) -> None:
    from requests.adapters import HTTPAdapter

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, *args, **kwargs)

    if not getattr(session, "_oidc_publish_timeout", False):
        session.mount("https://", TimeoutAdapter())
        session.mount("http://", TimeoutAdapter())
        session._oidc_publish_timeout = True  # type: ignore[attr-defined]
