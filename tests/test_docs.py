"""The README, action.yml and the code describe the same action."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import string
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from oidc_publish import errors
from oidc_publish.errors import VersionTagMismatch, catalogue
from oidc_publish.inputs import Inputs
from oidc_publish.release_rules import check_tag, version_in_tag
from scripts.titles import Title, UnreadableTitle, read, titles
from scripts.troubleshooting import BEGIN, END, render

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ACTION: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def table(heading: str) -> dict[str, list[str]]:
    """The README table under `heading`, keyed by its first column's code name."""
    section = README.split(heading, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`([\w-]+)`", cells[0])
        if name:
            rows[name.group(1)] = cells[1:]
    return rows


def test_every_input_is_read_by_the_code_with_the_same_default() -> None:
    declared = {
        name: spec for name, spec in ACTION["inputs"].items() if "deprecationMessage" not in spec
    }
    read = {field.alias or name: field for name, field in Inputs.model_fields.items()}
    assert set(declared) == set(read)
    for name, spec in declared.items():
        default = read[name].default
        declared_default = str(spec.get("default", ""))
        if declared_default.startswith("${{"):
            # The runner evaluates the expression; the code never sees it unevaluated.
            assert default is None, name
            continue
        expected = (
            ""
            if default is None
            else str(default).lower()
            if isinstance(default, bool)
            else default
        )
        assert declared_default == expected, name


def test_old_spellings_map_to_a_current_input() -> None:
    old = {n for n, spec in ACTION["inputs"].items() if "deprecationMessage" in spec}
    assert old == {
        "repository_url",
        "packages_dir",
        "verify_metadata",
        "skip_existing",
        "print_hash",
    }
    assert all(name.replace("_", "-") in ACTION["inputs"] for name in old)
    assert all(f"`{name}`" in README for name in old)


def test_readme_documents_every_input_with_its_default() -> None:
    documented = table("### Inputs")
    current = {n: s for n, s in ACTION["inputs"].items() if "deprecationMessage" not in s}
    assert set(documented) == set(current)
    for name, spec in current.items():
        default = spec.get("default")
        shown = documented[name][0]
        assert shown == (f"`{default}`" if default else "(empty)"), name


def test_readme_documents_every_output_and_the_code_writes_them() -> None:
    assert set(table("### Outputs")) == set(ACTION["outputs"])
    report = (ROOT / "oidc_publish" / "report.py").read_text(encoding="utf-8")
    for name in ACTION["outputs"]:
        assert f'"{name}"' in report, name


def test_troubleshooting_is_the_error_catalogue() -> None:
    assert render() in README, "run: python scripts/troubleshooting.py --write"


@functools.cache
def shown() -> list[Title]:
    """Every title the code can show, read from its source."""
    return titles()


@functools.cache
def documented() -> dict[str, str]:
    """Each title the README's Troubleshooting names, with what it says there: an error's
    section (a heading whose text starts with the error's code), or a row of a table with
    an Annotation column."""
    found: dict[str, str] = {}
    for section in re.split(r"^### ", README.split(BEGIN, 1)[1].split(END, 1)[0], flags=re.M):
        heading, _, body = section.partition("\n")
        if re.match(r"\s*`[a-z-]+`: ", body):
            found[heading] = body
        column = None
        for line in body.splitlines():
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not cells:
                column = None
            elif column is None:
                column = cells.index("Annotation") if "Annotation" in cells else -1
            elif column >= 0 and set(cells[0]) != {"-"}:
                found[cells[column]] = line
    return found


def test_every_title_the_code_can_show_has_its_entry_in_troubleshooting() -> None:
    missing = [
        f"{title.pattern} ({title.where})"
        for title in shown()
        if not any(title.matches(entry) for entry in documented())
    ]
    assert not missing, (
        "give each a note in scripts/troubleshooting.py, then run it with --write: "
        + "; ".join(missing)
    )


def test_every_title_in_troubleshooting_is_one_the_code_can_show() -> None:
    stale = [entry for entry in documented() if not any(t.matches(entry) for t in shown())]
    assert not stale, f"no code shows these titles any more: {stale}"


def test_each_title_in_troubleshooting_has_the_fix_the_code_gives_with_it() -> None:
    for title in shown():
        if title.fix:
            said = [text for entry, text in documented().items() if title.matches(entry)]
            assert any(title.fix in text for text in said), f"{title.pattern} ({title.where})"


def test_the_titles_of_the_catalogue_and_of_each_kind_of_annotation_are_read() -> None:
    patterns = {title.pattern for title in shown()}
    assert {cls.title for cls in catalogue()} <= patterns
    assert {
        "Several versions of one project",
        "No trusted publisher on <project>",
        "<project> does not exist on <index>",
        "Retrying <label>",
        "No attestations for this upload",
        "GitHub's attestation store needs `attestations: write`",
    } <= patterns
    # Made per run, and documented with its parts named.
    retrying = next(t for t in shown() if t.pattern == "Retrying <label>")
    assert retrying.matches("Retrying `<request or file>`")
    assert retrying.level == "notice"
    assert not retrying.matches("Retrying")


SOURCE = """
from dataclasses import dataclass


@dataclass
class Note:
    level: str
    title: str
    fix: str = ""


class Failure(Exception):
    title = "Something failed"

    def __init__(self, message, *, title, fix=HINT):
        super().__init__(message)


def warn(title, *, fix):
    return Note(Level.WARNING, title, fix=fix)


def run(name, fix):
    Note(Level.NOTICE, f"Retrying {name}", fix=f"{HINT} Again.")
    warn(f"About {CONSTANT}", fix=make(name))
    label, hint = "Named", "Once."
    Note(Level.WARNING, label, hint)
    Note(Level.ERROR, error.title)  # handed on: counted where it was written
    Note(Level.ERROR, refused.title.replace("<name>", name), fix)
    raise Failure("message", title=f"{name} failed")
"""


def line(text: str) -> str:
    """Where `text` is in SOURCE."""
    number = next(n for n, said in enumerate(SOURCE.splitlines(), 1) if text in said)
    return f"module.py:{number}"


def test_the_title_reader_follows_each_way_the_source_gives_a_title() -> None:
    found = read({"module.py": (SOURCE, {"HINT": "Wait.", "CONSTANT": "this"})})

    assert [(t.pattern, t.fix, t.level, t.where) for t in found] == [
        ("Something failed", None, "error", line('title = "Something failed"')),
        ("Retrying <name>", "Wait. Again.", "notice", line("Retrying")),
        ("About this", None, None, line("About")),
        ("Named", "Once.", "warning", line("label, hint =")),
        ("<name> failed", "Wait.", None, line("{name} failed")),
    ]


@pytest.mark.parametrize("title", ["make_title()", "TITLES[0]", "undefined", "name.title()"])
def test_a_title_the_reader_cannot_follow_is_an_error_not_a_title_missed(title: str) -> None:
    source = SOURCE + f"\n\ndef other(name):\n    Note(Level.ERROR, {title})\n"
    with pytest.raises(UnreadableTitle, match=re.escape(title.partition(".")[0])):
        read({"module.py": (source, {})})


def test_the_tag_forms_the_docs_give_are_the_ones_the_check_reads() -> None:
    # A name with a digit tells a separator from a prefix the check drops: `py3status-2.1`
    # reads as py3status 2.1 only if `-` separates.
    separators = {
        c
        for c in string.punctuation
        if version_in_tag(f"refs/tags/py3status{c}2.1", "py3status") == Version("2.1")
    }
    assert separators == set("-_./@")
    guardrail = README.split("- **The tag names the version.**", 1)[1].split("\n- ", 1)[0]
    explanation = VersionTagMismatch.explanation
    for said in (guardrail, explanation, table("### Inputs")["verify-tag"][1]):
        assert all(f"`<project>{c}`" in said for c in separators), said
        listed = said.split("compared as versions", 1)[1].split("all match `1.2.0`", 1)[0]
        examples = re.findall(r"`([^`]+)`", listed)
        assert len(examples) == 5, said
        for tag in examples:
            check_tag(f"refs/tags/{tag}", [("mylib", "1.2.0")])


def _package_sources() -> dict[str, ast.Module]:
    return {
        path.name: ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "oidc_publish").glob("*.py"))
    }


