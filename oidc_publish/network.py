"""One retry policy, one HTTP client, and the bounds on everything read from a server.

The policy is data, shared by the token exchange, Sigstore and the uploads. A call site
decides what is transient by raising ``Transient``; anything else propagates at once. Only
connection failures, timeouts, 5xx, 408 and 429 are transient: a 4xx means the request
itself is wrong and sending it again cannot help. The policy carries the run's stop: once
the run is stopped (cancelled, or past its deadline), no attempt starts anywhere.

Every request has a wall-clock deadline (a server that sends a byte every few seconds never
trips a read timeout), every call a deadline over all its attempts, and every answer a size
cap: nothing a server does can hold the run or fill the runner's memory.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

from oidc_publish.errors import (
    CannotConnect,
    Diagnostic,
    IndexUnreachable,
    Level,
    ProxyRefused,
    UntrustedCertificate,
)
from oidc_publish.runner import log_quoted, md_code
from oidc_publish.stop import Stop

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Reporter

T = TypeVar("T")

USER_AGENT = "pypi-oidc-action/1"

# Seconds for one JSON or page request, start to last byte.
REQUEST_DEADLINE = 60.0
# Bytes of a JSON answer (audience, mint) and of a simple-index page.
MAX_JSON_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 10 * 1024 * 1024
# An upload may take its size at this rate plus the fixed deadline: a slow but honest
# link (2 Mbit/s) gets a 300 MB wheel through; a drip of bytes does not hold the run.
SLOW_BYTES_PER_SECOND = 256 * 1024
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 1.0
    cap: float = 30.0
    # Seconds spent waiting between attempts, in total, for one call.
    budget: float = 120.0
    # Seconds for one call, every attempt and wait included (uploads add their size's time).
    deadline: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    # The run's: once it is set no attempt starts, first or retry (the stop's error instead).
    stop: Stop = field(default_factory=Stop, compare=False)

    def delay(self, failed_attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Full jitter on an exponential backoff; the server's `Retry-After` wins, capped."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return rng.uniform(0.0, min(self.cap, self.base * 2 ** (failed_attempts - 1)))


class Transient(Exception):
    """This attempt failed in a way that another attempt may not."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Unreachable(Transient):
    """The request could not be sent at all: a name that does not resolve, a refused
    connection, an unreachable network, or a proxy that could not reach the host."""

    def __init__(self, host: str, error: str, proxy: str | None) -> None:
        way = f"through the proxy {proxy}" if proxy else "directly, with no proxy"
        super().__init__(f"cannot connect to {host} {way}: {error}")
        self.host = host
        self.error = error
        self.proxy = proxy

    def diagnosis(self, attempts: int, file: str | None = None) -> CannotConnect:
        way = (
            f"through the proxy {md_code(self.proxy)}"
            if self.proxy
            else "directly (no proxy applies to it)"
        )
        return CannotConnect(
            f"{self.host} could not be reached {way}, {attempts} time(s): {md_code(self.error)}.",
            fix="On a GitHub-hosted runner this is a network outage: re-run the job. On a "
            "self-hosted runner, check the proxy variables the runner passes into the "
            f"container (`HTTPS_PROXY`, `NO_PROXY`): {self.host} must be reachable through "
            "the proxy, or listed in `NO_PROXY` when it should be reached directly.",
            file=file,
        )


class GaveUp(Exception):
    """Every attempt the policy allows failed transiently."""

    def __init__(self, attempts: int, last: Transient) -> None:
        super().__init__(f"{attempts} attempt(s), the last: {last.reason}")
        self.attempts = attempts
        self.last = last


@dataclass(frozen=True)
class RetryNotice:
    attempt: int
    reason: str
    delay: float


