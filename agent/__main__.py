"""`python -m agent`: serve until SIGTERM or SIGINT, then stop cleanly (the guest's init sends SIGTERM)."""

import gc

# Importing gRPC leaves ~40,000 tracked objects; the cyclic collections run meanwhile cost ~20 % of the
# agent's start-up, which under TCG is seconds. None run until the server is up (then survivors are frozen).
gc.disable()

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from types import FrameType  # noqa: E402

from agent import config, logs, service  # noqa: E402

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
    gc.freeze()  # what start-up made lives as long as the process: no collection need ever scan it
    gc.enable()
    log.info("agent listening", extra={"host": settings.host, "port": server.port, "work_dir": settings.work_dir,
                                       "startup_seconds": _since_process_start()})
    # The kernel may hand SIGTERM to any of gRPC's threads; Python then runs request_stop only when the main thread
    # executes bytecode, which a wait without a timeout never lets it do: wake up to look twice a second.
    while not stop.wait(timeout=0.5):
        pass
    server.stop(settings.grace_seconds)
    log.info("agent stopped")
    return 0


def _since_process_start() -> float | None:
    """Seconds since the kernel started this process (interpreter start-up included), or None off Linux."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return round(float(uptime.read().split()[0]) - started, 3)
    except (OSError, ValueError, IndexError):
        return None


if __name__ == "__main__":
    sys.exit(main())
