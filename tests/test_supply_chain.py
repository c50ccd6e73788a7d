"""What the image is made of: requirements.txt, the Dockerfile, .dockerignore.

No Docker engine is needed. The Dockerfile's own `pip install` line is run into
a fresh virtualenv, what it copies is copied into a directory standing for the
image's filesystem, and its ENTRYPOINT publishes to the local index from there:
a broken lock, install line, COPY or entrypoint fails here first. The same
virtualenv's package metadata shows that the lock is complete, without asking
any index.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import platform
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import Run
from tests.localindex import proc
from tests.localindex.dists import make_wheel, sha256
from tests.localindex.image import Image, build_image
from tests.localindex.server import LocalIndex
from tests.logical_lines import instructions as instructions_of
from tests.logical_lines import logical_lines
from tests.tools import ROOT

LOCK = ROOT / "requirements.txt"
EXCLUDES = ROOT / "requirements.excludes"
# Left out of the lock on purpose: twine imports it only inside try/except, in
# an auth module this action never calls (see requirements.excludes).
EXCLUDED = {"keyring"}
# keyring's own dependencies; none of them may come back through another door.
# (cryptography did, on purpose: sigstore and pypi-attestations sign with it.)
KEYRING_ONLY = {
    "secretstorage",
    "jeepney",
    "jaraco-classes",
    "jaraco-context",
    "jaraco-functools",
}


# --- requirements.txt -------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]


def parse_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    for line in logical_lines(text):
        requirement_text, *options = re.split(r"\s+(?=--)", line)
        assert not requirement_text.startswith("-"), f"an option line in the lock: {line!r}"
        requirement = Requirement(requirement_text)
        (specifier,) = requirement.specifier  # exactly one: ==
        assert specifier.operator == "==", f"not pinned with ==: {requirement_text!r}"
        assert requirement.url is None, requirement_text
        assert not requirement.extras, requirement_text
        hashes = tuple(option.removeprefix("--hash=") for option in options)
        assert all(o.startswith("--hash=") for o in options), f"unexpected option in {line!r}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Pin(name, Version(specifier.version), requirement.marker, hashes)
    return pins


@functools.cache
def pins() -> dict[str, Pin]:
    return parse_lock(LOCK.read_text(encoding="utf-8"))


def linux(python: str, machine: str) -> dict[str, str]:
    """The marker environment of CPython `python` on Linux `machine`."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
        "extra": "",
    }


# The image's Python is 3.13, CI's run from 3.11 on; GitHub's Linux runners
# are x86-64 and arm64.
ENVIRONMENTS = [linux(py, arch) for py in ("3.11", "3.13") for arch in ("x86_64", "aarch64")]


def test_every_locked_package_is_pinned_with_sha256_hashes() -> None:
    assert pins(), "requirements.txt pins nothing"
    for pin in pins().values():
        assert pin.hashes, f"{pin.name} has no --hash"
        for digest in pin.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{pin.name}: {digest}"


def test_lock_header_records_how_to_regenerate_it() -> None:
    lines = LOCK.read_text(encoding="utf-8").splitlines()
    header = "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    command = re.search(r"^#\s+(uv pip compile .*)$", header, flags=re.MULTILINE)
    assert command, "requirements.txt does not start with the command that made it"
    for option in ("pyproject.toml", "--universal", "--generate-hashes", "--no-build"):
        assert option in command.group(1).split()
    assert "--excludes requirements.excludes" in command.group(1)


def test_lock_satisfies_pyproject_dependencies() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    for line in dependencies:
        wanted = Requirement(line)
        pin = pins().get(canonicalize_name(wanted.name))
        assert pin is not None, f"{wanted.name} is a dependency but not in requirements.txt"
        assert wanted.specifier.contains(pin.version, prereleases=True), (
            f"requirements.txt pins {pin.name}=={pin.version}, pyproject.toml wants {wanted}"
        )


