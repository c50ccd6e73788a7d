"""PyPI and GitHub's ID-token service on one local HTTPS server.

`LocalIndex` serves, on https://127.0.0.1:<port> with a throwaway CA:

- pypiserver's simple API and downloads (`/simple/`, `/packages/`), over the storage
  every upload lands in;
- GitHub's ID-token endpoint (`/_github/token`), signing RS256 JWTs;
- PyPI's trusted-publishing endpoints (`/_/oidc/audience`, `/_/oidc/mint-token`,
  `/_/oidc/github/mint-token`) and upload endpoint (`/legacy/`), emulated from
  warehouse's source: same checks, order, status codes and wording.

Tests reconfigure it through its attributes, script failures with `faults()`, read
what happened in `log`, and call `reset()` between tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import io
import json
import mmap
import re
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value
from http import HTTPStatus
from pathlib import Path
from secrets import token_hex, token_urlsafe
from socketserver import TCPServer, ThreadingMixIn
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, cast
from urllib.parse import parse_qs
from wsgiref.headers import Headers
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import trustme
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version
from readme_renderer import rst as readme_rst

from tests.localindex import identity, oidc
from tests.localindex.oidc import Publisher

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

__all__ = ["Fault", "LocalIndex", "LogEntry", "MintedToken", "Publisher"]

Endpoint = Literal["audience", "id-token", "mint", "upload", "simple", "other"]
FaultEndpoint = Literal["audience", "id-token", "mint", "upload", "simple"]

_ROUTES: dict[str, Endpoint] = {
    "/_/oidc/audience": "audience",
    "/_github/token": "id-token",
    "/_/oidc/mint-token": "mint",
    "/_/oidc/github/mint-token": "mint",
    "/legacy/": "upload",
    "/legacy": "upload",
}
_METHODS: dict[Endpoint, str] = {
    "audience": "GET",
    "id-token": "GET",
    "mint": "POST",
    "upload": "POST",
}
_CHUNK = 64 * 1024
_MIB = 1024 * 1024
_HASH_CHUNK = _MIB
_CONNECTION = "localindex.connection"
_HTML = "text/html; charset=UTF-8"
_SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"

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
DIGEST_MISMATCH = "The digest supplied does not match a digest calculated from the uploaded file."


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour, acted out instead of one normal answer."""

    action: Literal["status", "reset", "delay", "drip", "huge", "redirect"]
    code: int = 200
    reason: str = ""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = _HTML
    after_bytes: int = 0
    seconds: float = 0.0
    size: int = 0
    """drip, huge: the body's length in bytes."""
    location: str | None = None
    """redirect: the target path (with query), or None for the request's own."""

    @classmethod
    def status(
        cls,
        code: int,
        reason: str | None = None,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        content_type: str = _HTML,
    ) -> Fault:
        """Answer `code` (a CDN or proxy error, say) without doing the real work.

        `reason` goes out as written, control characters included (latin-1 only).
        """
        return cls(
            "status",
            code,
            reason or _phrase(code),
            body.encode() if isinstance(body, str) else body,
            tuple((headers or {}).items()),
            content_type,
        )

    @classmethod
    def reset(cls, after_bytes: int = 0) -> Fault:
        """Read `after_bytes` of the body, then drop the connection (RST), answering nothing."""
        return cls("reset", after_bytes=after_bytes)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Stall `seconds`, then handle the request normally: makes clients time out."""
        return cls("delay", seconds=seconds)

    @classmethod
    def drip(
        cls, size: int, every: float, code: int = 200, content_type: str = "application/json"
    ) -> Fault:
        """Send the headers (Content-Length `size`) at once, then one byte every `every` s.

        No single read ever waits long, so only a total deadline ends it.
        """
        return cls("drip", code, _phrase(code), content_type=content_type, seconds=every, size=size)

    @classmethod
    def huge(cls, size: int, kind: Literal["json", "html"] = "json", code: int = 200) -> Fault:
        """A `size`-byte body generated while it is sent (never held whole): a JSON object
        or an HTML page, well formed if read to the end, typed as the simple API types it."""
        content_type = _SIMPLE_JSON if kind == "json" else _HTML
        return cls("huge", code, _phrase(code), content_type=content_type, size=size)

    @classmethod
    def redirect(cls, code: int = 302, location: str | None = None) -> Fault:
        """Redirect to plain http:// on the index's own host and port (`location`, or the
        request's own path and query): nothing answers HTTP there, a client must refuse."""
        return cls("redirect", code, _phrase(code), location=location)


