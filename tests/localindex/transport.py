"""The local index's HTTPS plumbing: TLS, WSGI, request bodies, scripted faults, the log.

`HttpsServer` serves one WSGI app over TLS on 127.0.0.1, one thread per connection.
`Requests` holds what every request shares: the log (which a test can wait on), the
queued faults per endpoint, and a cancellation that `reset()` fires, so requests still
waiting (delayed, throttled, dripping, held) end unanswered and unlogged. `Exchange` is one
request as a handler sees it.
Nothing here knows PyPI: see pypi.py for its rules and server.py for the routes.
"""

from __future__ import annotations

import html
import io
import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import TCPServer, ThreadingMixIn
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn, cast
from wsgiref.headers import Headers
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from tests.localindex.carried import BODY_HEAD, Seen

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

__all__ = [
    "Dropped",
    "Exchange",
    "Fault",
    "HttpsServer",
    "LogEntry",
    "Received",
    "Requests",
    "phrase",
]

_CHUNK = 64 * 1024
_CONNECTION = "localindex.connection"
EXCHANGE = "localindex.exchange"
"""The environ key under which a mounted app finds its request's Exchange."""
HTML = "text/html; charset=UTF-8"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class Received:
    """A request as an echo fault sees it: all a server quoting it back could quote."""

    headers: dict[str, str]
    body: bytes

    def bearer(self) -> str:
        """The credential of an `Authorization: Bearer` header, "" without one."""
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        return credential if scheme.lower() == "bearer" else ""


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour, acted out instead of one normal answer."""

    action: Literal["status", "reset", "delay", "drip", "huge", "cut", "redirect", "echo", "hold"]
    code: int = 200
    reason: str = ""
    body: bytes = b""
    """status: the body; huge: the HTML page's first line."""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = HTML
    after_bytes: int = 0
    seconds: float = 0.0
    size: int = 0
    """drip, huge, cut: the body's length in bytes."""
    declared: bool = True
    """huge: the length goes out as Content-Length; if not, the body ends when the
    connection closes, and only a client that counts what it reads can stop early."""
    location: str | None = None
    """redirect: the target path (with query), or None for the request's own."""
    answer: Callable[[Received], object] | None = None
    """echo: the body made of the request (bytes, text, or JSON as an object)."""

    @classmethod
    def status(
        cls,
        code: int,
        reason: str | None = None,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        content_type: str = HTML,
    ) -> Fault:
        """Answer `code` (a CDN or proxy error, say) without doing the real work.

        `reason` goes out as written, control characters included (latin-1 only).
        """
        return cls(
            "status",
            code,
            reason or phrase(code),
            body.encode() if isinstance(body, str) else body,
            tuple((headers or {}).items()),
            content_type,
        )

    @classmethod
    def echo(
        cls,
        code: int,
        answer: Callable[[Received], object],
        content_type: str = "application/json",
    ) -> Fault:
        """Answer `code` with a body `answer` makes of the request's headers and body: a
        server whose error quotes what it was sent (a token, say)."""
        return cls("echo", code, phrase(code), content_type=content_type, answer=answer)

    @classmethod
    def reset(cls, after_bytes: int = 0) -> Fault:
        """Read `after_bytes` of the body, then drop the connection (RST), answering nothing."""
        return cls("reset", after_bytes=after_bytes)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Stall `seconds`, then handle the request normally: makes clients time out."""
        return cls("delay", seconds=seconds)

    @classmethod
    def hold(cls) -> Fault:
        """Read the body, log the request at once (status "held"), and answer nothing until
        `release_held()` or a reset drops it: a request in flight for as long as a test
        needs, which the test can see arrive."""
        return cls("hold")

    @classmethod
    def drip(
        cls, size: int, every: float, code: int = 200, content_type: str = "application/json"
    ) -> Fault:
        """Send the headers (Content-Length `size`) at once, then one byte every `every` s.

        No single read ever waits long, so only a total deadline ends it.
        """
        return cls("drip", code, phrase(code), content_type=content_type, seconds=every, size=size)

    @classmethod
    def huge(
        cls,
        size: int,
        kind: Literal["json", "html"] = "json",
        code: int = 200,
        *,
        declared: bool = True,
        heading: str = "",
    ) -> Fault:
        """A `size`-byte body generated while it is sent (never held whole): a JSON object
        or an HTML page, well formed if read to the end, typed as the simple API types it.
        `declared=False` sends no Content-Length.

        `heading` opens an HTML page, as an index's error page says what went wrong
        ("Package ... already exists!") before whatever follows."""
        if heading and kind != "html":
            raise ValueError("only an HTML page has a heading")
        content_type = SIMPLE_JSON if kind == "json" else HTML
        lead = f"<h1>{html.escape(heading)}</h1>\n".encode() if heading else b""
        return cls(
            "huge",
            code,
            phrase(code),
            lead,
            content_type=content_type,
            size=size,
            declared=declared,
        )

    @classmethod
    def cut(cls, code: int, size: int, after_bytes: int) -> Fault:
        """Answer `code` with Content-Length `size`, and close the connection once
        `after_bytes` of the page are sent: an answer broken off after the request was read.

        Closed as a server going away closes it (not a reset, which could overtake the
        headers), so the client reads the headers and those bytes, then the end."""
        return cls("cut", code, phrase(code), after_bytes=after_bytes, size=size)

    @classmethod
    def redirect(cls, code: int = 302, location: str | None = None) -> Fault:
        """Redirect to plain http:// on the index's own host and port (`location`, or the
        request's own path and query): nothing answers HTTP there, a client must refuse."""
        return cls("redirect", code, phrase(code), location=location)


