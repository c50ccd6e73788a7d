"""The order of the steps, and the one place that catches errors and picks the exit code.

inputs and runner context -> checks that need no network -> distributions -> credential ->
upload (or rehearsal) -> report. Heavy libraries are imported by the step that needs them,
so a run that fails early fails fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from oidc_publish.errors import ActionError, Diagnostic, InternalError, Level
from oidc_publish.runner import RunnerContext, WorkflowCommands

if TYPE_CHECKING:
    import httpx

    from oidc_publish.credentials import Credential
    from oidc_publish.index_urls import Index
    from oidc_publish.inputs import Inputs
    from oidc_publish.network import RetryPolicy
    from oidc_publish.report import Report
    from oidc_publish.simple_api import IndexedFile


def main(environ: Mapping[str, str] | None = None, stdout: TextIO | None = None) -> int:
    from oidc_publish.report import Report

    environ = os.environ if environ is None else environ
    context = RunnerContext.from_env(environ)
    console = WorkflowCommands(stdout or sys.stdout)
    report = Report(context, console)
    try:
        publish(environ, context, console, report)
    except ActionError as error:
        return report.finish(error)
    except Exception:
        import traceback

        console.log(traceback.format_exc())
        return report.finish(
            InternalError(
                "The action failed unexpectedly; the traceback is in the log above.",
                fix="Re-run the job; if it fails again, report it with the log attached.",
            )
        )
    return report.finish(None)


def publish(
    environ: Mapping[str, str], context: RunnerContext, console: WorkflowCommands, report: Report
) -> None:
    from oidc_publish.credentials import check_context
    from oidc_publish.dists import load, locate
    from oidc_publish.index_urls import Index
    from oidc_publish.inputs import Inputs
    from oidc_publish.network import RetryPolicy
    from oidc_publish.report import Release
    from oidc_publish.upload import Uploader

    inputs = Inputs.from_env(environ)
    if inputs.password is not None:
        console.mask(inputs.password.get_secret_value())
    console.verbose = inputs.verbose
    report.dry_run = inputs.dry_run
    index = Index(inputs.repository_url)
    if inputs.attestations:
        report.add(
            Diagnostic(
                Level.WARNING,
                "Attestations are not generated yet",
                "`attestations: true` was given, but this version uploads without attestations.",
                fix="Remove `attestations` or set it to `false` to silence this warning.",
            )
        )
    if inputs.trusted_publishing:
        check_context(context, index)

    console.group("Checking distributions")
    try:
        paths = locate(context.workspace / inputs.packages_dir, context.display_path, report.add)
        dists = load(
            paths,
            verify_metadata=inputs.verify_metadata,
            pypi_rules=index.is_pypi or index.is_testpypi,
            display=context.display_path,
            notify=report.add,
        )
        for dist in dists:
            console.log(f"{dist.display} ({dist.name} {dist.version}, {dist.size} bytes)")
            if inputs.print_hash:
                console.log(f"  sha256:      {dist.sha256}")
                console.log(f"  blake2b-256: {dist.blake2_256}")
    finally:
        console.endgroup()
    first = dists[0]
    report.release = Release(
        first.name, first.version, index.display_name, index.release_url(first.name, first.version)
    )

    policy = RetryPolicy()
    http = _LazyClient(console.debug)
    try:
        credential = _credential(
            inputs,
            context,
            console,
            report,
            index=index,
            http=http,
            policy=policy,
            project=first.name,
        )
        uploader = Uploader(
            index=index,
            credential=credential,
            policy=policy,
            skip_existing=inputs.skip_existing,
            lookup=lambda project: _lookup(http, index, project, policy),
            log=console.log,
            debug=console.debug,
            notify=report.add,
        )
        if inputs.dry_run:
            report.results, error = uploader.rehearse(dists)
        else:
            console.group(f"Uploading {len(dists)} file(s) to {index.upload_url}")
            try:
                results, error = uploader.upload_all(dists)
            finally:
                console.endgroup()
            report.results = uploader.with_urls(results)
        if error:
            raise error
    finally:
        http.close()


def _credential(
    inputs: Inputs,
    context: RunnerContext,
    console: WorkflowCommands,
    report: Report,
    *,
    index: Index,
    http: _LazyClient,
    policy: RetryPolicy,
    project: str,
) -> Credential:
    from oidc_publish.credentials import ApiToken, TrustedPublishing, password_notice

    if inputs.password is not None:
        notice = password_notice(context, index, project)
        if notice:
            report.add(notice)
        return ApiToken(inputs.user, inputs.password.get_secret_value())
    publishing = TrustedPublishing(
        index=index,
        http=http.get(),
        policy=policy,
        console=console,
        report=report.add,
        project=project,
    )
    console.log(f"Exchanging this job's identity token for an upload token at {index.host}")
    # Minted now, before any upload, so a misconfigured publisher fails here, dry run or not.
    publishing.token()
    console.log("Got an upload token through trusted publishing.")
    return publishing


def _lookup(
    http: _LazyClient, index: Index, project: str, policy: RetryPolicy
) -> dict[str, IndexedFile] | None:
    from oidc_publish.simple_api import project_files

    return project_files(http.get(), index, project, policy)


class _LazyClient:
    """The httpx client, made on first use: an API-token upload may never need it."""

    def __init__(self, debug: Callable[[str], None]) -> None:
        self._debug = debug
        self._client: httpx.Client | None = None

    def get(self) -> httpx.Client:
        if self._client is None:
            from oidc_publish.network import client

            self._client = client(self._debug)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
