"""The action end to end against a plain `twine upload`, on one local index.

    python -m benchmarks.publish [--repeat 3] [--scenarios small,big,many]
                                 [--big-size 300000000] [--warmup 1] [--python PATH]

Scenarios (one project, `sample-project 1.0.0`):

- small: one sdist and one wheel of a few kB;
- big:   one wheel of `--big-size` bytes (incompressible), built once and reused;
- many:  40 wheels of 1 MB, told apart by a build tag (`sample_project-1.0.0-{n}-py3-none-any.whl`).

Tools:

- action:   entrypoint.py through `tests.localindex.runner.run_action`, exactly as the
  runner starts it, with default inputs: ID token, audience, mint, uploads, simple-API
  lookup, outputs and summary all count.
- baseline: `python -m twine upload --disable-progress-bar --non-interactive
  --repository-url <index> -u __token__ dist/...` with a static API token minted
  beforehand (not timed) and passed as TWINE_PASSWORD, never in argv.

Runs alternate (action, baseline, action, ...) within one invocation, so that drift on a
noisy machine hits both tools alike; `--warmup` pairs per scenario run first and are not
counted (they fill the page cache and write this repository's .pyc files). Before every
run the index is reset, so every run uploads into an empty index; its 100 MiB per-file
limit is lifted, or the big wheel would be refused as PyPI would without a raised limit.

Both tools run under one interpreter, `--python` (default: this one). Its environment
matters to both: httpx, for one, imports its command-line module (click, pygments, rich)
whenever click is installed. Give an interpreter whose environment holds exactly
requirements.txt to measure the package set the image runs.

Measurement: both tools are started through the same tiny wrapper script (it has to be a
file: run_action takes an interpreter path, not an argv). The wrapper runs the real
command as its only child and reports, from its own side of fork/wait:

- wall: `perf_counter` from just before spawning the child to just after reaping it,
  i.e. the tool's interpreter start-up, imports, network and exit; the wrapper's own
  start-up and run_action's bookkeeping are outside it, for both tools alike;
- peak RSS: `getrusage(RUSAGE_CHILDREN).ru_maxrss` (KiB on Linux), the high-water mark of
  the largest process among the wrapper's reaped descendants, here the tool alone, and
  measured fresh in each run because each run has its own wrapper process;
- cpu: the child's user + system seconds, to tell computing from waiting.

The index runs in threads of this process: its work (TLS, hashing, storing, and
pypiserver hashing every file again for each simple-API listing, which PyPI does not)
adds to a tool's wall time, never to its cpu or RSS.

Every run is checked: exit status 0, exactly the scenario's files on the index with their
sha256, and, for the action, no secret outside `::add-mask::` commands. Any failure stops
the benchmark with the run's output. Exit status: 0 when every target passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.localindex.dists import make_sdist, make_wheel
from tests.localindex.runner import run_action
from tests.localindex.server import LocalIndex

PROJECT = "sample-project"
VERSION = "1.0.0"
SCENARIOS = ("small", "big", "many")
MANY_COUNT = 40
MANY_SIZE = 1_000_000
MIB = 1024 * 1024
# A run that has not finished by then is hung, not slow.
RUN_TIMEOUT = 1800.0
REPORT_VARIABLE = "BENCHMARK_MEASUREMENT_REPORT"

Tool = Literal["action", "baseline"]
TOOLS: tuple[Tool, ...] = ("action", "baseline")

# Popping the variable keeps it out of the measured tool's environment.
WRAPPER = """\
#!{python}
import json, os, resource, subprocess, sys, time
report = os.environ.pop("{variable}")
started = time.perf_counter()
status = subprocess.call([{target!r}, *sys.argv[1:]])
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(report, "w") as handle:
    json.dump(
        {{
            "status": status,
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_kib": usage.ru_maxrss,
        }},
        handle,
    )
sys.exit(status)
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    workspace: Path
    expected: dict[str, str]
    """filename -> sha256 of every file in workspace/dist."""


@dataclass(frozen=True)
class Measurement:
    scenario: str
    tool: Tool
    wall: float
    cpu: float
    peak_rss_kib: int


@dataclass(frozen=True)
class Target:
    description: str
    passed: bool
    detail: str


