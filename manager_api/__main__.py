"""`python -m manager_api` (or `cocos-manager`): both servers until SIGTERM/SIGINT, then a clean stop."""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading

from manager_api import config as config_mod
from manager_api import grpc_server, logs
from manager_api.http_server import HttpServer
from manager_api.services import build_services

log = logging.getLogger("manager_api")


def main() -> int:
    try:
        cfg = config_mod.from_env()
    except config_mod.ConfigError as exc:
        print(json.dumps({"level": "error", "logger": "manager_api", "msg": "invalid configuration",
                          "error": str(exc)}), file=sys.stderr)
        return 2
    logs.setup(cfg.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.set())
    services = build_services(cfg)
    grpc, grpc_port = grpc_server.build_server(services)
    http = HttpServer(services)
    try:
        http_port = http.start()
    except OSError as exc:
        log.error("cannot bind HTTP server", extra={"error": str(exc)})
        grpc.stop(0)
        return 1
    log.info("manager started", extra={"http_port": http_port, "grpc_port": grpc_port, "tls": cfg.tls,
                                       "agent": cfg.agent_grpc_url, "xml_dir": cfg.xml_dir})
    stop.wait()
    log.info("stopping")
    http.stop()
    grpc.stop(grace=5).wait(10)
    services.close()
    log.info("manager stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