class LogEntry(NamedTuple):
    endpoint: Endpoint
    method: str
    path: str
    status: int | Literal["reset"]


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: float
    publisher: Publisher


class LocalIndex:
    """The local index; see the module docstring. Use as a context manager or start()/stop()."""

    mode: Literal["pypi", "pypiserver"]
    """Who judges an authenticated upload: PyPI's checks (default), or pypiserver itself.

    pypiserver stores what it is sent and refuses an existing filename, whatever its
    content, with 409, or 400 "Bad Request" for twine's User-Agent.
    """
    audience: str
    trusted_publishing: Literal["enabled", "disabled", "absent"]
    token_lifetime: float
    """Seconds a minted upload token stays valid."""
    upload_throttle: float | None
    """Bytes per second at which upload bodies are read (a slow link), or None."""
    oidc_latency: float
    """Seconds added before each audience, ID-token and mint answer: the round trips to
    PyPI and GitHub that a runner pays and 127.0.0.1 does not."""
    file_size_limit: int | None
    """PyPI's per-file limit, 100 MiB unless raised for a project; None for no limit."""
    claims: dict[str, str | int]
    """Claims put in every ID token, after the computed ones, so they can override them."""
    publishers: list[Publisher]
    id_token_request_token: str

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="localindex-"))
        self.storage_dir = self._tmp / "packages"
        self.storage_dir.mkdir()
        ca = trustme.CA()
        self.ca_pem = self._tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
        self._issuer = oidc.Issuer()
        with warnings.catch_warnings():
            # Its bundled bottle imports cgi, deprecated since Python 3.11 (gone in 3.13).
            warnings.simplefilter("ignore", DeprecationWarning)
            import pypiserver
        self._pypiserver: WSGIApplication = pypiserver.app(
            roots=[self.storage_dir],
            authenticate=[],
            password_file=".",
            disable_fallback=True,
            # The caching backend would serve stale listings after reset() empties storage.
            backend_arg="simple-dir",
        )
        self._lock = threading.Lock()
        self._storage_lock = threading.Lock()
        self._faults: dict[str, deque[Fault]] = {
            endpoint: deque() for endpoint in (*_METHODS, "simple")
        }
        self._used_jtis: set[str] = set()
        self._generation = 0
        self._cancelled = threading.Event()
        self.log: list[LogEntry] = []
        self.issued_id_tokens: list[str] = []
        self.minted_tokens: dict[str, MintedToken] = {}
        """Upload tokens minted so far, by token."""
        self.api_tokens: set[str] = set()
        """Static API tokens: never expire, may upload any project."""
        self._restore_defaults()
        self._server = _Server(("127.0.0.1", 0), tls, self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="localindex",
            daemon=True,
        )

    def start(self) -> LocalIndex:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._cancelled.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LocalIndex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to a fresh index: empty storage, no state, default settings.

        Requests still waiting (delayed, throttled) are dropped unanswered and unlogged,
        so they cannot leak into the next test.
        """
        with self._lock:
            self._cancelled.set()
            self._cancelled = threading.Event()
            self._generation += 1
            for queue in self._faults.values():
                queue.clear()
            self._used_jtis.clear()
            self.log.clear()
        for path in self.storage_dir.iterdir():
            path.unlink()
        self.issued_id_tokens.clear()
        self.minted_tokens.clear()
        self.api_tokens.clear()
        self._restore_defaults()

    def _restore_defaults(self) -> None:
        self.mode = "pypi"
        self.audience = "pypi"
        self.trusted_publishing = "enabled"
        self.token_lifetime = 900
        self.upload_throttle = None
        self.oidc_latency = 0.0
        self.file_size_limit = 100 * _MIB
        self.claims = identity.default_claims()
        self.publishers = [oidc.default_publisher()]
        self.id_token_request_token = token_hex(20)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def upload_url(self) -> str:
        return f"{self.url}/legacy/"

    @property
    def simple_url(self) -> str:
        return f"{self.url}/simple/"

    @property
    def id_token_request_url(self) -> str:
        return f"{self.url}/_github/token?api-version=2.0"

    def faults(self, endpoint: FaultEndpoint, *faults: Fault) -> None:
        """Queue faults for an endpoint; each request there acts out the next one."""
        if endpoint not in self._faults:
            raise ValueError(f"faults cannot be scripted for {endpoint!r}")
        with self._lock:
            self._faults[endpoint].extend(faults)

    def count(self, endpoint: Endpoint, status: int | Literal["reset"] | None = None) -> int:
        return sum(
            1
            for entry in self.log
            if entry.endpoint == endpoint and (status is None or entry.status == status)
        )

    def files(self) -> dict[str, str]:
        """The stored distributions: filename -> sha256."""
        return {path.name: _sha256(path) for path in sorted(self.storage_dir.iterdir())}

    def add_file(self, path: Path) -> None:
        """Put a distribution on the index directly, as if uploaded earlier."""
        shutil.copyfile(path, self.storage_dir / path.name)

    def secrets(self) -> list[str]:
        """Every credential a run against this index could leak."""
        return [
            *self.minted_tokens,
            *self.issued_id_tokens,
            self.id_token_request_token,
            *self.api_tokens,
        ]

    def _session(self) -> tuple[int, threading.Event]:
        with self._lock:
            return self._generation, self._cancelled

    def _record(self, generation: int, entry: LogEntry) -> None:
        with self._lock:
            if generation == self._generation:
                self.log.append(entry)

    def _next_fault(self, endpoint: Endpoint) -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        ex = _Exchange(self, environ, start_response)
        if ex.endpoint == "simple":
            return self._act_fault(ex) or self._pypiserver(environ, ex.start_response)
        early = self._misrouted_or_faulted(ex)
        if early is not None:
            return early
        if ex.endpoint in ("audience", "id-token", "mint"):
            ex.wait(self.oidc_latency)
        match ex.endpoint:
            case "audience":
                return self._audience(ex)
            case "id-token":
                return self._id_token(ex)
            case "mint":
                return self._mint(ex)
            case _:
                return self._upload(ex)

    def _misrouted_or_faulted(self, ex: _Exchange) -> Iterable[bytes] | None:
        """Answers requests that never reach a handler: misrouted ones and scripted faults."""
        if ex.endpoint == "other":
            return ex.page(404)
        if ex.path == "/legacy":
            return ex.page(
                308,
                "An upload was attempted to /legacy but the expected upload URL is "
                "/legacy/ (with a trailing slash)",
                [("Location", "/legacy/")],
            )
        if ex.method != _METHODS[ex.endpoint]:
            return ex.page(405)
        return self._act_fault(ex)

    def _act_fault(self, ex: _Exchange) -> Iterable[bytes] | None:
        """Acts out the endpoint's next fault: an answer, or None to handle the request."""
        fault = self._next_fault(ex.endpoint)
        if fault is None:
            return None
        match fault.action:
            case "status":
                return ex.respond(
                    fault.code, fault.reason, fault.body, fault.headers, fault.content_type
                )
            case "reset":
                ex.read_body(limit=fault.after_bytes)
                ex.drop_connection()
            case "drip":
                return ex.stream(fault.code, fault.content_type, fault.size, _drip(ex, fault))
            case "huge":
                body = _generated(fault.size, fault.content_type == _SIMPLE_JSON)
                return ex.stream(fault.code, fault.content_type, fault.size, body)
            case "redirect":
                target = fault.location or ex.path + (
                    "?" + ex.environ["QUERY_STRING"] if ex.environ.get("QUERY_STRING") else ""
                )
                location = f"http://127.0.0.1:{self.port}{target}"
                return ex.page(fault.code, fault.reason, [("Location", location)])
        ex.wait(fault.seconds)
        return None

    def _audience(self, ex: _Exchange) -> list[bytes]:
        if self.trusted_publishing == "absent":
            return ex.page(404)
        if self.trusted_publishing == "disabled":
            return ex.json(403, {"message": "Trusted publishing functionality not enabled"})
        return ex.json(200, {"audience": self.audience})

    def _id_token(self, ex: _Exchange) -> list[bytes]:
        scheme, _, credential = ex.environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        expected = self.id_token_request_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), expected):
            return ex.json(401, {"message": "Unauthorized"})
        # Without an audience GitHub uses the repository owner's URL.
        default_audience = f"https://github.com/{identity.OWNER}"
        query = parse_qs(ex.environ.get("QUERY_STRING", ""))
        token = self._issuer.id_token(query.get("audience", [default_audience])[0], self.claims)
        self.issued_id_tokens.append(token)
        return ex.json(200, {"value": token})

    def _mint(self, ex: _Exchange) -> list[bytes]:
        if self.trusted_publishing == "absent":
            return ex.page(404)
        body = io.BytesIO()
        ex.read_body(body)
        try:
            with self._lock:
                publisher, jti = oidc.verify(
                    body.getvalue(),
                    issuer=self._issuer,
                    audience=self.audience,
                    enabled=self.trusted_publishing == "enabled",
                    publishers=self.publishers,
                    used_jtis=self._used_jtis,
                )
                # As on PyPI, only a successful mint spends the JWT.
                self._used_jtis.add(jti)
                minted = MintedToken(
                    "pypi-" + token_urlsafe(48), time.time() + self.token_lifetime, publisher
                )
                self.minted_tokens[minted.token] = minted
        except oidc.MintRefused as refused:
            error = {"code": refused.code, "description": refused.description}
            return ex.json(422, {"message": "Token request failed", "errors": [error]})
        answer = {"success": True, "token": minted.token, "expires": int(minted.expires_at)}
        return ex.json(200, answer)

    def _upload(self, ex: _Exchange) -> Iterable[bytes]:
        with tempfile.TemporaryFile(dir=self._tmp) as spool:
            # PyPI's proxy buffers the whole body before PyPI authenticates, so a token
            # can expire while a slow upload is still arriving.
            size = ex.read_body(spool, rate=self.upload_throttle)
            try:
                minted = self._authenticate(ex.environ.get("HTTP_AUTHORIZATION", ""))
                upload = _Upload.parse(spool, size, ex.environ.get("CONTENT_TYPE", ""))
                self._authorize(minted, upload.project)
                if self.mode == "pypi":
                    self._check_and_store(spool, upload)
            except _Refusal as refusal:
                return ex.page(refusal.code, refusal.reason)
            if self.mode == "pypiserver":
                return self._pypiserver_upload(ex, spool, size)
        return ex.respond(200)

    def _check_and_store(self, spool: IO[bytes], upload: _Upload) -> None:
        """PyPI's checks on the file, in warehouse's order; stores it unless already there."""
        upload.check_description()
        upload.check_filename()
        upload.check_size(self.file_size_limit)
        upload.check_digests()
        with self._storage_lock:
            if not self._is_duplicate(upload):
                upload.check_filename_version()
                self._store(spool, upload)

    def _store(self, spool: IO[bytes], upload: _Upload) -> None:
        # Written aside and renamed in, so a listing never shows half a file. Storing
        # directly rather than re-posting to pypiserver saves its slow multipart parser
        # (seconds per 100 MB); pypiserver still lists and serves the directory.
        with tempfile.NamedTemporaryFile(dir=self._tmp, delete=False) as out:
            spool.seek(upload.offset)
            remaining = upload.size
            while remaining:
                chunk = spool.read(min(_MIB, remaining))
                out.write(chunk)
                remaining -= len(chunk)
        Path(out.name).replace(self.storage_dir / upload.filename)

    def _pypiserver_upload(self, ex: _Exchange, spool: IO[bytes], size: int) -> list[bytes]:
        """The upload as pypiserver itself answers it, existing files included."""
        spool.seek(0)
        environ = {**ex.environ, "PATH_INFO": "/", "wsgi.input": spool}
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        answer = self._pypiserver(environ, ex.start_response)
        try:
            return [b"".join(answer)]
        finally:
            getattr(answer, "close", lambda: None)()

    def _authenticate(self, authorization: str) -> MintedToken | None:
        """The minted token the request carries, None for a static API token."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise _Refusal(403, INVALID_AUTH)
        try:
            username, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise _Refusal(403, INVALID_AUTH) from None
        if username != "__token__":
            raise _Refusal(403, PASSWORD_AUTH)
        password = password.strip()
        if password in self.api_tokens:
            return None
        minted = self.minted_tokens.get(password)
        if minted is None:
            raise _Refusal(403, INVALID_AUTH)
        return minted

    def _authorize(self, minted: MintedToken | None, project: str) -> None:
        """The token's caveats, checked and worded as warehouse does (all of them, joined)."""
        if minted is None:
            return
        errors = []
        allowed = minted.publisher.projects
        if allowed is not None and _normalize(project) not in {_normalize(p) for p in allowed}:
            errors += [
                f"OIDC scoped token is not valid for project '{project}'",
                f"project-scoped token is not valid for project: {project!r}",
            ]
        if time.time() >= minted.expires_at:
            errors.append("token is expired")
        if errors:
            raise _Refusal(403, "Invalid API Token: " + ", ".join(errors))

    def _is_duplicate(self, upload: _Upload) -> bool:
        """True for a byte-identical re-upload; refuses other content under a stored name."""
        stored = self.storage_dir / upload.filename
        if not stored.exists():
            return False
        if _sha256(stored) == upload.digests["sha256"]:
            return True
        raise _Refusal(
            400,
            f"File already exists ({upload.filename!r}, with blake2_256 hash "
            f"{upload.digests['blake2_256']!r}). "
            "See https://pypi.org/help/#file-name-reuse for more information.",
        )


