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
- Bounds, as on every other path: each request to Fulcio or Rekor (and each attempt at the
  trust root) ends within `request_deadline` seconds, each answer is read in pieces and
  refused past `MAX_JSON_BYTES`, and the whole step ends within its own deadline
  (`signing_deadline`). sigstore's clients set no timeout and read whole bodies, so an
  adapter mounted on their `requests` sessions does it for them.
- Trust: `OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG` (in the `environ` mapping passed in) may name a
  client trust config file, for a private or test Sigstore: a regular file of at most 1 MiB.
  Otherwise Sigstore's production trust root is fetched over TUF, whose client caps every
  file it downloads (metadata by its config's lengths, targets by their signed lengths).
  Rekor v1 is forced: PEP 740 bundles need its inclusion promise. TLS always verifies,
  against the CAs `requests` finds (REQUESTS_CA_BUNDLE).

sigstore and pypi_attestations are imported inside the functions: a run without
attestations never loads them.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from oidc_publish.errors import SIGSTORE_STATUS_PAGE, ProxyRefused, SigningFailed
from oidc_publish.network import (
    MAX_JSON_BYTES,
    MAX_REDIRECTS,
    REQUEST_DEADLINE,
    GaveUp,
    RetryNotice,
    RetryPolicy,
    TooLarge,
    Transient,
    connection_failure,
    is_certificate_failure,
    is_transient_status,
    parse_retry_after,
    retrying,
    within,
)
from oidc_publish.runner import log_quoted, md_code

if TYPE_CHECKING:
    import requests
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import Signer, SigningContext

    from oidc_publish.dists import Distribution
    from oidc_publish.network import Pending
    from oidc_publish.report import Reporter
    from oidc_publish.run import Run

T = TypeVar("T")

TRUST_CONFIG_VARIABLE = "OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG"
# Where Sigstore's production trust root is fetched from (sigstore's DEFAULT_TUF_URL).
TUF_URL = "https://tuf-repo-cdn.sigstore.dev"
AUDIENCE = "sigstore"

Service = Literal["Fulcio", "Rekor", "the trust root"]

# The whole signing step, retries included: one call's worth of the retry policy's deadline,
# plus a second a file. Rekor takes about 0.3 s an entry and `workers` entries run at once
# (40 wheels: under 2 s with 8 workers), so a second a file leaves room for a Rekor many
# times slower than usual, or for a single worker.
SIGNING_DEADLINE = 300.0
SIGNING_SECONDS_PER_FILE = 1.0
# A client trust config names a few keys and URLs: some kB.
MAX_TRUST_CONFIG_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


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


def start_signing(
    run: Run, dists: list[Distribution], cleared: Future[None]
) -> Pending[dict[str, dict[str, Any]]] | None:
    """Starts signing every file, when attestations are asked for and possible; or says,
    once, why none are made.

    The certificate is asked for at once; the transparency-log entries, which are public
    and permanent, wait for `cleared`, set once the files will be uploaded. The caller
    collects the attestations before the first upload, so a Sigstore outage leaves nothing
    half-published.
    """
    from oidc_publish.diagnosis import attestations_skipped
    from oidc_publish.network import Pending

    inputs, index, publication = run.inputs, run.index, run.publication
    if not inputs.attestations:
        return None
    why_not = None
    if not inputs.trusted_publishing:
        why_not = "PyPI accepts attestations only with trusted publishing, not an API token"
    elif not (index.is_pypi or index.is_testpypi or run.environ.get(TRUST_CONFIG_VARIABLE)):
        why_not = f"{index.display_name} is not PyPI or TestPyPI, which verify them"
    publication.no_attestations = why_not or ""
    if inputs.dry_run:
        publication.attestations = (
            f"Dry run: no attestations would be made: {why_not}."
            if why_not
            else "Dry run: every file would carry a PEP 740 attestation; nothing was signed."
        )
        return None
    if why_not:
        run.reporter.add(attestations_skipped(why_not))
        publication.attestations = f"No attestations: {why_not}."
        return None
    return Pending(lambda: _sign_release(run, dists, cleared), "signing")


def _sign_release(
    run: Run, dists: list[Distribution], cleared: Future[None]
) -> dict[str, dict[str, Any]]:
    from oidc_publish.claims import Claims
    from oidc_publish.diagnosis import reusable_workflow_attestations

    reporter, publication, world = run.reporter, run.publication, run.world
    identity = run.identity()
    first = identity(AUDIENCE)
    claims = Claims.from_jwt(first)
    if claims is not None and claims.is_reusable_workflow:
        reporter.add(reusable_workflow_attestations(claims))
        publication.attestations = "No attestations: this job runs in a reusable workflow."
        publication.no_attestations = "this job runs in a reusable workflow"
        return {}
    unused = [first]

    def token() -> str:
        return unused.pop() if unused else identity(AUDIENCE)

    reporter.log(f"Signing {len(dists)} file(s) with Sigstore")
    started = world.monotonic()
    signed = sign_all(
        dists,
        identity_token=token,
        environ=run.environ,
        policy=run.policy,
        reporter=reporter,
        clock=world.wall,
        ready=cleared.result,
    )
    reporter.log(f"Signed {len(signed)} attestation(s) in {world.monotonic() - started:.1f}s")
    publication.attestations = (
        "Every file carries a PEP 740 attestation, signed with Sigstore, that the index "
        "verifies against the trusted publisher."
    )
    return signed


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
    request_deadline: float = REQUEST_DEADLINE,
    deadline: float | None = None,
    ready: Callable[[], object] = lambda: None,
) -> dict[str, dict[str, Any]]:
    """Signs one PEP 740 publish attestation per file; returns them by file name.

    `identity_token` returns a fresh GitHub identity token for the audience `sigstore`; it is
    called once, and again only when the certificate must be renewed or the token has
    expired before Fulcio answered. It may raise `Transient` (retried) or an `ActionError`.
    `reporter` gets one line per retry, never a token. `clock` (and the policy's sleep) are
    for tests;
    `timeout` bounds each wait for a connection or a byte from Sigstore, `request_deadline`
    each request from start to last byte, and `deadline` the whole step on the policy's
    clock (by default `signing_deadline(len(dists))`); `renew_margin` is the certificate
    life (seconds) an entry must have left to start, or a new certificate is fetched first.

    `ready` is called once the first certificate is in hand, before the first Rekor entry:
    the entries are public and permanent, so it blocks until the files will certainly be
    uploaded, or raises to end the step without one. Its wait does not count against the
    step's deadline.

    Raises `SigningFailed` when Sigstore does not sign (after retries for transient
    failures) or the step runs out of time; exceptions from `identity_token` propagate. Once
    the policy's stop is set, no request to Sigstore starts: the stop's error instead.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not dists:
        return {}
    from pypi_attestations import Attestation, AttestationError, Distribution
    from sigstore._internal.fulcio import ExpiredCertificate
    from sigstore.oidc import ExpiredIdentity
    from sigstore.sign import SigningContext

    seconds = signing_deadline(len(dists)) if deadline is None else deadline
    limits = _Limits(
        clock=policy.clock,
        ends=policy.clock() + seconds,
        seconds=seconds,
        files=len(dists),
        request_deadline=request_deadline,
        timeout=timeout,
    )
    # TUF reads with its own client (urllib3): its sizes are capped, its time is not.
    trust = _call(
        "the trust root",
        lambda: within(limits.request(), lambda: load_trust(environ), "trust root"),
        policy,
        reporter,
        limits,
    )
    context = SigningContext.from_trust_config(trust)
    _bound(getattr(context._fulcio, "session", None), limits)
    certificates = _Certificates(
        context, identity_token, policy=policy, reporter=reporter, clock=clock,
        margin=renew_margin, limits=limits,
    )  # fmt: skip
    stop = threading.Event()

    def attest(dist: Signable) -> tuple[str, dict[str, Any]]:
        distribution = Distribution(name=dist.path.name, digest=dist.sha256)

        def attempt() -> Any:
            if stop.is_set():
                raise _Stopped
            signer = certificates.signer()
            # sigstore makes one Rekor session per thread.
            _bound(getattr(context._rekor, "_session", None), limits)
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

        attestation = _call("Rekor", attempt, policy, reporter, limits)
        return dist.path.name, attestation.model_dump(mode="json")

    certificates.signer()  # the first certificate, before any worker starts
    waiting = policy.clock()
    ready()
    limits.extend(policy.clock() - waiting)
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


def signing_deadline(files: int) -> float:
    """Seconds the whole signing step may take for `files` files, every retry included."""
    return SIGNING_DEADLINE + SIGNING_SECONDS_PER_FILE * files


def load_trust(environ: Mapping[str, str]) -> ClientTrustConfig:
    """The Sigstore instance to sign against, Rekor v1 forced; one attempt.

    Raises `Transient` when fetching the production trust root failed in a way another
    attempt may not, `SigningFailed` otherwise.
    """
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig

    path = environ.get(TRUST_CONFIG_VARIABLE, "").strip()
    if path:
        text = _read_trust_config(path)
        try:
            config = ClientTrustConfig.from_json(text)
        except (ValueError, RecursionError, SigstoreError) as error:
            raise _unusable_trust_config(
                path,
                "is not a Sigstore client trust config: "
                + md_code(f"{type(error).__name__}: {error}"),
            ) from None
    else:
        try:
            config = ClientTrustConfig.production()
        except Exception as error:
            raise _classify("the trust root", error) from None
    # The attribute sigstore 4.x reads in `signing_config` to keep only Rekor v1 logs.
    config.force_tlog_version = 1
    return config


def _read_trust_config(path: str) -> str:
    """The text of the trust config file: a regular file, at most MAX_TRUST_CONFIG_BYTES.

    Opened without blocking and checked before any read: a FIFO would wait for a writer for
    ever, and a device such as /dev/zero never ends.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise _unusable_trust_config(path, f"cannot be opened ({error.strerror})") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise _unusable_trust_config(path, f"is {_file_kind(mode)}, not a regular file")
        with open(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_TRUST_CONFIG_BYTES + 1)
    except OSError as error:
        raise _unusable_trust_config(path, f"cannot be read ({error.strerror})") from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_TRUST_CONFIG_BYTES:
        raise _unusable_trust_config(
            path, f"is larger than {MAX_TRUST_CONFIG_BYTES // 1024 // 1024} MiB"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _unusable_trust_config(path, "is not UTF-8 text") from None


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def _unusable_trust_config(path: str, why: str) -> SigningFailed:
    return SigningFailed(
        f"{TRUST_CONFIG_VARIABLE} names {md_code(path)}, which {why}.",
        fix=f"Point {TRUST_CONFIG_VARIABLE} at a client trust config file "
        "(application/vnd.dev.sigstore.clienttrustconfig.v0.1+json, a regular file of at most "
        f"{MAX_TRUST_CONFIG_BYTES // 1024 // 1024} MiB), or unset it to sign with Sigstore's "
        "public instance.",
    )


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
        limits: _Limits,
    ) -> None:
        self._context = context
        self._identity_token = identity_token
        self._policy = policy
        self._reporter = reporter
        self._clock = clock
        self._margin = margin
        self._limits = limits
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
                self._signer = _call(
                    "Fulcio", self._new_signer, self._policy, self._reporter, self._limits
                )
            return self._signer

    def expire(self) -> None:
        with self._lock:
            self._not_after = 0.0

    def _new_signer(self) -> Signer:
        from sigstore.oidc import IdentityError, IdentityToken
        from sigstore.sign import Signer

        if self._token is None or self._token._exp - self._clock() < self._limits.timeout:
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


