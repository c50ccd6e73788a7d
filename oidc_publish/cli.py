"""The order of the steps, and the one place that catches errors and picks the exit code.

inputs and runner context -> checks that need no network -> distributions, credential,
the index's rules and signatures -> uploads (or a rehearsal) -> the wait until installable
-> report. The network waits overlap the local work: the token exchange and the index's page
are under way while the distributions are read, hashed and checked, and signing while the
mint finishes; a failure the user could have caused locally is still reported first, and no
request is made before the checks that need none have passed. Heavy libraries are imported
by the step that needs them, so a run that fails early fails fast.

SIGINT and SIGTERM set the run's stop (stop.py) and end whatever the main thread waits on;
the report follows, as after any other error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from oidc_publish.errors import (
    RUN_DEADLINE_MINUTES,
    ActionError,
    InternalError,
    RunTimedOut,
    Stopped,
)
from oidc_publish.report import Publication, Release, Reporter, advisory
from oidc_publish.runner import RunnerContext
from oidc_publish.stop import Stop

if TYPE_CHECKING:
    import httpx

    from oidc_publish.credentials import Credential
    from oidc_publish.dists import Distribution
    from oidc_publish.dists import Release as DistRelease
    from oidc_publish.identity import IdentityTokens
    from oidc_publish.index import IndexClient
    from oidc_publish.index_urls import Index
    from oidc_publish.inputs import Inputs
    from oidc_publish.network import Pending, RetryPolicy
    from oidc_publish.reconcile import Reconciler
    from oidc_publish.simple_api import IndexedFile, ProjectPage
    from oidc_publish.upload import Uploader


@dataclass(frozen=True)
class World:
    """What a run reads besides its environment; tests pass their own."""

    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    identity: IdentityTokens | None = None
    """GitHub's identity tokens; None asks GitHub through `id`."""
    run_deadline: float | None = RUN_DEADLINE_MINUTES * 60.0
    """Seconds the whole run may take; enforced with SIGALRM, so only in the main thread."""
    stop: Stop = field(default_factory=Stop)
    """The run's stop, set by SIGINT and SIGTERM (handled in the main thread); one per run."""


def main(
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    world: World | None = None,
) -> int:
    world = world or World()
    with _cancelled_by_signals(world.stop) as interruptible:
        environ = os.environ if environ is None else environ
        context = RunnerContext.from_env(environ)
        reporter = Reporter(context, stdout or sys.stdout)
        publication = Publication()
        error: ActionError | None = None
        try:
            with interruptible(), _deadline(world.run_deadline, world.stop):
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


