"""The action against `twine upload`, a bare `curl` upload and `uv publish`, on one local
index.

    python -m benchmarks.publish [--repeat 3] [--warmup 1] [--cases small,big,...]
                                 [--big-size 300000000] [--attestations]

Assumptions (the reasoning is in README.md, Performance; the tools and how each run is
measured are in benchmarks/tools.py):

- The index runs in a process of its own (tests.localindex.index_process), so its TLS,
  form parsing, hashing (MD5, SHA-256, BLAKE2b, as PyPI's) and storing compete with the
  tool for the machine's cores instead of waiting behind this process's GIL.
- Runs alternate tool by tool within one invocation; the index is reset before each run
  and its per-file limit lifted. Each run must publish exactly the case's files, with
  their sha256, and show no secret in the action's log.
- The table gives, per case and tool, the medians of wall time, CPU (user + system) and
  peak RSS, and wall and CPU as ratios to uv's in the same invocation.
- `-latency` cases delay, server side, what a runner pays: REAL_LATENCY per endpoint, and
  publish to PyPI's own upload URL, which the index's CONNECT proxy takes to the index
  (every tool gets the proxy, as a runner's job does): so each tool takes the path it takes
  on PyPI (the action knows PyPI's audience, uv asks for it).
- many-attest and big-attest (`--attestations`): the action publishing the 40 wheels (Rekor
  delayed REKOR_LATENCY per entry, uploads as in many-latency) or the 300 MB wheel with
  PEP 740 attestations, signed by the index's local Sigstore, beside uv (which does not
  sign; twine and curl are left out). The signing time is the
  action's own (its `Signed N attestation(s) in X.Xs` line, after `Signing N file(s) with
  Sigstore`); every file must have its provenance on the index afterwards. Skipped, saying
  why, while the action's image does not sign.
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.tools import MIB, TOOLS, Tools
from tests.localindex.dists import make_sdist, make_wheel, sha256
from tests.localindex.index_process import IndexProcess
from tests.localindex.proc import CommandFailed
from tests.localindex.server import REAL_LATENCY

PROJECT, VERSION = "sample-project", "1.0.0"
BENCH = Path(__file__).resolve().parent.parent / ".bench"
REKOR_LATENCY = 0.3
"""Seconds the local Rekor takes for each entry in the many-attest case."""
SIGNING_TARGET = 3.0
# The lines the action prints around signing; the second carries the time it took.
SIGNING_STARTED = re.compile(r"Signing (\d+) files? ?(?:\(s\))? with Sigstore")
SIGNING_DONE = re.compile(r"Signed (\d+) attestations? ?(?:\(s\))? in (\d+(?:\.\d+)?) ?s\b")


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
        Case("big-attest", "big", attestations=True),
        Case("monorepo-latency", "monorepo", latency=True),
    )
}
ATTESTATION_CASES = ("many-attest", "big-attest")
DEFAULT_CASES = ("small", "big", "many", "small-latency", "many-latency", "monorepo-latency")
# The action's wall time or CPU against uv's, at most: uv makes the same token exchange.
# Signing adds a SHA-256 pass and Sigstore's requests that uv does not make.
PEER_TARGETS = (
    ("small-latency", "wall", 1.05, "small release with latency"),
    ("many-latency", "wall", 0.35, "40 wheels with latency"),
    ("monorepo-latency", "wall", 0.45, "3 projects, each an sdist and 10 wheels, with latency"),
    ("big", "wall", 1.0, "300 MB wheel"),
    ("big", "cpu", 1.0, "300 MB wheel, client CPU"),
    ("big-attest", "wall", 1.0, "300 MB wheel, signed"),
    ("big-attest", "cpu", 1.0, "300 MB wheel, signed, client CPU"),
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
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        root = Path(temp)
        try:
            tools = Tools(BENCH, root)
        except CommandFailed as failure:
            print(f"ABORTED: {failure}", file=sys.stderr)
            return 1
        print(tools.describe())
        with IndexProcess() as index:
            for name in options.cases:
                case = CASES[name]
                missing = tools.signing_missing() if case.attestations else None
                if missing:
                    print(f"{name}: SKIPPED, {missing}")
                    continue
                try:
                    measurements += _measure_case(index, tools, case, root, options)
                except NotSigning as why:
                    print(f"{name}: SKIPPED, {why}")
                except RunFailed as failure:
                    print(f"ABORTED: {failure}", file=sys.stderr)
                    return 1
    return _report(measurements)


def _measure_case(
    index: IndexProcess, tools: Tools, case: Case, root: Path, options: argparse.Namespace
) -> list[Measurement]:
    """The case's measured runs, warm-ups left out, tool after tool in each round."""
    workspace = _dists(root / case.name, case.dists, options.big_size)
    measured = []
    for number in range(-options.warmup, options.repeat):
        # twine and curl do not sign; uv, which does not either, is the peer.
        for tool in ("action", "uv") if case.attestations else TOOLS:
            m = _measure(index, tools, case, tool, workspace)
            label = "warm-up" if number < 0 else f"run {number + 1}"
            signing = "" if m.signing is None else f"  signing {m.signing:.1f} s"
            print(
                f"  {case.name:16} {tool:6} {label:8} {m.wall:7.2f} s {m.cpu:6.2f} s cpu "
                f"{m.rss_mib:6.1f} MiB{signing}"
            )
            if number >= 0:
                measured.append(m)
    return measured


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publish")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per tool")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs per tool first")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help=", ".join(CASES))
    parser.add_argument("--big-size", type=int, default=300_000_000, help="big wheel's bytes")
    parser.add_argument(
        "--attestations",
        action="store_true",
        help="add the cases that sign (skipped while the action does not sign)",
    )
    options = parser.parse_args(argv)
    options.cases = [name.strip() for name in options.cases.split(",") if name.strip()]
    if options.attestations:
        options.cases += [name for name in ATTESTATION_CASES if name not in options.cases]
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
    index: IndexProcess, tools: Tools, case: Case, tool: str, workspace: Path
) -> Measurement:
    index.reset()
    index.set_file_size_limit(None)
    latency = dict(REAL_LATENCY) if case.latency else {}
    if case.attestations:
        latency["rekor"] = REKOR_LATENCY
    index.set_latency(latency)
    dists = sorted((workspace / "dist").iterdir())
    done = tools.run(tool, index, workspace, attestations=case.attestations, pypi=case.latency)
    expected = {path.name: sha256(path) for path in dists}
    stored = index.files()
    if done.status != 0 or done.usage is None or stored != expected:
        raise RunFailed(f"{case.name}/{tool}: exit {done.status}, index {stored}\n{done.output}")
    signed = case.attestations and tool == "action"
    signing = _signing_time(index, case, dists, done.output) if signed else None
    usage = done.usage
    return Measurement(case.name, tool, usage.wall, usage.cpu, usage.rss_mib, signing)


