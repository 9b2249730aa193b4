"""The HTTP server: cheroot's threaded WSGI server around the Bottle app, with TLS and request metrics.

Slow clients cannot hold its threads: a request's line and headers must arrive within CC_MANAGER_HEADER_TIMEOUT
(a watchdog shuts the connection down otherwise, however slowly the bytes trickle in), and the TLS handshake
happens in the worker under the same deadline instead of in cheroot's accept loop, where one silent client would
stall every new connection. Work that waits (agent calls, synchronous jobs, event streams) is bounded by admission
gates, and the pool has threads beyond those bounds, so /health and /metrics always find one.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from manager_api.app import create_app
from manager_api.services import Services

log = logging.getLogger("manager_api.http")
# Threads beyond the admission bounds: for /health, /metrics and the quick requests.
RESERVE_THREADS = 8


class MetricsMiddleware:
    """Counts every request, also those Bottle answers itself (404, 405), and writes one access log line."""

    def __init__(self, app: Callable, services: Services) -> None:
        self.app = app
        self.metrics = services.metrics

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        start = time.perf_counter()
        seen: dict[str, str] = {}

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        route = environ.get("bottle.route")
        rule = route.rule if route is not None else "unmatched"
        elapsed = time.perf_counter() - start
        status = seen.get("status", "500")
        self.metrics.observe("http", environ.get("REQUEST_METHOD", ""), rule, status, elapsed)
        log.info("request", extra={"method": environ.get("REQUEST_METHOD"), "path": environ.get("PATH_INFO"),
                                   "status": int(status), "ms": round(elapsed * 1000, 2),
                                   "request_id": environ.get("cocos.request_id")})
        return body


class HeaderWatchdog:
    """Shuts down connections whose request line and headers did not arrive before their deadline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="header-watchdog", daemon=True).start()

    def arm(self, sock: Any) -> int:
        token = id(sock)
        with self._lock:
            self._armed[token] = (time.monotonic() + self.timeout, sock)
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [(token, sock) for token, (deadline, sock) in self._armed.items() if deadline < now]
                for token, _ in late:
                    del self._armed[token]
            for _, sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns; cheroot closes the connection
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()


def _request_class(watchdog: HeaderWatchdog) -> type:
    class DeadlineRequest(cheroot_server.HTTPRequest):
        def parse_request(self) -> None:
            token = watchdog.arm(self.conn.socket)
            try:
                super().parse_request()
            finally:
                watchdog.disarm(token)
    return DeadlineRequest


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """TLS whose handshake runs at the first read, in a worker under the header deadline, not in the accept loop."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict]:
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class HttpServer:
    def __init__(self, services: Services) -> None:
        cfg = services.config
        app = MetricsMiddleware(create_app(services), services)
        threads = cfg.max_agent_calls + cfg.max_waiters + cfg.max_streams + RESERVE_THREADS
        # A deep listen backlog: a burst of clients is answered (503 when over a bound) instead of waiting for
        # the kernel's SYN retry, a second later.
        self.server = wsgi.Server((cfg.http_host, cfg.http_port), app, numthreads=threads,
                                  server_name="cocos-manager", request_queue_size=256)
        self.watchdog = HeaderWatchdog(cfg.header_timeout)
        self.server.ConnectionClass = type("DeadlineConnection", (cheroot_server.HTTPConnection,),
                                           {"RequestHandlerClass": _request_class(self.watchdog)})
        self.server.shutdown_timeout = 2
        if cfg.tls:
            self.server.ssl_adapter = DeferredHandshakeAdapter(cfg.server_cert, cfg.server_key)
        self.thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve in a background thread; returns the bound port."""
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, name="http", daemon=True)
        self.thread.start()
        return int(self.server.bind_addr[1])

    def stop(self) -> None:
        self.server.stop()
        self.watchdog.stop()
        if self.thread is not None:
            self.thread.join(timeout=5)