class RunFailed(Exception):
    """A run that did not publish what it should have; the message holds its output."""


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse_args(argv)
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        del os.environ[name]
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    print(
        f"tools run by {options.python}; index on python {platform.python_version()}; "
        f"{os.cpu_count()} CPU(s); repeat {options.repeat}, warm-up {options.warmup}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as temp, LocalIndex() as index:
        root = Path(temp)
        wrapper = _write_wrapper(root, options.python)
        measurements: list[Measurement] = []
        try:
            for name in options.scenarios:
                scenario = _build(name, root / name, options.big_size)
                measurements += _measure(index, scenario, wrapper, options.repeat, options.warmup)
        except RunFailed as failure:
            print(f"\nABORTED: {failure}", file=sys.stderr)
            return 1
    print()
    print(_table(measurements))
    targets = _targets(measurements)
    print()
    for target in targets:
        print(f"{'PASS' if target.passed else 'FAIL'}  {target.description}: {target.detail}")
    return 0 if all(target.passed for target in targets) else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.publish", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per tool")
    parser.add_argument(
        "--scenarios",
        type=_scenario_list,
        default=list(SCENARIOS),
        help="comma-separated, from: " + ",".join(SCENARIOS),
    )
    parser.add_argument(
        "--big-size", type=int, default=300_000_000, help="bytes of the big wheel's payload"
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs both tools (default: this one); give one whose "
        "environment holds exactly requirements.txt to measure what the image runs",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted runs per tool before the measured ones"
    )
    options = parser.parse_args(argv)
    if options.repeat < 1 or options.warmup < 0 or options.big_size < 1:
        parser.error("--repeat and --big-size must be positive, --warmup not negative")
    return options


def _scenario_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    return names


def _write_wrapper(root: Path, target: str) -> Path:
    wrapper = root / "measure"
    wrapper.write_text(
        WRAPPER.format(python=sys.executable, target=target, variable=REPORT_VARIABLE)
    )
    wrapper.chmod(0o755)
    return wrapper


def _build(name: str, workspace: Path, big_size: int) -> Scenario:
    dist = workspace / "dist"
    if name == "small":
        paths = [
            make_sdist(dist, PROJECT, VERSION, description=_description(3000)),
            make_wheel(dist, PROJECT, VERSION, payload_size=4000),
        ]
    elif name == "big":
        paths = [make_wheel(dist, PROJECT, VERSION, payload_size=big_size)]
    else:
        stem = f"{PROJECT.replace('-', '_')}-{VERSION}"
        paths = [
            make_wheel(
                dist,
                PROJECT,
                VERSION,
                payload_size=MANY_SIZE,
                # Same payload in each, so a distinct summary gives each file its own bytes.
                summary=f"A sample project, build {number}",
                filename=f"{stem}-{number}-py3-none-any.whl",
            )
            for number in range(1, MANY_COUNT + 1)
        ]
    expected = {path.name: _sha256(path) for path in paths}
    total = sum(path.stat().st_size for path in paths)
    size = f"{total / MIB:.1f} MiB" if total >= MIB else f"{total / 1024:.1f} KiB"
    print(f"{name}: {len(paths)} file(s), {size} in {dist}")
    return Scenario(name, workspace, expected)


def _description(size: int) -> str:
    # Words drawn at random, so gzip cannot shrink the sdist to nothing.
    words: list[str] = []
    while sum(len(word) + 1 for word in words) < size:
        words.append(secrets.token_hex(4))
    return "# Sample project\n\n" + " ".join(words) + "\n"


def _measure(
    index: LocalIndex, scenario: Scenario, wrapper: Path, repeat: int, warmup: int
) -> list[Measurement]:
    runners: dict[Tool, Callable[[LocalIndex, Scenario, Path], Measurement]] = {
        "action": _run_action,
        "baseline": _run_baseline,
    }
    measurements: list[Measurement] = []
    for number in range(-warmup, repeat):
        for tool in TOOLS:
            measurement = runners[tool](index, scenario, wrapper)
            label = f"warm-up {number + warmup + 1}" if number < 0 else f"run {number + 1}"
            print(
                f"  {scenario.name:5} {tool:8} {label:9} {measurement.wall:8.2f} s wall "
                f"{measurement.cpu:7.2f} s cpu {measurement.peak_rss_kib / 1024:7.1f} MiB peak"
            )
            if number >= 0:
                measurements.append(measurement)
    return measurements


def _fresh(index: LocalIndex) -> None:
    index.reset()
    index.file_size_limit = None


def _run_action(index: LocalIndex, scenario: Scenario, wrapper: Path) -> Measurement:
    _fresh(index)
    report = scenario.workspace.parent / "action-report.json"
    report.unlink(missing_ok=True)
    run = run_action(
        index,
        scenario.workspace,
        env={REPORT_VARIABLE: str(report), "PIP_CONFIG_FILE": os.devnull},
        python=str(wrapper),
        timeout=RUN_TIMEOUT,
    )
    output = f"exit {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    output += f"\n--- summary\n{run.summary}"
    _check(index, scenario, "action", run.returncode, output)
    visible = "\n".join(
        line for line in run.all_text().splitlines() if not line.lstrip().startswith("::add-mask::")
    )
    leaked = [secret for secret in index.secrets() if secret in visible]
    if leaked:
        raise RunFailed(f"{scenario.name}/action: {len(leaked)} secret(s) visible\n{output}")
    return _read_report(report, scenario, "action")


