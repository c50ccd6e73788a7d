"""Which files the index already has for a project, with their sha256 (PEP 503 / PEP 691).

Used to tell an identical file from a different one when the index says a name is taken,
to give each uploaded file its download URL, to read the index's rules before the first
upload (PEP 700 upload times, PEP 792 project status: ``read_project_page``), and to see
when the uploaded files are listed (``fetch_fresh``).

Every read here is advisory: an answer that is too large, not JSON where JSON is needed, or
malformed means "the index won't say" (None), never an error of the action.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin

from oidc_publish.network import (
    GaveUp,
    RetryPolicy,
    Transient,
    is_certificate_failure,
    raise_for_transient,
    retrying,
    send,
)

if TYPE_CHECKING:
    import httpx

    from oidc_publish.index_urls import Index

ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.2"
JSON_ONLY = "application/vnd.pypi.simple.v1+json"
# Caches between us and the index (PyPI's CDN, a company proxy) must ask the origin again.
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache"}
# The largest project page read. PyPI's biggest pages are a few MiB of JSON; an answer over
# this is not read further and counts as "the index won't say".
MAX_PAGE_BYTES = 16 * 1024 * 1024
# The rules read runs beside the token exchange and must not hold the release up for long.
ADVISORY_POLICY = RetryPolicy(attempts=3, base=0.5, cap=4.0, budget=8.0)

ACTIVE = "active"
ARCHIVED = "archived"
QUARANTINED = "quarantined"
DEPRECATED = "deprecated"


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
                urljoin(page_url, entry["url"]),
                entry.get("hashes", {}).get("sha256"),
                upload_time(entry.get("upload-time")),
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


def upload_time(value: object) -> datetime | None:
    """PEP 700's `upload-time` (ISO 8601 in UTC, `Z`, fraction optional), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_project_page(page_url: str, body: bytes) -> ProjectPage | None:
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
    files = _json_files(page_url, document.get("files", []))
    if files is None:
        return None
    status, reason = _project_status(document, meta)
    return ProjectPage(files, status, reason)


def _json_files(page_url: str, entries: object) -> dict[str, IndexedFile] | None:
    if not isinstance(entries, list):
        return None
    files: dict[str, IndexedFile] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        name, url = entry.get("filename"), entry.get("url")
        if not isinstance(name, str) or not isinstance(url, str):
            return None
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        files[name] = IndexedFile(
            urljoin(page_url, url),
            sha256 if isinstance(sha256, str) else None,
            upload_time(entry.get("upload-time")),
        )
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


@dataclass(frozen=True)
class _Answer:
    status: int
    url: str
    content_type: str
    body: bytes


class _TooLarge(Exception):
    pass


def _get(http: httpx.Client, url: str, headers: Mapping[str, str], limit: int) -> _Answer:
    """One GET whose body is read up to `limit` bytes (after decompression).

    Connection failures and transient statuses raise ``Transient``; an answer over the
    limit raises ``_TooLarge``; a TLS certificate failure propagates as ``httpx`` raised it.
    """
    import httpx

    try:
        with http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            raise_for_transient(response.status_code, response.reason_phrase, response.headers)
            content_type = response.headers.get("content-type", "")
            if response.status_code != 200:
                return _Answer(response.status_code, str(response.url), content_type, b"")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise _TooLarge
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _TooLarge
            return _Answer(200, str(response.url), content_type, bytes(body))
    except httpx.TransportError as error:
        if is_certificate_failure(error):
            raise
        raise Transient(f"{type(error).__name__}: {error}".rstrip(": ")) from None


def _page_url(index: Index, project: str) -> str:
    from packaging.utils import canonicalize_name

    # Clients must ask for the normalised name (PEP 503); no redirect to wait for or cache.
    return index.project_simple_url(canonicalize_name(project))


def read_project_page(
    http: httpx.Client,
    index: Index,
    project: str,
    *,
    policy: RetryPolicy = ADVISORY_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = MAX_PAGE_BYTES,
) -> ProjectPage | None:
    """The project's page as JSON, for the rules checked before the first upload.

    An empty page when the project does not exist yet (404); None when the index won't say:
    it keeps failing, answers HTML only or something else than a JSON page, or too much.
    """
    import httpx

    url = _page_url(index, project)
    try:
        answer = retrying(
            lambda: _get(http, url, {"Accept": JSON_ONLY}, limit),
            policy,
            lambda _: None,
            sleep=sleep,
        )
    except (GaveUp, _TooLarge, httpx.HTTPError):
        return None
    if answer.status == 404:
        return ProjectPage()
    if answer.status != 200 or "json" not in answer.content_type:
        return None
    return parse_project_page(answer.url, answer.body)


def fetch_fresh(
    http: httpx.Client, index: Index, project: str, *, limit: int = MAX_PAGE_BYTES
) -> dict[str, IndexedFile] | None:
    """One uncached look at the project's files (JSON or HTML), for waiting on an upload.

    Not retried: the caller polls. An empty listing when the index has no page for the
    project yet (404); None when this look failed.
    """
    import httpx

    headers = {"Accept": ACCEPT, **NO_CACHE}
    try:
        answer = _get(http, _page_url(index, project), headers, limit)
    except (Transient, _TooLarge, httpx.HTTPError):
        return None
    if answer.status == 404:
        return {}
    if answer.status != 200:
        return None
    try:
        return parse(answer.url, answer.content_type, answer.body)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
