"""The container's entry point: publish the distributions, exit with the result."""

import os
import signal
import sys

if __name__ == "__main__":
    # SIGINT and SIGTERM are held from here until main() has its handlers in place, then
    # delivered to them: a job cancelled during the imports is reported like any other.
    # Held, not left to their default: as PID 1 in the container a SIGTERM without a
    # handler is dropped, and SIGINT's default is a traceback.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    from oidc_publish.cli import main

    code = main()
    # Everything the runner reads (log, outputs, summary) is written and flushed by now;
    # skipping the interpreter's teardown of some 500 modules saves 50 ms a run. It also
    # ends at once the uploads a cancellation abandoned, and a signal that comes now
    # stays held: the exit status is the report's.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
