"""The action end to end against a plain `twine upload`, on one local index.

    python -m benchmarks.publish [--repeat 3] [--scenarios small,big,many]
                                 [--big-size 300000000] [--warmup 1]
                                 [--action-python PATH] [--baseline-python PATH | --python PATH]

The action side measures what a release job pays inside the image: the lock alone,
installed by the Dockerfile's own pip line, in a Python without pip as the image's is,
byte-compiled once the way the image build compiles it, and run with the image's
PYTHONDONTWRITEBYTECODE=1. The baseline side measures
what a maintainer pays for `pip install twine` then `twine upload`: twine at the version
the lock pins, with whatever dependencies pip resolves for it (keyring included), compiled
by pip at install time. Each tool thus runs with its own package set and its usual bytecode,
installed and compiled before any timed run, which is how each is used; one environment
shared by both would match neither.

Scenarios (one project, `sample-project 1.0.0`):

- small: one sdist and one wheel of a few kB;
- big:   one wheel of `--big-size` bytes (incompressible), built once and reused;
- many:  40 wheels of 1 MB, told apart by a build tag (`sample_project-1.0.0-{n}-py3-none-any.whl`).

Tools:

- action:   `.bench/app/entrypoint.py` under `.bench/action/bin/python`, through
  `tests.localindex.runner.run_action`, exactly as the runner starts it, with default
  inputs: ID token, audience, mint, uploads, simple-API lookup, outputs and summary all
  count.
- baseline: `.bench/twine/bin/python -m twine upload --disable-progress-bar
  --non-interactive --repository-url <index> -u __token__ dist/...` with a static API
  token minted beforehand (not timed) and passed as TWINE_PASSWORD, never in argv.

How the two sides are built, under `<repo>/.bench/` (kept between invocations), with the
running interpreter's `venv` module:

- `.bench/app/`: what the image's stage COPYs into /app from the build context (the lock,
  entrypoint.py and oidc_publish/, caches left out as .dockerignore leaves them out),
  copied afresh from the working tree on every invocation and compiled with the
  Dockerfile's compileall options; the action runs from here with the image's ENV.
- `.bench/install/`: the build stage's `pip install` line as written (its absolute paths
  under .bench/, so its prefix is here), run by the running interpreter's pip under the
  build stage's ENV.
- `.bench/action/`: a venv without pip, as the image's Python has none, holding what the
  image's COPY --from takes from that prefix (its site-packages); the Dockerfile's check
  that pip, setuptools and wheel are gone runs in it, then its compileall options over
  its site-packages (the image's lie inside the standard library directory it compiles).
- `.bench/twine/`: `pip install twine==<lock's version>`, nothing else.

Either venv is rebuilt when requirements.txt (for the action, also the Dockerfile) is
newer than its `.installed` marker, or when the marker names another interpreter. The
installs use this machine's pip configuration, which they need to reach the registry, but
of its PIP_* variables only those that say how to reach it. The runs themselves see no
PIP_* variable and PIP_CONFIG_FILE=/dev/null.

Where this differs from the image: the interpreter is the one running this script, not
the image's CPython 3.13, and its standard library is used as it is, not recompiled (it
may not be writable, and is shared). A standard library without bytecode would be
compiled by the action on every run and by twine only once, so the header says how much
of it lacks bytecode.

`--action-python` and `--baseline-python` swap in another interpreter for one side
(its environment as it is: nothing is installed or compiled into it but `.bench/app/`),
and `--python` one interpreter for both, to tell what the package sets cost from what the
interpreter costs. The action still runs from `.bench/app/` with the image's ENV.

Runs alternate (action, baseline, action, ...) within one invocation, so that drift on a
noisy machine hits both tools alike; `--warmup` pairs per scenario run first and are not
counted (they fill the page cache). Before every run the index is reset, so every run
uploads into an empty index; its 100 MiB per-file limit is lifted, or the big wheel would
be refused as PyPI would without a raised limit.

Measurement: both tools are started through the same tiny wrapper script, one copy per
tool naming that tool's interpreter (it has to be a file: run_action takes an interpreter
path, not an argv). The wrapper runs the real command as its only child and reports, from
its own side of fork/wait:

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
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from tests.dockerfile import stages
from tests.localindex.dists import make_sdist, make_wheel, sha256
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

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
LOCK = REPO / "requirements.txt"
DOCKERFILE = REPO / "Dockerfile"
MARKER = ".installed"
COMPILEALL = ["python", "-m", "compileall"]
# Of this machine's PIP_* variables, the installs keep those that say how to reach the
# registry; the rest (extra find-links, say) would change what gets installed.
PIP_REACH = frozenset(
    {
        "PIP_CERT",
        "PIP_CLIENT_CERT",
        "PIP_INDEX_URL",
        "PIP_TRUSTED_HOST",
        "PIP_PROXY",
        "PIP_DEFAULT_TIMEOUT",
        "PIP_TIMEOUT",
        "PIP_RETRIES",
    }
)
# Run by an interpreter under test: where its standard library is, and how many of its
# modules have no bytecode that interpreter would load (test suites, IDLE and the build
# configuration's python-config.py left out: no tool imports them).
STDLIB_BYTECODE = """\
import importlib.util, os, sysconfig
stdlib = sysconfig.get_path("stdlib")
skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idlelib"}
total = missing = 0
for directory, subdirectories, files in os.walk(stdlib):
    subdirectories[:] = [
        name for name in subdirectories if name not in skip and not name.startswith("config-")
    ]
    for name in files:
        if name.endswith(".py"):
            total += 1
            cached = importlib.util.cache_from_source(os.path.join(directory, name))
            missing += not os.path.exists(cached)
