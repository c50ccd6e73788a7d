"""PyPI's rules, as warehouse applies them: who may upload what, and what it answers.

The upload checks in warehouse's order and words, the trusted-publishing token's caveats,
the release rules (one sdist per release, no new files in a release older than 14 days),
and the simple API as PyPI serves it: PEP 691 JSON or HTML by the Accept header, with
PEP 700 upload times and sizes, PEP 740 provenance and PEP 792 project status.
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import re
import time
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from readme_renderer import rst as readme_rst

from tests.localindex.multipart import Form
from tests.localindex.oidc import Publisher

MIB = 1024 * 1024
RELEASE_WINDOW = 14 * 24 * 3600
"""Seconds after its first file during which a release takes new files."""
API_VERSION = "1.4"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
ProjectStatus = Literal["active", "archived", "quarantined", "deprecated"]

INVALID_AUTH = (
    "Invalid or non-existent authentication information. "
    "See https://pypi.org/help/#invalid-auth for more information."
)
PASSWORD_AUTH = (
    "Username/Password authentication is no longer supported. Migrate to API Tokens or "
    "Trusted Publishers instead. See https://pypi.org/help/#apitoken and "
    "https://pypi.org/help/#trusted-publishers"
)
NO_FILE = "Upload payload does not have a file."
ONE_SDIST = "Only one sdist may be uploaded per release."
RELEASE_TOO_OLD = "Uploading new files to releases older than 14 days is not allowed."
DIGEST_MISMATCH = "The digest supplied does not match a digest calculated from the uploaded file."
NEW_PROJECT = (
    "Non-user identities cannot create new projects. This was probably caused by successfully "
    "using a pending publisher but specifying the project name incorrectly (either in the "
    "publisher or in your project's metadata). Please ensure that both match. See: "
    "https://docs.pypi.org/trusted-publishers/troubleshooting/"
)


class Refusal(Exception):
    """PyPI's answer to a request it refuses: the status and the reason phrase."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: float
    publisher: Publisher
    burned: bool = False
    """Revoked at `/_/oidc/burn-token`: refused from then on like a token never minted."""


def check_description(form: Form) -> None:
    """PyPI renders the description on upload and refuses one that fails to render."""
    content_type = form.field("description_content_type") or "text/x-rst"
    rst = content_type.split(";")[0].strip().lower() == "text/x-rst"
    if form.field("description") and rst and readme_rst.render(form.field("description")) is None:
        raise Refusal(
            400,
            f"The description failed to render for {content_type!r}. "
            "See https://pypi.org/help/#description-content-type for more information.",
        )


def check_filename(form: Form) -> None:
    if "/" in form.filename or "\\" in form.filename:
        raise Refusal(400, "Cannot upload a file with '/' or '\\' in the name.")
    if not form.filename.endswith((".whl", ".tar.gz", ".zip")):
        raise Refusal(
            400,
            "Invalid file extension: Use .tar.gz, .whl or .zip extension. See "
            "https://www.python.org/dev/peps/pep-0527 and https://peps.python.org/pep-0715/ "
            "for more information",
        )


def check_size(form: Form, limit: int | None) -> None:
    if limit is not None and form.size > limit:
        project = form.field("name")
        raise Refusal(
            400,
            f"File too large. Limit for project {project!r} is {limit // MIB} MB. "
            "See https://docs.pypi.org/project-management/storage-limits"
            "#requesting-a-file-size-limit-increase for more information.",
        )


def check_filename_version(form: Form) -> None:
    try:
        if form.filename.endswith(".whl"):
            version = parse_wheel_filename(form.filename)[1]
        elif form.filename.endswith(".tar.gz"):
            version = parse_sdist_filename(form.filename)[1]
        else:
            return
        expected = Version(form.field("version"))
    except (InvalidVersion, InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise Refusal(400, str(exc)) from None
    if expected != version:
        raise Refusal(400, f"Version in filename should be {str(expected)!r} not {str(version)!r}.")


def check_digests(form: Form) -> None:
    """Every digest the client supplied must match, as on PyPI; missing ones are fine."""
    for algorithm, digest in form.digests.items():
        supplied = form.field(f"{algorithm}_digest")
        if supplied and not hmac.compare_digest(supplied.lower().encode(), digest.encode()):
            raise Refusal(400, DIGEST_MISMATCH)


def release_of(filename: str) -> tuple[str, Version] | None:
    """The (normalized project, version) a distribution's filename names, if it parses."""
    try:
        if filename.endswith(".whl"):
            name, version, *_ = parse_wheel_filename(filename)
        elif filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidVersion, InvalidWheelFilename, InvalidSdistFilename):
        return None
    return canonicalize_name(name), version


def is_sdist(filename: str) -> bool:
    return filename.endswith((".tar.gz", ".zip"))


def check_release(form: Form, uploaded: Mapping[str, float], now: float) -> None:
    """A new file for a release: none after 14 days, and one sdist at most.

    `uploaded` holds every stored file's upload time. The release's age counts from its
    first file.
    """
    release = release_of(form.filename)
    if release is None:
        return
    siblings = [name for name in uploaded if release_of(name) == release]
    if siblings and now - min(uploaded[name] for name in siblings) > RELEASE_WINDOW:
        raise Refusal(400, RELEASE_TOO_OLD)
    sdist = form.field("filetype") == "sdist" or is_sdist(form.filename)
    if sdist and any(is_sdist(name) for name in siblings):
        raise Refusal(400, ONE_SDIST)


