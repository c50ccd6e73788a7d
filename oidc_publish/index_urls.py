"""What a `repository-url` says about the index behind it.

Pure functions: validating the upload URL (naming the right one when a user pasted a
simple-API or project-page URL), and deriving the other addresses of the same index.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

PYPI_UPLOAD = "https://upload.pypi.org/legacy/"
TESTPYPI_UPLOAD = "https://test.pypi.org/legacy/"

_WEB = {
    "upload.pypi.org": "https://pypi.org",
    "test.pypi.org": "https://test.pypi.org",
}
# Where PyPI and TestPyPI serve files, each under a path made of its BLAKE2b-256 digest.
_FILES = {
    "upload.pypi.org": "https://files.pythonhosted.org/packages",
    "test.pypi.org": "https://test-files.pythonhosted.org/packages",
}
# The audiences of PyPI's and TestPyPI's mint endpoints: fixed, so never asked for.
_AUDIENCE = {
    "upload.pypi.org": "pypi",
    "test.pypi.org": "testpypi",
}
# Identity tokens with these audiences are accepted by PyPI, TestPyPI and Sigstore's Fulcio:
# no other host may ask for one.
RESERVED_AUDIENCES = {"pypi": "PyPI", "testpypi": "TestPyPI", "sigstore": "Sigstore"}
_UPLOAD_FOR_HOST = {
    "pypi.org": PYPI_UPLOAD,
    "www.pypi.org": PYPI_UPLOAD,
    "upload.pypi.org": PYPI_UPLOAD,
    "pypi.python.org": PYPI_UPLOAD,
    "upload.pypi.io": PYPI_UPLOAD,
    "files.pythonhosted.org": PYPI_UPLOAD,
    "test.pypi.org": TESTPYPI_UPLOAD,
    "testpypi.python.org": TESTPYPI_UPLOAD,
}


_NO_SLASH = "`/legacy` without the trailing slash answers with a redirect that drops the upload"


class UploadUrlError(ValueError):
    """The URL cannot take uploads; ``suggestion`` is the one to use, when known."""

    def __init__(self, reason: str, suggestion: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.suggestion = suggestion


def check_upload_url(url: str) -> str:
    """Return the URL if uploads can go there, else raise ``UploadUrlError``.

    Neither the reason nor the suggestion repeats credentials written into the URL.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise UploadUrlError("it is not a valid URL", None) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UploadUrlError("it is not an absolute https:// URL", None)
    host = parts.hostname.lower()
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username is not None or parts.password is not None:
        raise UploadUrlError(
            "it has a user name or password in it, which would show in the log; pass the "
            "token as `password` (from a secret) and the name as `user`",
            urlunsplit(("https", netloc, parts.path, "", "")),
        )
    if parts.query or parts.fragment or "#" in url:
        raise UploadUrlError(
            "it has a query or fragment (`?`, `#`), which no upload URL has",
            urlunsplit(("https", netloc, parts.path, "", "")),
        )
    known = _UPLOAD_FOR_HOST.get(host)
    if parts.scheme != "https":
        https = known or urlunsplit(("https", netloc, parts.path, "", ""))
        raise UploadUrlError("uploads carry a token and must use https://, never http://", https)
    if known:
        if url != known:
            raise UploadUrlError(_why_not_pypi(host, parts.path), known)
        return url
    path = parts.path
    if path.rstrip("/").endswith("/simple") or "/simple/" in path:
        base = path[: path.rfind("/simple")]
        raise UploadUrlError(
            "a `/simple/` URL is where pip reads packages; uploads go to the index's upload "
            "endpoint",
            urlunsplit(("https", parts.netloc, base + "/legacy/", "", "")),
        )
    if path.endswith("/legacy"):
        raise UploadUrlError(
            _NO_SLASH,
            urlunsplit(("https", parts.netloc, path + "/", "", "")),
        )
    return url


