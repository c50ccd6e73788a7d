"""PyPI and GitHub's ID-token service on one local HTTPS server.

`LocalIndex` serves, on https://127.0.0.1:<port> with a throwaway CA:

- the simple API (`/simple/`) as PyPI serves it, PEP 691 JSON or HTML by the Accept
  header, over the storage every upload lands in, and downloads (`/packages/`, from
  pypiserver);
- GitHub's ID-token endpoint (`/_github/token`), signing RS256 JWTs;
- GitHub's REST API for a repository's attestation store (`POST /repos/<owner>/<repo>/
  attestations`, github_api.py), with the job's GITHUB_TOKEN (`github_token()`) carrying the
  permissions in `github_permissions`; point GITHUB_API_URL at `url`;
- PyPI's trusted-publishing endpoints (`/_/oidc/audience`, `/_/oidc/mint-token`,
  `/_/oidc/github/mint-token`, `/_/oidc/burn-token`) and upload endpoint (`/legacy/`),
  emulated from
  warehouse's source: same checks, order, status codes and wording (pypi.py), PEP 740
  attestations verified as PyPI verifies them, and the Integrity API
  (`/integrity/<project>/<version>/<file>/provenance`);
- a local Sigstore (sigstore.py: Fulcio, a CT log key, Rekor v1), mounted under
  `/_sigstore/` and, for Fulcio, `/api/v2/` (`sigstore`, `sigstore_trust_config`); its
  Fulcio takes the identity tokens `/_github/token` issues for the audience `sigstore`;
- any other WSGI app mounted under a path prefix (`mount()`).

Tests reconfigure it through its attributes, script failures with `faults()`, read
what happened in `log` (or wait on it with `wait_for()`), and call `reset()` between
tests. The HTTPS plumbing is in transport.py, the multipart parser in multipart.py, PyPI's
rules in pypi.py.
"""

from __future__ import annotations

import hmac
import io
import json
import shutil
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from secrets import token_hex, token_urlsafe
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Literal
from urllib.parse import parse_qs

import trustme
from packaging.version import InvalidVersion, Version

from tests.localindex import identity, multipart, oidc, pypi
from tests.localindex.carried import Carried, Seen, carried
from tests.localindex.dists import sha256
from tests.localindex.github_api import GitHubApi
from tests.localindex.oidc import Publisher
from tests.localindex.proxy import ConnectProxy
from tests.localindex.pypi import MintedToken, ProjectStatus, Refusal
from tests.localindex.service import IndexAddresses, Service
from tests.localindex.sigstore import (
    MOUNTS,
    PREFIX,
    AttestationRefused,
    LocalSigstore,
    verify_upload,
)
from tests.localindex.transport import Exchange, Fault, HttpsServer, LogEntry, Requests

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "Fault",
    "LocalIndex",
    "LogEntry",
    "MintedToken",
    "Mount",
    "Publisher",
    "SimpleRequest",
]

# What the index serves itself; what it logs; what faults can be scripted for.
_Served = Literal[
    "audience", "id-token", "mint", "burn", "upload", "simple", "integrity", "github-attestations"
]
Endpoint = Literal[_Served, "other"]
FaultEndpoint = Literal[_Served, "fulcio", "rekor"]

_ROUTES: dict[str, Endpoint] = {
    "/_/oidc/audience": "audience",
    "/_github/token": "id-token",
    "/_/oidc/mint-token": "mint",
    "/_/oidc/github/mint-token": "mint",
    "/_/oidc/burn-token": "burn",
    "/legacy/": "upload",
    "/legacy": "upload",
}
_METHODS: dict[str, str] = {
    "audience": "GET",
    "id-token": "GET",
    "mint": "POST",
    "burn": "POST",
    "upload": "POST",
    "integrity": "GET",
    "github-attestations": "POST",
}
# The local Sigstore's mounts, by prefix: the name each is logged, faulted and delayed
# under. Fulcio is asked at the host root (see sigstore.py); the CT log has no endpoint.
# latency["rekor"] is waited before the app is called, so LocalSigstore.max_in_flight
# (and its own rekor_delay) see a request only once that wait is over.
_SIGSTORE_MOUNTS = {
    f"{PREFIX}/fulcio/": "fulcio",
    "/api/v2/": "fulcio",
    f"{PREFIX}/rekor/": "rekor",
    f"{PREFIX}/": "sigstore",
}
assert {prefix.rstrip("/") for prefix in MOUNTS} <= {p.rstrip("/") for p in _SIGSTORE_MOUNTS}
_MIB = 1024 * 1024
REAL_LATENCY: Mapping[str, float] = MappingProxyType(
    {"id-token": 0.15, "audience": 0.05, "mint": 0.2, "upload": 0.3}
)
"""Server-side delays standing for what a GitHub-hosted runner pays to GitHub's token
service and PyPI (round trips and server time), for LocalIndex.latency in benchmarks."""


