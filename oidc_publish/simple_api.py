"""Which files the index already has for a project, with their sha256 (PEP 503 / PEP 691).

Used to tell an identical file from a different one when the index says a name is taken,
and to give each uploaded file its download URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urljoin

from oidc_publish.network import GaveUp, RetryPolicy, retrying, send

if TYPE_CHECKING:
    import httpx

    from oidc_publish.index_urls import Index

ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.2"


@dataclass(frozen=True)
class IndexedFile:
    url: str
    sha256: str | None


def _anchors(html: str) -> list[tuple[str, str]]:
    """(href, text) of every link; PEP 503 pages are nothing else."""
    from html.parser import HTMLParser

    links: list[tuple[str, str]] = []

    class Anchors(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.href: str | None = None
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self.href, self.text = dict(attrs).get("href"), []

        def handle_data(self, data: str) -> None:
            if self.href is not None:
                self.text.append(data)

        def handle_endtag(self, tag: str) -> None:
            if tag == "a" and self.href is not None:
                links.append((self.href, "".join(self.text).strip()))
                self.href = None

    Anchors().feed(html)
    return links


def parse(page_url: str, content_type: str, body: bytes) -> dict[str, IndexedFile]:
    files: dict[str, IndexedFile] = {}
    if "json" in content_type:
        for entry in json.loads(body).get("files", []):
            files[entry["filename"]] = IndexedFile(
                urljoin(page_url, entry["url"]), entry.get("hashes", {}).get("sha256")
            )
        return files
    for href, text in _anchors(body.decode("utf-8", errors="replace")):
        url, fragment = urldefrag(urljoin(page_url, href))
        name = text or url.rsplit("/", 1)[-1]
        algorithm, _, digest = fragment.partition("=")
        files[name] = IndexedFile(url, digest if algorithm == "sha256" else None)
    return files


def project_files(
    http: httpx.Client, index: Index, project: str, policy: RetryPolicy
) -> dict[str, IndexedFile] | None:
    """The project's files on the index; empty if it has none, None if the index won't say."""
    url = index.project_simple_url(project)
    try:
        response = retrying(
            # Indexes redirect a non-normalised name to the normalised page.
            lambda: send(http, "GET", url, headers={"Accept": ACCEPT}, follow_redirects=True),
            policy,
            lambda _: None,
        )
    except GaveUp:
        return None
    if response.status_code == 404:
        return {}
    if response.status_code != 200:
        return None
    try:
        return parse(str(response.url), response.headers.get("content-type", ""), response.content)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