@dataclass
class _Limits:
    """The signing step's bounds: its deadline on `clock`, and those of each request."""

    clock: Callable[[], float]
    ends: float
    seconds: float
    files: int
    request_deadline: float
    timeout: float
    """Seconds to wait for a connection or the next byte: what `requests` calls a timeout."""

    def remaining(self) -> float:
        return self.ends - self.clock()

    def extend(self, seconds: float) -> None:
        """Moves the deadline by time the step spent waiting for someone else."""
        self.ends += seconds

    def request(self) -> float:
        """Seconds the next request may take: its own deadline, or what is left of the step's."""
        return max(0.0, min(self.request_deadline, self.remaining()))

    def out_of_time(self, service: Service, last: str | None) -> SigningFailed:
        failure = f"; the last failure, from {service}: {md_code(last)}" if last else ""
        return SigningFailed(
            f"Signing did not finish within its deadline of {self.seconds:.0f}s for "
            f"{self.files} file(s){failure}. Sigstore's status: {SIGSTORE_STATUS_PAGE}",
            fix=_FIX,
        )


def _call(
    service: Service,
    attempt: Callable[[], T],
    policy: RetryPolicy,
    reporter: Reporter,
    limits: _Limits,
) -> T:
    def on_retry(notice: RetryNotice) -> None:
        if notice.delay >= limits.remaining():
            raise limits.out_of_time(service, notice.reason)
        reporter.log(
            f"Sigstore ({service}): attempt {notice.attempt} failed "
            f"({log_quoted(notice.reason)}); retrying in {notice.delay:.1f}s"
        )

    if limits.remaining() <= 0:
        raise limits.out_of_time(service, None)
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
    if isinstance(error, _Stopped):
        return error
    failure = _connection_failure(service, error)
    if failure is not None:
        return failure
    # sigstore wraps HTTP errors: Fulcio's client `from` the HTTPError (often with an empty
    # message), Rekor's inside an `except` (so as the context), TUF's `from` its own error.
    # What the bounded adapter raises passes through sigstore as it is.
    for link in _causes(error):
        if isinstance(link, Transient | SigningFailed):
            return link
        if isinstance(link, TooLarge):
            return SigningFailed(
                f"{service} sent an answer over {MAX_JSON_BYTES // 1024 // 1024} MiB, far more "
                "than a certificate or a log entry takes: refused, unread. Sigstore's status: "
                f"{SIGSTORE_STATUS_PAGE}",
                fix=_FIX,
            )
        found = _from_requests(service, link) or _from_tuf(service, link)
        if found is not None:
            return found
    text = str(error)
    return _refused(service, f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _connection_failure(service: Service, error: BaseException) -> Exception | None:
    """A host Sigstore's clients could not reach, or a proxy that refused to reach it."""
    failure = connection_failure(error, _url_of(error, service))
    if isinstance(failure, ProxyRefused) and service == "the trust root":
        return _trust_root_behind_proxy(failure)
    return failure


def _url_of(error: BaseException, service: Service) -> str:
    """The URL a failed request went to, as requests keeps it; else the service's name."""
    for link in _causes(error):
        request = getattr(link, "request", None)
        url = getattr(request, "url", None)
        if isinstance(url, str):
            return url
    return TUF_URL if service == "the trust root" else service


def _trust_root_behind_proxy(refused: ProxyRefused) -> SigningFailed:
    return SigningFailed(
        f"Sigstore's trust root could not be fetched: {refused.message} The TUF client that "
        "fetches it sends no credentials to a proxy, even those written in `HTTPS_PROXY`, so "
        "a proxy that asks for them refuses it.",
        fix="Let the proxy reach tuf-repo-cdn.sigstore.dev without credentials, or list it in "
        "`NO_PROXY` if the runner reaches it directly; meanwhile, `attestations: false` "
        "publishes without attestations.",
    )


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
    except (ValueError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {message}" if isinstance(message, str) and message else ""


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def _bound(session: requests.Session | None, limits: _Limits) -> None:
    """Bounds every request of one of sigstore's sessions: its time, its answer, its redirects.

    sigstore sets no timeout, follows up to 30 redirects and reads whole answers (`.json()`).
    """
    if session is None or getattr(session, "_oidc_publish_bounded", False):
        return
    adapter = _bounded_adapter(limits)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.max_redirects = MAX_REDIRECTS
    session._oidc_publish_bounded = True  # type: ignore[attr-defined]


def _bounded_adapter(limits: _Limits) -> requests.adapters.HTTPAdapter:
    from requests.adapters import HTTPAdapter

    class BoundedAdapter(HTTPAdapter):
        """Sends with a timeout, reads the answer within the request's deadline and size cap.

        The answer is complete when `send` returns: sigstore gets its body from memory.
        """

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            seconds = limits.request()
            if seconds <= 0:
                raise Transient("no time left in the signing step")
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = limits.timeout
            kwargs["stream"] = True

            def whole() -> requests.Response:
                response = HTTPAdapter.send(self, request, *args, **kwargs)
                response._content = _capped_body(response)
                return response

            return within(seconds, whole, f"Sigstore {request.method}")

    return BoundedAdapter()


def _capped_body(response: requests.Response) -> bytes:
    """The answer's body, read a piece at a time; `TooLarge`, unread, past MAX_JSON_BYTES."""
    try:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
            raise TooLarge(response.url)
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_content(_CHUNK):
            received += len(chunk)
            if received > MAX_JSON_BYTES:
                raise TooLarge(response.url)
            chunks.append(chunk)
    except BaseException:
        # Closing drops the connection rather than pooling one with an answer half read.
        response.close()
        raise
    return b"".join(chunks)