def publish(
    environ: Mapping[str, str],
    context: RunnerContext,
    reporter: Reporter,
    publication: Publication,
    world: World,
) -> None:
    from oidc_publish.dists import DEFAULT_FOLDER, locate, named_releases
    from oidc_publish.identity import check_context
    from oidc_publish.index_urls import PYPI_UPLOAD, Index, checked_upload_url
    from oidc_publish.network import RetryPolicy, proxy_secrets
    from oidc_publish.runner import input_value

    for secret in proxy_secrets(environ):
        reporter.mask(secret)

    # What needs no library is checked first: where the files go, whether this job may
    # prove who it is, whether there is anything to publish. A failure here makes no
    # request at all. Then the token exchange starts, in a thread of its own, while the
    # libraries load and everything else is checked: a failure found meanwhile makes no
    # upload and no Sigstore request, and burns whatever the exchange minted.
    url = input_value(environ, "repository-url", old="repository_url") or PYPI_UPLOAD
    index = Index(checked_upload_url(url))
    publication.index_name = index.display_name
    api_token = bool(input_value(environ, "password"))
    if not api_token:
        check_context(context, index)
    folder = input_value(environ, "packages-dir", old="packages_dir") or DEFAULT_FOLDER
    paths = locate(context.workspace / folder, context.workspace, reporter)
    policy = RetryPolicy(sleep=world.sleep, clock=world.monotonic, stop=world.stop)
    made: Future[httpx.Client] = Future()
    exchange = None
    if not api_token:
        asked = threading.Event()
        exchange = _start_exchange(
            environ,
            reporter=reporter,
            index=index,
            paths=paths,
            policy=policy,
            world=world,
            made=made,
            asked=asked,
        )
        # The exchange's first request starts the run's longest wait. The interpreter runs
        # one thread at a time, so this one imports nothing until that request is on its
        # way, and does its own work (the libraries, the inputs, the files) during it.
        asked.wait(FIRST_REQUEST_WAIT)
    named = named_releases(paths)
    project = named[0][0] if named else None
    cleared: Future[None] = Future()
    """Set once the upload token is in hand and the index's rules have passed: only then
    may signing make its public transparency-log entries."""
    try:
        from oidc_publish.inputs import Inputs

        inputs = Inputs.from_env(environ, mask=reporter.mask)
        reporter.verbose = inputs.verbose
        publication.dry_run = inputs.dry_run
        _check_names(inputs, context, index=index, paths=paths, named=named, reporter=reporter)
        http = made.result() if exchange else _make_client(made, reporter, environ)
        _publish(
            inputs,
            environ=environ,
            context=context,
            reporter=reporter,
            publication=publication,
            world=world,
            index=index,
            named=named,
            paths=paths,
            policy=policy,
            http=http,
            credential=lambda: _credential(
                exchange,
                inputs,
                context=context,
                reporter=reporter,
                index=index,
                project=project,
            ),
            cleared=cleared,
        )
    finally:
        if not cleared.done():
            cleared.set_exception(_NoUpload())
        if exchange is not None:
            # A stopped run ends at once: only what the exchange has minted already is burned.
            _close(exchange, wait=0.0 if world.stop.is_set() else CLOSE_WAIT)
        if made.done() and made.exception() is None:
            made.result().close()


def _publish(
    inputs: Inputs,
    *,
    environ: Mapping[str, str],
    context: RunnerContext,
    reporter: Reporter,
    publication: Publication,
    world: World,
    index: Index,
    named: list[tuple[str, str]],
    paths: list[Path],
    policy: RetryPolicy,
    http: httpx.Client,
    credential: Callable[[], Credential],
    cleared: Future[None],
) -> None:
    from oidc_publish.index import IndexClient
    from oidc_publish.network import Pending, ca_bundle

    holdings = IndexClient(index, http, policy, reporter)
    pages = {
        project: Pending(partial(holdings.project_page, project), f"{project}'s page")
        for project in dict.fromkeys(project for project, _ in named)
    }
    releases = _read(inputs, context, index, paths, reporter)
    dists = [dist for release in releases for dist in release.files]
    signing = _start_signing(
        inputs,
        environ,
        index,
        dists,
        reporter=reporter,
        publication=publication,
        identity=world.identity or _github_identity(reporter, lambda: http),
        policy=policy,
        world=world,
        cleared=cleared,
    )
    publication.releases = [
        Release(r.name, r.version, index.release_url(r.name, r.version)) for r in releases
    ]
    _obey_index_rules(pages, releases, index, reporter, world)
    # Imported while the token exchange may still be waiting on the network.
    from oidc_publish.reconcile import Reconciler
    from oidc_publish.upload import Uploader

    uploads = credential()
    cleared.set_result(None)
    reconciler = Reconciler(holdings, skip_existing=inputs.skip_existing, reporter=reporter)
    attestations = signing.result() if signing else {}
    refused: ActionError | None = None
    if inputs.dry_run:
        publication.results = reconciler.rehearse(dists)
        uploads.close()
    else:
        uploader = Uploader(
            index=index,
            credential=uploads,
            policy=policy,
            reporter=reporter,
            on_exists=reconciler.name_taken,
            ca_file=ca_bundle(environ),
        )
        try:
            refused = _upload(
                uploader,
                _new_projects_first(releases, pages, holdings, publication),
                attestations,
                publication,
                reconciler=reconciler,
                index=index,
                reporter=reporter,
            )
        finally:
            uploads.close()  # the token's last use is behind it, whatever the outcome
    # After the first byte only the uploads decide: each step from here can only warn.
    # What the index took is stored in GitHub whatever the verdict.
    _store_on_github(
        inputs,
        publication,
        attestations,
        environ=environ,
        context=context,
        reporter=reporter,
        http=http,
        policy=policy,
        world=world,
    )
    if refused is not None:
        raise _as_published(refused, publication)
    if inputs.wait_until_installable and not inputs.dry_run:
        _wait_until_installable(holdings, publication, reporter, world)