def checked_upload_url(url: str) -> str:
    """`url`, the `repository-url` input, if uploads can go there; else the error that
    names the one to use."""
    from oidc_publish.errors import InvalidRepositoryUrl

    try:
        return check_upload_url(url)
    except UploadUrlError as error:
        hint = f" Use `{error.suggestion}`." if error.suggestion else ""
        raise InvalidRepositoryUrl(
            f"`repository-url` cannot take uploads: {error.reason}.",
            fix=f"Set `repository-url` to the index's upload URL.{hint}",
        ) from None


def _why_not_pypi(host: str, path: str) -> str:
    if host in ("upload.pypi.org", "test.pypi.org") and path == "/legacy/":
        return (
            "it is the upload URL spelt another way (upper-case letters, or a port); the "
            "token exchange needs it exactly as the index names it"
        )
    if host in ("upload.pypi.org", "test.pypi.org") and path == "/legacy":
        return _NO_SLASH
    if path.startswith(("/project/", "/p/")):
        return "that is a project page; uploads go to the upload endpoint"
    if "/simple" in path:
        return "a `/simple/` URL is where pip reads packages; uploads go to the upload endpoint"
    if host in ("pypi.org", "www.pypi.org"):
        return "PyPI takes uploads at upload.pypi.org, not pypi.org"
    return "that address does not take uploads"


@dataclass(frozen=True)
class Index:
    """An index known by its upload URL."""

    upload_url: str

    @property
    def host(self) -> str:
        return (urlsplit(self.upload_url).hostname or "").lower()

    @property
    def origin(self) -> str:
        parts = urlsplit(self.upload_url)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    @property
    def is_pypi(self) -> bool:
        return self.host == "upload.pypi.org"

    @property
    def is_testpypi(self) -> bool:
        return self.host == "test.pypi.org"

    @property
    def web(self) -> str | None:
        """PyPI's or TestPyPI's web site; other indexes have no pages we know of."""
        return _WEB.get(self.host)

    @property
    def display_name(self) -> str:
        if self.is_pypi:
            return "PyPI"
        if self.is_testpypi:
            return "TestPyPI"
        return self.host

    @property
    def known_audience(self) -> str | None:
        """The audience PyPI's and TestPyPI's mint endpoints take; None for other indexes,
        which say theirs at `audience_url`."""
        return _AUDIENCE.get(self.host)

    @property
    def audience_url(self) -> str:
        return f"{self.origin}/_/oidc/audience"

    @property
    def mint_url(self) -> str:
        return f"{self.origin}/_/oidc/mint-token"

    @property
    def burn_url(self) -> str:
        return f"{self.origin}/_/oidc/burn-token"

    @property
    def simple_url(self) -> str:
        web = self.web
        if web:
            return f"{web}/simple/"
        url = self.upload_url
        if url.endswith("/legacy/"):
            return url[: -len("legacy/")] + "simple/"
        return url.rstrip("/") + "/simple/"

    def project_simple_url(self, name: str) -> str:
        return f"{self.simple_url}{quote(name)}/"

    def file_url(self, filename: str, blake2_256: str) -> str | None:
        """A file's download URL on PyPI or TestPyPI, known without asking the index."""
        files = _FILES.get(self.host)
        if not files or len(blake2_256) != 64:
            return None
        b = blake2_256
        return f"{files}/{b[:2]}/{b[2:4]}/{b[4:]}/{quote(filename)}"

    def provenance_url(self, name: str, version: str, filename: str) -> str | None:
        """PyPI's Integrity API answer for a file: its PEP 740 provenance."""
        web = self.web
        if not web:
            return None
        return f"{web}/integrity/{quote(name)}/{quote(version)}/{quote(filename)}/provenance"

    def release_url(self, name: str, version: str) -> str | None:
        web = self.web
        return f"{web}/project/{quote(name)}/{quote(version)}/" if web else None

    def publisher_form_url(
        self, project: str, owner: str, repository: str, workflow: str, environment: str | None
    ) -> str | None:
        """PyPI's trusted-publisher form for the project, pre-filled for this workflow."""
        web = self.web
        if not web:
            return None
        query = {
            "provider": "github",
            "owner": owner,
            "repository": repository,
            "workflow_filename": workflow,
            "environment": environment or "",
        }
        return f"{web}/manage/project/{quote(project)}/settings/publishing/?{urlencode(query)}"
