"""What the index holds, read through its simple API: one client object, injected where needed.

Every read here is advisory: an index that will not say (an outage, a page too large, a
redirect off its own origin) answers None, and the caller decides without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from oidc_publish.errors import UntrustedCertificate
from oidc_publish.index_urls import Index
from oidc_publish.network import (
    MAX_PAGE_BYTES,
    Answer,
    GaveUp,
    RetryNotice,
    RetryPolicy,
    TooLarge,
    UntrustedRedirect,
    retrying,
    send,
)
from oidc_publish.runner import log_quoted
from oidc_publish.simple_api import (
    ACCEPT,
    JSON_ONLY,
    IndexedFile,
    ProjectPage,
    parse,
    parse_project_page,
)

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Reporter


# Caches between us and the index (PyPI's CDN, a company proxy) must ask the origin again.
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache"}


class IndexClient:
    def __init__(
        self, index: Index, http: httpx.Client, policy: RetryPolicy, reporter: Reporter
    ) -> None:
        self.index = index
        self._http = http
        self._policy = policy
        # The rules read runs beside the token exchange and must not hold the release up.
        self._advisory = replace(policy, attempts=3, base=0.5, cap=4.0, budget=8.0, deadline=30.0)
        self._reporter = reporter

    def project_files(self, project: str) -> dict[str, IndexedFile] | None:
        """The project's files on the index; empty if it has none, None if the index won't say."""
        return self._listing(self._get(project, {"Accept": ACCEPT}, self._policy))

    def project_page(self, project: str) -> ProjectPage | None:
        """The project's page in JSON, for the rules checked before the first upload.

        An empty page that does not exist when the index has no such project (404); None
        when the index won't say: it keeps failing, answers HTML only, or something else than
        a JSON page.
        """
        answer = self._get(project, {"Accept": JSON_ONLY}, self._advisory)
        if answer is None:
            return None
        if answer.status == 404:
            return ProjectPage(exists=False)
        if answer.status != 200 or "json" not in answer.content_type:
            return None
        return parse_project_page(answer.url, answer.content, debug=self._reporter.debug)

    def fresh_files(self, project: str) -> dict[str, IndexedFile] | None:
        """One uncached look at the project's files, for waiting on an upload; not retried,
        since the caller polls."""
        return self._listing(
            self._get(project, {"Accept": ACCEPT, **NO_CACHE}, replace(self._policy, attempts=1))
        )

    def _get(self, project: str, headers: Mapping[str, str], policy: RetryPolicy) -> Answer | None:
        from packaging.utils import canonicalize_name

        # Clients ask for the normalised name (PEP 503); indexes redirect other spellings.
        url = self.index.project_simple_url(canonicalize_name(project))

        def on_retry(notice: RetryNotice) -> None:
            reason = log_quoted(notice.reason)
            self._reporter.debug(f"GET {url}: {reason}; retrying in {notice.delay:.1f}s")

        def attempt() -> Answer:
            return send(
                self._http,
                "GET",
                url,
                headers=headers,
                follow_redirects=True,
                max_bytes=MAX_PAGE_BYTES,
            )

        try:
            return retrying(attempt, policy, on_retry)
        except (GaveUp, TooLarge, UntrustedRedirect, UntrustedCertificate) as error:
            self._reporter.debug(f"GET {url}: no usable answer ({type(error).__name__})")
            return None

    def _listing(self, answer: Answer | None) -> dict[str, IndexedFile] | None:
        """The files a page lists: none for a project the index does not know (404), None
        when there is no usable page."""
        if answer is None:
            return None
        if answer.status == 404:
            return {}
        if answer.status != 200:
            return None
        return parse(answer.url, answer.content_type, answer.content, debug=self._reporter.debug)