def check_project_status(project: str, status: ProjectStatus) -> None:
    """PEP 792: an archived or quarantined project takes no uploads.

    The wording is this emulation's: warehouse's own text was not checked.
    """
    if status in ("archived", "quarantined"):
        raise Refusal(400, f"Project {project!r} is {status}: it does not accept uploads.")


# --- the simple API ---------------------------------------------------------


@dataclass(frozen=True)
class ListedFile:
    filename: str
    url: str
    sha256: str
    size: int
    uploaded_at: float
    provenance: str | None = None


def negotiate(accept: str) -> str:
    """The content type PyPI answers a simple-API request with, by its Accept header.

    The JSON form only when asked for (v1 or latest); HTML otherwise, as
    application/vnd.pypi.simple.v1+html when asked for by name, else text/html.
    """
    offers = {
        SIMPLE_JSON: SIMPLE_JSON,
        "application/vnd.pypi.simple.latest+json": SIMPLE_JSON,
        SIMPLE_HTML: SIMPLE_HTML,
        "application/vnd.pypi.simple.latest+html": SIMPLE_HTML,
        "text/html": "text/html",
    }
    best, best_q = "text/html", 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        served = offers.get(media.lower())
        if served is not None and quality > best_q:
            best, best_q = served, quality
    return best


def upload_time(timestamp: float) -> str:
    """PEP 700's form: ISO 8601 in UTC with a Z."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def project_page(
    name: str,
    files: Iterable[ListedFile],
    status: ProjectStatus,
    reason: str | None,
    content_type: str,
) -> bytes:
    listed = sorted(files, key=lambda file: file.filename)
    project_status: dict[str, str] = {"status": status}
    if reason:
        project_status["reason"] = reason
    if content_type == SIMPLE_JSON:
        versions = {release[1] for f in listed if (release := release_of(f.filename))}
        return json.dumps(
            {
                "meta": {"api-version": API_VERSION},
                "name": name,
                "project-status": project_status,
                "versions": [str(version) for version in sorted(versions)],
                "files": [
                    {
                        "filename": f.filename,
                        "url": f.url,
                        "hashes": {"sha256": f.sha256},
                        "requires-python": None,
                        "size": f.size,
                        "upload-time": upload_time(f.uploaded_at),
                        "yanked": False,
                        "provenance": f.provenance,
                    }
                    for f in listed
                ],
            }
        ).encode()
    metas = [
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        f'<meta name="pypi:project-status" content="{status}">',
    ]
    if reason:
        metas.append(f'<meta name="pypi:project-status-reason" content="{html.escape(reason)}">')
    links = []
    for f in listed:
        provenance = (
            f' data-provenance="{html.escape(f.provenance)}"' if f.provenance is not None else ""
        )
        links.append(
            f'<a href="{html.escape(f.url)}#sha256={f.sha256}"{provenance}>'
            f"{html.escape(f.filename)}</a><br>"
        )
    return _html(f"Links for {name}", metas, links)


def index_page(projects: Iterable[str], content_type: str) -> bytes:
    names = sorted(projects)
    if content_type == SIMPLE_JSON:
        return json.dumps(
            {
                "meta": {"api-version": API_VERSION},
                "projects": [{"name": name} for name in names],
            }
        ).encode()
    meta = [f'<meta name="pypi:repository-version" content="{API_VERSION}">']
    links = [f'<a href="/simple/{name}/">{html.escape(name)}</a><br>' for name in names]
    return _html("Simple index", meta, links)


def _html(title: str, metas: list[str], links: list[str]) -> bytes:
    head = "\n    ".join(metas)
    body = "\n    ".join(links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f"    {head}\n    <title>{html.escape(title)}</title>\n  </head>\n"
        f"  <body>\n    <h1>{html.escape(title)}</h1>\n    {body}\n  </body>\n</html>\n"
    ).encode()


def normalize(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def authenticate(
    authorization: str, api_tokens: Set[str], minted_tokens: Mapping[str, MintedToken]
) -> MintedToken | None:
    """The minted token the request carries, None for a static API token."""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise Refusal(403, INVALID_AUTH)
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        raise Refusal(403, INVALID_AUTH) from None
    if username != "__token__":
        raise Refusal(403, PASSWORD_AUTH)
    password = password.strip()
    if password in api_tokens:
        return None
    minted = minted_tokens.get(password)
    if minted is None or minted.burned:
        raise Refusal(403, INVALID_AUTH)
    return minted


def check_project_exists(minted: MintedToken | None, exists: bool) -> None:
    """Warehouse looks the project up before it checks the token's scope: a project it does
    not know is refused to a trusted publisher's token (a non-user identity), whatever
    publisher minted it, and created for a user's API token.

    A publisher that names no projects stands for one whose projects all exist, or a pending
    publisher that created the project at the mint.
    """
    if minted is not None and minted.publisher.projects is not None and not exists:
        raise Refusal(400, NEW_PROJECT)


def authorize(minted: MintedToken | None, project: str) -> None:
    """The token's caveats, checked and worded as warehouse does (all of them, joined)."""
    if minted is None:
        return
    errors = []
    allowed = minted.publisher.projects
    if allowed is not None and normalize(project) not in {normalize(p) for p in allowed}:
        errors += [
            f"OIDC scoped token is not valid for project '{project}'",
            f"project-scoped token is not valid for project: {project!r}",
        ]
    if time.time() >= minted.expires_at:
        errors.append("token is expired")
    if errors:
        raise Refusal(403, "Invalid API Token: " + ", ".join(errors))
