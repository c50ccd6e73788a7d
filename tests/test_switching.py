"""A workflow that switches from pypa/gh-action-pypi-publish changes one line.

The action it replaces, as of v1.14.0, is the anchor: its inputs must all be here with its
defaults, and everything this action adds to that interface must be named in the README's
section on switching, so that a difference cannot appear without being written down.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.tools import ROOT

ACTION: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADING = "## Switching from pypa/gh-action-pypi-publish\n"

# pypa/gh-action-pypi-publish v1.14.0: its inputs and their defaults ("" for none).
# v1.11.0 turned attestations on; v1.14.0 turned verbose and print-hash on.
ANCHOR_INPUTS = {
    "user": "__token__",
    "password": "",
    "repository-url": "https://upload.pypi.org/legacy/",
    "packages-dir": "dist",
    "verify-metadata": "true",
    "skip-existing": "false",
    "verbose": "true",
    "print-hash": "true",
    "attestations": "true",
}
ANCHOR_OLD_SPELLINGS = {
    "repository_url",
    "packages_dir",
    "verify_metadata",
    "skip_existing",
    "print_hash",
}


def switching_section() -> str:
    assert HEADING in README, "README.md has no section on switching"
    return README.split(HEADING, 1)[1].split("\n## ", 1)[0]


def test_every_input_of_the_anchor_is_declared_under_its_names() -> None:
    assert set(ANCHOR_INPUTS) | ANCHOR_OLD_SPELLINGS <= set(ACTION["inputs"])


@pytest.mark.parametrize("name", ANCHOR_INPUTS)
def test_each_input_of_the_anchor_has_its_default(name: str) -> None:
    assert str(ACTION["inputs"][name].get("default", "")) == ANCHOR_INPUTS[name]


def test_the_switching_section_names_every_input_and_output_the_anchor_lacks() -> None:
    section = switching_section()
    added = [
        name
        for name, spec in ACTION["inputs"].items()
        if name not in ANCHOR_INPUTS and "deprecationMessage" not in spec
    ]
    assert added, "action.yml declares nothing beyond the anchor's inputs"
    for name in [*added, *ACTION["outputs"]]:
        assert f"`{name}`" in section, f"`{name}` is not named in the switching section"


def test_the_switching_section_shows_the_one_line_change() -> None:
    section = switching_section()
    assert "-      - uses: pypa/gh-action-pypi-publish@" in section
    assert "+      - uses: org/pypi-oidc-action@" in section
