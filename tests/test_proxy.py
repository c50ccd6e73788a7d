"""A self-hosted runner whose only way out is its proxy: the action reaches every host
through it, honours `NO_PROXY`, masks the proxy's credentials, and says what a refused
tunnel means.

The index's CONNECT proxy is the only way to the names these runs use (under `.invalid`,
which no resolver answers): a request that ignored the proxy could not reach anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Run
from tests.localindex.dists import make_release, sha256
from tests.localindex.runner import SIGSTORE_TRUST_CONFIG
from tests.localindex.server import UNRESOLVABLE, LocalIndex

INDEX = f"https://{UNRESOLVABLE['index']}/legacy/"


def behind_the_proxy(index: LocalIndex) -> dict[str, str | None]:
    """The job's environment on a runner behind the index's proxy: GitHub's token service,
    its API and Sigstore named as only the proxy resolves them."""
    return {
        "HTTPS_PROXY": index.proxy.url,
        "ACTIONS_ID_TOKEN_REQUEST_URL": (
            f"https://{UNRESOLVABLE['token']}/_github/token?api-version=2.0"
        ),
        "GITHUB_API_URL": f"https://{UNRESOLVABLE['api']}",
        SIGSTORE_TRUST_CONFIG: str(
            index.sigstore.trust_config_at(f"https://{UNRESOLVABLE['sigstore']}")
        ),
    }


def test_a_release_with_attestations_and_githubs_store_publishes_through_the_proxy(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)

    result = run(
        {"repository-url": INDEX, "github-attestations": "true"},
        env=behind_the_proxy(index),
        sigstore=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert index.sigstore.provenances.has(wheel.name)
    assert len(index.github.stored) == 2
    # Every host the index saw a request for, the proxy opened a tunnel to: nothing went
    # direct, and every part of the run was reached by its name.
    assert index.hosts() == set(UNRESOLVABLE.values())
    assert index.proxy.hosts() == set(UNRESOLVABLE.values())
    assert index.alive_tokens() == []


def test_a_host_in_no_proxy_is_reached_directly(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    make_release(workspace)
    env = behind_the_proxy(index)
    # GitHub's token service, by a name that resolves, is reached without the proxy.
    env["ACTIONS_ID_TOKEN_REQUEST_URL"] = f"https://localhost:{index.port}/_github/token"
    env["NO_PROXY"] = "example.org, localhost"

    result = run({"repository-url": INDEX}, env=env, sigstore=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "localhost" in index.hosts()
    assert "localhost" not in index.proxy.hosts()
    assert UNRESOLVABLE["index"] in index.proxy.hosts()


def test_the_proxys_credentials_are_sent_and_never_shown(
    index: LocalIndex, workspace: Path, run: Run
) -> None:
    wheel, sdist = make_release(workspace)
    # Written into the proxy's URL percent-encoded, as a password with a `/` must be.
    index.proxy.credentials = ("octo-runner", "pr0xy-s3cret/pass")

    result = run({"repository-url": INDEX}, env=behind_the_proxy(index), sigstore=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel), sdist.name: sha256(sdist)}
    assert "pr0xy-s3cret/pass" in result.masks  # and the `run` fixture found it nowhere


@pytest.mark.parametrize(
    ("refusal", "host", "status"),
    [
        # The index is asked for its audience first: the first tunnel the proxy refuses.
        ("credentials", UNRESOLVABLE["index"], "407 Proxy Authentication Required"),
        ("policy", UNRESOLVABLE["index"], "403 Forbidden"),
    ],
)
def test_a_tunnel_the_proxy_refuses_is_its_own_diagnosis(
    index: LocalIndex, workspace: Path, run: Run, refusal: str, host: str, status: str
) -> None:
    make_release(workspace)
    env = behind_the_proxy(index)
    if refusal == "credentials":
        index.proxy.credentials = ("octo-runner", "pr0xy-s3cret")
        env["HTTPS_PROXY"] = index.proxy.url.replace("octo-runner:pr0xy-s3cret@", "")
    else:
        index.proxy.refused = {host}

    result = run({"repository-url": INDEX}, env=env, sigstore=True)

    assert result.returncode == 1
    [error] = [a for a in result.annotations if a.level == "error"]
    assert error.title == "The proxy refused the connection"
    assert f"refused to reach {host}" in error.message
    assert status in error.message
    assert "`NO_PROXY`" in error.message
    assert "retrying in" not in result.stdout  # asking again would get the same answer
    assert index.count("upload") == 0