print(stdlib, total, missing)
"""

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


class BuildFailed(Exception):
    """A venv or .bench/app that could not be built; the message holds the command's output."""


@dataclass(frozen=True)
class Image:
    """What the Dockerfile does that the benchmark reproduces, as the Dockerfile says it."""

    env: dict[str, str]
    """The image's ENV."""
    install_env: dict[str, str]
    """The build stage's ENV, which its pip install runs under."""
    copies: list[tuple[str, str]]
    """(source in the repository, destination in the image as written) per COPY source
    the image's stage takes from the build context."""
    install: list[str]
    """The build stage's pip install RUN, as argv from "pip"."""
    packages: tuple[str, str]
    """(source in the build stage, destination in the image) of the COPY --from."""
    check: list[str]
    """The image's check that no installer is left, as argv from "python"."""
    compile_options: list[str]
    """The compileall RUN's options, its paths left out."""
    compile_paths: list[PurePosixPath]
    entrypoint: PurePosixPath
    """The script the ENTRYPOINT's python runs."""

    def app_roots(self) -> list[PurePosixPath]:
        """The top-level image directories the COPYs write to (/app)."""
        return sorted({PurePosixPath("/", PurePosixPath(dest).parts[1]) for _, dest in self.copies})

    def local(self, path: PurePosixPath | str) -> Path:
        """An image path under a COPY destination, as reproduced under .bench/."""
        return BENCH / PurePosixPath(path).relative_to("/")


