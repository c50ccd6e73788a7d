"""Getting the credential: the token exchange, started before everything else is checked.

With trusted publishing the exchange starts as soon as the checks that need no library have
passed, in a thread of its own, and the rest of the run loads and checks the inputs and the
files during its network waits. On PyPI and TestPyPI, whose audience is known, its first
request is GitHub's identity token, sent before the exchange's own code is even imported;
on any other index the audience comes first. The HTTP client it makes serves the whole run.
Closing the exchange burns whatever it minted, however the run ended.

With an API token there is nothing to exchange: the token is the credential.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from oidc_publish.network import Pending

if TYPE_CHECKING:
    import httpx

    from oidc_publish.credentials import Credential
    from oidc_publish.inputs import Inputs
    from oidc_publish.network import RetryPolicy
    from oidc_publish.report import Reporter
    from oidc_publish.run import Target, World
    from oidc_publish.runner import RunnerContext

# Seconds the run's own thread waits, at most, for the exchange's first request to go out.
FIRST_REQUEST_WAIT = 1.0
# Seconds a failed run waits for an exchange still under way, to burn what it mints.
CLOSE_WAIT = 10.0


class Exchange:
    def __init__(self, target: Target, environ: Mapping[str, str], reporter: Reporter) -> None:
        self._target = target
        self._environ = environ
        self._reporter = reporter
        self._made: Future[httpx.Client] = Future()
        self._pending: Pending[Credential] | None = None

    @classmethod
    def start(
        cls,
        target: Target,
        *,
        environ: Mapping[str, str],
        reporter: Reporter,
        policy: RetryPolicy,
        world: World,
    ) -> Exchange:
        """The exchange, under way with trusted publishing."""
        exchange = cls(target, environ, reporter)
        if target.trusted_publishing:
            asked = threading.Event()
            exchange._pending = exchange._begin(policy, world, asked)
            # The exchange's first request starts the run's longest wait, and the interpreter
            # runs one thread at a time: this one imports nothing until the request is on
            # its way, and does its own work (the libraries, the inputs, the files) during it.
            asked.wait(FIRST_REQUEST_WAIT)
        return exchange

    def client(self) -> httpx.Client:
        """The run's HTTP client: the one the exchange made, or a new one."""
        if self._pending is None and not self._made.done():
            self._make_client()
        return self._made.result()

    def credential(self, inputs: Inputs, context: RunnerContext) -> Credential:
        """What the uploads authenticate with, once the exchange is done."""
        if self._pending is not None:
            credential = self._pending.result()
            self._reporter.log("Got an upload token through trusted publishing.")
            return credential
        from oidc_publish.credentials import ApiToken
        from oidc_publish.diagnosis import password_notice

        project = self._target.project
        notice = password_notice(context, self._target.index, project) if project else None
        if notice:
            self._reporter.add(notice)
        # No exchange was started because `password` was given.
        password = inputs.password.get_secret_value() if inputs.password else ""
        return ApiToken(inputs.user, password)

    def close(self, *, stopped: bool) -> None:
        """Burns what the exchange minted; closes the client. An exchange still under way
        gets CLOSE_WAIT seconds to finish, none once the run is stopped: a token minted after
        that never reaches the job."""
        credential = None
        if self._pending is not None:
            # An exchange that failed minted nothing; whoever waited for it reported why.
            with contextlib.suppress(Exception):
                credential = self._pending.result(timeout=0.0 if stopped else CLOSE_WAIT)
        if credential is not None:
            credential.close()
        if self._made.done() and self._made.exception() is None:
            self._made.result().close()

    def _begin(
        self, policy: RetryPolicy, world: World, asked: threading.Event
    ) -> Pending[Credential]:
        target, reporter = self._target, self._reporter
        audience = target.index.known_audience
        identity = world.identity
        if identity is None:
            from oidc_publish.identity import github_identity_token

            identity = github_identity_token(
                reporter, self._made.result, self._environ, asking=asked
            )

        def first_identity(audience: str) -> str:
            try:
                return identity(audience)
            finally:
                asked.set()

        def run() -> Credential:
            first = (
                Pending(partial(first_identity, audience), "identity token") if audience else None
            )
            if first is None:
                asked.set()
            http = self._make_client()
            from oidc_publish.credentials import TrustedPublishing

            publishing = TrustedPublishing(
                index=target.index,
                http=lambda: http,
                policy=policy,
                reporter=reporter,
                project=target.project,
                identity=identity,
                first_identity=first,
                clock=world.wall,
            )
            # Minted before any upload, so a misconfigured publisher fails here, dry run or not.
            publishing.token()
            return publishing

        reporter.log(
            f"Exchanging this job's identity token for an upload token at {target.index.host}"
        )
        return Pending(run, "token exchange")

    def _make_client(self) -> httpx.Client:
        """The HTTP client, handed to whoever waits on it as well."""
        from oidc_publish.network import client

        try:
            http = client(self._reporter.debug, self._environ)
        except BaseException as error:
            self._made.set_exception(error)
            raise
        self._made.set_result(http)
        return http
