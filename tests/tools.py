"""Where the repository and its lint tools are, for the supply-chain tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    """The path of a command-line tool from requirements-dev.txt.

    The running interpreter's own bin directory comes first, so a venv's tools
    win over whatever else is on PATH. A missing tool fails the test: a
    skipped linter would pass a check that never ran.
    """
    beside = Path(sys.executable).parent / name  # not resolved: a venv's python is a symlink
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install requirements-dev.txt", pytrace=False)
    return found
