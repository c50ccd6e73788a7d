"""The action's image without Docker, as the Dockerfile builds it.

The Dockerfile's own `pip install` line runs, under its ENV, into a fresh virtualenv
standing for the image's Python; what it COPYs is copied under `root/` (so /app is
`root/app`, caches left out as .dockerignore leaves them out); the compileall RUN's
options compile the venv's site-packages and /app. The ENTRYPOINT's script then runs
under the venv's python with the Dockerfile's ENV (less PIP_*, which only steer pip).

Where this differs from the image: the interpreter is the one running this code (not
the image's CPython 3.13), and its standard library is used as it is, not recompiled.
A Dockerfile step this does not know (any other RUN) is an error: better no image than
one that is not the Dockerfile's.
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import sys
import venv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.localindex.proc import pip_free_env, run
from tests.logical_lines import instructions

__all__ = ["Dockerfile", "Image", "ImageError", "build_image", "build_venv"]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
_COMPILEALL = ["python", "-m", "compileall"]
_MARKER = ".installed"


class ImageError(Exception):
    """A Dockerfile this cannot reproduce."""


@dataclass(frozen=True)
class Dockerfile:
    """What the Dockerfile does that the emulation reproduces, as written."""

    env: dict[str, str]
    copies: list[tuple[str, str]]
    """(source in the repository, destination as written) per COPY source."""
    install: list[str]
    """The pip install RUN's argv, from "pip"."""
    compile_options: list[str]
    compile_paths: list[PurePosixPath]
    entrypoint: PurePosixPath
    """The script the ENTRYPOINT's python runs."""

    @classmethod
    def read(cls, path: Path = DOCKERFILE) -> Dockerfile:
        env: dict[str, str] = {}
        copies: list[tuple[str, str]] = []
        install: list[str] = []
        compile_argv: list[str] = []
        entrypoint: list[str] = []
        for keyword, arguments in instructions(path.read_text(encoding="utf-8")):
            if keyword == "ENV":
                env |= dict(pair.split("=", 1) for pair in shlex.split(arguments))
            elif keyword == "COPY":
                *sources, destination = shlex.split(arguments)
                copies += [(source, destination) for source in sources]
            elif keyword == "RUN":
                argv = shlex.split(arguments)
                if argv[:2] == ["pip", "install"]:
                    install = argv
                elif argv[:3] == _COMPILEALL:
                    compile_argv = argv[3:]
                else:
                    raise ImageError(f"the Dockerfile runs {arguments!r}, unknown here")
            elif keyword == "ENTRYPOINT":
                entrypoint = json.loads(arguments)
        if not install or not compile_argv or entrypoint[:1] != ["python"] or len(entrypoint) != 2:
            raise ImageError(
                "the Dockerfile lacks a pip install RUN, a compileall RUN or a "
                '["python", SCRIPT] ENTRYPOINT'
            )
        return cls(
            env=env,
            copies=copies,
            install=install,
            compile_options=[arg for arg in compile_argv if not arg.startswith("/")],
            compile_paths=[PurePosixPath(arg) for arg in compile_argv if arg.startswith("/")],
            entrypoint=PurePosixPath(entrypoint[1]),
        )

    def app_roots(self) -> list[PurePosixPath]:
        """The top-level image directories the COPYs write to (/app)."""
        return sorted({PurePosixPath("/", PurePosixPath(dest).parts[1]) for _, dest in self.copies})


@dataclass(frozen=True)
class Image:
    """The image reproduced: its filesystem root, its Python, how it starts."""

    root: Path
    python: Path
    dockerfile: Dockerfile

    def path(self, inside: PurePosixPath | str) -> Path:
        return self.root / PurePosixPath(inside).relative_to("/")

    @property
    def entrypoint(self) -> Path:
        return self.path(self.dockerfile.entrypoint)

    @property
    def env(self) -> dict[str, str]:
        """The Dockerfile's ENV as the action sees it (PIP_* only steer pip)."""
        return {k: v for k, v in self.dockerfile.env.items() if not k.startswith("PIP_")}


def build_image(target: Path, *, compile_bytecode: bool = True, reuse: bool = False) -> Image:
    """The image under `target` (root/ and venv/).

    With `reuse`, the venv is kept while its marker is newer than requirements.txt and the
    Dockerfile and names this interpreter; /app is copied afresh every time.
    """
    dockerfile = Dockerfile.read()
    root, environment = target / "root", target / "venv"
    python = environment / "bin" / "python"
    image = Image(root, python, dockerfile)
    # First: the install reads the lock from the copy, as the image's reads /app's.
    _copy_app(image)
    if not (reuse and fresh(environment, ROOT / "requirements.txt", DOCKERFILE)):
        _install(image, environment, compile_bytecode=compile_bytecode)
    if compile_bytecode:
        roots = dockerfile.app_roots()
        app_paths = [
            image.path(path)
            for path in dockerfile.compile_paths
            if any(path == top or top in path.parents for top in roots)
        ]
        run([python, "-m", "compileall", *dockerfile.compile_options, *app_paths])
    return image


def _copy_app(image: Image) -> None:
    for top in image.dockerfile.app_roots():
        shutil.rmtree(image.path(top), ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.py[co]")
    for source, destination in image.dockerfile.copies:
        target = image.path(destination)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            # COPY's rule: a destination ending in / is a directory to copy into.
            if destination.endswith("/"):
                target /= Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)


def _install(image: Image, environment: Path, *, compile_bytecode: bool) -> None:
    shutil.rmtree(environment, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, symlinks=True).create(environment)
    python = environment / "bin" / "python"
    arguments = [
        str(image.path(a)) if a.startswith("/") else a for a in image.dockerfile.install[1:]
    ]
    # The Dockerfile's ENV applies to its RUN lines, over what reaching the registry needs.
    run(
        [python, "-m", "pip", *arguments],
        env=pip_free_env(reach_registry=True) | image.dockerfile.env,
    )
    if compile_bytecode:
        # The image compiles its whole Python library, site-packages included.
        query = "import sysconfig; print(*{sysconfig.get_path(p) for p in ('purelib', 'platlib')})"
        site_packages = run([python, "-c", query]).stdout.split()
        run([python, "-m", "compileall", *image.dockerfile.compile_options, *site_packages])
    _mark(environment)


def build_venv(target: Path, requirements: list[str], *, reuse: bool = False) -> Path:
    """A venv at `target` with `pip install <requirements>` from the registry, as a
    maintainer installs a tool (dependencies resolved, bytecode compiled); its python.

    With `reuse`, kept while its marker is newer than requirements.txt and names this
    interpreter."""
    python = target / "bin" / "python"
    if reuse and fresh(target, ROOT / "requirements.txt"):
        return python
    shutil.rmtree(target, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, symlinks=True).create(target)
    run([python, "-m", "pip", "install", *requirements], env=pip_free_env(reach_registry=True))
    _mark(target)
    return python


def _interpreter() -> str:
    return f"{sys.base_prefix} {platform.python_version()}\n"


def _mark(target: Path) -> None:
    # Written last, so a build that failed half-way is rebuilt next time.
    (target / _MARKER).write_text(_interpreter(), encoding="utf-8")


def fresh(target: Path, *sources: Path) -> bool:
    """Whether `target` was built by this interpreter after every one of `sources`."""
    marker = target / _MARKER
    if not marker.is_file() or marker.read_text(encoding="utf-8") != _interpreter():
        return False
    built = marker.stat().st_mtime
    return all(source.stat().st_mtime <= built for source in sources)
