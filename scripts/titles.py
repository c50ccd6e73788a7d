"""Every title `oidc_publish` can show a user, read from its source.

A title heads an annotation and its section of the step summary. The source gives one in two
ways: an error class's `title`, and the title handed to anything that takes one: a class or
function of the package with a parameter or dataclass field named `title` (`Diagnostic`,
`Problem`, `Refusal`, an error built with its own title, a helper that makes warnings).
Methods other than constructors are not counted: `group(title)` names a group of log lines.

A title handed on from another (`error.title`, a helper's own `title` parameter) is counted
where it was first written. Parts made at run time (`f"Retrying {label}"`) become
placeholders, `Retrying <label>`; a literal `<project>` in a title that is filled in later
is one too. A title written in any other way is an error here, so none goes unseen.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "oidc_publish"
_PLACEHOLDER = re.compile(r"(<[^<>]+>)")


@dataclass(frozen=True)
class Title:
    """One place in the source that gives a title, with the fix given beside it."""

    pattern: str
    """The title, each part made at run time as `<the expression>`."""
    where: str
    fix: str | None
    """The fix given with it when the source spells it out ("" when none is given); None
    when it is made at run time."""
    level: str | None = None
    """`error`, `warning` or `notice` when the source says so beside the title."""

    def matches(self, text: str) -> bool:
        """Whether `text` reads as this title, a placeholder standing for any words
        (a placeholder of `text` among them)."""
        parts = _PLACEHOLDER.split(self.pattern)
        regex = "".join(".+" if i % 2 else re.escape(part) for i, part in enumerate(parts))
        return re.fullmatch(regex, text) is not None


class UnreadableTitle(Exception):
    """A title the source gives in a form this reader does not follow."""


def titles() -> list[Title]:
    """Every title the package's modules give, in the order of their files and lines."""
    return read(
        {
            f"oidc_publish/{path.name}": (
                path.read_text(encoding="utf-8"),
                vars(importlib.import_module(f"oidc_publish.{path.stem}")),
            )
            for path in sorted(PACKAGE.glob("*.py"))
        }
    )


def read(sources: Mapping[str, tuple[str, Mapping[str, object]]]) -> list[Title]:
    """The titles of `sources`: file name to (source, the module's globals, which name the
    constants a fix may be made of)."""
    trees = {name: ast.parse(source) for name, (source, _) in sources.items()}
    takers: dict[str, _Taker] = {}
    for name, tree in trees.items():
        takers |= _takers(tree, sources[name][1])
    found: list[Title] = []
    for name, tree in trees.items():
        found += _Reader(name, sources[name][1], takers).read(tree)
    return found


@dataclass(frozen=True)
class _Taker:
    """A class or function that takes a title: its positional parameters, and the
    defaults of the ones it has, with the globals they are read in."""

    positional: list[str]
    defaults: dict[str, ast.expr]
    namespace: Mapping[str, object]


def _takers(tree: ast.Module, namespace: Mapping[str, object]) -> dict[str, _Taker]:
    found: dict[str, _Taker] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _has_title(node.args):
            found[node.name] = _taker(node.args, namespace)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and item.name == "__init__"
                    and _has_title(item.args)
                ):
                    found[node.name] = _taker(item.args, namespace, drop=1)
            fields = [
                item
                for item in node.body
                if isinstance(item, ast.AnnAssign)
                and isinstance(item.target, ast.Name)
                and "ClassVar" not in ast.unparse(item.annotation)
            ]
            if _is_dataclass(node) and any(_name(f.target) == "title" for f in fields):
                found[node.name] = _Taker(
                    [_name(f.target) for f in fields],
                    {_name(f.target): f.value for f in fields if f.value is not None},
                    namespace,
                )
    return found


def _has_title(args: ast.arguments) -> bool:
    return any(a.arg == "title" for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])


def _taker(args: ast.arguments, namespace: Mapping[str, object], drop: int = 0) -> _Taker:
    positional = [a.arg for a in [*args.posonlyargs, *args.args]][drop:]
    defaults = dict(
        zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
    )
    defaults |= {
        a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
    }
    return _Taker(positional, defaults, namespace)


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any("dataclass" in ast.unparse(d) for d in node.decorator_list)


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else ""


