"""Manager benchmark: a flood of concurrent POST /run to a dead agent, and how fast /health answers meanwhile.

The manager (`python -m manager_api`) points at a loopback port nobody listens on, with the default retry budget
(30 s) and admission bound (8 agent calls). CLIENTS requests are sent at once; /health is timed every 100 ms while
they are under way; then SIGTERM is timed. Target: /health under 1 s throughout (issue 9). Loopback only, bounded.

    .venv/bin/python bench/manager_flood.py [--clients 64] [--probes 40]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = {"name": "flood", "owner": "bench", "datasets": ["d"], "algorithms": ["a"], "ttl": 5}
BENCH_ROOT = Path("/var/lib/cocos-test/mgr")


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_manager(state_dir: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "CC_MANAGER_HTTP_HOST": "127.0.0.1", "CC_MANAGER_HTTP_PORT": "0",
           "CC_MANAGER_GRPC_HOST": "127.0.0.1", "CC_MANAGER_GRPC_PORT": "0", "CC_MANAGER_LOG_LEVEL": "info",
           "CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{dead_port()}", "CC_MANAGER_STATE_DIR": str(state_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "manager_api"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            text=True)
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the manager did not start")
        entry = json.loads(line)
        if entry["msg"] == "manager started":
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, entry["http_port"]


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start  # connection closed by the stopping manager
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--probes", type=int, default=40)
    args = parser.parse_args()
    state = BENCH_ROOT / f"flood-{uuid.uuid4().hex[:8]}"
    proc, port = start_manager(state)
    try:
        with futures.ThreadPoolExecutor(args.clients) as pool:
            runs = [pool.submit(call, port, "POST", "/run", RUN) for _ in range(args.clients)]
            time.sleep(0.3)  # the flood is in: every bound is full
            health = []
            for _ in range(args.probes):
                status, seconds = call(port, "GET", "/health")
                assert status == 200, status
                health.append(seconds)
                time.sleep(0.1)
            refused = [r.result() for r in runs if r.done() and r.result()[0] == 503]
            start = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            stop_seconds = time.perf_counter() - start
            outcomes = [r.result()[0] for r in runs]
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(state, ignore_errors=True)
    ordered = sorted(health)
    print(json.dumps({
        "clients": args.clients,
        "health_ms": {"p50": round(statistics.median(ordered) * 1000, 2),
                      "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
                      "max": round(ordered[-1] * 1000, 2), "samples": len(ordered)},
        "refused_503_at_once": len(refused),
        "refused_ms_max": round(max((r[1] for r in refused), default=0) * 1000, 1),
        "outcomes": {str(code): outcomes.count(code) for code in sorted(set(outcomes))},
        "sigterm_to_exit_s": round(stop_seconds, 2), "exit_code": proc.returncode,
        "target_health_under_1s": ordered[-1] < 1.0,
    }, indent=2))


if __name__ == "__main__":
    main()
