"""`python -m agent` as a real subprocess: it binds a free loopback port, serves, logs JSON, and stops on SIGTERM."""

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading

import grpc
import pytest
from agent_testlib import PYTHON, SUM_ALGORITHM, make_work_dir, manifest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cocos_pb import agent_pb2, agent_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[os.uname().machine]  # <asm/unistd.h>: signal one thread of a process


def _start(env_overrides: dict[str, str]) -> tuple[subprocess.Popen[str], "queue.Queue[str]"]:
    env = {**os.environ, "AGENT_GRPC_HOST": "127.0.0.1", "AGENT_GRPC_PORT": "0", "AGENT_PYTHON": PYTHON}
    env.update(env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent"], cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore
    return proc, lines


def _next_log(lines: "queue.Queue[str]", message: str) -> dict:
    while True:
        entry = json.loads(lines.get(timeout=20))
        if entry["msg"] == message:
            return entry


@pytest.fixture
def work_dir():
    path = make_work_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_entry_point_serves_and_stops_on_sigterm(work_dir):
    proc, lines = _start({"AGENT_WORK_DIR": work_dir, "AGENT_LOG_LEVEL": "debug"})
    try:
        listening = _next_log(lines, "agent listening")
        assert listening["level"] == "info" and listening["work_dir"] == work_dir
        with grpc.insecure_channel(f"127.0.0.1:{listening['port']}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            assert stub.Run(agent_pb2.RunRequest(computation=manifest()), timeout=10).Computation == "comp-1"
            stub.Algo(agent_pb2.AlgoRequest(algorithm=SUM_ALGORITHM), timeout=10)
        assert _next_log(lines, "algorithm received")["state"] == "receiving_data"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert _next_log(lines, "stop requested")["signal"] == "SIGTERM"
        _next_log(lines, "agent stopped")
        assert [name for name in os.listdir(work_dir) if name.startswith("computation-")] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_delivered_to_a_worker_thread_still_stops_the_agent(work_dir):
    # The kernel delivers a process's signal to any thread not blocking it; under a tracer (strace -f), often not the
    # main one. tgkill aims it at a gRPC thread on purpose.
    proc, lines = _start({"AGENT_WORK_DIR": work_dir})
    try:
        _next_log(lines, "agent listening")
        workers = [int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid]
        assert workers
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(SYS_TGKILL, proc.pid, workers[0], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
        assert proc.wait(timeout=15) == 0
        assert _next_log(lines, "stop requested")["signal"] == "SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_configuration_exits_2_with_a_json_reason(work_dir):
    proc, lines = _start({"AGENT_WORK_DIR": work_dir, "AGENT_GRPC_PORT": "seven"})
    assert proc.wait(timeout=15) == 2
    entry = _next_log(lines, "invalid configuration")
    assert entry["level"] == "error"
    assert entry["reason"] == "AGENT_GRPC_PORT must be an integer, got 'seven'"