@dataclass(frozen=True)
class Sides:
    """The interpreter each tool runs under, and the action's entry point and environment."""

    action_python: str
    baseline_python: str
    entrypoint: Path
    action_env: dict[str, str]

    def pythons(self) -> tuple[str, str]:
        return self.action_python, self.baseline_python


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse_args(argv)
    try:
        sides = _prepare(options.action_python, options.baseline_python)
    except BuildFailed as failure:
        print(f"\nABORTED: {failure}", file=sys.stderr)
        return 1
    image_env = " ".join(f"{name}={value}" for name, value in sides.action_env.items())
    print(f"action:   {sides.action_python} {_shown(sides.entrypoint)} with {image_env}")
    print(f"baseline: {sides.baseline_python} -m twine")
    # Two venvs of one interpreter share its standard library: one line then.
    for line in dict.fromkeys(_stdlib_bytecode(python) for python in sides.pythons()):
        print(line)
    print(
        f"index on python {platform.python_version()}; {os.cpu_count()} CPU(s); "
        f"repeat {options.repeat}, warm-up {options.warmup}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as temp, LocalIndex() as index:
        root = Path(temp)
        wrappers: dict[Tool, Path] = {
            "action": _write_wrapper(root, "action", sides.action_python),
            "baseline": _write_wrapper(root, "baseline", sides.baseline_python),
        }
        measurements: list[Measurement] = []
        try:
            for name in options.scenarios:
                scenario = _build(name, root / name, options.big_size)
                measurements += _measure(
                    index,
                    scenario,
                    sides=sides,
                    wrappers=wrappers,
                    repeat=options.repeat,
                    warmup=options.warmup,
                    oidc_latency=options.oidc_latency,
                )
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
        "--action-python",
        help="run the action under this interpreter and its environment as it is, instead "
        "of .bench/action (still from .bench/app, with the image's ENV)",
    )
    parser.add_argument(
        "--baseline-python",
        help="run twine under this interpreter and its environment as it is, instead of "
        ".bench/twine",
    )
    parser.add_argument(
        "--python",
        help="both of the above at once: both tools under one interpreter, for diagnosis",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="uncounted runs per tool before the measured ones"
    )
    parser.add_argument(
        "--oidc-latency",
        type=float,
        default=0.0,
        help="seconds the index waits before each audience, ID-token and mint answer, "
        "standing for the round trips a runner pays to PyPI and GitHub (twine's token is "
        "minted beforehand, so this counts for the action only)",
    )
    options = parser.parse_args(argv)
    if options.repeat < 1 or options.warmup < 0 or options.big_size < 1:
        parser.error("--repeat and --big-size must be positive, --warmup not negative")
    if options.python is not None:
        if options.action_python is not None or options.baseline_python is not None:
            parser.error("--python sets both interpreters: give it alone")
        options.action_python = options.baseline_python = options.python
    return options


def _scenario_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    return names


# --- .bench/: the two sides as they really run ----------------------------------------


def _prepare(action_python: str | None, baseline_python: str | None) -> Sides:
    """Builds what the benchmark runs: .bench/app always, each venv unless overridden."""
    image = _image()
    # First: the action venv's install reads the lock from the copy, as the image's reads /app's.
    _copy_app(image)
    if action_python is None:
        action = BENCH / "action"
        if _stale(action, LOCK, DOCKERFILE):
            _build_action_venv(image, action)
        action_python = str(action / "bin" / "python")
    if baseline_python is None:
        twine = BENCH / "twine"
        if _stale(twine, LOCK):
            _build_twine_venv(twine)
        baseline_python = str(twine / "bin" / "python")
    # Compiled by the interpreter that runs it: bytecode is per interpreter version.
    _compile_app(image, action_python)
    return Sides(
        action_python=action_python,
        baseline_python=baseline_python,
        entrypoint=image.local(image.entrypoint),
        # The image's ENV (PYTHONDONTWRITEBYTECODE above all) is how the image runs it; it
        # sets no PIP_*, and no tool under test may see any.
        action_env={k: v for k, v in image.env.items() if not k.startswith("PIP_")},
    )


def _image() -> Image:
    """The Dockerfile, read the way tests/test_supply_chain.py reads it."""
    try:
        build, final = stages(DOCKERFILE.read_text(encoding="utf-8"))
        build_commands, final_commands = build.commands(), final.commands()
    except ValueError as error:
        raise BuildFailed(f"the Dockerfile is not a build stage and an image: {error}") from error
    if len(build_commands) != 1 or build_commands[0][:2] != ["pip", "install"]:
        raise BuildFailed(f"the build stage runs {build_commands!r}, not one pip install")
    taken = [copy for copy in final.copies() if copy.stage is not None]
    if len(taken) != 1 or taken[0].stage != build.name or len(taken[0].sources) != 1:
        raise BuildFailed("the image does not take one folder from the build stage")
    check: list[str] = []
    compile_argv: list[str] = []
    for argv in final_commands:
        if argv[:2] == ["rm", "-rf"]:
            # It removes pip from the base image; the action venv is made without it.
            continue
        if argv[:2] == ["python", "-c"]:
            check = argv
        elif argv[:3] == COMPILEALL:
            compile_argv = argv[3:]
        else:
            # A build step the benchmark does not reproduce would make the action side
            # something the image is not: better no numbers than wrong ones.
            raise BuildFailed(f"the Dockerfile runs {shlex.join(argv)!r}, unknown to the benchmark")
    entrypoint: list[str] = [
        arg for instruction in final.only("ENTRYPOINT") for arg in json.loads(instruction.arguments)
    ]
    if not check or not compile_argv or entrypoint[:1] != ["python"] or len(entrypoint) != 2:
        raise BuildFailed(
            "the image's stage lacks a `python -c` check RUN, a compileall RUN or a "
            '["python", SCRIPT] ENTRYPOINT'
        )
    return Image(
        env=final.env(),
        install_env=build.env(),
        copies=[
            (source, copy.destination)
            for copy in final.copies()
            if copy.stage is None
            for source in copy.sources
        ],
        install=build_commands[0],
        packages=(taken[0].sources[0], taken[0].destination),
        check=check,
        compile_options=[arg for arg in compile_argv if not arg.startswith("/")],
        compile_paths=[PurePosixPath(arg) for arg in compile_argv if arg.startswith("/")],
        entrypoint=PurePosixPath(entrypoint[1]),
    )


