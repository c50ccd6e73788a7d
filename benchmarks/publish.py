"""The action against `twine upload`, a bare `curl` upload and `uv publish`, on one local
index.

    python -m benchmarks.publish [--repeat 3] [--warmup 1] [--cases small,big,...]
                                 [--big-size 300000000] [--attestations]

Assumptions (the reasoning is in README.md, Performance):

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
- Runs alternate tool by tool within one invocation; the index is reset before each run
  and its per-file limit lifted. Wall, CPU and peak RSS come from a wrapper process
  around each tool (getrusage of its only child).
- `-latency` cases delay, server side, what a runner pays: REAL_LATENCY per endpoint.
- many-attest (`--attestations`): the action alone (twine and curl do not sign) publishing
  the 40 wheels with PEP 740 attestations, signed by the index's local Sigstore, Rekor
  delayed REKOR_LATENCY per entry, uploads as in many-latency. The signing time is the
  action's own (its `Signed N attestation(s) in X.Xs` line, after `Signing N file(s) with
  Sigstore`); every file must have its provenance on the index afterwards. Skipped, saying
  why, while the action's image does not sign.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twine.package import PackageFile

from tests.localindex.dists import make_sdist, make_wheel, sha256
from tests.localindex.image import Image, build_image, build_venv
from tests.localindex.proc import CommandFailed, run
from tests.localindex.runner import github_env, run_action
from tests.localindex.server import REAL_LATENCY, LocalIndex

PROJECT, VERSION = "sample-project", "1.0.0"
MIB = 1024 * 1024
RUN_TIMEOUT = 1800.0
REPORT = "BENCHMARK_MEASUREMENT_REPORT"
BENCH = Path(__file__).resolve().parent.parent / ".bench"
TOOLS = ("action", "twine", "curl", "uv")
# The peer that makes the same token exchange: `uv publish --trusted-publishing always`.
UV_VERSION = "0.13.9"
REKOR_LATENCY = 0.3
"""Seconds the local Rekor takes for each entry in the many-attest case."""
SIGNING_TARGET = 3.0
# The lines the action prints around signing; the second carries the time it took.
SIGNING_STARTED = re.compile(r"Signing (\d+) files? ?(?:\(s\))? with Sigstore")
SIGNING_DONE = re.compile(r"Signed (\d+) attestations? ?(?:\(s\))? in (\d+(?:\.\d+)?) ?s\b")

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
class Case:
    name: str
    dists: str  # "small" | "big" | "many" | "monorepo"
    latency: bool = False
    attestations: bool = False


CASES = {
    case.name: case
    for case in (
        Case("small", "small"),
        Case("big", "big"),
        Case("many", "many"),
        Case("small-latency", "small", latency=True),
        Case("many-latency", "many", latency=True),
        Case("many-attest", "many", latency=True, attestations=True),
        Case("monorepo-latency", "monorepo", latency=True),
    )
}
DEFAULT_CASES = ("small", "big", "many", "small-latency", "many-latency", "monorepo-latency")
# The action's time against a peer's, at most. twine makes no token exchange; uv makes the
# same one as the action.
PEER_TARGETS = (
    ("small-latency", "twine", 1.1, "small release with latency"),
    ("small-latency", "uv", 1.05, "small release with latency"),
    ("many-latency", "twine", 0.35, "40 wheels with latency"),
    ("monorepo-latency", "twine", 0.45, "3 projects, each an sdist and 10 wheels, with latency"),
)
# Three projects built into one dist/: an sdist and ten 1 MB wheels each.
MONOREPO = ("bench-core", "bench-plugin", "bench-stubs")


@dataclass(frozen=True)
class Measurement:
    case: str
    tool: str
    wall: float
    cpu: float
    rss_mib: float
    signing: float | None = None
    """Seconds the action says signing took (many-attest), else None."""


class RunFailed(Exception):
    """A run that did not publish exactly its files; the message holds its output."""


class NotSigning(Exception):
    """The action published without signing: its image has no attestation support yet."""


def main(argv: Sequence[str] | None = None) -> int:
    options = _options(argv)
    try:
        image = build_image(BENCH / "image", reuse=True)
        twine = build_venv(BENCH / "twine", [f"twine=={_locked('twine')}"], reuse=True)
        uv = build_venv(BENCH / "uv", [f"uv=={UV_VERSION}"], reuse=True).parent / "uv"
    except CommandFailed as failure:
        print(f"ABORTED: {failure}", file=sys.stderr)
        return 1
    print(f"action: {image.python} {image.entrypoint} with {image.env}")
    print(f"twine:  {twine} -m twine; curl: {run(['curl', '--version']).stdout.split()[1]}")
    print(f"uv:     {uv} publish --trusted-publishing always")
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as temp, LocalIndex() as index:
        root = Path(temp)
        curl = shutil.which("curl") or "curl"
        targets = {"action": str(image.python), "twine": str(twine), "curl": curl, "uv": str(uv)}
        wrappers = {tool: _wrapper(root, tool, target) for tool, target in targets.items()}
        for name in options.cases:
            case = CASES[name]
            missing = _attestations_missing(image) if case.attestations else None
            if missing:
                print(f"{name}: SKIPPED, {missing}")
                continue
            workspace = _dists(root / name, case.dists, options.big_size)
            tools = ("action",) if case.attestations else TOOLS
            try:
                for number in range(-options.warmup, options.repeat):
                    for tool in tools:
                        m = _measure(
                            index, case, tool, workspace, wrapper=wrappers[tool], image=image
                        )
                        label = "warm-up" if number < 0 else f"run {number + 1}"
                        signing = "" if m.signing is None else f"  signing {m.signing:.1f} s"
                        print(
                            f"  {name:14} {tool:6} {label:8} {m.wall:7.2f} s "
                            f"{m.rss_mib:6.1f} MiB{signing}"
                        )
                        if number >= 0:
                            measurements.append(m)
            except NotSigning as why:
                print(f"{name}: SKIPPED, {why}")
                continue
            except RunFailed as failure:
                print(f"ABORTED: {failure}", file=sys.stderr)
                return 1
    return _report(measurements)


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publish")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per tool")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs per tool first")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=", ".join(CASES))
    parser.add_argument("--big-size", type=int, default=300_000_000, help="big wheel's bytes")
    parser.add_argument(
        "--attestations",
        action="store_true",
        help="add the many-attest case (skipped while the action does not sign)",
    )
    options = parser.parse_args(argv)
    options.cases = [name.strip() for name in options.cases.split(",") if name.strip()]
    if options.attestations and "many-attest" not in options.cases:
        options.cases.append("many-attest")
    unknown = sorted(set(options.cases) - set(CASES))
    if unknown or options.repeat < 1 or options.warmup < 0:
        parser.error(f"unknown cases {unknown}, or --repeat < 1 or --warmup < 0")
    return options


def _dists(workspace: Path, kind: str, big_size: int) -> Path:
    dist = workspace / "dist"
    if kind == "small":
        make_sdist(dist, PROJECT, VERSION, description=_words(3000))
        make_wheel(dist, PROJECT, VERSION, payload_size=4000)
    elif kind == "big":
        make_wheel(dist, PROJECT, VERSION, payload_size=big_size)
    elif kind == "monorepo":
        for project in MONOREPO:
            make_sdist(dist, project, VERSION, description=_words(3000))
            stem = f"{project.replace('-', '_')}-{VERSION}"
            for number in range(1, 11):
                make_wheel(
                    dist,
                    project,
                    VERSION,
                    payload_size=1_000_000,
                    summary=f"A sample project, build {number}",
                    filename=f"{stem}-{number}-py3-none-any.whl",
                )
    else:
        stem = f"{PROJECT.replace('-', '_')}-{VERSION}"
        for number in range(1, 41):
            make_wheel(
                dist,
                PROJECT,
                VERSION,
                payload_size=1_000_000,
                summary=f"A sample project, build {number}",  # each file its own bytes
                filename=f"{stem}-{number}-py3-none-any.whl",
            )
    total = sum(path.stat().st_size for path in dist.iterdir())
    print(f"{workspace.name}: {len(list(dist.iterdir()))} file(s), {total / MIB:.1f} MiB")
    return workspace


def _words(size: int) -> str:
    # Random words, so gzip cannot shrink the sdist to nothing.
    return "# Sample project\n\n" + " ".join(secrets.token_hex(4) for _ in range(size // 9))


def _measure(
    index: LocalIndex, case: Case, tool: str, workspace: Path, *, wrapper: Path, image: Image
) -> Measurement:
    index.reset()
    index.file_size_limit = None
    if case.latency:
        index.latency = dict(REAL_LATENCY)
    if case.attestations:
        index.latency["rekor"] = REKOR_LATENCY
    report = workspace.parent / f"{tool}-report.json"
    report.unlink(missing_ok=True)
    dists = sorted((workspace / "dist").iterdir())
    runners: dict[str, Callable[[], tuple[int, str]]] = {
        "action": lambda: _action(
            index, workspace, wrapper, image, report, attestations=case.attestations
        ),
        "twine": lambda: _twine(index, workspace, wrapper, dists, report),
        "curl": lambda: _curl(index, workspace, wrapper, dists, report),
        "uv": lambda: _uv(index, workspace, wrapper, dists, report),
    }
    status, output = runners[tool]()
    expected = {path.name: sha256(path) for path in dists}
    if status != 0 or index.files() != expected:
        raise RunFailed(f"{case.name}/{tool}: exit {status}, index {index.files()}\n{output}")
    signing = _signing_time(index, case, dists, output) if case.attestations else None
    data = json.loads(report.read_text(encoding="utf-8"))
    return Measurement(case.name, tool, data["wall"], data["cpu"], data["rss_kib"] / 1024, signing)


def _signing_time(index: LocalIndex, case: Case, dists: list[Path], output: str) -> float:
    """The signing time the action logged; checks every file's provenance is on the index.

    Raises NotSigning when the action did not say it signed (nor sign anything).
    """
    started, done = SIGNING_STARTED.search(output), SIGNING_DONE.search(output)
    if started is None and index.sigstore.entries == 0:
        raise NotSigning(
            "the action published without signing (no 'Signing N file(s) with Sigstore' in "
            "its log): its image does not make attestations yet"
        )
    if started is None or done is None:
        raise RunFailed(
            f"{case.name}: the action's log lacks 'Signing N file(s) with Sigstore' or "
            f"'Signed N attestation(s) in X.Xs'\n{output}"
        )
    unattested = [p.name for p in dists if not index.sigstore.provenances.has(p.name)]
    if int(done.group(1)) != len(dists) or unattested:
        raise RunFailed(
            f"{case.name}: signed {done.group(1)} of {len(dists)} file(s); no provenance on "
            f"the index for {unattested}\n{output}"
        )
    return float(done.group(2))


def _action(
    index: LocalIndex,
    workspace: Path,
    wrapper: Path,
    image: Image,
    report: Path,
    *,
    attestations: bool = False,
) -> tuple[int, str]:
    result = run_action(
        index,
        workspace,
        {"attestations": "true"} if attestations else None,
        env={**image.env, REPORT: str(report), "PIP_CONFIG_FILE": os.devnull},
        sigstore=attestations,
        python=str(wrapper),
        entrypoint=image.entrypoint,
        timeout=RUN_TIMEOUT,
    )
    if result.leaked(index):
        return 1, "a secret is visible\n" + result.all_text()
    return result.returncode, result.stdout + result.stderr


def _static_token(index: LocalIndex) -> str:
    token = "pypi-benchmark-" + secrets.token_urlsafe(32)
    index.api_tokens.add(token)
    return token


def _twine(
    index: LocalIndex, workspace: Path, wrapper: Path, dists: list[Path], report: Path
) -> tuple[int, str]:
    environ = {
        "PATH": os.environ["PATH"],
        "PIP_CONFIG_FILE": os.devnull,
        "HOME": str(workspace.parent),
        "TWINE_PASSWORD": _static_token(index),
        "REQUESTS_CA_BUNDLE": str(index.ca_pem),
        REPORT: str(report),
    }
    command: list[str | Path] = [wrapper, "-m", "twine", "upload", "--disable-progress-bar"]
    command += ["--non-interactive", "--repository-url", index.upload_url, "-u", "__token__"]
    command += dists
    done = run(command, env=environ, cwd=workspace, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _uv(
    index: LocalIndex, workspace: Path, wrapper: Path, dists: list[Path], report: Path
) -> tuple[int, str]:
    """uv's own trusted publishing, in the runner's environment the action gets: the same
    identity token, audience and mint requests before its uploads."""
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(workspace.parent),
        "UV_CACHE_DIR": str(workspace.parent / "uv-cache"),
        **github_env(),
        "GITHUB_ACTIONS": "true",
        "ACTIONS_ID_TOKEN_REQUEST_URL": index.id_token_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": index.id_token_request_token,
        "SSL_CERT_FILE": str(index.ca_pem),
        REPORT: str(report),
    }
    command: list[str | Path] = [wrapper, "publish", "--trusted-publishing", "always"]
    command += ["--publish-url", index.upload_url, *dists]
    done = run(command, env=environ, cwd=workspace, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _curl(
    index: LocalIndex, workspace: Path, wrapper: Path, dists: list[Path], report: Path
) -> tuple[int, str]:
    """One curl for all files (`next` between transfers), told everything in a config
    file so no token is on its command line."""
    config = workspace.parent / "curl.config"
    credentials = _quoted("__token__:" + _static_token(index))
    blocks = []
    for path in dists:
        metadata = PackageFile.from_filename(str(path), comment=None).metadata_dictionary()
        fields: dict[str, object] = {**metadata, ":action": "file_upload", "protocol_version": "1"}
        lines = [
            f"url = {_quoted(index.upload_url)}",
            f"cacert = {_quoted(str(index.ca_pem))}",
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
    environ = {"PATH": os.environ["PATH"], "HOME": str(workspace.parent), REPORT: str(report)}
    done = run([wrapper, "--config", config], env=environ, timeout=RUN_TIMEOUT, check=False)
    return done.returncode, done.stdout + done.stderr


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _wrapper(root: Path, tool: str, target: str) -> Path:
    wrapper = root / f"measure-{tool}"
    wrapper.write_text(WRAPPER.format(python=sys.executable, target=target, variable=REPORT))
    wrapper.chmod(0o755)
    return wrapper


def _attestations_missing(image: Image) -> str | None:
    """Why the many-attest case cannot run, or None; known before running it.

    An image that has the signing module but whose command line does not call it is found
    out by the first run (NotSigning).
    """
    app = image.path("/app/oidc_publish")
    if not any(app.glob("attest*")):
        return "the action's image has no attestation support (no oidc_publish/attest*)"
    if importlib.util.find_spec("tests.localindex.sigstore") is None:
        return "the dev package has no local Sigstore (tests/localindex/sigstore)"
    return None


def _locked(name: str) -> str:
    lock = (BENCH.parent / "requirements.txt").read_text(encoding="utf-8")
    return next(
        line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith(f"{name}==")
    )


def _report(measurements: list[Measurement]) -> int:
    def median(case: str, tool: str, field: str = "wall") -> float:
        values = [getattr(m, field) for m in measurements if (m.case, m.tool) == (case, tool)]
        return float(statistics.median(values))

    def measured(case: str, tool: str) -> bool:
        return any((m.case, m.tool) == (case, tool) for m in measurements)

    cases = list(dict.fromkeys(m.case for m in measurements))
    if not cases:
        print("\nNothing measured.")
        return 0
    print(f"\n{'case':14} {'tool':6} {'median s':>9} {'cpu s':>7} {'peak RSS MiB':>13}")
    for case in cases:
        for tool in TOOLS:
            if not measured(case, tool):
                continue
            print(
                f"{case:14} {tool:6} {median(case, tool):9.2f} {median(case, tool, 'cpu'):7.2f} "
                f"{median(case, tool, 'rss_mib'):13.1f}"
            )
    if "many-attest" in cases:
        print(
            f"many-attest    action signing {median('many-attest', 'action', 'signing'):.2f} s "
            f"of {median('many-attest', 'action'):.2f} s in all (medians)"
        )
    print()
    for case in cases:
        if not all(measured(case, tool) for tool in TOOLS):
            continue
        action = median(case, "action")
        print(
            f"ratio {case:14} action/twine {action / median(case, 'twine'):.2f}  "
            f"action/curl {action / median(case, 'curl'):.2f}  "
            f"action/uv {action / median(case, 'uv'):.2f}"
        )
    targets: list[tuple[str, bool, str]] = []
    for case, peer, limit, description in PEER_TARGETS:
        if case in cases:
            ratio = median(case, "action") / median(case, peer)
            targets.append((f"{description} <= {limit}x {peer}", ratio <= limit, f"{ratio:.2f}"))
    if "big" in cases:
        ratio = median("big", "action") / median("big", "curl")
        targets.append(("300 MB wheel <= 1.15x bare curl", ratio <= 1.15, f"{ratio:.2f}"))
        # The worst run, not the median: one run over the limit could be killed.
        peak = max(m.rss_mib for m in measurements if (m.case, m.tool) == ("big", "action"))
        peak_mb = peak * MIB / 1e6
        targets.append(("300 MB wheel action peak RSS < 80 MB", peak_mb < 80, f"{peak_mb:.1f} MB"))
    if "many-attest" in cases:
        signing = median("many-attest", "action", "signing")
        targets.append(
            (
                f"40 wheels signed under {SIGNING_TARGET:.0f} s (Rekor {REKOR_LATENCY} s/entry)",
                signing < SIGNING_TARGET,
                f"{signing:.2f} s, {median('many-attest', 'action'):.2f} s in all",
            )
        )
    print()
    for description, passed, detail in targets:
        print(f"{'PASS' if passed else 'FAIL'}  {description}: {detail}")
    return 0 if all(passed for _, passed, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
