"""`python -m agent`: serve until SIGTERM or SIGINT, then stop cleanly (the guest's init sends SIGTERM)."""

import logging
import signal
import sys
import threading
from types import FrameType

from agent import config, logs, service

log = logging.getLogger("agent")


def main() -> int:
    try:
        settings = config.load()
    except config.ConfigError as exc:
        logs.setup("INFO")
        log.error("invalid configuration", extra={"reason": str(exc)})
        return 2
    logs.setup(settings.log_level)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server = service.start(settings)
    except (OSError, RuntimeError) as exc:
        log.error("agent cannot start", extra={"reason": str(exc)})
        return 1
    log.info("agent listening", extra={"host": settings.host, "port": server.port, "work_dir": settings.work_dir})
    stop.wait()
    server.stop(settings.grace_seconds)
    log.info("agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
