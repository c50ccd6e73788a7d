"""The action's image without Docker, as the Dockerfile builds it in two stages.

The build stage: what it COPYs from the build context goes under `build/` (its
filesystem, so /app/requirements.txt is `build/app/requirements.txt`), and its own
`pip install` line runs as written, under the stage's ENV, by the pip of a fresh
virtualenv standing for the base image's Python (`build-venv/`, pip included), its
absolute paths (the lock, the --prefix) mapped under `build/`.

The image's stage: a fresh virtualenv without pip (`venv/`) stands for the image's
Python once the stage's rm has taken pip away; what its COPY --from takes from the build
stage (the prefix's site-packages) goes into the venv's site-packages; what it COPYs from
the build context goes under `root/` (/app is `root/app`, caches left out as
.dockerignore leaves them out). Its check that no installer is left runs in the venv
under the image's ENV and fails the build as it fails the image's; its compileall
options compile the venv's site-packages and /app. The ENTRYPOINT's script then runs
under the venv's python with the image's ENV.

Where this differs from the image: the interpreter is the one running this code (not
the image's CPython 3.13: its lib/pythonX.Y stands for the lib/python3.13 the COPY
--from names), and its standard library is used as it is, not recompiled. The rm is not
run, the venv having no pip to remove (tests/test_supply_chain.py checks its paths
against pip's own RECORD). A Dockerfile step this does not know (any other RUN or
instruction, a third stage, another COPY --from) is an error: better no image than one
that is not the Dockerfile's.
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import shutil
import sys
import venv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.localindex.dockerfile import Copy, Stage, stages
from tests.localindex.proc import pip_free_env, run

__all__ = ["Dockerfile", "Image", "ImageError", "build_image", "build_venv"]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
_COMPILEALL = ["python", "-m", "compileall"]
_UNDERSTOOD = {"ENV", "COPY", "RUN", "ENTRYPOINT"}
# Where the image's COPY --from may put packages: the image's Python's site-packages.
_SITE_PACKAGES = re.compile(r"/usr/local/lib/python3\.\d+/site-packages/?")
# The image's Python version in a path of the build stage's, for this interpreter's.
_LIB_PYTHON = re.compile(r"/lib/python3\.\d+/")
_MARKER = ".installed"


class ImageError(Exception):
    """A Dockerfile this cannot reproduce."""


@dataclass(frozen=True)
class Dockerfile:
    """What the Dockerfile does that the emulation reproduces, as written."""

    build: Stage
    """The build stage, where pip installs the lock."""
    final: Stage
    """The image's stage."""
    install: list[str]
    """The build stage's pip install RUN, as argv from "pip"."""
    packages: Copy
    """The image's one COPY --from the build stage: the installed packages."""
    remove: list[str]
    """The image's rm of pip, as argv from "rm"."""
    check: list[str]
    """The image's check that no installer is left, as argv from "python"."""
    compile_options: list[str]
    """The compileall RUN's options, its paths left out."""
    compile_paths: list[PurePosixPath]
    entrypoint: PurePosixPath
    """The script the ENTRYPOINT's python runs."""

    @classmethod
    def read(cls, path: Path = DOCKERFILE) -> Dockerfile:
        build, final = _two_stages(path)
        remove, check, compile_argv = _image_run(final)
        return cls(
            build=build,
            final=final,
            install=_build_run(build),
            packages=_packages(build, final),
            remove=remove,
            check=check,
            compile_options=[arg for arg in compile_argv if not arg.startswith("/")],
            compile_paths=[PurePosixPath(arg) for arg in compile_argv if arg.startswith("/")],
            entrypoint=_entrypoint(final),
        )

    @property
    def env(self) -> dict[str, str]:
        """The image's ENV."""
        return self.final.env()

    @property
    def install_env(self) -> dict[str, str]:
        """The build stage's ENV, which its pip install runs under."""
        return self.build.env()

    @property
    def copies(self) -> list[tuple[str, str]]:
        """(source in the repository, destination as written) per COPY source the image's
        stage takes from the build context."""
        return context_copies(self.final)

    @property
    def build_copies(self) -> list[tuple[str, str]]:
        """The same for the build stage."""
        return context_copies(self.build)

    def app_roots(self) -> list[PurePosixPath]:
        """The top-level image directories the COPYs from the build context write to (/app)."""
        return sorted({PurePosixPath("/", PurePosixPath(dest).parts[1]) for _, dest in self.copies})