def _check_names(
    inputs: Inputs,
    context: RunnerContext,
    *,
    index: Index,
    paths: list[Path],
    named: list[tuple[str, str]],
    reporter: Reporter,
) -> None:
    """What the file names alone show to be wrong, found before any request."""
    from oidc_publish.release_rules import check_tag

    if len({project for project, _ in named}) < len(named):
        # A project in several versions, most often a stale build: every file is read now,
        # before any request, and every problem reported at once.
        _read(inputs, context, index, paths, reporter)
    if inputs.verify_tag:
        check_tag(context.ref, named, debug=reporter.debug)


def _store_on_github(
    inputs: Inputs,
    publication: Publication,
    attestations: dict[str, dict[str, Any]],
    *,
    environ: Mapping[str, str],
    context: RunnerContext,
    reporter: Reporter,
    http: httpx.Client,
    policy: RetryPolicy,
    world: World,
) -> None:
    """The attestations the index took, stored in GitHub's attestation store too, when asked;
    whatever happens there is reported and leaves the exit code alone."""
    if not inputs.github_attestations or inputs.github_token is None:
        return
    from oidc_publish.github_attestations import store_release

    with advisory(reporter, "Storing the attestations in GitHub's attestation store"):
        store_release(
            publication,
            attestations,
            unsigned=publication.no_attestations
            if inputs.attestations
            else "`attestations: false`",
            token=inputs.github_token.get_secret_value(),
            environ=environ,
            context=context,
            http=http,
            policy=policy,
            reporter=reporter,
            wall=world.wall,
        )


def _with_urls(reconciler: Reconciler, publication: Publication, reporter: Reporter) -> None:
    """Each uploaded file's URL, where the index lists it."""
    with advisory(reporter, "Reading the files' URLs from the index"):
        publication.results = reconciler.with_urls(publication.results)


def _upload(
    uploader: Uploader,
    releases: Sequence[DistRelease],
    attestations: dict[str, dict[str, Any]],
    publication: Publication,
    *,
    reconciler: Reconciler,
    index: Index,
    reporter: Reporter,
) -> ActionError | None:
    """Every release, its results in `publication`, with their URLs. The index's refusal is
    returned, not raised, so that what it took can still be stored in GitHub; a
    cancellation says what may be on the index."""
    from oidc_publish.outcomes import FileResult, Outcome

    try:
        with reporter.group(f"Uploading {_files_of(releases)} to {index.upload_url}"):
            publication.results = uploader.publish(releases, attestations)
    except Stopped as stopped:
        # A file the uploads had not taken stock of when they stopped may be on the index.
        known = {r.dist.filename: r for r in stopped.results}
        stopped.results = [
            known.get(d.filename) or FileResult(d, Outcome.IN_FLIGHT)
            for release in releases
            for d in release.files
        ]
        raise
    except ActionError as refused:
        publication.results = refused.results
        return refused
    _with_urls(reconciler, publication, reporter)
    return None


def _new_projects_first(
    releases: Sequence[DistRelease],
    pages: Mapping[str, Pending[ProjectPage | None]],
    holdings: IndexClient,
    publication: Publication,
) -> list[DistRelease]:
    """The releases in the order to upload them: those of a project the index does not have
    first. Its page answered 404, and still does now the token exchange is done (a pending
    publisher creates its project at the mint): if the index refuses it, nothing of the run
    is on the index."""
    from oidc_publish.dists import new_projects_first

    if len(releases) < 2:
        return list(releases)

    def missing(page: ProjectPage | None) -> bool:
        return page is not None and not page.exists

    absent = [
        r.project for r in releases if r.project in pages and missing(pages[r.project].result())
    ]
    new = {project for project in absent if missing(holdings.project_page(project))}
    order = new_projects_first(releases, new)
    rank = {release.label: position for position, release in enumerate(order)}
    publication.releases = sorted(publication.releases, key=lambda r: rank[r.label])
    return order


