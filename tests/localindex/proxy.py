"""An HTTPS proxy as a company's runners have one: CONNECT only, on 127.0.0.1.

It is the only way to the names in `routes`, which it maps to local addresses itself: names
the run uses can be ones that resolve nowhere (under `.invalid`), or PyPI's own, so a client
that ignores the proxy cannot reach them. A name it does not know answers 502, as a proxy
that cannot resolve it. `credentials` makes it ask for Basic credentials (407 without them);
`refused` names hosts its policy forbids (403). `tunnels` logs every CONNECT.
"""

from __future__ import annotations

import base64
import hmac
import select
import socket
import threading
from dataclasses import dataclass
from socketserver import StreamRequestHandler, ThreadingTCPServer
from urllib.parse import quote

from tests.localindex.service import Service

__all__ = ["ConnectProxy", "Tunnel"]

_MAX_HEAD = 16 * 1024
_BLOCK = 256 * 1024


@dataclass(frozen=True)
class Tunnel:
    """One CONNECT: the host and port asked for, and the proxy's answer."""

    host: str
    port: int
    status: int
    authorization: str
    """The Proxy-Authorization header as sent, "" without one."""


class ConnectProxy(Service):
    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        """host name (lower case) -> the local address the tunnel goes to."""
        self.credentials: tuple[str, str] | None = None
        self.refused: set[str] = set()
        self.tunnels: list[Tunnel] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self)

        self._server = ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="localindex-proxy",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The proxy's URL as HTTPS_PROXY names it, with its credentials when it asks for some."""
        port = self._server.server_address[1]
        if self.credentials is None:
            return f"http://127.0.0.1:{port}"
        user, password = (quote(part, safe="") for part in self.credentials)
        return f"http://{user}:{password}@127.0.0.1:{port}"

    def start(self) -> ConnectProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.tunnels.clear()
        self.credentials = None
        self.refused = set()

    def hosts(self) -> set[str]:
        """The hosts the proxy opened a tunnel to."""
        with self._lock:
            return {tunnel.host for tunnel in self.tunnels if tunnel.status == 200}

    def _handle(self, handler: StreamRequestHandler) -> None:
        head = _read_head(handler)
        if head is None:
            return
        request, headers = head
        method, _, rest = request.partition(" ")
        target = rest.partition(" ")[0]
        if method != "CONNECT":
            _answer(handler, 405, "Method Not Allowed")
            return
        host, _, port_text = target.rpartition(":")
        host = host.strip("[]").lower()
        port = int(port_text) if port_text.isdigit() else 443
        authorization = headers.get("proxy-authorization", "")
        status, reason = self._decide(host, port, authorization)
        with self._lock:
            self.tunnels.append(Tunnel(host, port, status, authorization))
        if status != 200:
            extra = ['Proxy-Authenticate: Basic realm="egress"'] if status == 407 else []
            _answer(handler, status, reason, extra)
            return
        address = self.routes.get(host) or (host, port)
        try:
            upstream = socket.create_connection(address, timeout=10)
        except OSError:
            _answer(handler, 502, "Bad Gateway")
            return
        _answer(handler, 200, "Connection established")
        _relay(handler.connection, upstream)

    def _decide(self, host: str, port: int, authorization: str) -> tuple[int, str]:
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if not hmac.compare_digest(authorization.encode(), expected.encode()):
                return 407, "Proxy Authentication Required"
        if host in self.refused:
            return 403, "Forbidden"
        if host not in self.routes and host not in ("127.0.0.1", "localhost"):
            return 502, "Bad Gateway"
        return 200, "Connection established"


def _read_head(handler: StreamRequestHandler) -> tuple[str, dict[str, str]] | None:
    """The request line and headers, or None for a client that sent no complete head."""
    lines: list[str] = []
    size = 0
    while True:
        line = handler.rfile.readline(_MAX_HEAD)
        size += len(line)
        if not line or size > _MAX_HEAD:
            return None
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        lines.append(text)
    if not lines:
        return None
    headers: dict[str, str] = {}
    for header in lines[1:]:
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _answer(
    handler: StreamRequestHandler, status: int, reason: str, extra: list[str] | None = None
) -> None:
    lines = [f"HTTP/1.1 {status} {reason}", *(extra or [])]
    if status != 200:
        lines += ["Content-Length: 0", "Connection: close"]
    handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    handler.wfile.flush()


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copies bytes both ways until either side closes."""
    sockets = [client, upstream]
    try:
        while True:
            readable, _, broken = select.select(sockets, [], sockets, 60)
            if broken or not readable:
                return
            for source in readable:
                data = source.recv(_BLOCK)
                if not data:
                    return
                (upstream if source is client else client).sendall(data)
    except OSError:
        return
    finally:
        upstream.close()