class _Reader:
    """Reads one module's titles, knowing the function each call is in."""

    def __init__(
        self, file: str, namespace: Mapping[str, object], takers: Mapping[str, _Taker]
    ) -> None:
        self.file = file
        self.namespace = namespace
        self.takers = takers

    def read(self, tree: ast.Module) -> list[Title]:
        return list(self._visit(tree, None))

    def _visit(self, node: ast.AST, function: ast.FunctionDef | None) -> Iterator[Title]:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and [_name(t) for t in item.targets] == ["title"]:
                    yield from self._titles(item.value, None, fix=None, level="error")
        if isinstance(node, ast.Call):
            yield from self._call(node, function)
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef) else function
            yield from self._visit(child, inner)

    def _call(self, call: ast.Call, function: ast.FunctionDef | None) -> Iterator[Title]:
        func = call.func
        callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        taker = self.takers.get(callee)
        if taker is None:
            return
        title = self._argument(call, taker, "title")
        if title is None:
            return
        fix_given = self._argument(call, taker, "fix")
        if fix_given is not None:
            fix = _fold(fix_given, self.namespace, function)
        elif "fix" in taker.defaults:
            fix = _fold(taker.defaults["fix"], taker.namespace, None)
        else:
            fix = ""
        level = self._argument(call, taker, "level")
        said = level.attr.lower() if isinstance(level, ast.Attribute) else None
        yield from self._titles(title, function, fix=fix, level=said)

    @staticmethod
    def _argument(call: ast.Call, taker: _Taker, name: str) -> ast.expr | None:
        for keyword in call.keywords:
            if keyword.arg == name:
                return keyword.value
        if name in taker.positional:
            index = taker.positional.index(name)
            if index < len(call.args):
                return call.args[index]
        return None

    def _titles(
        self,
        node: ast.expr,
        function: ast.FunctionDef | None,
        *,
        fix: str | None,
        level: str | None,
    ) -> Iterator[Title]:
        where = f"{self.file}:{node.lineno}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield Title(node.value, where, fix, level)
        elif isinstance(node, ast.JoinedStr):
            yield Title(self._pattern(node, function), where, fix, level)
        elif _handed_on(node):
            return  # counted where it was written
        elif isinstance(node, ast.Name) and function is not None:
            if node.id == "title" and node.id in _parameters(function):
                return  # this function takes a title: counted where it is called
            values = list(_assigned(node.id, function))
            if not values:
                raise UnreadableTitle(f"{where}: the title {node.id} is given no value here")
            for value in values:
                yield from self._titles(value, function, fix=fix, level=level)
        else:
            raise UnreadableTitle(f"{where}: cannot read the title {ast.unparse(node)}")

    def _pattern(self, node: ast.JoinedStr, function: ast.FunctionDef | None) -> str:
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                folded = _fold(value, self.namespace, function)
                shown = ast.unparse(value.value) if isinstance(value, ast.FormattedValue) else ""
                parts.append(f"<{shown}>" if folded is None else folded)
        return "".join(parts)


def _handed_on(node: ast.expr) -> bool:
    """Whether `node` is another title, as it is or through its methods:
    `error.title`, `self.specific_title`, `refusal.title.replace(...)`."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    return isinstance(node, ast.Attribute) and node.attr.endswith("title")


def _parameters(function: ast.FunctionDef) -> set[str]:
    args = function.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def _assigned(name: str, function: ast.FunctionDef) -> Iterator[ast.expr]:
    """The values `name` is given in `function`, one per assignment (a tuple's, item by
    item)."""
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if _name(target) == name:
                yield node.value
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                for item, value in zip(target.elts, node.value.elts, strict=True):
                    if _name(item) == name:
                        yield value


def _fold(
    node: ast.expr, namespace: Mapping[str, object], function: ast.FunctionDef | None
) -> str | None:
    """The text `node` always stands for, or None when it is made at run time: constants,
    names of constants (the module's, or assigned once in `function`), and f-strings and
    sums of those."""
    if isinstance(node, ast.Name):
        return _constant(node.id, namespace, function)
    if isinstance(node, ast.FormattedValue):
        plain = node.conversion == -1 and not node.format_spec
        return _fold(node.value, namespace, function) if plain else None
    if isinstance(node, ast.JoinedStr):
        parts = node.values
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
    else:
        return (
            node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
        )
    folded = [_fold(part, namespace, function) for part in parts]
    return "".join(f for f in folded if f is not None) if None not in folded else None


def _constant(
    name: str, namespace: Mapping[str, object], function: ast.FunctionDef | None
) -> str | None:
    """The text `name` stands for: its one assignment in `function`, or the module's
    constant; None for a parameter, or a name given several values."""
    if function is not None and name in _parameters(function):
        return None
    local = list(_assigned(name, function)) if function is not None else []
    if len(local) == 1:
        return _fold(local[0], namespace, function)
    value = namespace.get(name) if not local else None
    return value if isinstance(value, str) else None