def test_keyring_and_only_keyring_is_excluded() -> None:
    excluded = {
        canonicalize_name(line.strip())
        for line in EXCLUDES.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert excluded == EXCLUDED
    assert not (EXCLUDED | KEYRING_ONLY) & set(pins())


# --- the Dockerfile ----------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return [Instruction(keyword, arguments) for keyword, arguments in instructions_of(text)]


def only(keyword: str) -> list[Instruction]:
    return [i for i in instructions() if i.keyword == keyword]


def copies() -> list[tuple[str, PurePosixPath]]:
    pairs = []
    for instruction in only("COPY"):
        *sources, destination = shlex.split(instruction.arguments)
        assert not any(s.startswith("--") for s in sources), f"COPY flags: {instruction}"
        pairs += [(source, PurePosixPath(destination)) for source in sources]
    return pairs


COMPILE = "python -m compileall -q -j 0 --invalidation-mode unchecked-hash"


def pip_install() -> list[str]:
    # The install and the bytecode compilation are all the image runs at build time.
    install, compile_all = only("RUN")
    argv = shlex.split(install.arguments)
    assert argv[:2] == ["pip", "install"], f"the Dockerfile's first RUN is not pip: {install}"
    assert compile_all.arguments.startswith(COMPILE), compile_all
    return argv


def test_base_image_is_pinned_by_digest() -> None:
    (base,) = only("FROM")
    assert re.fullmatch(r"python:3\.13-slim@sha256:[0-9a-f]{64}", base.arguments), base


def test_image_installs_exactly_the_lock_from_wheels() -> None:
    argv = pip_install()
    for flag in ("--no-deps", "--require-hashes", "--only-binary=:all:", "--no-compile"):
        assert flag in argv, f"the Dockerfile's pip install lacks {flag}"
    requirement_files = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-r"]
    installed_from = [PurePosixPath(path) for path in requirement_files]
    assert installed_from == [dest for src, dest in copies() if src == LOCK.name]
    assert not only("ADD"), "ADD fetches and unpacks; the image takes only what COPY names"


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last rule wins)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            excluded = not negated
    return excluded


def test_build_context_is_what_the_image_copies_and_nothing_else() -> None:
    for source, _ in copies():
        assert not dockerignore_excludes(source), f".dockerignore drops {source}, which COPY needs"
    for path in (
        "oidc_publish/__pycache__/cli.cpython-313.pyc",
        ".git/config",
        ".venv/bin/python",
        ".github/workflows/release.yml",
        "tests/conftest.py",
        "scripts/pin_image.py",
        "pyproject.toml",
        "README.md",
        "Dockerfile",
    ):
        assert dockerignore_excludes(path), f".dockerignore lets {path} into the build context"


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    # The Dockerfile's own pip line into a fresh venv, its COPYs under a root directory.
    return build_image(tmp_path_factory.mktemp("image"), compile_bytecode=False)


def installed(python: Path) -> dict[str, dict[str, Any]]:
    """Name -> version and Requires-Dist of every package in `python`'s environment."""
    dump = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: {'version': d.version,"
        " 'requires': d.requires or []} for d in m.distributions()}))"
    )
    done = proc.run([python, "-c", dump])
    packages: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return {canonicalize_name(name): info for name, info in packages.items()}


def test_image_environment_is_exactly_the_lock(image: Image) -> None:
    here = linux(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())
    expected = {
        name: pin.version
        for name, pin in pins().items()
        if pin.marker is None or pin.marker.evaluate(here)
    }
    # pip and setuptools come from the venv (the image's from its base), not the lock.
    found = {
        name: Version(info["version"])
        for name, info in installed(image.python).items()
        if name not in {"pip", "setuptools"}
    }
    assert found == expected


def test_lock_holds_every_dependency_of_every_locked_package(image: Image) -> None:
    packages = installed(image.python)
    missing: dict[str, set[str]] = {}
    for name, info in packages.items():
        if name not in pins():
            continue
        for line in info["requires"]:
            needed = Requirement(line)
            if not any(needed.marker is None or needed.marker.evaluate(e) for e in ENVIRONMENTS):
                continue
            dependency = canonicalize_name(needed.name)
            pin = pins().get(dependency)
            if pin is None:
                missing.setdefault(dependency, set()).add(name)
                continue
            assert needed.specifier.contains(pin.version, prereleases=True), (
                f"{name} needs {needed}, the lock pins {pin.version}"
            )
    # Only twine asks for keyring, and only keyring is left out.
    assert missing == {"keyring": {"twine"}}


# --- the entrypoint, run as the image would run it ---------------------------


def test_image_entrypoint_publishes_to_the_local_index(
    image: Image, index: LocalIndex, workspace: Path, run: Run
) -> None:
    entrypoint = json.loads(only("ENTRYPOINT")[0].arguments)
    assert entrypoint[0] == "python", "the ENTRYPOINT runs the image's own python"
    (script,) = entrypoint[1:]

    wheel = make_wheel(workspace / "dist", "supply-chain-probe", "1.0.0")
    result = run(python=str(image.python), entrypoint=image.path(script))

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel)}
