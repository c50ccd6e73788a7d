"""One retry policy and one HTTP client for every call the action makes.

The policy is data, shared by the token exchange and the uploads. A call site decides what is
transient by raising ``Transient``; anything else propagates at once. Only connection
failures, timeouts, 5xx, 408 and 429 are transient: a 4xx means the request itself is wrong
and sending it again cannot help.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from oidc_publish.errors import UntrustedCertificate

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

USER_AGENT = "pypi-oidc-action/1"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 1.0
    cap: float = 30.0
    # Seconds spent waiting between attempts, in total, for one call.
    budget: float = 120.0

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
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    waited = 0.0
    number = 1
    while True:
        try:
            return attempt()
        except Transient as failure:
            if number >= policy.attempts:
                raise GaveUp(number, failure) from None
            delay = policy.delay(number, failure.retry_after, rng)
            if waited + delay > policy.budget:
                raise GaveUp(number, failure) from None
            on_retry(RetryNotice(number, failure.reason, delay))
            sleep(delay)
            waited += delay
            number += 1


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def raise_for_transient(status: int, reason: str, headers: Mapping[str, str]) -> None:
    if is_transient_status(status):
        raise Transient(
            f"HTTP {status} {reason}".rstrip(), parse_retry_after(headers.get("retry-after"))
        )


def client(debug: Callable[[str], None]) -> httpx.Client:
    """The HTTP client for the token exchange and index pages.

    Trusts the system's CAs and honours `SSL_CERT_FILE` and proxy variables, as the rest of
    the runner does; there is deliberately no way to turn verification off. Each answer is
    logged to `debug` by method, URL and status: never headers or bodies, which hold tokens.
    """
    import httpx

    def log(response: httpx.Response) -> None:
        request = response.request
        debug(f"{request.method} {request.url} -> {response.status_code} {response.reason_phrase}")

    return httpx.Client(
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
) -> httpx.Response:
    """One attempt: connection failures and transient statuses become ``Transient``."""
    import httpx

    try:
        response = http.request(
            method, url, json=json_body, headers=headers, follow_redirects=follow_redirects
        )
    except httpx.TransportError as error:
        if is_certificate_failure(error):
            raise untrusted_certificate(url) from None
        raise Transient(f"{type(error).__name__}: {error}".rstrip(": ")) from None
    raise_for_transient(response.status_code, response.reason_phrase, response.headers)
    return response


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