class _Refusal(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Dropped(Exception):
    """The request ends without an answer (a reset fault, a cancelled wait, a client gone)."""


@dataclass(frozen=True)
class _Upload:
    fields: dict[str, list[str]]
    filename: str
    offset: int
    """Where the file starts in the request body."""
    size: int
    digests: dict[str, str]

    def field(self, name: str) -> str:
        return self.fields.get(name, [""])[0]

    @property
    def project(self) -> str:
        return self.field("name")

    @classmethod
    def parse(cls, spool: IO[bytes], size: int, content_type: str) -> _Upload:
        """Reads the multipart form in place (mapped, not loaded) and hashes its file."""
        header = Message()
        header["Content-Type"] = content_type
        boundary = header.get_param("boundary")
        if not isinstance(boundary, str) or size == 0:
            raise _Refusal(400, NO_FILE)
        delimiter = b"\r\n--" + boundary.encode()
        fields: dict[str, list[str]] = {}
        content: tuple[str, int, int] | None = None
        spool.flush()
        with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as body:
            # The first delimiter is the only one without a CRLF before it.
            position = body.find(delimiter[2:])
            position = -1 if position < 0 else position + len(delimiter) - 2
            while position >= 0 and body[position : position + 2] == b"\r\n":
                head_end = body.find(b"\r\n\r\n", position)
                end = body.find(delimiter, head_end)
                if head_end < 0 or end < 0:
                    raise _Refusal(400, NO_FILE)
                part = BytesHeaderParser().parsebytes(body[position + 2 : head_end])
                raw_name = part.get_param("name", header="content-disposition")
                name = collapse_rfc2231_value(raw_name) if raw_name else ""
                filename = part.get_filename()
                if name == "content" and filename is not None:
                    content = (filename, head_end + 4, end)
                else:
                    fields.setdefault(name, []).append(body[head_end + 4 : end].decode())
                position = end + len(delimiter)
            if content is None:
                raise _Refusal(400, NO_FILE)
            filename, start, end = content
            sha256 = hashlib.sha256()
            blake2 = hashlib.blake2b(digest_size=32)
            for offset in range(start, end, _HASH_CHUNK):
                chunk = body[offset : min(offset + _HASH_CHUNK, end)]
                sha256.update(chunk)
                blake2.update(chunk)
        digests = {"sha256": sha256.hexdigest(), "blake2_256": blake2.hexdigest()}
        return cls(fields, filename, start, end - start, digests)

    def check_description(self) -> None:
        """PyPI renders the description on upload and refuses one that fails to render."""
        content_type = self.field("description_content_type") or "text/x-rst"
        rst = content_type.split(";")[0].strip().lower() == "text/x-rst"
        if (
            self.field("description")
            and rst
            and readme_rst.render(self.field("description")) is None
        ):
            raise _Refusal(
                400,
                f"The description failed to render for {content_type!r}. "
                "See https://pypi.org/help/#description-content-type for more information.",
            )

    def check_filename(self) -> None:
        if "/" in self.filename or "\\" in self.filename:
            raise _Refusal(400, "Cannot upload a file with '/' or '\\' in the name.")
        if not self.filename.endswith((".whl", ".tar.gz", ".zip")):
            raise _Refusal(
                400,
                "Invalid file extension: Use .tar.gz, .whl or .zip extension. See "
                "https://www.python.org/dev/peps/pep-0527 and https://peps.python.org/pep-0715/ "
                "for more information",
            )

    def check_size(self, limit: int | None) -> None:
        if limit is not None and self.size > limit:
            raise _Refusal(
                400,
                f"File too large. Limit for project {self.project!r} is {limit // _MIB} MB. "
                "See https://docs.pypi.org/project-management/storage-limits"
                "#requesting-a-file-size-limit-increase for more information.",
            )

    def check_filename_version(self) -> None:
        try:
            if self.filename.endswith(".whl"):
                version = parse_wheel_filename(self.filename)[1]
            elif self.filename.endswith(".tar.gz"):
                version = parse_sdist_filename(self.filename)[1]
            else:
                return
            expected = Version(self.field("version"))
        except (InvalidVersion, InvalidWheelFilename, InvalidSdistFilename) as exc:
            raise _Refusal(400, str(exc)) from None
        if expected != version:
            raise _Refusal(
                400, f"Version in filename should be {str(expected)!r} not {str(version)!r}."
            )

    def check_digests(self) -> None:
        """Every digest the client supplied must match, as on PyPI; missing ones are fine."""
        for algorithm, digest in self.digests.items():
            supplied = self.field(f"{algorithm}_digest")
            if supplied and not hmac.compare_digest(supplied.lower().encode(), digest.encode()):
                raise _Refusal(400, DIGEST_MISMATCH)


class _Exchange:
    """One request as a handler sees it: its body, its answer and its log entry."""

    def __init__(
        self, index: LocalIndex, environ: WSGIEnvironment, start_response: StartResponse
    ) -> None:
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]
        self.path: str = environ.get("PATH_INFO", "")
        self.endpoint: Endpoint = _ROUTES.get(self.path) or (
            "simple" if self.path.startswith(("/simple", "/packages")) else "other"
        )
        self._index = index
        self._start_response = start_response
        self._generation, self._cancelled = index._session()
        self._body_read = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        # Logged before the first byte goes out: a client holding its answer finds it logged.
        entry = LogEntry(self.endpoint, self.method, self.path, int(status[:3]))
        self._index._record(self._generation, entry)
        return self._start_response(status, headers, exc_info)

    def respond(
        self,
        code: int,
        reason: str | None = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = _HTML,
    ) -> list[bytes]:
        # Whatever is left of the body is read first, as PyPI's proxy would have.
        self.read_body()
        # As PyPI does: a status line carries latin-1 only.
        phrase = (reason or _phrase(code)).encode("iso-8859-1", "replace").decode("iso-8859-1")
        self.start_response(
            f"{code} {phrase}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
        )
        return [body]

    def stream(
        self, code: int, content_type: str, length: int, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        """Headers at once (with Content-Length `length`), then `chunks` as they come."""
        self.read_body()
        self.start_response(
            f"{code} {_phrase(code)}",
            [("Content-Type", content_type), ("Content-Length", str(length))],
        )
        # An empty first piece makes wsgiref send the headers before the body is ready.
        yield b""
        yield from chunks

    def json(self, code: int, payload: object) -> list[bytes]:
        body = json.dumps(payload).encode()
        return self.respond(code, body=body, content_type="application/json")

    def page(
        self, code: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        """An error as PyPI sends it: the message in the reason phrase, and an HTML page."""
        title = html.escape(f"{code} {reason or _phrase(code)}")
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return self.respond(code, reason, page.encode(), headers)

    def read_body(
        self, sink: IO[bytes] | None = None, *, limit: int | None = None, rate: float | None = None
    ) -> int:
        """Reads the rest of the body (or its first `limit` bytes), `rate` bytes a second at most.

        Returns the bytes read; later calls read nothing.
        """
        if self._body_read or limit == 0:
            return 0
        self._body_read = True
        stream: IO[bytes] = self.environ["wsgi.input"]
        # Throttled reads come in twentieths of a second, so the pace stays even.
        size = min(_CHUNK, max(1024, int(rate / 20))) if rate else _CHUNK
        if self.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            chunks = _dechunked(stream, size)
        else:
            chunks = _counted(stream, int(self.environ.get("CONTENT_LENGTH") or 0), size)
        received = 0
        started = time.monotonic()
        for chunk in chunks:
            piece = chunk if limit is None else chunk[: limit - received]
            received += len(piece)
            if sink is not None:
                sink.write(piece)
            if rate:
                self.wait(started + received / rate - time.monotonic())
            if limit is not None and received >= limit:
                break
        return received

    def wait(self, seconds: float) -> None:
        """Sleeps, abandoning the request if the index is reset or stopped meanwhile."""
        if seconds > 0 and self._cancelled.wait(seconds):
            raise _Dropped

    def drop_connection(self) -> NoReturn:
        connection: socket.socket = self.environ[_CONNECTION]
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The handler's file objects keep the descriptor open until the handler returns;
        # the real close happens then, before the server would shut the socket down
        # gracefully, and with linger 0 it sends an RST instead of a FIN.
        connection.close()
        entry = LogEntry(self.endpoint, self.method, self.path, "reset")
        self._index._record(self._generation, entry)
        raise _Dropped


def _drip(ex: _Exchange, fault: Fault) -> Iterator[bytes]:
    for number in range(fault.size):
        ex.wait(fault.seconds)
        yield b"{" if number == 0 else b" "


def _generated(size: int, json_body: bool) -> Iterator[bytes]:
    """`size` bytes of a JSON object or an HTML page, made a chunk at a time."""
    if json_body:
        head, filler, tail = b'{"meta": {"api-version": "1.4"}, "padding": "', b"x" * 64, b'"}'
    else:
        head, filler, tail = (
            b"<!DOCTYPE html><html><body>\n",
            b'<a href="x">x</a>\n',
            b"</body></html>\n",
        )
    if size < len(head) + len(tail):
        yield (head + tail)[:size]
        return
    yield head
    remaining = size - len(head) - len(tail)
    block = filler * (_CHUNK // len(filler))
    while remaining > 0:
        piece = block[:remaining]
        remaining -= len(piece)
        yield piece
    yield tail


def _counted(stream: IO[bytes], length: int, size: int) -> Iterator[bytes]:
    while length > 0:
        try:
            data = stream.read(min(size, length))
        except TimeoutError:
            raise _Dropped from None
        if not data:
            raise _Dropped
        length -= len(data)
        yield data


def _dechunked(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """A chunked body's data, for clients that stream an upload of unknown length."""
    while True:
        line = stream.readline(1024)
        if not line:
            raise _Dropped
        length = int(line.split(b";")[0], 16)
        if length == 0:
            while stream.readline(1024).strip():  # trailers, up to the blank line
                pass
            return
        yield from _counted(stream, length, size)
        stream.readline(1024)


class _ServerHandler(ServerHandler):
    http_version = "1.1"
    request_handler: WSGIRequestHandler
    headers: Headers

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        # wsgiref serves one request per connection; saying so keeps clients from reusing it.
        self.headers["Connection"] = "close"

    def handle_error(self) -> None:
        # A dropped request, or a client that hung up mid-answer (a drip, a huge body).
        if not isinstance(sys.exc_info()[1], _Dropped | OSError):
            super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    request: ssl.SSLSocket
    # As a proxy's body timeout does: a client that stops sending mid-request is cut
    # off, rather than holding a thread (and itself) forever.
    timeout = 60

    def setup(self) -> None:
        # The TLS handshake runs here, in the request's own thread, so a stalled client
        # cannot hold up accept().
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: LocalIndex.log records requests."""

    def handle(self) -> None:
        """wsgiref's handle(), with the handler above and the connection in the environ."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        environ[_CONNECTION] = self.connection
        output = cast("IO[bytes]", self.wfile)
        handler = _ServerHandler(self.rfile, output, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        assert isinstance(self.server, _Server)
        handler.run(self.server.wsgi_app)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext, app: WSGIApplication) -> None:
        self._tls = tls
        self.wsgi_app = app
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host up in DNS (getfqdn); no need here.
        TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]
        self.setup_environ()
        self.base_environ["HTTPS"] = "on"

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        wrapped = self._tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up or failing the TLS handshake are expected; anything else is a bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _normalize(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
