"""The four tools the benchmark times, how each is started, and how each run is measured.

- action: the image as tests.localindex.image reproduces it (the lock installed by the
  build stage's pip line, the installed packages alone in a Python without pip,
  byte-compiled, the image's ENV), run by tests.localindex.runner as the runner starts
  it: identity token, audience, mint, uploads and all.
- twine: `pip install twine==<locked version>` into its own venv, `twine upload` with a
  static token made beforehand (not timed).
- curl: one curl process uploading the same files with the form twine sends (built
  beforehand, not timed), the same token, --cacert the local CA.
- uv: `pip install uv==UV_VERSION` into its own venv, `uv publish --trusted-publishing
  always` in the runner's environment: the one peer that makes the same token exchange
  (identity token, audience, mint) before its uploads.

Every tool is started through a wrapper of its own (WRAPPER) that runs it as its only
child and reports, from its side of fork/wait, wall time, CPU (user + system) and peak RSS
(getrusage(RUSAGE_CHILDREN): the tool and anything it starts).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twine.package import PackageFile

from oidc_publish.index_urls import PYPI_UPLOAD
from tests.localindex.image import ROOT, build_image, build_venv
from tests.localindex.index_process import IndexProcess
from tests.localindex.proc import run
from tests.localindex.runner import github_env, run_action

TOOLS = ("action", "twine", "curl", "uv")
# The peer that makes the same token exchange: `uv publish --trusted-publishing always`.
UV_VERSION = "0.13.9"
RUN_TIMEOUT = 1800.0
REPORT = "BENCHMARK_MEASUREMENT_REPORT"
MIB = 1024 * 1024

WRAPPER = """\
#!{python}
import json, os, resource, subprocess, sys, time
report = os.environ.pop("{variable}")
started = time.perf_counter()
status = subprocess.call([{target!r}, *sys.argv[1:]])
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(report, "w") as handle:
    json.dump({{"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
               "rss_kib": usage.ru_maxrss}}, handle)