def _run_baseline(index: LocalIndex, scenario: Scenario, wrapper: Path) -> Measurement:
    _fresh(index)
    token = "pypi-benchmark-" + secrets.token_urlsafe(32)
    index.api_tokens.add(token)
    report = scenario.workspace.parent / "baseline-report.json"
    report.unlink(missing_ok=True)
    home = scenario.workspace.parent / "baseline-home"
    home.mkdir(exist_ok=True)
    command = [
        str(wrapper),
        "-m",
        "twine",
        "upload",
        "--disable-progress-bar",
        "--non-interactive",
        "--repository-url",
        index.upload_url,
        "-u",
        "__token__",
        *(f"dist/{name}" for name in sorted(scenario.expected)),
    ]
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "TWINE_PASSWORD": token,
        "REQUESTS_CA_BUNDLE": str(index.ca_pem),
        "PIP_CONFIG_FILE": os.devnull,
        REPORT_VARIABLE: str(report),
    }
    completed = subprocess.run(
        command,
        cwd=scenario.workspace,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = f"exit {completed.returncode}\n--- stdout\n{completed.stdout}"
    output += f"\n--- stderr\n{completed.stderr}"
    _check(index, scenario, "baseline", completed.returncode, output)
    if token in completed.stdout + completed.stderr:
        raise RunFailed(f"{scenario.name}/baseline: the token is visible\n{output}")
    return _read_report(report, scenario, "baseline")


def _check(index: LocalIndex, scenario: Scenario, tool: Tool, status: int, output: str) -> None:
    if status != 0:
        raise RunFailed(f"{scenario.name}/{tool} exited {status}\n{output}")
    stored = index.files()
    if stored != scenario.expected:
        missing = sorted(set(scenario.expected) - set(stored))
        wrong = sorted(
            name
            for name in scenario.expected
            if name in stored and stored[name] != scenario.expected[name]
        )
        extra = sorted(set(stored) - set(scenario.expected))
        raise RunFailed(
            f"{scenario.name}/{tool}: index holds the wrong files (missing {missing}, "
            f"other sha256 {wrong}, unexpected {extra})\n{output}"
        )


def _read_report(report: Path, scenario: Scenario, tool: Tool) -> Measurement:
    data = json.loads(report.read_text(encoding="utf-8"))
    return Measurement(
        scenario.name, tool, float(data["wall"]), float(data["cpu"]), int(data["maxrss_kib"])
    )


def _of(measurements: list[Measurement], scenario: str, tool: str) -> list[Measurement]:
    return [m for m in measurements if m.scenario == scenario and m.tool == tool]


def _median_wall(measurements: list[Measurement], scenario: str, tool: str) -> float:
    return statistics.median(m.wall for m in _of(measurements, scenario, tool))


def _table(measurements: list[Measurement]) -> str:
    header = (
        f"{'scenario':8} {'tool':8} {'runs':>4} {'median s':>9} {'min s':>8} "
        f"{'median cpu s':>12} {'median peak RSS MiB':>19}"
    )
    lines = [header, "-" * len(header)]
    scenarios = list(dict.fromkeys(m.scenario for m in measurements))
    for scenario in scenarios:
        for tool in TOOLS:
            runs = _of(measurements, scenario, tool)
            lines.append(
                f"{scenario:8} {tool:8} {len(runs):>4} "
                f"{statistics.median(m.wall for m in runs):>9.2f} "
                f"{min(m.wall for m in runs):>8.2f} "
                f"{statistics.median(m.cpu for m in runs):>12.2f} "
                f"{statistics.median(m.peak_rss_kib for m in runs) / 1024:>19.1f}"
            )
    lines.append("")
    for scenario in scenarios:
        action = _median_wall(measurements, scenario, "action")
        baseline = _median_wall(measurements, scenario, "baseline")
        lines.append(
            f"ratio {scenario:5} action / baseline wall (medians): {action / baseline:.2f} "
            f"({action:.2f} s / {baseline:.2f} s)"
        )
    return "\n".join(lines)


def _targets(measurements: list[Measurement]) -> list[Target]:
    scenarios = {m.scenario for m in measurements}
    targets: list[Target] = []

    def ratio(scenario: str) -> float:
        return _median_wall(measurements, scenario, "action") / _median_wall(
            measurements, scenario, "baseline"
        )

    if "small" in scenarios:
        value = ratio("small")
        targets.append(
            Target(
                "small release no slower than twine (ratio <= 1.0)", value <= 1.0, f"{value:.2f}"
            )
        )
    if "big" in scenarios:
        value = ratio("big")
        targets.append(
            Target("big wheel within 1.2x of twine (ratio <= 1.2)", value <= 1.2, f"{value:.2f}")
        )
        # The worst run, not the median: one run over the limit is a run that could be killed.
        peak = max(m.peak_rss_kib for m in _of(measurements, "big", "action")) * 1024
        targets.append(
            Target(
                "big wheel action peak RSS under 100 MB",
                peak < 100_000_000,
                f"max {peak / 1e6:.1f} MB ({peak / MIB:.1f} MiB)",
            )
        )
    if "many" in scenarios:
        value = ratio("many")
        targets.append(
            Target("40 wheels no slower than twine (ratio <= 1.0)", value <= 1.0, f"{value:.2f}")
        )
    return targets


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


if __name__ == "__main__":
    sys.exit(main())
