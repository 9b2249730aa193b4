"""The HTTP server: cheroot's threaded WSGI server around the Bottle app, with TLS and request metrics."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from manager_api.app import create_app
from manager_api.services import Services

log = logging.getLogger("manager_api.http")


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


class HttpServer:
    def __init__(self, services: Services, threads: int = 32) -> None:
        cfg = services.config
        app = MetricsMiddleware(create_app(services), services)
        # Every SSE watcher holds a thread for the life of its job, hence more threads than cores.
        self.server = wsgi.Server((cfg.http_host, cfg.http_port), app, numthreads=threads,
                                  server_name="cocos-manager")
        if cfg.tls:
            self.server.ssl_adapter = BuiltinSSLAdapter(cfg.server_cert, cfg.server_key)
        self.thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve in a background thread; returns the bound port."""
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, name="http", daemon=True)
        self.thread.start()
        return int(self.server.bind_addr[1])

    def stop(self) -> None:
        self.server.stop()
        if self.thread is not None:
            self.thread.join(timeout=10)
