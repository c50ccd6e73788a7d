"""A local PyPI and GitHub OIDC service, distributions to publish, and a runner to run the action.

See server.py (the index), dists.py (wheels and sdists), runner.py (the action as
GitHub's runner starts it) and clients.py (direct calls, as twine and pip make them).
"""