class LogEntry(NamedTuple):
    endpoint: str
    method: str
    path: str
    status: int | Literal["reset", "held"]


class Dropped(Exception):
    """The request ends without an answer (a reset fault, a cancelled wait, a client gone)."""


class Requests:
    """What all requests share: the log, queued faults, and the current session.

    A session ends at reset(): requests of an earlier one are no longer logged, and
    their waits end at once (Dropped).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[LogEntry] = []
        self.seen: list[Seen] = []
        """Every request's headers and the start of its body, as it arrived."""
        self.failed_handshakes: list[str] = []
        """OpenSSL's reason for each TLS handshake that failed on the server's side."""
        self._changed = threading.Condition(self.lock)
        self._faults: dict[str, deque[Fault]] = {}
        self._generation = 0
        self._cancelled = threading.Event()
        self._releases = 0

    def session(self) -> tuple[int, threading.Event]:
        with self.lock:
            return self._generation, self._cancelled

    def arrived(self, generation: int, seen: Seen) -> None:
        with self.lock:
            if generation == self._generation:
                self.seen.append(seen)

    def handshake_failed(self, reason: str) -> None:
        with self.lock:
            self.failed_handshakes.append(reason)

    def record(self, generation: int, entry: LogEntry) -> None:
        with self.lock:
            if generation == self._generation:
                self.log.append(entry)
                self._changed.notify_all()

    def wait_for(self, condition: Callable[[list[LogEntry]], bool], timeout: float) -> bool:
        """Whether the log satisfied `condition` (called with the lock held) in time."""
        with self._changed:
            return self._changed.wait_for(lambda: condition(self.log), timeout)

    def hold(self, cancelled: threading.Event) -> None:
        """Blocks until release() or the end of the request's session (`cancelled`)."""
        with self._changed:
            releases = self._releases
            self._changed.wait_for(lambda: self._releases != releases or cancelled.is_set())

    def release(self) -> None:
        with self._changed:
            self._releases += 1
            self._changed.notify_all()

    def add_faults(self, endpoint: str, faults: Iterable[Fault]) -> None:
        with self.lock:
            self._faults.setdefault(endpoint, deque()).extend(faults)

    def next_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def reset(self) -> None:
        """A new session: earlier requests cancelled, faults and log emptied."""
        with self.lock:
            self._cancelled.set()
            self._cancelled = threading.Event()
            self._generation += 1
            self._faults.clear()
            self.log.clear()
            self.seen.clear()
            self.failed_handshakes.clear()
            self._changed.notify_all()

    def cancel(self) -> None:
        with self.lock:
            self._cancelled.set()
            self._changed.notify_all()