def _copy_app(image: Image) -> None:
    """.bench/app afresh from the working tree, as the COPYs make /app."""
    for root in image.app_roots():
        shutil.rmtree(image.local(root), ignore_errors=True)
    # .dockerignore keeps caches out of the build context.
    ignore = shutil.ignore_patterns("__pycache__", "*.py[co]")
    for source, destination in image.copies:
        target = image.local(destination)
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            # COPY's rule: a destination ending in / is a directory to copy into.
            if destination.endswith("/"):
                target /= Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target)


def _compile_app(image: Image, python: str) -> None:
    # Only the compileall paths inside /app are the app's; the others are the image's
    # Python library, which the action venv stands for (see _build_action_venv).
    roots = image.app_roots()
    app_paths = [
        image.local(path)
        for path in image.compile_paths
        if any(path == root or root in path.parents for root in roots)
    ]
    _run_build([python, "-m", "compileall", *image.compile_options, *map(str, app_paths)])


def _build_action_venv(image: Image, target: Path) -> None:
    # The build stage: its pip line with its absolute paths under .bench/ (the prefix too),
    # run by the pip of the interpreter that makes the venv, so the two agree on lib/pythonX.Y.
    prefix = BENCH / "install"
    shutil.rmtree(prefix, ignore_errors=True)
    arguments = [_local_argument(image, arg) for arg in image.install[1:]]
    print(f"building {_shown(prefix)}: the Dockerfile's pip {shlex.join(arguments)}")
    _run_build([sys.executable, "-m", "pip", *arguments], env=_install_env() | image.install_env)
    # The image: a Python without pip, given what its COPY --from takes.
    python = _create_venv(target, with_pip=False)
    here = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    source, destination = image.packages
    site_packages = _run_build(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).strip()
    if PurePosixPath(destination).parts[-1:] != ("site-packages",):
        raise BuildFailed(f"the image's COPY --from goes to {destination}, not a site-packages")
    # This interpreter's version stands for the image's in the lib/pythonX.Y of the source.
    taken = image.local(re.sub(r"/python3\.\d+/", f"/{here}/", source))
    shutil.copytree(taken, site_packages, dirs_exist_ok=True)
    _run_build([str(python), *image.check[1:]], env=os.environ | image.env)
    # The image compiles its whole Python library, site-packages included; here that is
    # the venv's site-packages, this interpreter's standard library being used as it is.
    _run_build([str(python), "-m", "compileall", *image.compile_options, site_packages])
    _mark(target)


def _local_argument(image: Image, argument: str) -> str:
    """`argument` with the absolute image path it names (`/x`, `--option=/x`) under .bench/."""
    name, equals, value = argument.rpartition("=")
    return f"{name}{equals}{image.local(value)}" if value.startswith("/") else argument


def _build_twine_venv(target: Path) -> None:
    python = _create_venv(target)
    requirement = f"twine=={_locked_version('twine')}"
    print(f"building {_shown(target)}: pip install {requirement}")
    # A maintainer's install: pip resolves twine's dependencies and compiles bytecode.
    _run_build([str(python), "-m", "pip", "install", requirement], env=_install_env())
    _mark(target)


