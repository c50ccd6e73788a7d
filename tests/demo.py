"""`./dev demo`: publish a sample package to a local index through trusted publishing.

Starts the local HTTPS index the tests use (PyPI's trusted-publishing endpoints, upload checks
and attestation verification, GitHub's identity-token endpoint and attestation store and a
Sigstore of its own emulated, pypiserver for storage), builds a sample wheel and sdist, runs
entrypoint.py exactly as GitHub's runner would, with its PEP 740 attestations signed against
the local Sigstore and stored in GitHub's store too, then installs the package back from the
index with pip. Prints what a maintainer would see: the job log, the step summary, the
outputs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.localindex.clients import pip_install
from tests.localindex.dists import make_sdist, make_wheel
from tests.localindex.proc import isolate_pip
from tests.localindex.runner import run_action
from tests.localindex.server import LocalIndex


def main() -> int:
    isolate_pip()
    with tempfile.TemporaryDirectory() as scratch, LocalIndex() as index:
        workspace = Path(scratch) / "workspace"
        make_wheel(workspace / "dist", "sample-project", "1.0.0")
        make_sdist(workspace / "dist", "sample-project", "1.0.0")
        print(f"Local index: {index.url} (upload {index.upload_url})\n")

        result = run_action(index, workspace, {"github-attestations": "true"}, sigstore=True)

        print("── job log " + "─" * 60)
        # As a maintainer reads it, without the repository's step debugging.
        print(result.log(step_debug=False))
        print("── step summary " + "─" * 55)
        print(result.summary)
        print("── outputs " + "─" * 60)
        for name, value in result.outputs.items():
            shown = json.dumps(json.loads(value), indent=2) if name == "files" else value
            print(f"{name}: {shown}")
        print(f"\nexit code: {result.returncode}")
        leaked = result.leaked(index)
        if leaked:
            print(f"A secret appeared in the output ({len(leaked)})!", file=sys.stderr)
            return 1
        if result.returncode != 0:
            return result.returncode

        installed = pip_install(index, "sample-project==1.0.0", Path(scratch) / "site")
        verdict = "works" if installed.returncode == 0 else "FAILED\n" + installed.stderr
        print(f"pip install sample-project==1.0.0 from the local index: {verdict}")
        return installed.returncode


if __name__ == "__main__":
    sys.exit(main())
