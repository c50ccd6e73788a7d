"""The Dockerfile read stage by stage, as BuildKit reads it: the one reader behind the
image emulation (image.py) and the tests of what the Dockerfile says.

Only what this repository's Dockerfile uses is understood: FROM [AS name], ENV, COPY
[--from=stage], RUN (commands joined by `&&`), ENTRYPOINT. Anything else a RUN line
says (pipes, `;`, redirections) raises, so a reader never reproduces half a step.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from tests.logical_lines import instructions


class DockerfileError(ValueError):
    """The Dockerfile says something this reader does not reproduce."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    stage: str | None
    """The stage named by --from, or None for the build context."""


@dataclass(frozen=True)
class Stage:
    base: str
    """The FROM image, as written."""
    name: str | None
    instructions: tuple[Instruction, ...]

    def only(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        return {
            name: value
            for instruction in self.only("ENV")
            for name, value in (pair.split("=", 1) for pair in shlex.split(instruction.arguments))
        }

    def copies(self) -> list[Copy]:
        found = []
        for instruction in self.only("COPY"):
            argv = shlex.split(instruction.arguments)
            flags = [arg for arg in argv if arg.startswith("--")]
            stage = None
            for flag in flags:
                if not flag.startswith("--from="):
                    raise DockerfileError(f"COPY flag {flag!r} is not understood: {instruction}")
                stage = flag.removeprefix("--from=")
            *sources, destination = [arg for arg in argv if not arg.startswith("--")]
            found.append(Copy(tuple(sources), destination, stage))
        return found

    def commands(self) -> list[list[str]]:
        """Every RUN's commands, in order, each as its argv: `a && b` is two."""
        found: list[list[str]] = []
        for instruction in self.only("RUN"):
            found += run_commands(instruction.arguments)
        return found


def run_commands(script: str) -> list[list[str]]:
    """A RUN line's shell script as the argv of each command it joins with `&&`."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token == "&&":
            commands.append([])
        elif token and set(token) <= set("();<>|&"):
            raise DockerfileError(f"shell syntax {token!r} in RUN {script!r} is not reproduced")
        else:
            commands[-1].append(token)
    if not all(commands):
        raise DockerfileError(f"an empty command in RUN {script!r}")
    return commands


def stages(dockerfile: str) -> list[Stage]:
    """The Dockerfile's stages in order; the last one is the image."""
    found: list[Stage] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            base, *alias = arguments.split()
            if alias and (len(alias) != 2 or alias[0].upper() != "AS"):
                raise DockerfileError(f"FROM {arguments!r} is not `FROM image [AS name]`")
            found.append(Stage(base, alias[1] if alias else None, ()))
        elif not found:
            raise DockerfileError(f"{keyword} before the first FROM")
        else:
            stage = found[-1]
            found[-1] = Stage(
                stage.base, stage.name, (*stage.instructions, Instruction(keyword, arguments))
            )
    return found