AUDIENCE = "localindex"
"""The local index's own audience, as a self-hosted Warehouse has its own."""
PYPI_AUDIENCES: Mapping[str, str] = MappingProxyType(
    {"upload.pypi.org": "pypi", "test.pypi.org": "testpypi"}
)
"""Reached by these names (through `proxy`), the index is PyPI or TestPyPI and takes their
audience."""
UNRESOLVABLE = {
    "index": "index.invalid",
    "token": "token.actions.invalid",
    "api": "api.github.invalid",
    "sigstore": "sigstore.invalid",
}
"""Names no resolver answers (RFC 6761), for the index's parts: only its proxy reaches them."""
NAMES = (*PYPI_AUDIENCES, "pypi.org", "files.pythonhosted.org", *UNRESOLVABLE.values())
"""The names the index answers to through its proxy, besides 127.0.0.1: those of PyPI's
hosts, so that a run can publish to `https://upload.pypi.org/legacy/` and never leave the
machine (its CA is the only one trusted), and `UNRESOLVABLE`."""


@dataclass(frozen=True)
class Mount:
    """A WSGI app served under `prefix`, logged and faulted under `name`."""

    prefix: str
    name: str
    app: WSGIApplication
    reset: Callable[[], None] | None


@dataclass(frozen=True)
class SimpleRequest:
    """A simple-API request as it came: its path and headers (Accept, Cache-Control...)."""

    path: str
    headers: dict[str, str]