class Exchange:
    """One request as a handler sees it: its body, its answer and its log entry."""

    def __init__(
        self,
        requests: Requests,
        endpoint: str,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> None:
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]
        self.path: str = environ.get("PATH_INFO", "")
        self.endpoint = endpoint
        self._requests = requests
        self._start_response = start_response
        self._generation, self._cancelled = requests.session()
        self._body_read = False
        self._seen = Seen(endpoint, self.headers(), bytearray())
        requests.arrived(self._generation, self._seen)
        environ[EXCHANGE] = self

    def header(self, name: str) -> str:
        """A request header, "" when absent."""
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        return str(self.environ.get(key, ""))

    def headers(self) -> dict[str, str]:
        """The request's headers, names as HTTP writes them (Cache-Control)."""
        found = {
            key[5:].replace("_", "-").title(): str(value)
            for key, value in self.environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if self.environ.get(key):
                found[key.replace("_", "-").title()] = str(self.environ[key])
        return found

    def act(self, fault: Fault, port: int) -> Iterable[bytes] | None:
        """Acts out `fault`: an answer, or None to go on and handle the request."""
        match fault.action:
            case "status":
                return self.respond(
                    fault.code, fault.reason, fault.body, fault.headers, fault.content_type
                )
            case "reset":
                self.read_body(limit=fault.after_bytes)
                self.drop_connection()
            case "drip" | "huge" | "cut":
                return self.stream(fault.code, fault.content_type, *self._body(fault))
            case "echo":
                return self._echo(fault)
            case "redirect":
                query = self.environ.get("QUERY_STRING")
                target = fault.location or self.path + (f"?{query}" if query else "")
                location = f"http://127.0.0.1:{port}{target}"
                return self.page(fault.code, fault.reason, [("Location", location)])
            case "hold":
                self.read_body()
                entry = LogEntry(self.endpoint, self.method, self.path, "held")
                self._requests.record(self._generation, entry)
                self._requests.hold(self._cancelled)
                raise Dropped
        self.wait(fault.seconds)
        return None

    def _body(self, fault: Fault) -> tuple[int | None, Iterator[bytes]]:
        """A streamed fault's Content-Length (None: not sent) and body."""
        if fault.action == "drip":
            return fault.size, _drip(self, fault)
        if fault.action == "cut":
            return fault.size, _cut(fault)
        body = _generated(fault.size, fault.content_type == SIMPLE_JSON, fault.body)
        return (fault.size if fault.declared else None), body

    def _echo(self, fault: Fault) -> Iterable[bytes]:
        assert fault.answer is not None
        received = io.BytesIO()
        self.read_body(received)
        answer = fault.answer(Received(self.headers(), received.getvalue()))
        if isinstance(answer, bytes | str):
            quoted = answer.encode() if isinstance(answer, str) else answer
        else:
            quoted = json.dumps(answer).encode()
        return self.respond(fault.code, fault.reason, quoted, (), fault.content_type)

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        # Logged before the first byte goes out: a client holding its answer finds it logged.
        entry = LogEntry(self.endpoint, self.method, self.path, int(status[:3]))
        self._requests.record(self._generation, entry)
        return self._start_response(status, headers, exc_info)

    def respond(
        self,
        code: int,
        reason: str | None = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = HTML,
    ) -> list[bytes]:
        # Whatever is left of the body is read first, as PyPI's proxy would have.
        self.read_body()
        # As PyPI does: a status line carries latin-1 only.
        text = (reason or phrase(code)).encode("iso-8859-1", "replace").decode("iso-8859-1")
        self.start_response(
            f"{code} {text}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers],
        )
        return [body]

    def stream(
        self, code: int, content_type: str, length: int | None, chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        """Headers at once (with Content-Length `length`, if any), then `chunks` as they come."""
        self.read_body()
        declared = [] if length is None else [("Content-Length", str(length))]
        self.start_response(f"{code} {phrase(code)}", [("Content-Type", content_type), *declared])
        # An empty first piece makes wsgiref send the headers before the body is ready.
        yield b""
        yield from chunks

    def json(self, code: int, payload: object) -> list[bytes]:
        body = json.dumps(payload).encode()
        return self.respond(code, body=body, content_type="application/json")

    def page(
        self, code: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        """An error as PyPI sends it: the message in the reason phrase, and an HTML page."""
        title = html.escape(f"{code} {reason or phrase(code)}")
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return self.respond(code, reason, page.encode(), headers)

    def read_body(
        self, sink: IO[bytes] | None = None, *, limit: int | None = None, rate: float | None = None
    ) -> int:
        """Reads the rest of the body (or its first `limit` bytes), `rate` bytes a second at most.

        Returns the bytes read; later calls read nothing.
        """
        if self._body_read or limit == 0:
            return 0
        self._body_read = True
        stream: IO[bytes] = self.environ["wsgi.input"]
        # Throttled reads come in twentieths of a second, so the pace stays even.
        size = min(_CHUNK, max(1024, int(rate / 20))) if rate else _CHUNK
        if self.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            chunks = _dechunked(stream, size)
        else:
            chunks = _counted(stream, int(self.environ.get("CONTENT_LENGTH") or 0), size)
        received = 0
        started = time.monotonic()
        for chunk in chunks:
            piece = chunk if limit is None else chunk[: limit - received]
            received += len(piece)
            kept = BODY_HEAD - len(self._seen.body)
            if kept > 0:
                self._seen.body.extend(piece[:kept])
            if sink is not None:
                sink.write(piece)
            if rate:
                self.wait(started + received / rate - time.monotonic())
            if limit is not None and received >= limit:
                break
        return received

    def wait(self, seconds: float) -> None:
        """Sleeps, abandoning the request if the index is reset or stopped meanwhile."""
        if seconds > 0 and self._cancelled.wait(seconds):
            raise Dropped

    def drop_connection(self) -> NoReturn:
        connection: socket.socket = self.environ[_CONNECTION]
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The handler's file objects keep the descriptor open until the handler returns;
        # the real close happens then, before the server would shut the socket down
        # gracefully, and with linger 0 it sends an RST instead of a FIN.
        connection.close()
        entry = LogEntry(self.endpoint, self.method, self.path, "reset")
        self._requests.record(self._generation, entry)
        raise Dropped


def _drip(ex: Exchange, fault: Fault) -> Iterator[bytes]:
    for number in range(fault.size):
        ex.wait(fault.seconds)
        yield b"{" if number == 0 else b" "


def _cut(fault: Fault) -> Iterator[bytes]:
    yield b"x" * fault.after_bytes
    raise Dropped  # the handler ends, and the server closes the connection


def _generated(size: int, json_body: bool, lead: bytes = b"") -> Iterator[bytes]:
    """`size` bytes of a JSON object or an HTML page (opening with `lead`), made a chunk at
    a time."""
    if json_body:
        head, filler, tail = b'{"meta": {"api-version": "1.4"}, "padding": "', b"x" * 64, b'"}'
    else:
        head, filler, tail = (
            b"<!DOCTYPE html><html><body>\n" + lead,
            b'<a href="x">x</a>\n',
            b"</body></html>\n",
        )
    if size < len(head) + len(tail):
        yield (head + tail)[:size]
        return
    yield head
    remaining = size - len(head) - len(tail)
    block = filler * (_CHUNK // len(filler))
    while remaining > 0:
        piece = block[:remaining]
        remaining -= len(piece)
        yield piece
    yield tail


def _counted(stream: IO[bytes], length: int, size: int) -> Iterator[bytes]:
    while length > 0:
        try:
            data = stream.read(min(size, length))
        except TimeoutError:
            raise Dropped from None
        if not data:
            raise Dropped
        length -= len(data)
        yield data


def _dechunked(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """A chunked body's data, for clients that stream an upload of unknown length."""
    while True:
        line = stream.readline(1024)
        if not line:
            raise Dropped
        length = int(line.split(b";")[0], 16)
        if length == 0:
            while stream.readline(1024).strip():  # trailers, up to the blank line
                pass
            return
        yield from _counted(stream, length, size)
        stream.readline(1024)


class _ServerHandler(ServerHandler):
    http_version = "1.1"
    request_handler: WSGIRequestHandler
    headers: Headers

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        # wsgiref serves one request per connection; saying so keeps clients from reusing it.
        self.headers["Connection"] = "close"

    def handle_error(self) -> None:
        # A dropped request, or a client that hung up mid-answer (a drip, a huge body).
        if not isinstance(sys.exc_info()[1], Dropped | OSError):
            super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    request: ssl.SSLSocket
    # As an HTTP/1.1 server does, a request that says `Expect: 100-continue` is answered
    # "100 Continue" at once (parse_request does it for this version), rather than left to
    # wait for the client's timeout (curl's: a second) before it sends its body.
    protocol_version = "HTTP/1.1"
    # As a proxy's body timeout does: a client that stops sending mid-request is cut
    # off, rather than holding a thread (and itself) forever.
    timeout = 60

    def setup(self) -> None:
        # The TLS handshake runs here, in the request's own thread, so a stalled client
        # cannot hold up accept().
        try:
            self.request.do_handshake()
        except ssl.SSLError as error:
            assert isinstance(self.server, HttpsServer)
            self.server.requests.handshake_failed(error.reason or str(error))
            raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: LocalIndex.log records requests."""

    def handle(self) -> None:
        """wsgiref's handle(), with the handler above and the connection in the environ."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        environ[_CONNECTION] = self.connection
        output = cast("IO[bytes]", self.wfile)
        handler = _ServerHandler(self.rfile, output, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        assert isinstance(self.server, HttpsServer)
        handler.run(self.server.wsgi_app)


class HttpsServer(ThreadingMixIn, WSGIServer):
    """`app` over TLS on 127.0.0.1 at a free port; serve_forever() in a thread of your own.
    A handshake that fails is noted in `requests`."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        tls: ssl.SSLContext,
        app: WSGIApplication,
        requests: Requests,
    ) -> None:
        self._tls = tls
        self.wsgi_app = app
        self.requests = requests
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host up in DNS (getfqdn); no need here.
        TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]
        self.setup_environ()
        self.base_environ["HTTPS"] = "on"

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        wrapped = self._tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up or failing the TLS handshake are expected; anything else is a bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"