sys.exit(status)
"""


@dataclass(frozen=True)
class Usage:
    """What one run of a tool took, as its wrapper measured it."""

    wall: float
    cpu: float
    """User + system seconds."""
    rss_mib: float


@dataclass(frozen=True)
class ToolRun:
    status: int
    output: str
    usage: Usage | None
    """None when the wrapper reported nothing (it never ran the tool)."""


class Tools:
    """The tools, built under `bench` (kept while fresh), their wrappers under `root`."""

    def __init__(self, bench: Path, root: Path) -> None:
        self.image = build_image(bench / "image", reuse=True)
        twine = build_venv(bench / "twine", [f"twine=={_locked('twine')}"], reuse=True)
        uv = build_venv(bench / "uv", [f"uv=={UV_VERSION}"], reuse=True).parent / "uv"
        self.targets = {
            "action": str(self.image.python),
            "twine": str(twine),
            "curl": shutil.which("curl") or "curl",
            "uv": str(uv),
        }
        self._root = root
        self._wrappers = {
            tool: _wrapper(root, tool, target) for tool, target in self.targets.items()
        }

    def describe(self) -> str:
        image, curl = self.image, run(["curl", "--version"]).stdout.split()[1]
        return (
            f"action: {image.python} {image.entrypoint} with {image.env}\n"
            f"twine:  {self.targets['twine']} -m twine; curl: {curl}\n"
            f"uv:     {self.targets['uv']} publish --trusted-publishing always"
        )

    def signing_missing(self) -> str | None:
        """Why the action cannot sign, or None; known before running it.

        An image that has the signing module but whose command line does not call it is
        found out by the first run.
        """
        if not any(self.image.path("/app/oidc_publish").glob("attest*")):
            return "the action's image has no attestation support (no oidc_publish/attest*)"
        if importlib.util.find_spec("tests.localindex.sigstore") is None:
            return "the dev package has no local Sigstore (tests/localindex/sigstore)"
        return None

    def run(
        self,
        tool: str,
        index: IndexProcess,
        workspace: Path,
        *,
        attestations: bool = False,
        pypi: bool = False,
    ) -> ToolRun:
        """One measured run of `tool` publishing `workspace`'s dist/ to `index`; with `pypi`,
        to PyPI's own upload URL, which the index's proxy takes to the index (every tool is
        given the proxy as a runner's job is)."""
        report = self._root / f"{tool}-report.json"
        report.unlink(missing_ok=True)
        wrapper = self._wrappers[tool]
        dists = sorted((workspace / "dist").iterdir())
        job = _Job(
            index,
            PYPI_UPLOAD if pypi else index.upload_url,
            # GitHub's token endpoint (the index, by its address) is reached directly, as a
            # GitHub-hosted runner reaches GitHub.
            {"HTTPS_PROXY": index.proxy_url, "NO_PROXY": "127.0.0.1"} if pypi else {},
            workspace,
            wrapper,
            dists,
            report,
        )
        runners: dict[str, Callable[[], tuple[int, str]]] = {
            "action": lambda: self._action(job, attestations=attestations),
            "twine": lambda: _twine(job),
            "curl": lambda: _curl(job),
            "uv": lambda: _uv(job),
        }
        status, output = runners[tool]()
        if not report.exists():
            return ToolRun(status, output, None)
        data = json.loads(report.read_text(encoding="utf-8"))
        return ToolRun(status, output, Usage(data["wall"], data["cpu"], data["rss_kib"] / 1024))

    def _action(self, job: _Job, *, attestations: bool) -> tuple[int, str]:
        index = job.index
        inputs = {"repository-url": job.url, "attestations": str(attestations).lower()}
        result = run_action(
            index,
            job.workspace,
            inputs,
            env={
                **self.image.env,
                **job.env,
                REPORT: str(job.report),
                "PIP_CONFIG_FILE": os.devnull,
            },
            sigstore=attestations,
            python=str(self._wrappers["action"]),
            entrypoint=self.image.entrypoint,
            timeout=RUN_TIMEOUT,
        )
        if result.leaked(index):
            return 1, "a secret is visible\n" + result.all_text()
        return result.returncode, result.stdout + result.stderr


@dataclass(frozen=True)
class _Job:
    """One run of a tool: where it uploads and the environment that takes it there, what it
    uploads, and where its measurements go."""

    index: IndexProcess
    url: str
    env: dict[str, str]
    workspace: Path
    wrapper: Path
    dists: list[Path]
    report: Path


def _static_token(index: IndexProcess) -> str:
    token = "pypi-benchmark-" + secrets.token_urlsafe(32)
    index.add_api_token(token)
    return token


def _twine(job: _Job) -> tuple[int, str]:
    environ = {
        **job.env,
        "PATH": os.environ["PATH"],
        "PIP_CONFIG_FILE": os.devnull,
        "HOME": str(job.workspace.parent),
        "TWINE_PASSWORD": _static_token(job.index),
        "REQUESTS_CA_BUNDLE": str(job.index.ca_pem),
        REPORT: str(job.report),
    }
    command: list[str | Path] = [job.wrapper, "-m", "twine", "upload", "--disable-progress-bar"]
    command += ["--non-interactive", "--repository-url", job.url, "-u", "__token__"]
    command += job.dists
    done = run(command, env=environ, cwd=job.workspace, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _uv(job: _Job) -> tuple[int, str]:
    """uv's own trusted publishing, in the runner's environment the action gets: the same
    identity token, audience and mint requests before its uploads."""
    environ = {
        **job.env,
        "PATH": os.environ["PATH"],
        "HOME": str(job.workspace.parent),
        "UV_CACHE_DIR": str(job.workspace.parent / "uv-cache"),
        **github_env(),
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": job.index.id_token_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": job.index.id_token_request_token,
        "SSL_CERT_FILE": str(job.index.ca_pem),
        REPORT: str(job.report),
    }
    command: list[str | Path] = [job.wrapper, "publish", "--trusted-publishing", "always"]
    command += ["--publish-url", job.url, *job.dists]
    done = run(command, env=environ, cwd=job.workspace, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _curl(job: _Job) -> tuple[int, str]:
    """One curl for all files (`next` between transfers), told everything in a config
    file so no token is on its command line."""
    config = job.workspace.parent / "curl.config"
    credentials = _quoted("__token__:" + _static_token(job.index))
    blocks = []
    for path in job.dists:
        metadata = PackageFile.from_filename(str(path), comment=None).metadata_dictionary()
        fields: dict[str, object] = {**metadata, ":action": "file_upload", "protocol_version": "1"}
        lines = [
            f"url = {_quoted(job.url)}",
            f"cacert = {_quoted(str(job.index.ca_pem))}",
            f"user = {credentials}",
            "fail",
            "silent",
            "show-error",
            "output = /dev/null",
        ]
        for name, value in fields.items():
            for item in value if isinstance(value, list | tuple) else [value]:
                if item not in (None, ""):
                    lines.append(f"form-string = {_quoted(f'{name}={item}')}")
        lines.append(f"form = {_quoted(f'content=@{path};type=application/octet-stream')}")
        blocks.append("\n".join(lines))
    config.write_text("\nnext\n".join(blocks) + "\n", encoding="utf-8")
    environ = {
        **job.env,
        "PATH": os.environ["PATH"],
        "HOME": str(job.workspace.parent),
        REPORT: str(job.report),
    }
    done = run([job.wrapper, "--config", config], env=environ, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _wrapper(root: Path, tool: str, target: str) -> Path:
    wrapper = root / f"measure-{tool}"
    wrapper.write_text(WRAPPER.format(python=sys.executable, target=target, variable=REPORT))
    wrapper.chmod(0o755)
    return wrapper


def _locked(name: str) -> str:
    lock = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    return next(
        line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith(f"{name}==")
    )
