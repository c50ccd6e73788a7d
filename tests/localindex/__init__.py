"""The development package: a local PyPI and GitHub OIDC service, distributions to publish,
a runner to run the action, and the action's image without Docker.

server.py (LocalIndex: routes and settings) over transport.py (HTTPS, faults, the log),
multipart.py (upload forms) and pypi.py (PyPI's rules and simple API); index_process.py
(a LocalIndex in a process of its own, driven through a pipe: the benchmark's);
sigstore.py (a local Fulcio, CT log key and Rekor, mounted on the index, and PyPI's side
of PEP 740 attestations: verification at upload, the Integrity API's store); oidc.py and
identity.py (GitHub's tokens, PyPI's publishers); dists.py (wheels and sdists, sha256);
runner.py (the action as GitHub's runner starts it, and what the runner reads back);
image.py (the Dockerfile's two stages reproduced in venvs) over dockerfile.py (the
Dockerfile read stage by stage); clients.py (direct calls, as twine and pip make them);
proc.py (subprocesses, and environments without pip configuration).
"""