def test_every_error_is_documented_and_every_documented_error_is_raised() -> None:
    documented = {cls.__name__ for cls in catalogue()}
    # Every error class a run can end with: bases that only group others (ActionError,
    # Stopped) have no code of their own and are never raised.
    every_error = {
        cls.__name__
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.ActionError)
        and ("code" in vars(cls) or not cls.__subclasses__())
    }
    made = {
        node.func.id
        for tree in _package_sources().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in every_error
    }
    assert every_error == documented, "an error class outside the catalogue"
    assert made == documented, "documented but never raised" if documented - made else made


def test_every_package_the_code_imports_is_declared() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {
        re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in pyproject["project"]["dependencies"]
    }
    imported: set[str] = set()
    for tree in _package_sources().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"oidc_publish"}
    providers = importlib.metadata.packages_distributions()
    needed = {
        name.lower().replace("_", "-") for module in third_party for name in providers[module]
    }
    assert needed <= declared, f"imported but not declared: {sorted(needed - declared)}"
    assert third_party, "the scan found no imports at all"


def test_the_code_table_has_one_row_per_module_in_import_order() -> None:
    """A newcomer finds the room for a change from the README's table alone: each module
    has its row, and a module imports (at its top) only those listed before it."""
    section = README.split("### The code", 1)[1].split("\nThe tests form a pyramid", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)\.py` \|", section, flags=re.MULTILINE)
    sources = _package_sources()
    modules = [name.removesuffix(".py") for name in sources if name != "__init__.py"]
    assert sorted(rows) == sorted(modules), "one row per module, each naming one module"
    for position, module in enumerate(rows):
        tree = sources[f"{module}.py"]
        imported = {
            node.module.removeprefix("oidc_publish.")
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("oidc_publish.")
        }
        assert imported <= set(rows[:position]), (
            f"{module} imports {imported - set(rows[:position])}"
        )
