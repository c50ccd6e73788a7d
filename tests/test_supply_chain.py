"""What the image is made of: requirements.txt, the Dockerfile, .dockerignore.

No Docker engine is needed. The Dockerfile is read stage by stage by
tests.localindex.dockerfile, and the image is built by tests.localindex.image,
the one emulation the benchmark uses too: the build stage's `pip install` line
runs as written, by a fresh virtualenv's pip, into the prefix it names; what the
image's COPY --from takes goes into a virtualenv without pip, standing for the
image's Python; what it copies from the build context goes into a directory
standing for the image's filesystem; its check that pip is gone runs there. Here
that check runs against both Pythons too, the rm is checked against pip's own
RECORD, and the ENTRYPOINT publishes to the local index. A broken lock, install
line, COPY or entrypoint fails here first. The image's package metadata shows
that the lock is complete, without asking any index.
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
from tests.localindex.dockerfile import Copy, Stage, stages
from tests.localindex.image import Dockerfile, Image, build_image
from tests.localindex.image import context_copies as image_context_copies
from tests.localindex.server import LocalIndex
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

# The base image's Python: its version names the image's site-packages.
PYTHON = "3.13"
SITE_PACKAGES = PurePosixPath(f"/usr/local/lib/python{PYTHON}/site-packages")
COMPILE = ["python", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]


@functools.cache
def dockerfile() -> tuple[Stage, Stage]:
    """The build stage, where pip installs the lock, and the image's stage."""
    found = stages((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert len(found) == 2, (
        f"the Dockerfile has {len(found)} stages, not a build stage and the image"
    )
    build, final = found
    assert build.name, "the build stage has no name for the image's COPY --from"
    return build, final


def context_copies(stage: Stage) -> list[tuple[str, PurePosixPath]]:
    """(source, destination) for each file or folder `stage` copies from the build context."""
    return [(source, PurePosixPath(dest)) for source, dest in image_context_copies(stage)]


def option(argv: list[str], name: str) -> str:
    """The one value of `name` in argv, given as `name=value` or `name value`."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]
    values += [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    assert len(values) == 1, f"{name} is given {len(values)} times in {shlex.join(argv)}"
    return values[0]


def pip_install() -> list[str]:
    # The install is all the build stage runs.
    build, _ = dockerfile()
    (argv,) = build.commands()
    assert argv[:2] == ["pip", "install"], f"the build stage's RUN is not pip: {argv}"
    return argv


def image_run() -> tuple[list[str], list[str], list[str]]:
    """The image's one RUN, in order: remove pip, check it is gone, compile."""
    _, final = dockerfile()
    assert len(final.only("RUN")) == 1, "the image's stage runs one RUN: one layer"
    remove, check, compile_all = final.commands()
    assert remove[:2] == ["rm", "-rf"], remove
    assert check[:2] == ["python", "-c"], check
    assert compile_all[: len(COMPILE)] == COMPILE, compile_all
    return remove, check, compile_all


def test_both_stages_start_from_one_base_pinned_by_digest() -> None:
    build, final = dockerfile()
    pinned = rf"python:{re.escape(PYTHON)}-slim@sha256:[0-9a-f]{{64}}"
    assert re.fullmatch(pinned, build.base), build.base
    # One Python installs the packages and runs them; Dependabot moves both lines together.
    assert final.base == build.base


def test_image_installs_exactly_the_lock_from_wheels() -> None:
    argv = pip_install()
    for flag in (
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--no-compile",
        "--ignore-installed",
    ):
        assert flag in argv, f"the Dockerfile's pip install lacks {flag}"
    assert option(argv, "--prefix").startswith("/")
    build, _ = dockerfile()
    installed_from = PurePosixPath(option(argv, "-r"))
    assert [installed_from] == [dest for src, dest in context_copies(build) if src == LOCK.name]
    assert not any(stage.only("ADD") for stage in dockerfile()), (
        "ADD fetches and unpacks; the image takes only what COPY names"
    )


def test_image_takes_the_installed_packages_and_the_app_and_nothing_else() -> None:
    build, final = dockerfile()
    prefix = PurePosixPath(option(pip_install(), "--prefix"))
    # From the build stage, the packages pip installed under its prefix: not its
    # console scripts (prefix/bin), not pip, not the build stage's files.
    installed_packages = prefix / SITE_PACKAGES.relative_to("/usr/local")
    assert [copy for copy in final.copies() if copy.stage is not None] == [
        Copy((f"{installed_packages}/",), f"{SITE_PACKAGES}/", build.name)
    ]
    # From the build context, the lock (the image's record of what it holds) and the app.
    assert sorted(context_copies(final)) == [
        ("entrypoint.py", PurePosixPath("/app/entrypoint.py")),
        ("oidc_publish/", PurePosixPath("/app/oidc_publish")),
        ("requirements.txt", PurePosixPath("/app/requirements.txt")),
    ]
    # Nothing installs in the image, so pip's settings stay in the build stage.
    for argv in final.commands():
        assert argv[:1] != ["pip"], argv
        assert argv[:3] != ["python", "-m", "pip"], argv
    assert final.env() == {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    # The runner starts the container as root in /github/workspace.
    for stage in dockerfile():
        assert not stage.only("USER"), stage.base
        assert not stage.only("WORKDIR"), stage.base


def test_image_compiles_its_python_and_the_app_once_pip_is_gone() -> None:
    # image_run() has checked the order: rm, the check, then compileall, in one layer.
    _, _, compile_all = image_run()
    paths = [PurePosixPath(arg) for arg in compile_all[len(COMPILE) :]]
    # The standard library with site-packages inside it, and /app.
    assert paths == [SITE_PACKAGES.parent, PurePosixPath("/app")]


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
    for stage in dockerfile():
        for source, _ in context_copies(stage):
            assert not dockerignore_excludes(source), (
                f".dockerignore drops {source}, which COPY needs"
            )
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


def test_emulation_reproduces_the_dockerfile_as_read_here() -> None:
    # The emulated image is built from the very lines the tests above check.
    build, final = dockerfile()
    emulated = Dockerfile.read()
    assert (emulated.build, emulated.final) == (build, final)
    assert emulated.install == pip_install()
    remove, check, compile_all = image_run()
    assert (emulated.remove, emulated.check) == (remove, check)
    assert emulated.compile_options + [str(p) for p in emulated.compile_paths] == compile_all[3:]
    assert emulated.packages in final.copies()
    assert emulated.env == final.env()


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    # Both stages as tests.localindex.image reproduces them, the image's bytecode left out.
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
    # No pip or setuptools beside them: the image's Python keeps none.
    found = {name: Version(info["version"]) for name, info in installed(image.python).items()}
    assert found == expected


def test_packages_the_image_takes_hold_no_bytecode_or_cache(image: Image) -> None:
    # The image compiles them itself (unchecked-hash); pip's own would depend on file times.
    leftovers = [
        path.relative_to(image.packages)
        for path in image.packages.rglob("*")
        if path.name == "__pycache__" or path.suffix in {".pyc", ".pyo"}
    ]
    assert leftovers == []


PIP_FILES = """\
import importlib.metadata, json, os, sys, sysconfig
bundled = os.path.join(sysconfig.get_path("stdlib"), "ensurepip", "_bundled")
print(json.dumps({
    "prefix": sys.prefix,
    "files": [os.path.normpath(f.locate()) for f in importlib.metadata.distribution("pip").files],
    "bundled": [os.path.join(bundled, name) for name in sorted(os.listdir(bundled))]
    if os.path.isdir(bundled) else [],
    "stdlib": sysconfig.get_path("stdlib"),
}))
"""


def test_image_removes_pip_with_everything_it_installed_and_nothing_else(image: Image) -> None:
    patterns = image.dockerfile.remove[2:]

    def removed(path: PurePosixPath) -> bool:
        # rm -rf takes a matched folder with everything in it.
        return any(
            fnmatch.fnmatchcase(str(p), pattern)
            for p in (path, *path.parents)
            for pattern in patterns
        )

    # pip as ensurepip installs it, read from the build venv's own RECORD and
    # placed where the base image has it: the venv's prefix is /usr/local there.
    found = json.loads(proc.run([image.build_python, "-c", PIP_FILES]).stdout)

    def in_image(path: str, prefix: str) -> PurePosixPath:
        parts = PurePosixPath(path).relative_to(prefix).parts
        if parts[:1] == ("lib",):
            parts = ("lib", f"python{PYTHON}", *parts[2:])
        return PurePosixPath("/usr/local", *parts)

    pip_files = [in_image(path, found["prefix"]) for path in found["files"]]
    stdlib_prefix = str(PurePosixPath(found["stdlib"]).parent.parent)
    pip_files += [in_image(path, stdlib_prefix) for path in found["bundled"]]
    # docker-library's Dockerfile links pip to pip3 after ensurepip ran.
    pip_files.append(PurePosixPath("/usr/local/bin/pip"))
    assert any(path.name == "__init__.py" for path in pip_files), found
    assert [str(path) for path in pip_files if not removed(path)] == []

    # Nothing the image needs: the lock's packages and the app stay.
    kept = [SITE_PACKAGES / path.relative_to(image.packages) for path in image.packages.rglob("*")]
    kept += [PurePosixPath("/") / path.relative_to(image.root) for path in image.root.rglob("*")]
    kept.append(PurePosixPath(f"/usr/local/bin/python{PYTHON}"))
    assert [str(path) for path in kept if removed(path)] == []


def test_image_build_fails_while_pip_or_setuptools_can_be_imported(image: Image) -> None:
    check = image.dockerfile.check[1:]
    env = proc.pip_free_env() | image.env
    # build_image ran it already; the image's Python passes it.
    done = proc.run([image.python, *check], env=env, check=False)
    assert done.returncode == 0, done.stderr
    # The build stage's Python has pip: the same check there must fail, and say so.
    builder = proc.run([image.build_python, *check], env=env, check=False)
    assert builder.returncode != 0
    assert "'pip'" in builder.stderr, builder.stderr


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
    _, final = dockerfile()
    (instruction,) = final.only("ENTRYPOINT")
    entrypoint = json.loads(instruction.arguments)
    assert entrypoint[0] == "python", "the ENTRYPOINT runs the image's own python"
    (script,) = entrypoint[1:]
    assert image.entrypoint == image.path(script)

    wheel = make_wheel(workspace / "dist", "supply-chain-probe", "1.0.0")
    # The image's Python, its ENV, its entrypoint script.
    result = run(python=str(image.python), env=image.env, entrypoint=image.entrypoint)

    assert result.returncode == 0, result.stdout + result.stderr
    assert index.files() == {wheel.name: sha256(wheel)}