class LocalIndex(Service, IndexAddresses):
    """The local index; see the module docstring. Use as a context manager or start()/stop()."""

    mode: Literal["pypi", "pypiserver"]
    """Who judges an authenticated upload: PyPI's checks (default), or pypiserver itself.

    pypiserver stores what it is sent and refuses an existing filename, whatever its
    content, with 409, or 400 "Bad Request" for twine's User-Agent.
    """
    audience: str
    """What `/_/oidc/audience` answers, and the mint takes: an audience of its own, as a
    self-hosted Warehouse has (PyPI's, TestPyPI's and Sigstore's are reserved)."""
    trusted_publishing: Literal["enabled", "disabled", "absent"]
    burn_endpoint: bool
    """Whether `/_/oidc/burn-token` exists (Warehouse has it since its pull request 20197)."""
    token_lifetime: float
    """Seconds a minted upload token stays valid."""
    upload_throttle: float | None
    """Bytes per second at which upload bodies are read (a slow link), or None."""
    latency: dict[str, float]
    """Seconds each request to an endpoint waits before it is handled, by endpoint name
    ("id-token", "audience", "mint", "upload", "simple", "integrity", "fulcio", "rekor", a
    mount's name): the round trips and server time a runner pays to PyPI and GitHub and
    127.0.0.1 does not. See REAL_LATENCY."""
    file_size_limit: int | None
    """PyPI's per-file limit, 100 MiB unless raised for a project; None for no limit."""
    claims: dict[str, str | int]
    """Claims put in every ID token, after the computed ones, so they can override them."""
    publishers: list[Publisher]
    id_token_request_token: str
    project_status: dict[str, ProjectStatus]
    """PEP 792 status by normalized project name; "active" when absent."""
    project_status_reason: dict[str, str]
    github_permissions: dict[str, str]
    """The job's `permissions:`, which the GITHUB_TOKEN `github_token()` issues carries:
    `attestations: write` by default (`id-token: write` is run_action's `id_token`)."""
    projects: set[str]
    """Projects that exist without a file, as a test declares them. A project also exists
    once it has a file, and when a publisher names it (a pending publisher creates its
    project at the mint). The simple API answers 404 for any other, and a publisher's
    token uploading to one gets Warehouse's 400 (`pypi.NEW_PROJECT`)."""
    listing_delay: int | Literal["never"]
    """How many simple-API reads of its project a newly uploaded file stays unlisted (a
    CDN serving stale pages, whatever the request's Cache-Control), or "never" listed."""

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="localindex-"))
        self.storage_dir = self._tmp / "packages"
        self.storage_dir.mkdir()
        ca = trustme.CA()
        self.ca_pem = self._tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost", *NAMES).configure_cert(tls)
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
        self._requests = Requests()
        self._mounts: list[Mount] = []
        self._used_jtis: set[str] = set()
        self._uploaded_at: dict[str, float] = {}
        self._unlisted: dict[str, int | None] = {}
        """Files not yet listed: simple-API reads to go, None for never."""
        self.log: list[LogEntry] = self._requests.log
        self.simple_requests: list[SimpleRequest] = []
        self.issued_id_tokens: list[str] = []
        self.id_token_audiences: dict[str, str] = {}
        """The audience each issued identity token is for."""
        self.minted_tokens: dict[str, MintedToken] = {}
        """Upload tokens minted so far, by token."""
        self.api_tokens: set[str] = set()
        """Static API tokens: never expire, may upload any project."""
        self._restore_defaults()
        self._server = HttpsServer(("127.0.0.1", 0), tls, self._app, self._requests)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="localindex",
            daemon=True,
        )
        self.sigstore = LocalSigstore(self.url, self._issuer)
        """The local Sigstore this server serves; reset with the index."""
        self.github = GitHubApi(self.sigstore.trust_config_path)
        """GitHub's attestation store: the tokens issued and the attestations stored."""
        self.proxy = ConnectProxy(dict.fromkeys(NAMES, ("127.0.0.1", self.port)))
        """The way to the index by its `NAMES`; reset with the index."""
        for prefix, name in _SIGSTORE_MOUNTS.items():
            reset = self.sigstore.reset if name == "sigstore" else None
            self.mount(prefix, self.sigstore.app, name=name, reset=reset)

    def start(self) -> LocalIndex:
        self._thread.start()
        self.proxy.start()
        return self

    def stop(self) -> None:
        self.proxy.stop()
        self._requests.cancel()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self.sigstore.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def reset(self) -> None:
        """Back to a fresh index: empty storage, no state, default settings.

        Requests still waiting (delayed, throttled, dripping) are dropped unanswered and
        unlogged, so they cannot leak into the next test. Mounted apps stay mounted and
        have their reset hook called.
        """
        self._requests.reset()
        with self._lock:
            self._used_jtis.clear()
        with self._storage_lock:
            for path in self.storage_dir.iterdir():
                path.unlink()
            self._uploaded_at.clear()
            self._unlisted.clear()
        self.simple_requests.clear()
        self.issued_id_tokens.clear()
        self.id_token_audiences.clear()
        self.minted_tokens.clear()
        self.api_tokens.clear()
        self.github.reset()
        self.proxy.reset()
        self._restore_defaults()
        for mount in self._mounts:
            if mount.reset is not None:
                mount.reset()

    def _restore_defaults(self) -> None:
        self.mode = "pypi"
        self.audience = AUDIENCE
        self.trusted_publishing = "enabled"
        self.burn_endpoint = True
        self.token_lifetime = 900
        self.upload_throttle = None
        self.latency = {}
        self.file_size_limit = 100 * _MIB
        self.claims = identity.default_claims()
        self.publishers = [oidc.default_publisher()]
        self.id_token_request_token = token_hex(20)
        self.project_status = {}
        self.project_status_reason = {}
        self.projects = set()
        self.listing_delay = 0
        self.github_permissions = {"attestations": "write"}

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:  # type: ignore[override]  # an attribute in IndexProcess
        return f"https://127.0.0.1:{self.port}"

    @property
    def sigstore_trust_config(self) -> Path:
        """The client trust config naming the local Sigstore: for
        OIDC_PUBLISH_SIGSTORE_TRUST_CONFIG, or sigstore's ClientTrustConfig.from_json."""
        return self.sigstore.trust_config_path

    def github_token(self) -> str:
        """A GITHUB_TOKEN for the workflow's repository, with `github_permissions`."""
        return self.github.issue(self.github_permissions)

    def provenance_url(self, filename: str) -> str | None:
        """The Integrity API's URL for a distribution's provenance; None for a filename
        that names no release."""
        release = pypi.release_of(filename)
        if release is None:
            return None
        project, version = release
        return f"{self.url}/integrity/{project}/{version}/{filename}/provenance"

    def mount(
        self,
        prefix: str,
        app: WSGIApplication,
        *,
        name: str | None = None,
        reset: Callable[[], None] | None = None,
    ) -> str:
        """Serves `app` under `prefix` ("/_sigstore/") on this server; returns its URL.

        The app sees SCRIPT_NAME = prefix (without its final slash) and PATH_INFO the
        rest. Its requests are logged, take faults and latency under `name` (the prefix's
        last part by default), and wait through `environ["localindex.exchange"].wait()`
        so reset() can cancel them; `reset` is called by reset().
        """
        if not prefix.startswith("/") or not prefix.endswith("/") or prefix == "/":
            raise ValueError(f"a mount prefix looks like /_name/, not {prefix!r}")
        label = name or prefix.strip("/").rsplit("/", 1)[-1]
        self._mounts.append(Mount(prefix, label, app, reset))
        self._mounts.sort(key=lambda mount: len(mount.prefix), reverse=True)
        return self.url + prefix

    def faults(self, endpoint: FaultEndpoint | str, *faults: Fault) -> None:
        """Queue faults for an endpoint or a mount; each request there acts out the next."""
        known = {*_METHODS, "simple", *(mount.name for mount in self._mounts)}
        if endpoint not in known:
            raise ValueError(f"faults cannot be scripted for {endpoint!r}")
        self._requests.add_faults(endpoint, faults)

    @property
    def failed_handshakes(self) -> list[str]:
        """OpenSSL's reason for each TLS handshake that failed here since the last reset."""
        with self._requests.lock:
            return list(self._requests.failed_handshakes)

    def count(self, endpoint: str, status: int | Literal["reset", "held"] | None = None) -> int:
        return sum(
            1
            for entry in self.log
            if entry.endpoint == endpoint and (status is None or entry.status == status)
        )

    def carried(self) -> set[Carried]:
        """Which credential went to which endpoint, and where in the request: every
        credential the index handed out or was given, by kind (see carried.py)."""
        kinds = {self.id_token_request_token: "ACTIONS_ID_TOKEN_REQUEST_TOKEN"}
        for token, audience in self.id_token_audiences.items():
            kinds[token] = f"identity token ({'sigstore' if audience == 'sigstore' else 'index'})"
        kinds |= dict.fromkeys(self.minted_tokens, "upload token")
        kinds |= dict.fromkeys(self.api_tokens, "API token")
        kinds |= dict.fromkeys(self.github.tokens, "github-token")
        with self._requests.lock:
            seen = list(self._requests.seen)
        # What the proxy was sent: the CONNECT's own headers.
        seen += [
            Seen("proxy", {"Proxy-Authorization": t.authorization}, bytearray())
            for t in self.proxy.tunnels
            if t.authorization
        ]
        if self.proxy.credentials is not None:
            kinds[self.proxy.credentials[1]] = "proxy credentials"
        return carried(seen, kinds)

    def bodies(self, endpoint: str) -> list[bytes]:
        """The start of each request body to `endpoint` (carried.BODY_HEAD bytes at most)."""
        with self._requests.lock:
            return [bytes(s.body) for s in self._requests.seen if s.endpoint == endpoint]

    def hosts(self) -> set[str]:
        """The names requests came to the index by (their Host headers, without the port)."""
        with self._requests.lock:
            seen = list(self._requests.seen)
        return {
            next((v for k, v in s.headers.items() if k.lower() == "host"), "").rsplit(":", 1)[0]
            for s in seen
        }

    def misrouted(self) -> list[Carried]:
        """Credentials where they must never be: an identity token anywhere but at the one
        endpoint its audience belongs to (the index's mint, Sigstore's Fulcio), or any
        credential outside the header or field that carries it."""
        belongs = {"identity token (index)": "mint", "identity token (sigstore)": "fulcio"}
        return [
            seen
            for seen in self.carried()
            if seen.carrier == "elsewhere"
            or belongs.get(seen.credential, seen.endpoint) != seen.endpoint
        ]

    def made_public(self) -> list[LogEntry]:
        """What a run that fails a check must not have made: uploads, requests to Sigstore
        (its log entries are public and permanent), stores in GitHub. The token exchange
        runs beside the checks, so it may have; see `alive_tokens`."""
        public = {"upload", "fulcio", "rekor", "sigstore", "github-attestations"}
        return [entry for entry in self.log if entry.endpoint in public]

    def alive_tokens(self) -> list[str]:
        """Minted upload tokens never burned: what a finished run must not leave behind."""
        return [token for token, minted in self.minted_tokens.items() if not minted.burned]

    def wait_for(self, condition: Callable[[list[LogEntry]], bool], timeout: float = 30.0) -> None:
        """Blocks until the log satisfies `condition`; a held request is logged as it arrives.

        `condition` is called with the log's lock held: it only reads. AssertionError, with
        the log, after `timeout` seconds.
        """
        if not self._requests.wait_for(condition, timeout):
            raise AssertionError(f"the index's log never got there: {self.log}")

    def release_held(self) -> None:
        """Ends every request held so far (`Fault.hold`): each is dropped unanswered, as a
        connection the server closes."""
        self._requests.release()

    def files(self) -> dict[str, str]:
        """The stored distributions: filename -> sha256."""
        return {path.name: sha256(path) for path in sorted(self.storage_dir.iterdir())}

    def add_file(self, path: Path, uploaded_at: float | None = None) -> None:
        """Put a distribution on the index directly, as if uploaded earlier (at
        `uploaded_at`, seconds since the epoch, now by default), listed at once."""
        with self._storage_lock:
            shutil.copyfile(path, self.storage_dir / path.name)
            self._uploaded_at[path.name] = time.time() if uploaded_at is None else uploaded_at
            self._unlisted.pop(path.name, None)

    def uploaded_at(self, filename: str) -> float:
        """When a stored file was uploaded (its modification time if never recorded)."""
        with self._storage_lock:
            found = self._uploaded_at.get(filename)
        return found if found is not None else (self.storage_dir / filename).stat().st_mtime

    def secrets(self) -> list[str]:
        """Every credential a run against this index could leak.

        The identity tokens include those issued for Sigstore; nothing else of Sigstore's
        is secret (certificates, log entries and attestations are public).
        """
        return [
            *self.minted_tokens,
            *self.issued_id_tokens,
            self.id_token_request_token,
            *self.api_tokens,
            *self.github.tokens,
            *(self.proxy.credentials[1:] if self.proxy.credentials else ()),
        ]

    # --- routing ------------------------------------------------------------------------

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for mount in self._mounts:
            if path.startswith(mount.prefix) or path == mount.prefix[:-1]:
                return self._mounted(mount, environ, start_response)
        endpoint: Endpoint = _ROUTES.get(path) or (
            "simple"
            if path.startswith(("/simple", "/packages"))
            else "integrity"
            if path.startswith("/integrity/")
            else "github-attestations"
            if path.startswith("/repos/") and path.endswith("/attestations")
            else "other"
        )
        ex = Exchange(self._requests, endpoint, environ, start_response)
        early = self._misrouted(ex)
        if early is not None:
            return early
        fault = self._requests.next_fault(endpoint)
        if fault is not None:
            answer = ex.act(fault, self.port)
            if answer is not None:
                return answer
        ex.wait(self.latency.get(endpoint, 0.0))
        handlers: dict[str, Callable[[Exchange], Iterable[bytes]]] = {
            "simple": self._simple,
            "audience": self._audience,
            "id-token": self._id_token,
            "mint": self._mint,
            "burn": self._burn,
            "upload": self._upload,
            "integrity": self._integrity,
            "github-attestations": self._github_attestations,
        }
        return handlers[endpoint](ex)

    def _mounted(
        self, mount: Mount, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        ex = Exchange(self._requests, mount.name, environ, start_response)
        fault = self._requests.next_fault(mount.name)
        if fault is not None:
            answer = ex.act(fault, self.port)
            if answer is not None:
                return answer
        ex.wait(self.latency.get(mount.name, 0.0))
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + mount.prefix[:-1]
        inner["PATH_INFO"] = ex.path[len(mount.prefix) - 1 :]
        return mount.app(inner, ex.start_response)

    def _misrouted(self, ex: Exchange) -> list[bytes] | None:
        """Answers requests that never reach a handler."""
        if ex.endpoint == "other":
            return ex.page(404)
        if ex.path == "/legacy":
            return ex.page(
                308,
                "An upload was attempted to /legacy but the expected upload URL is "
                "/legacy/ (with a trailing slash)",
                [("Location", "/legacy/")],
            )
        if ex.endpoint in _METHODS and ex.method != _METHODS[ex.endpoint]:
            return ex.page(405)
        return None

    # --- GitHub and trusted publishing ---------------------------------------------------

    def _audience(self, ex: Exchange) -> list[bytes]:
        if self.trusted_publishing == "absent":
            return ex.page(404)
        if self.trusted_publishing == "disabled":
            return ex.json(403, {"message": "Trusted publishing functionality not enabled"})
        return ex.json(200, {"audience": self._audience_at(ex)})

    def _audience_at(self, ex: Exchange) -> str:
        """The audience of the index as the request names it: PyPI's on PyPI's host."""
        host = ex.header("Host").rpartition(":")[0] or ex.header("Host")
        return PYPI_AUDIENCES.get(host.lower(), self.audience)

    def _id_token(self, ex: Exchange) -> list[bytes]:
        scheme, _, credential = ex.header("Authorization").partition(" ")
        expected = self.id_token_request_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.encode(), expected):
            return ex.json(401, {"message": "Unauthorized"})
        # Without an audience GitHub uses the repository owner's URL.
        default_audience = f"https://github.com/{identity.OWNER}"
        query = parse_qs(ex.environ.get("QUERY_STRING", ""))
        audience = query.get("audience", [default_audience])[0]
        token = self._issuer.id_token(audience, self.claims)
        self.issued_id_tokens.append(token)
        self.id_token_audiences[token] = audience
        return ex.json(200, {"value": token})

    def _mint(self, ex: Exchange) -> list[bytes]:
        if self.trusted_publishing == "absent":
            return ex.page(404)
        body = io.BytesIO()
        ex.read_body(body)
        try:
            with self._lock:
                publisher, jti = oidc.verify(
                    body.getvalue(),
                    issuer=self._issuer,
                    audience=self._audience_at(ex),
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

    def _burn(self, ex: Exchange) -> list[bytes]:
        """As warehouse answers it: 202 whatever was sent; a minted token it names is
        revoked, anything else (an API token, garbage) changes nothing."""
        if not self.burn_endpoint or self.trusted_publishing == "absent":
            return ex.page(404)
        body = io.BytesIO()
        ex.read_body(body, limit=_MIB)
        try:
            sent = json.loads(body.getvalue())
        except ValueError:
            sent = None
        token = sent.get("token") if isinstance(sent, dict) else None
        with self._lock:
            minted = self.minted_tokens.get(token) if isinstance(token, str) else None
            if minted is not None:
                self.minted_tokens[minted.token] = replace(minted, burned=True)
        return ex.json(202, {"message": "Accepted", "errors": []})

    # --- upload -------------------------------------------------------------------------

    def _upload(self, ex: Exchange) -> Iterable[bytes]:
        with tempfile.TemporaryFile(dir=self._tmp) as spool:
            # PyPI's proxy buffers the whole body before PyPI authenticates, so a token
            # can expire while a slow upload is still arriving.
            size = ex.read_body(spool, rate=self.upload_throttle)
            try:
                minted = pypi.authenticate(
                    ex.header("Authorization"), self.api_tokens, self.minted_tokens
                )
                try:
                    form = multipart.parse(spool, size, ex.header("Content-Type"))
                except multipart.NoFile:
                    raise Refusal(400, pypi.NO_FILE) from None
                project = pypi.normalize(form.field("name"))
                pypi.check_project_exists(minted, project in self._projects())
                pypi.authorize(minted, form.field("name"))
                if self.mode == "pypi":
                    self._check_and_store(spool, form, minted)
            except Refusal as refusal:
                return ex.page(refusal.code, refusal.reason)
            if self.mode == "pypiserver":
                return self._pypiserver_upload(ex, spool, size)
        return ex.respond(200)

    def _check_and_store(
        self, spool: IO[bytes], form: multipart.Form, minted: MintedToken | None
    ) -> None:
        """PyPI's checks on the file, in warehouse's order; stores it unless already there.

        As warehouse (forklift/legacy.py): a byte-identical re-upload answers 200 before
        anything else about the file is judged, its attestations included; attestations
        are verified after the file's checks and before it is stored, and kept (for the
        Integrity API) only with it.
        """
        project = pypi.normalize(form.field("name"))
        pypi.check_project_status(form.field("name"), self.project_status.get(project, "active"))
        pypi.check_description(form)
        pypi.check_filename(form)
        pypi.check_size(form, self.file_size_limit)
        pypi.check_digests(form)
        with self._storage_lock:
            if not self._admits(form):
                return
        # Verified outside the lock (it takes a while), so concurrent uploads overlap.
        attestations = self._verify_attestations(form, minted)
        with self._storage_lock:
            # Judged again: the same file may have been stored meanwhile.
            if self._admits(form):
                self._store(spool, form)
                if attestations is not None and minted is not None:
                    self.sigstore.provenances.record(form.filename, minted.publisher, attestations)

    def _admits(self, form: multipart.Form) -> bool:
        """The checks that read the storage (lock held): False for a byte-identical
        re-upload, a Refusal for what PyPI refuses, True for a file to store."""
        if self._is_duplicate(form):
            return False
        pypi.check_filename_version(form)
        pypi.check_release(form, self._uploaded_at, time.time())
        return True

    def _verify_attestations(
        self, form: multipart.Form, minted: MintedToken | None
    ) -> list[dict[str, object]] | None:
        """The form's verified attestations, None when it has none; a Refusal as PyPI's."""
        if "attestations" not in form.fields:
            return None
        try:
            return verify_upload(
                form.field("attestations"),
                filename=form.filename,
                sha256=form.digests["sha256"],
                publisher=None if minted is None else minted.publisher,
                trust_config=self.sigstore_trust_config,
            )
        except AttestationRefused as refused:
            raise Refusal(400, str(refused)) from None

    def _store(self, spool: IO[bytes], form: multipart.Form) -> None:
        # Written aside and renamed in, so a listing never shows half a file. Storing
        # directly rather than re-posting to pypiserver saves its slow multipart parser
        # (seconds per 100 MB); pypiserver still serves the directory's files.
        with tempfile.NamedTemporaryFile(dir=self._tmp, delete=False) as out:
            spool.seek(form.offset)
            remaining = form.size
            while remaining:
                chunk = spool.read(min(_MIB, remaining))
                out.write(chunk)
                remaining -= len(chunk)
        Path(out.name).replace(self.storage_dir / form.filename)
        self._uploaded_at[form.filename] = time.time()
        delay = self.listing_delay
        if delay == "never":
            self._unlisted[form.filename] = None
        elif delay > 0:
            self._unlisted[form.filename] = delay

    def _pypiserver_upload(self, ex: Exchange, spool: IO[bytes], size: int) -> list[bytes]:
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

    def _is_duplicate(self, form: multipart.Form) -> bool:
        """True for a byte-identical re-upload; refuses other content under a stored name."""
        stored = self.storage_dir / form.filename
        if not stored.exists():
            return False
        if sha256(stored) == form.digests["sha256"]:
            return True
        raise Refusal(
            400,
            f"File already exists ({form.filename!r}, with blake2_256 hash "
            f"{form.digests['blake2_256']!r}). "
            "See https://pypi.org/help/#file-name-reuse for more information.",
        )

    # --- the Integrity API ----------------------------------------------------------------

    def _integrity(self, ex: Exchange) -> list[bytes]:
        """`GET /integrity/<project>/<version>/<filename>/provenance`, as warehouse answers
        it: the provenance JSON, or 404 with a JSON message for a stored file without one;
        a plain 404 for a file, release or project the index does not hold."""
        parts = ex.path.split("/")
        if len(parts) != 6 or parts[5] != "provenance":
            return ex.page(404)
        _, _, project, version, filename, _ = parts
        release = pypi.release_of(filename)
        with self._storage_lock:
            stored = (self.storage_dir / filename).is_file() if filename else False
        try:
            matches = release is not None and release == (pypi.normalize(project), Version(version))
        except InvalidVersion:
            matches = False
        if not (stored and matches):
            return ex.page(404)
        status, body = self.sigstore.provenances.answer(filename)
        return ex.json(status, body)

    # --- GitHub's attestation store -------------------------------------------------------

    def _github_attestations(self, ex: Exchange) -> list[bytes]:
        body = io.BytesIO()
        ex.read_body(body)
        status, answer = self.github.create_attestation(ex.path, ex.headers(), body.getvalue())
        return ex.json(status, answer)

    # --- the simple API -------------------------------------------------------------------

    def _simple(self, ex: Exchange) -> Iterable[bytes]:
        if not ex.path.startswith("/simple"):
            return self._pypiserver(ex.environ, ex.start_response)  # downloads
        self.simple_requests.append(SimpleRequest(ex.path, ex.headers()))
        content_type = pypi.negotiate(ex.header("Accept"))
        parts = [part for part in ex.path.split("/") if part]
        if parts == ["simple"]:
            page = pypi.index_page(self._projects(), content_type)
            return ex.respond(200, body=page, content_type=content_type)
        if len(parts) != 2:
            return ex.page(404)
        project = pypi.normalize(parts[1])
        if not ex.path.endswith("/") or parts[1] != project:
            return ex.page(301, headers=[("Location", f"/simple/{project}/")])
        listed = self._listing(project)
        if listed is None:
            return ex.page(404)
        status = self.project_status.get(project, "active")
        page = pypi.project_page(
            project, listed, status, self.project_status_reason.get(project), content_type
        )
        return ex.respond(200, body=page, content_type=content_type)

    def _projects(self) -> set[str]:
        """Every project the index knows, normalised: see `projects`."""
        with self._storage_lock:
            names = [path.name for path in self.storage_dir.iterdir()]
        return self._declared() | {
            release[0] for name in names if (release := pypi.release_of(name))
        }

    def _declared(self) -> set[str]:
        """The projects that exist whether or not they have files: declared, or named by a
        publisher."""
        named = [p for publisher in self.publishers for p in publisher.projects or ()]
        return {pypi.normalize(p) for p in [*self.projects, *named]}

    def _listing(self, project: str) -> list[pypi.ListedFile] | None:
        """The project's listed files (None for an unknown project); counts one read."""
        with self._storage_lock:
            paths = [
                path
                for path in self.storage_dir.iterdir()
                if (release := pypi.release_of(path.name)) and release[0] == project
            ]
            if not paths:
                return [] if project in self._declared() else None
            shown = []
            for path in sorted(paths):
                if path.name in self._unlisted:
                    remaining = self._unlisted[path.name]
                    if remaining is not None:
                        if remaining <= 1:
                            del self._unlisted[path.name]
                        else:
                            self._unlisted[path.name] = remaining - 1
                    continue
                shown.append(path)
            uploaded = {path.name: self._uploaded_at.get(path.name) for path in shown}
        if not shown:
            # A stale page: of a new project, not found yet.
            return [] if project in self._declared() else None
        if self.project_status.get(project) == "quarantined":
            return []  # PEP 792: nothing of a quarantined project is offered
        return [
            pypi.ListedFile(
                filename=path.name,
                url=f"{self.url}/packages/{path.name}",
                sha256=sha256(path),
                size=path.stat().st_size,
                uploaded_at=uploaded[path.name] or path.stat().st_mtime,
                provenance=(
                    self.provenance_url(path.name)
                    if self.sigstore.provenances.has(path.name)
                    else None
                ),
            )
            for path in shown
        ]
