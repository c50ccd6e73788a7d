"""Direct calls to the local index, made the way the action's tools make them."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import requests
from twine.package import PackageFile
from twine.repository import Repository

from tests.localindex.proc import pip_free_env, run
from tests.localindex.server import LocalIndex


def https_client(index: LocalIndex, *, timeout: float = 10) -> httpx.Client:
    """An httpx client for the index that trusts its CA and nothing else."""
    trust = ssl.create_default_context(cafile=str(index.ca_pem))
    return httpx.Client(base_url=index.url, verify=trust, timeout=timeout)


def id_token(index: LocalIndex, audience: str | None = None) -> str:
    """A GitHub ID token for `audience` (the index's own by default), requested as a job with
    `id-token: write` requests it."""
    with https_client(index) as client:
        response = client.get(
            f"{index.id_token_request_url}&audience={audience or index.audience}",
            headers={"Authorization": f"Bearer {index.id_token_request_token}"},
        )
    response.raise_for_status()
    return str(response.json()["value"])


def mint_token(index: LocalIndex) -> str:
    """A fresh upload token, exchanged for a fresh ID token."""
    token = id_token(index)
    with https_client(index) as client:
        response = client.post("/_/oidc/mint-token", json={"token": token})
    response.raise_for_status()
    return str(response.json()["token"])


def twine_upload(
    index: LocalIndex,
    path: Path,
    password: str,
    *,
    username: str = "__token__",
    attestations: Sequence[Mapping[str, Any]] | None = None,
) -> requests.Response:
    """Uploads one file with twine's own client, in process.

    `attestations` (PEP 740 attestation objects) go in the form's `attestations` field, as
    `twine upload --attestations` sends the files it loads.
    """
    repository = Repository(index.upload_url, username, password, disable_progress_bar=True)
    # Environment settings (REQUESTS_CA_BUNDLE, proxies) would override the session's.
    repository.session.trust_env = False
    repository.session.verify = str(index.ca_pem)
    package = PackageFile.from_filename(str(path), comment=None)
    if attestations is not None:
        package.attestations = [dict(attestation) for attestation in attestations]
    try:
        return repository.upload(package)
    finally:
        repository.close()


def pip_install(
    index: LocalIndex, requirement: str, target: Path, *, dependencies: bool = False
) -> subprocess.CompletedProcess[str]:
    """`pip install --target` from the index's simple API, as a user of the release would;
    its dependencies too, from the same index, when asked."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--no-cache-dir",
        *(() if dependencies else ("--no-deps",)),
        "--index-url",
        index.simple_url,
        "--cert",
        str(index.ca_pem),
        "--target",
        str(target),
        requirement,
    ]
    # pip's requests would take REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE over --cert.
    environ = pip_free_env() | {"REQUESTS_CA_BUNDLE": str(index.ca_pem)}
    environ.pop("CURL_CA_BUNDLE", None)
    return run(command, env=environ, timeout=120, check=False)