def retrying(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[RetryNotice], None],
    *,
    deadline: float | None = None,
    rng: random.Random | None = None,
) -> T:
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    ends = policy.clock() + (policy.deadline if deadline is None else deadline)
    waited = 0.0
    number = 1
    while True:
        policy.stop.check()
        try:
            return attempt()
        except Transient as failure:
            policy.stop.check()  # no retry notice, no wait: the run is over
            if number >= policy.attempts:
                raise GaveUp(number, failure) from None
            delay = policy.delay(number, failure.retry_after, rng)
            if waited + delay > policy.budget or policy.clock() + delay >= ends:
                raise GaveUp(number, failure) from None
            on_retry(RetryNotice(number, failure.reason, delay))
            policy.sleep(delay)
            waited += delay
            number += 1


def persist(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    reporter: Reporter,
    *,
    label: str,
    what: str,
    fix: str,
    file: str | None = None,
    deadline: float | None = None,
) -> T:
    """`attempt` under the policy: each retry a log line and a notice, giving up an error.

    `label` names the file or endpoint in the log and the notice; `what` says in the error
    what kept failing.
    """

    def on_retry(notice: RetryNotice) -> None:
        def text(reason: str) -> str:
            return f"Attempt {notice.attempt} failed ({reason}); retrying in {notice.delay:.1f}s."

        # The same words twice: quoted for the log, a code span for the summary.
        reporter.log(f"{label}: {text(log_quoted(notice.reason))}")
        notice_text = text(md_code(notice.reason))
        reporter.add(Diagnostic(Level.NOTICE, f"Retrying {label}", notice_text, file=file))

    try:
        return retrying(attempt, policy, on_retry, deadline=deadline)
    except GaveUp as gave_up:
        if isinstance(gave_up.last, Unreachable):
            raise gave_up.last.diagnosis(gave_up.attempts, file) from None
        raise IndexUnreachable(
            f"{what} failed {gave_up.attempts} time(s); the last: {md_code(gave_up.last.reason)}.",
            fix=fix,
            file=file,
        ) from None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; else None."""
    if not value:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() also takes "²", which float() refuses.
    if re.fullmatch(r"[0-9]{1,9}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def raise_for_transient(status: int, reason: str, headers: Mapping[str, str]) -> None:
    if is_transient_status(status):
        raise Transient(
            f"HTTP {status} {reason}".rstrip(), parse_retry_after(headers.get("retry-after"))
        )


class Pending(Generic[T]):
    """Work started in a daemon thread, to be collected later.

    A daemon thread, because a request stuck in a read cannot be interrupted, only
    abandoned, and the process must not wait for it at exit. Whatever it reads is bounded by
    the caller, so abandoned work holds little.
    """

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._outcome: list[tuple[bool, Any]] = []
        self._finished = threading.Event()

        def run() -> None:
            try:
                self._outcome.append((True, work()))
            except BaseException as error:
                self._outcome.append((False, error))
            self._finished.set()

        threading.Thread(target=run, name=name, daemon=True).start()

    def result(self, timeout: float | None = None) -> T:
        """The work's value or exception; ``Transient`` if it has not ended by `timeout`."""
        if not self._finished.wait(timeout):
            raise Transient(f"no complete answer within {timeout:.0f}s")
        ok, value = self._outcome[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value


def within(seconds: float, work: Callable[[], T], what: str) -> T:
    """`work()`, or ``Transient`` once `seconds` pass without it ending."""
    return Pending(work, what).result(seconds)


@dataclass(frozen=True)
class Answer:
    """A complete, size-capped answer: what every caller of `send` gets."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes
    url: str

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        """The body as JSON; None when it is not (HTML, truncated, absurdly nested)."""
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError):
            return None


class TooLarge(Exception):
    """An answer longer than its cap: refused, never read whole."""


def ca_bundle(environ: Mapping[str, str]) -> str | None:
    """The CA file the job points the container at (for a private index), if any."""
    return environ.get("SSL_CERT_FILE") or environ.get("REQUESTS_CA_BUNDLE") or None


def client(debug: Callable[[str], None], environ: Mapping[str, str]) -> httpx.Client:
    """The HTTP client for the token exchange and index pages.

    Trusts the CA file the environment names (`SSL_CERT_FILE`), else the usual bundle, and
    honours proxy variables, as the rest of the runner does; there is deliberately no way to
    turn verification off. Each answer is logged to `debug` by method, URL and status: never
    headers or bodies, which hold tokens.
    """
    import ssl

    import httpx

    def log(response: httpx.Response) -> None:
        request = response.request
        debug(f"{request.method} {request.url} -> {response.status_code} {response.reason_phrase}")

    cafile = ca_bundle(environ)
    return httpx.Client(
        verify=ssl.create_default_context(cafile=cafile) if cafile else True,
        timeout=httpx.Timeout(30.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        trust_env=True,
        event_hooks={"response": [log]},
    )


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    json_body: object = None,
    headers: Mapping[str, str] | None = None,
    follow_redirects: bool = False,
    max_bytes: int = MAX_JSON_BYTES,
    deadline: float = REQUEST_DEADLINE,
) -> Answer:
    """One attempt, within `deadline` seconds and `max_bytes`.

    Connection failures, timeouts and transient statuses become ``Transient``; an answer over
    its cap is ``UnexpectedAnswer``-worthy and raises ``TooLarge``. Redirects are followed
    only within the same https origin.
    """
    import httpx

    def attempt() -> Answer:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            answer = _read(
                http, method, url=target, json_body=json_body, headers=headers, max_bytes=max_bytes
            )
            location = answer.headers.get("location")
            if not (follow_redirects and answer.status in (301, 302, 303, 307, 308) and location):
                return answer
            target = urljoin(target, location)
            if _origin(target) != _origin(url):
                raise UntrustedRedirect(url, target)
        return answer

    try:
        answer = within(deadline, attempt, f"{method} {url}")
    except httpx.TransportError as error:
        failure = transport_failure(error, url)
        raise failure or Transient(f"{type(error).__name__}: {error}".rstrip(": ")) from None
    raise_for_transient(answer.status, answer.reason, answer.headers)
    return answer


class UntrustedRedirect(Exception):
    """A redirect away from the index's own https origin: never followed."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"{source} redirected to another origin")
        self.source = source
        self.target = target


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _read(
    http: httpx.Client,
    method: str,
    *,
    url: str,
    json_body: object,
    headers: Mapping[str, str] | None,
    max_bytes: int,
) -> Answer:
    with http.stream(method, url, json=json_body, headers=headers) as response:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge(url)
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge(url)
            chunks.append(chunk)
        return Answer(
            response.status_code,
            response.reason_phrase,
            {k.lower(): v for k, v in response.headers.items()},
            b"".join(chunks),
            str(response.url),
        )


def proxy_for(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The proxy a request for `url` goes through, shown without its credentials, or None
    when it goes direct.

    Read from the process's environment, where httpx, requests and TUF read it, and with
    the rules curl and requests apply: the variable for https (`https_proxy`, else
    `all_proxy`; lower case first, either case), unless `no_proxy` names the host (the host
    itself, a domain it is in, with or without a leading dot, `host:port`, or `*`).
    """
    proxy = _variable(environ, "https_proxy") or _variable(environ, "all_proxy")
    if not proxy:
        return None
    parts = urlsplit(url)
    try:
        host, port = (parts.hostname or "").lower(), parts.port or 443
    except ValueError:
        return shown_proxy(proxy)
    for entry in _variable(environ, "no_proxy").lower().replace(" ", "").split(","):
        name, _, only = entry.lstrip(".").partition(":")
        if entry == "*" or (
            name and (host == name or host.endswith(f".{name}")) and only in ("", str(port))
        ):
            return None
    return shown_proxy(proxy)


def proxy_secrets(environ: Mapping[str, str]) -> list[str]:
    """The credentials written into any proxy variable: what must be masked before anything
    is printed."""
    secrets = []
    for name, value in environ.items():
        if name.lower().endswith("_proxy") and "@" in value:
            userinfo = urlsplit(_with_scheme(value.strip())).netloc.rpartition("@")[0]
            user, _, password = userinfo.partition(":")
            secrets += [part for part in (userinfo, unquote(password), password) if part]
            if not password and user:
                secrets.append(user)
    return list(dict.fromkeys(secrets))


def shown_proxy(proxy: str) -> str:
    """A proxy's address as it may be shown: scheme, host and port, never its credentials."""
    parts = urlsplit(_with_scheme(proxy))
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}"


def _with_scheme(proxy: str) -> str:
    return proxy if "://" in proxy else f"http://{proxy}"


def _variable(environ: Mapping[str, str], name: str) -> str:
    """A proxy variable, the lower-case spelling first: an empty one there turns the
    upper-case one off, as the standard library reads them."""
    if name in environ:
        return environ[name].strip()
    return environ.get(name.upper(), "").strip()


_TUNNEL_REFUSED = re.compile(r"(?:^|Tunnel connection failed: )([1-5][0-9]{2})\b\s*([^'\"()]*)")


def connection_failure(error: BaseException, url: str) -> Exception | None:
    """What `error`, raised while connecting to `url` through httpx, requests or urllib3,
    means: the proxy refused the tunnel with 407 or 403 (`ProxyRefused`, final), or the
    host could not be reached (`Unreachable`, worth another attempt); None for any other
    failure."""
    host = urlsplit(url).hostname or url
    proxy = proxy_for(url)
    chain = list(_chain(error))
    names = {type(link).__name__ for link in chain}
    if "ProxyError" in names:
        refused = next((m for link in chain if (m := _TUNNEL_REFUSED.search(str(link)))), None)
        if refused is not None:
            status, reason = int(refused.group(1)), refused.group(2).strip()
            if status in (403, 407):
                return ProxyRefused(
                    f"The proxy {md_code(proxy or 'in HTTPS_PROXY')} refused to reach {host}: "
                    f"{md_code(f'{status} {reason}'.strip())}.",
                    fix=_PROXY_FIXES[status].format(host=host),
                )
            return Unreachable(host, f"the proxy answered {status} {reason}".strip(), proxy)
    if names & {"ConnectError", "NewConnectionError", "NameResolutionError", "ProxyError"}:
        return Unreachable(host, _os_error(chain), proxy)
    return None


_PROXY_FIXES = {
    407: "The proxy asks for credentials: give them in the proxy variable, as "
    "`HTTPS_PROXY: http://user:password@proxy:port` with the password from a secret (the "
    "action masks them), or list {host} in `NO_PROXY` if it should be reached directly.",
    403: "The proxy's policy forbids {host}: ask its operator to allow it, or list {host} in "
    "`NO_PROXY` if it should be reached directly.",
}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and everything it wraps: causes, contexts, and what urllib3 and requests keep
    in their attributes and arguments."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        inner = [link.__cause__, link.__context__, getattr(link, "reason", None)]
        inner += [getattr(link, "original_error", None), *link.args]
        pending += [found for found in inner if isinstance(found, BaseException)]


def _os_error(chain: list[BaseException]) -> str:
    """The operating system's words for the failure (`Connection refused`, `Name or service
    not known`), else the innermost error's."""
    for link in reversed(chain):
        if isinstance(link, OSError) and link.strerror:
            return link.strerror
    return str(chain[-1]) or type(chain[-1]).__name__


def transport_failure(error: Exception, url: str) -> Exception | None:
    """What a request to `url` that failed in transport means, when it says more than
    "try again": a certificate this container does not trust, a proxy's refusal, or a host
    that could not be reached (`connection_failure`); None for any other failure."""
    if is_certificate_failure(error):
        return untrusted_certificate(url)
    return connection_failure(error, url)


def is_certificate_failure(error: Exception) -> bool:
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def untrusted_certificate(url: str) -> UntrustedCertificate:
    host = urlsplit(url).hostname or url
    return UntrustedCertificate(
        f"{host}'s TLS certificate is not signed by a certificate authority this container "
        "trusts (CERTIFICATE_VERIFY_FAILED).",
        fix="If the index uses a private CA, commit its PEM certificate (or write it in an "
        "earlier step) and point the step's `env:` at it as the container sees the workspace: "
        "`SSL_CERT_FILE: /github/workspace/ca.pem` and `REQUESTS_CA_BUNDLE: "
        "/github/workspace/ca.pem`. Otherwise check `repository-url`: a proxy may be "
        "intercepting the connection.",
    )
