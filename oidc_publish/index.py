"""What the index holds, read through its simple API: one client object, injected where needed.

Every read here is advisory: an index that will not say (an outage, a page too large, a
redirect off its own origin) answers None, and the caller decides without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oidc_publish.index_urls import Index
from oidc_publish.network import (
    MAX_PAGE_BYTES,
    GaveUp,
    RetryNotice,
    RetryPolicy,
    TooLarge,
    UntrustedRedirect,
    retrying,
    send,
)
from oidc_publish.simple_api import ACCEPT, IndexedFile, parse

if TYPE_CHECKING:
    import httpx

    from oidc_publish.report import Reporter


class IndexClient:
    def __init__(
        self, index: Index, http: httpx.Client, policy: RetryPolicy, reporter: Reporter
    ) -> None:
        self.index = index
        self._http = http
        self._policy = policy
        self._reporter = reporter

    def project_files(self, project: str) -> dict[str, IndexedFile] | None:
        """The project's files on the index; empty if it has none, None if the index won't say."""
        url = self.index.project_simple_url(project)

        def on_retry(notice: RetryNotice) -> None:
            self._reporter.debug(f"GET {url}: {notice.reason}; retrying in {notice.delay:.1f}s")

        try:
            answer = retrying(
                # Indexes redirect a non-normalised name to the normalised page.
                lambda: send(
                    self._http,
                    "GET",
                    url,
                    headers={"Accept": ACCEPT},
                    follow_redirects=True,
                    max_bytes=MAX_PAGE_BYTES,
                ),
                self._policy,
                on_retry,
            )
        except (GaveUp, TooLarge, UntrustedRedirect) as error:
            self._reporter.debug(f"GET {url}: no usable answer ({type(error).__name__})")
            return None
        if answer.status == 404:
            return {}
        if answer.status != 200:
            return None
        return parse(answer.url, answer.content_type, answer.content)
