"""`python -m manager_api` (or `cocos-manager`): both servers until SIGTERM/SIGINT, then a stop within 10 s.

Stopping cancels the jobs that run (their playbooks' process trees are stopped; rollbacks run at the next start),
ends calls waiting for agents, and closes both listeners; whatever is still busy after STOP_DEADLINE is abandoned.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from manager_api import config as config_mod
from manager_api import grpc_server, logs
from manager_api.http_server import HttpServer
from manager_api.services import build_services

log = logging.getLogger("manager_api")
STOP_DEADLINE = 9.0


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
    try:
        services = build_services(cfg)
    except config_mod.ConfigError as exc:  # the inventory's hosts
        log.error("invalid configuration", extra={"error": str(exc)})
        return 2
    except OSError as exc:
        log.error("cannot open the state directory", extra={"error": str(exc)})
        return 1
    grpc, grpc_port = grpc_server.build_server(services)
    http = HttpServer(services)
    try:
        http_port = http.start()
    except OSError as exc:
        log.error("cannot bind HTTP server", extra={"error": str(exc)})
        grpc.stop(0)
        return 1
    log.info("manager started", extra={"http_port": http_port, "grpc_port": grpc_port, "tls": cfg.tls,
                                       "agent": cfg.agent_grpc_url, "xml_dir": cfg.xml_dir,
                                       "hosts": {h.name: h.health()[0] for h in services.hosts.hosts()},
                                       "interrupted_jobs": services.interrupted})
    # The kernel may hand SIGTERM to any thread; Python runs the handler only when the main thread executes
    # bytecode, which a wait without a timeout never lets it do: wake up to look four times a second.
    while not stop.wait(timeout=0.25):
        pass
    log.info("stopping")
    # Whatever still hangs after the deadline must not keep the process alive.
    threading.Timer(STOP_DEADLINE, lambda: os._exit(0)).start()
    canceling = threading.Thread(target=services.stop_work, args=(5.0,), daemon=True)
    canceling.start()
    stopped = grpc.stop(grace=1)
    http.stop()
    canceling.join(6)
    stopped.wait(1)
    services.close()
    log.info("manager stopped")
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
