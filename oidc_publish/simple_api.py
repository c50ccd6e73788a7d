"""Which files the index has for a project, with their sha256 (PEP 503 / PEP 691).

Pure parsing: the page is fetched by `index.IndexClient`. Only https:// file URLs are kept:
they reach links in the summary and the `files` output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin

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


def _https(url: str) -> str:
    return url if url.startswith("https://") else ""


def parse(page_url: str, content_type: str, body: bytes) -> dict[str, IndexedFile] | None:
    """The files a project page lists; None for a page that is not one."""
    files: dict[str, IndexedFile] = {}
    if "json" in content_type:
        try:
            page: Any = json.loads(body)
            for entry in page.get("files", []):
                sha256 = (entry.get("hashes") or {}).get("sha256")
                files[str(entry["filename"])] = IndexedFile(
                    _https(urljoin(page_url, str(entry["url"]))),
                    sha256 if isinstance(sha256, str) else None,
                )
        except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
            return None
        return files
    for href, text in _anchors(body.decode("utf-8", errors="replace")):
        url, fragment = urldefrag(urljoin(page_url, href))
        name = text or url.rsplit("/", 1)[-1]
        algorithm, _, digest = fragment.partition("=")
        files[name] = IndexedFile(_https(url), digest if algorithm == "sha256" else None)
    return files
