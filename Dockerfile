# The image every release pins in action.yml; between releases the runner builds it
# from here. It holds publishing rights, so every input is pinned: the base image
# by the digest of its multi-platform index (Dependabot moves it, tag kept for
# people), the Python packages by requirements.txt's hashes. A release builds it
# natively for linux/amd64 and linux/arm64 and pins the index of the two.
#
# Every run pulls it, so it keeps only what a run needs: pip installs the lock in
# a build stage from the same base, and the image takes the installed packages
# alone, without pip, the console scripts or anything pip leaves behind.
#
# No `# syntax=` line: it would pull a floating frontend image at build time.
FROM python:3.13-slim@sha256:3dd7cc108ec1493442514f5c2a871af6af0ec31d768ff6e378a93340c3b3db5f AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# --no-deps: the lock is the whole dependency set, pip resolves nothing.
# --require-hashes: a file whose bytes differ from the lock is refused.
# --only-binary: wheels only, so nothing is built and no compiler is needed.
# --ignore-installed --prefix: the whole lock goes into /install, whatever this
# stage's Python holds already.
# tests/test_supply_chain.py runs this exact command.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-deps --require-hashes --only-binary=:all: --no-compile --root-user-action=ignore --ignore-installed --prefix=/install -r /app/requirements.txt

FROM python:3.13-slim@sha256:3dd7cc108ec1493442514f5c2a871af6af0ec31d768ff6e378a93340c3b3db5f

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The installed packages only: the entrypoint imports twine as a library, so
# /install/bin (twine's and the others' console scripts) stays behind.
COPY --from=build /install/lib/python3.13/site-packages/ /usr/local/lib/python3.13/site-packages/
# The lock stays in the image as its record of what was installed.
COPY requirements.txt /app/requirements.txt
COPY entrypoint.py /app/entrypoint.py
COPY oidc_publish/ /app/oidc_publish/

# The image installs nothing at run time: pip goes (its package, its scripts and
# ensurepip's copy), and the build fails if pip, setuptools or wheel can still be
# imported. Then the bytecode, in the same layer so pip's modules are never
# compiled: the base image ships the standard library without bytecode, and
# PYTHONDONTWRITEBYTECODE keeps a run from writing any, so every run would compile
# each module it imports from source (about 1.5 s). Compiled once here instead;
# unchecked-hash makes the .pyc files independent of file times, so the layer is
# reproducible.
RUN rm -rf /usr/local/bin/pip* \
        /usr/local/lib/python3.13/site-packages/pip \
        /usr/local/lib/python3.13/site-packages/pip-*.dist-info \
        /usr/local/lib/python3.13/ensurepip/_bundled \
    && python -c "import importlib.util as u; left = [m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)]; raise SystemExit(f'still installed: {left}' if left else 0)" \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /usr/local/lib/python3.13 /app

# No USER and no WORKDIR: the runner starts Docker actions as root with
# --workdir /github/workspace, and the files it shares with the job
# (workspace, GITHUB_OUTPUT, step summary) are written for that.
ENTRYPOINT ["python", "/app/entrypoint.py"]