def context_copies(stage: Stage) -> list[tuple[str, str]]:
    """(source, destination as written) per source `stage` copies from the build context."""
    return [
        (source, copy.destination)
        for copy in stage.copies()
        if copy.stage is None
        for source in copy.sources
    ]


def _two_stages(path: Path) -> tuple[Stage, Stage]:
    """The build stage and the image's, each saying only what is reproduced here."""
    try:
        found = stages(path.read_text(encoding="utf-8"))
        for stage in found:
            # Every RUN line and COPY flag read now, so an unknown one fails here.
            stage.commands()
            stage.copies()
    except ValueError as error:
        raise ImageError(f"the Dockerfile is not a build stage and an image: {error}") from error
    if len(found) != 2:
        raise ImageError(f"the Dockerfile has {len(found)} stages, not a build stage and the image")
    for stage in found:
        unknown = [i for i in stage.instructions if i.keyword not in _UNDERSTOOD]
        if unknown:
            raise ImageError(f"the Dockerfile says {unknown[0]}, unknown here")
    build, final = found
    return build, final


def _build_run(build: Stage) -> list[str]:
    """The build stage's one command: its pip install."""
    commands = build.commands()
    if len(commands) != 1 or commands[0][:2] != ["pip", "install"]:
        raise ImageError(f"the build stage runs {commands!r}, not one pip install")
    if any(copy.stage is not None for copy in build.copies()):
        raise ImageError("the build stage copies from another stage")
    return commands[0]


def _packages(build: Stage, final: Stage) -> Copy:
    """The image's one COPY --from the build stage, into its Python's site-packages."""
    taken = [copy for copy in final.copies() if copy.stage is not None]
    if (
        build.name is None
        or len(taken) != 1
        or taken[0].stage != build.name
        or len(taken[0].sources) != 1
        or not _SITE_PACKAGES.fullmatch(taken[0].destination)
    ):
        raise ImageError("the image does not take one folder from the build stage")
    return taken[0]


def _image_run(final: Stage) -> tuple[list[str], list[str], list[str]]:
    """The image's rm of pip, its check that no installer is left, and compileall's
    arguments; any other command is an error."""
    remove: list[str] = []
    check: list[str] = []
    compile_argv: list[str] = []
    for argv in final.commands():
        if argv[:2] == ["rm", "-rf"] and not remove:
            # The venv standing for the image's Python is made without pip.
            remove = argv
        elif argv[:2] == ["python", "-c"] and not check:
            check = argv
        elif argv[:3] == _COMPILEALL and not compile_argv:
            compile_argv = argv[3:]
        else:
            raise ImageError(f"the image runs {shlex.join(argv)!r}, unknown here")
    if not (remove and check and compile_argv):
        raise ImageError("the image's stage lacks an rm -rf, a `python -c` check or a compileall")
    return remove, check, compile_argv


def _entrypoint(final: Stage) -> PurePosixPath:
    """The script of the image's ["python", SCRIPT] ENTRYPOINT."""
    entrypoint = [arg for i in final.only("ENTRYPOINT") for arg in json.loads(i.arguments)]
    if entrypoint[:1] != ["python"] or len(entrypoint) != 2:
        raise ImageError(f'the ENTRYPOINT {entrypoint!r} is not ["python", SCRIPT]')
    return PurePosixPath(entrypoint[1])


@dataclass(frozen=True)
class Image:
    """The image reproduced: its filesystem root, its Python, how it starts; and the build
    stage's Python with the packages it installed for the image to take."""

    root: Path
    python: Path
    dockerfile: Dockerfile
    build_python: Path
    """The build stage's Python: the base image's, pip included."""
    packages: Path
    """What the image's COPY --from takes, where the build stage's pip installed it."""

    def path(self, inside: PurePosixPath | str) -> Path:
        return self.root / PurePosixPath(inside).relative_to("/")

    @property
    def entrypoint(self) -> Path:
        return self.path(self.dockerfile.entrypoint)

    @property
    def env(self) -> dict[str, str]:
        """The image's ENV, as the action sees it."""
        return self.dockerfile.env


