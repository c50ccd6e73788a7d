"""The order of a run's steps, and the one place that catches errors and picks the exit code.

Each step's body lives in the room that owns its knowledge; `publish` is the list. The
waits on the network start as soon as nothing forbids them and overlap the local work: the
token exchange first (exchange.py), then the index's pages and signing, while the files are
read and checked. A failure the user could have caused locally is still the one reported,
and nothing is uploaded or signed before every check has passed.

Libraries are imported by the step that needs them, here as in every room: a run pays for
the steps it reaches, and the exchange's first request goes out before the heavy ones load.
SIGINT, SIGTERM and the run's deadline set the run's stop (stop.py) and end whatever the
main thread waits on; the report follows, as after any other error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, TextIO

from oidc_publish.errors import ActionError, InternalError, Stopped
from oidc_publish.report import Publication, Release, Reporter
from oidc_publish.run import Target, World
from oidc_publish.runner import RunnerContext
from oidc_publish.stop import Stop, cancelled_by_signals, deadline

if TYPE_CHECKING:
    from oidc_publish.exchange import Exchange
    from oidc_publish.run import Run

__all__ = ["World", "main", "publish"]


def main(
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    world: World | None = None,
) -> int:
    world = world or World()
    with cancelled_by_signals(world.stop) as interruptible:
        environ = os.environ if environ is None else environ
        context = RunnerContext.from_env(environ)
        reporter = Reporter(context, stdout or sys.stdout)
        publication = Publication()
        error: ActionError | None = None
        try:
            with interruptible(), deadline(world.run_deadline, world.stop):
                publish(environ, context, reporter, publication, world)
        except ActionError as caught:
            error = caught
        except Exception:
            import traceback

            reporter.log(traceback.format_exc())
            error = InternalError(
                "The action failed unexpectedly; the traceback is in the log above.",
                fix="Re-run the job; if it fails again, report it with the log attached.",
            )
        if error is not None and world.stop.is_set():
            error = _as_stopped(error, world.stop, reporter, publication)
        if error is not None and error.results:
            publication.results = error.results
        return reporter.finish(publication, error)


def publish(
    environ: Mapping[str, str],
    context: RunnerContext,
    reporter: Reporter,
    publication: Publication,
    world: World,
) -> None:
    from oidc_publish.exchange import Exchange
    from oidc_publish.network import RetryPolicy

    target = Target.read(environ, context, reporter)
    publication.index_name = target.index.display_name
    policy = RetryPolicy(sleep=world.sleep, clock=world.monotonic, stop=world.stop)
    exchange = Exchange.start(
        target, environ=environ, reporter=reporter, policy=policy, world=world
    )
    cleared: Future[None] = Future()
    """Set once the upload token is in hand and the index's rules have passed: only then
    may signing make its public transparency-log entries."""
    try:
        from oidc_publish.inputs import Inputs
        from oidc_publish.run import Run

        inputs = Inputs.from_env(environ, mask=reporter.mask)
        reporter.verbose = inputs.verbose
        publication.dry_run = inputs.dry_run
        run = Run(
            environ, context, reporter, publication, world, target, policy, inputs,
            exchange.client(),
        )  # fmt: skip
        _steps(run, exchange, cleared)
    finally:
        if not cleared.done():
            cleared.set_exception(_NoUpload())
        exchange.close(stopped=world.stop.is_set())


def _steps(run: Run, exchange: Exchange, cleared: Future[None]) -> None:
    from oidc_publish import attest, dists, github_attestations, installable, release_rules
    from oidc_publish.index import IndexClient

    release_rules.check_names(run, run.target.named)
    holdings = IndexClient(run.index, run.http, run.policy, run.reporter)
    pages = release_rules.read_pages(holdings, run.target.named)
    releases = dists.read(run)
    files = [dist for release in releases for dist in release.files]
    signing = attest.start_signing(run, files, cleared)
    run.publication.releases = [
        Release(r.name, r.version, run.index.release_url(r.name, r.version)) for r in releases
    ]
    release_rules.obey(run, pages, releases)
    from oidc_publish.reconcile import Reconciler
    from oidc_publish.upload import publish_releases

    credential = exchange.credential(run.inputs, run.context)
    cleared.set_result(None)
    reconciler = Reconciler(holdings, skip_existing=run.inputs.skip_existing, reporter=run.reporter)
    attestations = signing.result() if signing else {}
    refused: ActionError | None = None
    if run.inputs.dry_run:
        run.publication.results = reconciler.rehearse(files)
        credential.close()
    else:
        order = release_rules.upload_order(run, releases, pages, holdings)
        refused = publish_releases(run, credential, order, attestations, reconciler)
    dists.log_blake2(run, files)
    # After the first byte only the uploads decide: each step from here can only warn, and
    # what the index took is stored in GitHub whatever the verdict.
    github_attestations.store(run, attestations)
    if refused is not None:
        refused.results = list(run.publication.results)
        raise refused
    if run.inputs.wait_until_installable and not run.inputs.dry_run:
        installable.wait(run, holdings)


class _NoUpload(Exception):
    """The run ended before its uploads: signing makes no transparency-log entry."""


def _as_stopped(
    error: ActionError, stop: Stop, reporter: Reporter, publication: Publication
) -> Stopped:
    """Once the run is stopped (a cancellation, its deadline), its report is the stop,
    whatever ended the steps."""
    if isinstance(error, Stopped):
        stopped = error
    else:
        # Most likely the interruption's own doing (a library that caught it); kept in the log.
        reporter.log(f"After the run was stopped: {error.title}: {error.message}")
        stopped = stop.error()
        stopped.results = error.results
    if not stopped.results:
        # Stopped after the uploads reported: what they recorded is what is on the index.
        stopped.results = list(publication.results)
    return stopped