def _as_published(refused: ActionError, publication: Publication) -> ActionError:
    """The index's refusal, carrying the results as the steps after the uploads left them
    (with their GitHub URLs)."""
    refused.results = list(publication.results)
    return refused


def _make_client(
    made: Future[httpx.Client], reporter: Reporter, environ: Mapping[str, str]
) -> httpx.Client:
    """The HTTP client, handed to whoever waits on `made` as well."""
    from oidc_publish.network import client

    try:
        http = client(reporter.debug, environ)
    except BaseException as error:
        made.set_exception(error)
        raise
    made.set_result(http)
    return http


def _read(
    inputs: Inputs,
    context: RunnerContext,
    index: Index,
    paths: list[Path],
    reporter: Reporter,
) -> list[DistRelease]:
    from oidc_publish.dists import load

    with reporter.group("Checking distributions"):
        releases = load(
            paths,
            workspace=context.workspace,
            verify_metadata=inputs.verify_metadata,
            pypi_rules=index.is_pypi or index.is_testpypi,
            reporter=reporter,
        )
        for dist in (dist for release in releases for dist in release.files):
            reporter.log(f"{dist.display} ({dist.name} {dist.version}, {dist.size} bytes)")
            if inputs.print_hash:
                reporter.log(f"  sha256:      {dist.sha256}")
                reporter.log(f"  blake2b-256: {dist.blake2_256}")
    return releases


def _files_of(releases: Sequence[DistRelease]) -> str:
    files = sum(len(release.files) for release in releases)
    if len(releases) == 1:
        return f"{files} file(s)"
    return f"{files} file(s) of {len(releases)} releases"


def _start_signing(
    inputs: Inputs,
    environ: Mapping[str, str],
    index: Index,
    dists: list[Distribution],
    *,
    reporter: Reporter,
    publication: Publication,
    identity: IdentityTokens,
    policy: RetryPolicy,
    world: World,
    cleared: Future[None],
) -> Pending[dict[str, dict[str, Any]]] | None:
    """Starts signing every file, when attestations are asked for and possible.

    The certificate is asked for at once; the transparency-log entries, which are public
    and permanent, wait for `cleared`, set once the files will be uploaded. The caller
    collects the attestations before the first upload, so a Sigstore outage leaves nothing
    half-published.
    """
    from oidc_publish.attest import TRUST_CONFIG_VARIABLE
    from oidc_publish.diagnosis import attestations_skipped
    from oidc_publish.network import Pending

    if not inputs.attestations:
        return None
    why_not = None
    if not inputs.trusted_publishing:
        why_not = "PyPI accepts attestations only with trusted publishing, not an API token"
    elif not (index.is_pypi or index.is_testpypi or environ.get(TRUST_CONFIG_VARIABLE)):
        why_not = f"{index.display_name} is not PyPI or TestPyPI, which verify them"
    publication.no_attestations = why_not or ""
    if inputs.dry_run:
        publication.attestations = (
            f"Dry run: no attestations would be made: {why_not}."
            if why_not
            else "Dry run: every file would carry a PEP 740 attestation; nothing was signed."
        )
        return None
    if why_not:
        reporter.add(attestations_skipped(why_not))
        publication.attestations = f"No attestations: {why_not}."
        return None
    return Pending(
        lambda: _sign(
            dists,
            environ=environ,
            reporter=reporter,
            publication=publication,
            identity=identity,
            policy=policy,
            world=world,
            cleared=cleared,
        ),
        "signing",
    )