def build_image(target: Path, *, compile_bytecode: bool = True, reuse: bool = False) -> Image:
    """The image under `target` (build/ and build-venv/ for the build stage, root/ and
    venv/ for the image).

    With `reuse`, both stages are kept while the image venv's marker is newer than
    requirements.txt and the Dockerfile and names this interpreter; /app is copied afresh
    every time.
    """
    dockerfile = Dockerfile.read()
    build_root, environment = target / "build", target / "venv"
    source = _LIB_PYTHON.sub(f"/lib/{_python_dir()}/", dockerfile.packages.sources[0])
    image = Image(
        root=target / "root",
        python=environment / "bin" / "python",
        dockerfile=dockerfile,
        build_python=target / "build-venv" / "bin" / "python",
        packages=build_root / PurePosixPath(source).relative_to("/"),
    )
    _copy_context(dockerfile.copies, image.root, fresh_roots=dockerfile.app_roots())
    if not (reuse and fresh(environment, ROOT / "requirements.txt", DOCKERFILE)):
        _build_stage(image, build_root)
        _image_stage(image, environment, compile_bytecode=compile_bytecode)
    if compile_bytecode:
        roots = dockerfile.app_roots()
        app_paths = [
            image.path(path)
            for path in dockerfile.compile_paths
            if any(path == top or top in path.parents for top in roots)
        ]
        run([image.python, "-m", "compileall", *dockerfile.compile_options, *app_paths])
    return image


def _copy_context(
    copies: list[tuple[str, str]], root: Path, *, fresh_roots: list[PurePosixPath]
) -> None:
    """What COPY takes from the build context, under `root`, as .dockerignore lets it in."""
    for top in fresh_roots:
        shutil.rmtree(root / top.relative_to("/"), ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.py[co]")
    for source, destination in copies:
        target = root / PurePosixPath(destination).relative_to("/")
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=ignore, dirs_exist_ok=True)
        else:
            # COPY's rule: a destination ending in / is a directory to copy into.
            if destination.endswith("/"):
                target /= Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target)


def _build_stage(image: Image, build_root: Path) -> None:
    """The build stage: its COPYs under `build_root`, then its pip line as written."""
    dockerfile = image.dockerfile
    shutil.rmtree(build_root, ignore_errors=True)
    _copy_context(dockerfile.build_copies, build_root, fresh_roots=[])
    builder = image.build_python.parent.parent
    shutil.rmtree(builder, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, symlinks=True).create(builder)
    arguments = [_under(build_root, argument) for argument in dockerfile.install[1:]]
    # The stage's ENV applies to its RUN lines, over what reaching the registry needs.
    run(
        [image.build_python, "-m", "pip", *arguments],
        env=pip_free_env(reach_registry=True) | dockerfile.install_env,
    )
    if not image.packages.is_dir():
        raise ImageError(
            f"the build stage's pip installed nothing where the image's COPY --from looks: "
            f"{dockerfile.packages.sources[0]}"
        )


def _image_stage(image: Image, environment: Path, *, compile_bytecode: bool) -> None:
    """The image's Python: without pip, given what the COPY --from takes, checked and
    compiled as the image's RUN does."""
    dockerfile = image.dockerfile
    shutil.rmtree(environment, ignore_errors=True)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(environment)
    query = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = run([image.python, "-c", query]).stdout.strip()
    shutil.copytree(image.packages, site_packages, dirs_exist_ok=True)
    # The image's build fails here if pip, setuptools or wheel can be imported.
    run([image.python, *dockerfile.check[1:]], env=pip_free_env() | dockerfile.env)
    if compile_bytecode:
        # The image compiles its whole Python library, site-packages included.
        run([image.python, "-m", "compileall", *dockerfile.compile_options, site_packages])
    _mark(environment)


def _under(root: Path, argument: str) -> str:
    """`argument` with the absolute path it names (`/x` or `--option=/x`) under `root`."""
    name, equals, value = argument.rpartition("=")
    if not value.startswith("/"):
        return argument
    return f"{name}{equals}{root / value.lstrip('/')}"


def _python_dir() -> str:
    return f"python{sys.version_info[0]}.{sys.version_info[1]}"


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