def _signing_time(index: IndexProcess, case: Case, dists: list[Path], output: str) -> float:
    """The signing time the action logged; checks every file's provenance is on the index.

    Raises NotSigning when the action did not say it signed (nor sign anything).
    """
    started, done = SIGNING_STARTED.search(output), SIGNING_DONE.search(output)
    if started is None and index.rekor_entries() == 0:
        raise NotSigning(
            "the action published without signing (no 'Signing N file(s) with Sigstore' in "
            "its log): its image does not make attestations yet"
        )
    if started is None or done is None:
        raise RunFailed(
            f"{case.name}: the action's log lacks 'Signing N file(s) with Sigstore' or "
            f"'Signed N attestation(s) in X.Xs'\n{output}"
        )
    names = [path.name for path in dists]
    unattested = sorted(set(names) - set(index.attested(names)))
    if int(done.group(1)) != len(dists) or unattested:
        raise RunFailed(
            f"{case.name}: signed {done.group(1)} of {len(dists)} file(s); no provenance on "
            f"the index for {unattested}\n{output}"
        )
    return float(done.group(2))


class _Medians:
    """The measured runs' medians, by case, tool and field."""

    def __init__(self, measurements: list[Measurement]) -> None:
        self._measurements = measurements
        self.cases = list(dict.fromkeys(m.case for m in measurements))

    def __call__(self, case: str, tool: str, field: str = "wall") -> float:
        values = [getattr(m, field) for m in self._measurements if (m.case, m.tool) == (case, tool)]
        return float(statistics.median(values))

    def measured(self, case: str, tool: str) -> bool:
        return any((m.case, m.tool) == (case, tool) for m in self._measurements)

    def peak(self, case: str) -> float:
        """The action's worst peak RSS in MB: one run over a limit could be killed."""
        worst = max(m.rss_mib for m in self._measurements if (m.case, m.tool) == (case, "action"))
        return worst * MIB / 1e6


def _report(measurements: list[Measurement]) -> int:
    median = _Medians(measurements)
    if not median.cases:
        print("\nNothing measured.")
        return 0

    def to_uv(case: str, tool: str, field: str) -> str:
        if not median.measured(case, "uv"):
            return ""
        return f"{median(case, tool, field) / median(case, 'uv', field):.2f}"

    print("\nMedians; wall and CPU (user + system) also as ratios to uv's in this invocation.")
    print(
        f"{'case':16} {'tool':6} {'wall s':>7} {'wall/uv':>7} {'cpu s':>7} {'cpu/uv':>7} "
        f"{'peak RSS MiB':>13}"
    )
    for case in median.cases:
        for tool in (t for t in TOOLS if median.measured(case, t)):
            print(
                f"{case:16} {tool:6} {median(case, tool):7.2f} {to_uv(case, tool, 'wall'):>7} "
                f"{median(case, tool, 'cpu'):7.2f} {to_uv(case, tool, 'cpu'):>7} "
                f"{median(case, tool, 'rss_mib'):13.1f}"
            )
    for case in (c for c in ATTESTATION_CASES if median.measured(c, "action")):
        print(
            f"{case:16} action signing {median(case, 'action', 'signing'):.2f} s "
            f"of {median(case, 'action'):.2f} s in all (medians)"
        )
    targets = _targets(median)
    print()
    for description, passed, detail in targets:
        print(f"{'PASS' if passed else 'FAIL'}  {description}: {detail}")
    return 0 if all(passed for _, passed, _ in targets) else 1


def _targets(median: _Medians) -> list[tuple[str, bool, str]]:
    targets: list[tuple[str, bool, str]] = []
    for case, field, limit, description in PEER_TARGETS:
        if median.measured(case, "action") and median.measured(case, "uv"):
            ratio = median(case, "action", field) / median(case, "uv", field)
            targets.append((f"{description} <= {limit}x uv", ratio <= limit, f"{ratio:.2f}"))
    for case in ("big", "big-attest"):
        if median.measured(case, "action"):
            peak = median.peak(case)
            targets.append((f"{case}: action peak RSS < 80 MB", peak < 80, f"{peak:.1f} MB"))
    if median.measured("many-attest", "action"):
        signing = median("many-attest", "action", "signing")
        targets.append(
            (
                f"40 wheels signed under {SIGNING_TARGET:.0f} s (Rekor {REKOR_LATENCY} s/entry)",
                signing < SIGNING_TARGET,
                f"{signing:.2f} s, {median('many-attest', 'action'):.2f} s in all",
            )
        )
    return targets


if __name__ == "__main__":
    sys.exit(main())