def _sign(
    dists: list[Distribution],
    *,
    environ: Mapping[str, str],
    reporter: Reporter,
    publication: Publication,
    identity: IdentityTokens,
    policy: RetryPolicy,
    world: World,
    cleared: Future[None],
) -> dict[str, dict[str, Any]]:
    from oidc_publish.attest import AUDIENCE, sign_all
    from oidc_publish.claims import Claims
    from oidc_publish.diagnosis import reusable_workflow_attestations

    first = identity(AUDIENCE)
    claims = Claims.from_jwt(first)
    if claims is not None and claims.is_reusable_workflow:
        reporter.add(reusable_workflow_attestations(claims))
        publication.attestations = "No attestations: this job runs in a reusable workflow."
        publication.no_attestations = "this job runs in a reusable workflow"
        return {}
    unused = [first]

    def token() -> str:
        return unused.pop() if unused else identity(AUDIENCE)

    reporter.log(f"Signing {len(dists)} file(s) with Sigstore")
    started = world.monotonic()
    signed = sign_all(
        dists,
        identity_token=token,
        environ=environ,
        policy=policy,
        reporter=reporter,
        clock=world.wall,
        ready=cleared.result,
    )
    reporter.log(f"Signed {len(signed)} attestation(s) in {world.monotonic() - started:.1f}s")
    publication.attestations = (
        "Every file carries a PEP 740 attestation, signed with Sigstore, that the index "
        "verifies against the trusted publisher."
    )
    return signed


def _obey_index_rules(
    pages: Mapping[str, Pending[ProjectPage | None]],
    releases: Sequence[DistRelease],
    index: Index,
    reporter: Reporter,
    world: World,
) -> None:
    """What the index would refuse, found before the first upload; every finding reported,
    each naming its release."""
    from oidc_publish.release_rules import check_index_rules

    now = datetime.fromtimestamp(world.wall(), UTC)
    refusals = []
    for release in releases:
        page = pages.get(release.project)
        refusals += check_index_rules(
            page.result() if page else None,
            {d.filename: d.sha256 for d in release.files},
            now,
            project=release.name,
            version=release.version,
            index=index,
        )
    if refusals:
        for other in refusals[1:]:
            for diagnostic in other.diagnostics():
                reporter.add(diagnostic)
        raise refusals[0]


def _wait_until_installable(
    holdings: IndexClient, publication: Publication, reporter: Reporter, world: World
) -> None:
    from oidc_publish.installable import DEFAULT_DEADLINE, wait_until_installable

    on_index = {r.dist.filename: r.dist.sha256 for r in publication.results if r.outcome.on_index}
    projects = list(dict.fromkeys(r.dist.name for r in publication.results if r.outcome.on_index))

    def listed() -> dict[str, IndexedFile] | None:
        looks = [holdings.fresh_files(project) for project in projects]
        answered = [files for files in looks if files is not None]
        return {name: f for files in answered for name, f in files.items()} if answered else None

    title = "Waiting until the index lists every file"
    with advisory(reporter, title):
        with reporter.group(title):
            waited = wait_until_installable(
                listed,
                on_index,
                clock=world.monotonic,
                sleep=world.sleep,
            )
        publication.waited_for_index = True
        publication.installable_after = waited.seconds
        warning = waited.warning(DEFAULT_DEADLINE, holdings.index.display_name)
        if warning:
            reporter.add(warning)


def _start_exchange(
    environ: Mapping[str, str],
    *,
    reporter: Reporter,
    index: Index,
    paths: list[Path],
    policy: RetryPolicy,
    world: World,
    made: Future[httpx.Client],
    asked: threading.Event,
) -> Pending[Credential]:
    """Starts trusted publishing's token exchange; the HTTP client it makes is handed to
    `made` for the rest of the run, and `asked` is set once its first request is on its way.

    On PyPI and TestPyPI, whose audience is known, GitHub's identity token is asked for
    before the exchange's own code is even imported; on any other index the audience comes
    first, and a reserved one ends the exchange before any identity token is asked for.
    """

    from oidc_publish.dists import named_releases
    from oidc_publish.network import Pending

    audience = index.known_audience
    identity = world.identity or _github_identity(
        reporter, made.result, asked if audience else None
    )

    def first_identity() -> str:
        try:
            return identity(str(audience))
        finally:
            asked.set()

    def run() -> Credential:
        first = Pending(first_identity, "identity token") if audience else None
        if first is None:
            asked.set()
        named = named_releases(paths)
        http = _make_client(made, reporter, environ)
        from oidc_publish.credentials import TrustedPublishing

        publishing = TrustedPublishing(
            index=index,
            http=lambda: http,
            policy=policy,
            reporter=reporter,
            project=named[0][0] if named else None,
            identity=identity,
            first_identity=first,
            clock=world.wall,
        )
        # Minted before any upload, so a misconfigured publisher fails here, dry run or not.
        publishing.token()
        return publishing

    reporter.log(f"Exchanging this job's identity token for an upload token at {index.host}")
    return Pending(run, "token exchange")


