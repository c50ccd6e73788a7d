"""The README, action.yml and the code describe the same action."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import string
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.version import Version

from oidc_publish import errors
from oidc_publish.errors import VersionTagMismatch, catalogue
from oidc_publish.inputs import Inputs
from oidc_publish.release_rules import check_tag, version_in_tag
from scripts.troubleshooting import render

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