def _create_venv(target: Path, *, with_pip: bool = True) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    # symlinks as `python -m venv` makes them on POSIX; ensurepip ignores pip's config.
    venv.EnvBuilder(with_pip=with_pip, symlinks=True).create(target)
    return target / "bin" / "python"


def _interpreter() -> str:
    """What a venv made by this interpreter's venv module depends on."""
    return f"{sys.base_prefix} {platform.python_version()}\n"


def _stale(target: Path, *sources: Path) -> bool:
    marker = target / MARKER
    if not marker.is_file() or marker.read_text(encoding="utf-8") != _interpreter():
        return True
    built = marker.stat().st_mtime
    return any(source.stat().st_mtime > built for source in sources)


def _mark(target: Path) -> None:
    # Written last, so a build that failed half-way is rebuilt next time.
    (target / MARKER).write_text(_interpreter(), encoding="utf-8")


def _install_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PIP_") or name in PIP_REACH
    }


def _run_build(command: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, encoding="utf-8", check=False
    )
    if done.returncode != 0:
        raise BuildFailed(
            f"{shlex.join(command)} exited {done.returncode}\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def _locked_version(name: str) -> str:
    found = re.search(
        rf"^{re.escape(name)}==(\S+)", LOCK.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    if found is None:
        raise BuildFailed(f"requirements.txt pins no {name}")
    return found.group(1)


def _stdlib_bytecode(python: str) -> str:
    """A line on how much of `python`'s standard library lacks bytecode, and what follows."""
    stdlib, total, missing = _run_build([python, "-c", STDLIB_BYTECODE]).rsplit(maxsplit=2)
    line = f"standard library {stdlib}: {missing} of {total} modules without bytecode"
    if int(missing):
        line += (
            "; the action compiles those it imports on every run (PYTHONDONTWRITEBYTECODE), "
            "which the image does not, and twine only on its first"
        )
    return line


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _write_wrapper(root: Path, tool: Tool, target: str) -> Path:
    wrapper = root / f"measure-{tool}"
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
    expected = {path.name: sha256(path) for path in paths}
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
    index: LocalIndex,
    scenario: Scenario,
    *,
    sides: Sides,
    wrappers: dict[Tool, Path],
    repeat: int,
    warmup: int,
    oidc_latency: float,
) -> list[Measurement]:
    runners: dict[Tool, Callable[[LocalIndex, Scenario, Sides, Path], Measurement]] = {
        "action": _run_action,
        "baseline": _run_baseline,
    }
    measurements: list[Measurement] = []
    for number in range(-warmup, repeat):
        for tool in TOOLS:
            index.reset()
            index.file_size_limit = None
            index.oidc_latency = oidc_latency
            measurement = runners[tool](index, scenario, sides, wrappers[tool])
            label = f"warm-up {number + warmup + 1}" if number < 0 else f"run {number + 1}"
            print(
                f"  {scenario.name:5} {tool:8} {label:9} {measurement.wall:8.2f} s wall "
                f"{measurement.cpu:7.2f} s cpu {measurement.peak_rss_kib / 1024:7.1f} MiB peak"
            )
            if number >= 0:
                measurements.append(measurement)
    return measurements


def _run_action(index: LocalIndex, scenario: Scenario, sides: Sides, wrapper: Path) -> Measurement:
    report = scenario.workspace.parent / "action-report.json"
    report.unlink(missing_ok=True)
    run = run_action(
        index,
        scenario.workspace,
        env={**sides.action_env, REPORT_VARIABLE: str(report), "PIP_CONFIG_FILE": os.devnull},
        python=str(wrapper),
        entrypoint=sides.entrypoint,
        timeout=RUN_TIMEOUT,
    )
    output = f"exit {run.returncode}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    output += f"\n--- summary\n{run.summary}"
    _check(index, scenario, "action", run.returncode, output)
    leaked = run.leaked(index)
    if leaked:
        raise RunFailed(f"{scenario.name}/action: {len(leaked)} secret(s) visible\n{output}")
    return _read_report(report, scenario, "action")


def _run_baseline(
    index: LocalIndex, scenario: Scenario, sides: Sides, wrapper: Path
) -> Measurement:
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


if __name__ == "__main__":
    sys.exit(main())