def _credential(
    exchange: Pending[Credential] | None,
    inputs: Inputs,
    *,
    context: RunnerContext,
    reporter: Reporter,
    index: Index,
    project: str | None,
) -> Credential:
    """What the uploads authenticate with: the exchange's, once it is done, or the API
    token given."""
    from oidc_publish.credentials import ApiToken
    from oidc_publish.diagnosis import password_notice

    if exchange is not None:
        credential = exchange.result()
        reporter.log("Got an upload token through trusted publishing.")
        return credential
    notice = password_notice(context, index, project) if project else None
    if notice:
        reporter.add(notice)
    # No exchange was started because `password` was given.
    password = inputs.password.get_secret_value() if inputs.password else ""
    return ApiToken(inputs.user, password)


# Seconds a failed run waits for a token exchange still under way, to burn what it mints.
CLOSE_WAIT = 10.0
# Seconds the run waits, at most, for the exchange's first request to be on its way.
FIRST_REQUEST_WAIT = 1.0


def _close(exchange: Pending[Credential], wait: float) -> None:
    """Burns what the exchange minted, whatever ended the run; an exchange that failed
    minted nothing, and one still under way gets `wait` seconds to finish."""
    try:
        credential = exchange.result(timeout=wait)
    except Exception:  # nothing minted; what failed is reported by whoever waited for it
        return
    credential.close()


class _NoUpload(Exception):
    """The run ended before its uploads: signing makes no transparency-log entry."""


def _github_identity(
    reporter: Reporter, http: Callable[[], httpx.Client], asking: threading.Event | None = None
) -> IdentityTokens:
    from oidc_publish.identity import github_identity_token

    return github_identity_token(reporter, http, asking=asking)


_CANCELLING = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _cancelled_by_signals(
    stop: Stop,
) -> Iterator[Callable[[], AbstractContextManager[None]]]:
    """SIGINT and SIGTERM set `stop` until the block ends; within `interruptible()`, the
    first also raises ``Cancelled`` in the main thread, ending whatever it waits on.

    Handled explicitly, never left to the default disposition: as PID 1 in the container
    the kernel drops a SIGTERM that has no handler. Signals the entry point held (blocked)
    during its imports are delivered as soon as the handlers are in place; when the block
    ends, the mask it found is restored, so a signal after the report waits for the exit.
    """
    interrupting = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupting
        if stop.cancel(signum) and interrupting:
            interrupting = False
            raise stop.error()

    @contextmanager
    def interruptible() -> Iterator[None]:
        nonlocal interrupting
        interrupting = True
        try:
            stop.check()  # a signal that came before the steps began
            yield
        finally:
            interrupting = False

    if threading.current_thread() is not threading.main_thread():
        yield interruptible
        return
    previous = {signum: signal.signal(signum, handle) for signum in _CANCELLING}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, _CANCELLING)
    try:
        yield interruptible
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextmanager
def _deadline(seconds: float | None, stop: Stop) -> Iterator[None]:
    """Ends the run with ``RunTimedOut`` after `seconds`, whatever it is waiting on: the
    run's stop is set, as a cancellation sets it, so no new work starts in any thread."""
    if seconds is None or not hasattr(signal, "SIGALRM"):
        yield
        return

    def timed_out() -> RunTimedOut:
        return RunTimedOut(
            f"The run did not finish within {seconds / 60:.0f} minutes.",
            fix="Re-run the job; files already on the index are recognised and not uploaded "
            "twice. If the index is this slow every time, publish fewer files per run.",
        )

    def expire(signum: int, frame: FrameType | None) -> None:
        if stop.halt(timed_out):
            raise stop.error()

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            # Whoever set a timer before (a test runner's own) gets what is left of it.
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
