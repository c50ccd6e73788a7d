"""What a project's page on the index says (PEP 503 HTML, PEP 691 JSON, PEP 700, PEP 792).

Pure parsing: pages are fetched by `index.IndexClient`. Only https:// file URLs are kept,
because they reach links in the summary and the `files` output. A page that is malformed
parses to None: "the index won't say", never an error of the action; a file whose URL does
not parse (`https://[x/f.whl`) is left out of the listing, with one debug line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urljoin

ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.2"
JSON_ONLY = "application/vnd.pypi.simple.v1+json"

ACTIVE = "active"
ARCHIVED = "archived"
QUARANTINED = "quarantined"


@dataclass(frozen=True)
class IndexedFile:
    url: str
    sha256: str | None
    # PEP 700; only JSON pages carry it, and indexes may leave it out.
    upload_time: datetime | None = None


@dataclass(frozen=True)
class ProjectPage:
    """A project's simple API page in its JSON form (PEP 691, 700, 792)."""

    files: dict[str, IndexedFile] = field(default_factory=dict)
    # PEP 792: "active" when the index names none; lower-cased, unknown values kept as given.
    status: str = ACTIVE
    status_reason: str | None = None
    exists: bool = True
    """False when the index answered 404: it has no project of that name."""


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


def _ignore(_: str) -> None:
    pass


def _joined(page_url: str, href: str) -> str | None:
    """The absolute URL of a link on the page; None when it does not parse as a URL."""
    try:
        return urljoin(page_url, href)
    except ValueError:  # a host with brackets that are no IPv6 address
        return None


def _left_out(page_url: str, count: int, debug: Callable[[str], None]) -> None:
    if count:
        debug(f"{page_url}: left out {count} file(s) whose URL does not parse")


def parse(
    page_url: str, content_type: str, body: bytes, *, debug: Callable[[str], None] = _ignore
) -> dict[str, IndexedFile] | None:
    """The files a project page lists, from JSON or HTML; None for a page that is not one."""
    if "json" in content_type:
        page = parse_project_page(page_url, body, debug=debug)
        return page.files if page is not None else None
    files: dict[str, IndexedFile] = {}
    unparsable = 0
    for href, text in _anchors(body.decode("utf-8", errors="replace")):
        joined = _joined(page_url, href)
        if joined is None:
            unparsable += 1
            continue
        url, fragment = urldefrag(joined)
        name = text or url.rsplit("/", 1)[-1]
        algorithm, _, digest = fragment.partition("=")
        files[name] = IndexedFile(_https(url), digest if algorithm == "sha256" else None)
    _left_out(page_url, unparsable, debug)
    return files


def upload_time(value: object) -> datetime | None:
    """PEP 700's `upload-time` (ISO 8601 in UTC, `Z`, fraction optional), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_project_page(
    page_url: str, body: bytes, *, debug: Callable[[str], None] = _ignore
) -> ProjectPage | None:
    """The page in PEP 691 JSON, or None if it is not a well-formed version 1 page."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    meta = document.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    api_version = meta.get("api-version")
    if isinstance(api_version, str) and api_version.split(".", 1)[0] != "1":
        return None
    files = _json_files(page_url, document.get("files", []), debug)
    if files is None:
        return None
    status, reason = _project_status(document, meta)
    return ProjectPage(files, status, reason)


def _json_files(
    page_url: str, entries: object, debug: Callable[[str], None]
) -> dict[str, IndexedFile] | None:
    if not isinstance(entries, list):
        return None
    files: dict[str, IndexedFile] = {}
    unparsable = 0
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        name, url = entry.get("filename"), entry.get("url")
        if not isinstance(name, str) or not isinstance(url, str):
            return None
        joined = _joined(page_url, url)
        if joined is None:
            unparsable += 1
            continue
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        files[name] = IndexedFile(
            _https(joined),
            sha256 if isinstance(sha256, str) else None,
            upload_time(entry.get("upload-time")),
        )
    _left_out(page_url, unparsable, debug)
    return files


def _project_status(document: dict[str, Any], meta: dict[str, Any]) -> tuple[str, str | None]:
    """PEP 792's marker: a top-level `project-status` object with `status` and `reason`.

    That is what PyPI serves. The simple API specification's example shows the marker as
    `project-status` / `project-status-reason` strings under `meta`, so that form is read too.
    """
    marker = document.get("project-status")
    if isinstance(marker, dict):
        status, reason = marker.get("status"), marker.get("reason")
    else:
        status, reason = meta.get("project-status"), meta.get("project-status-reason")
    status = status.strip().lower() if isinstance(status, str) and status.strip() else ACTIVE
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    return status, reason
