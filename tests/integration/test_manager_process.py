"""`python -m manager_api` as a real process: JSON logs, the original curl against it, clean stop on SIGTERM."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from manager_support import agent_server, curl

ROOT = Path(__file__).resolve().parents[2]
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[os.uname().machine]  # <asm/unistd.h>: signal one thread of a process


def start(env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "CC_MANAGER_HTTP_HOST": "127.0.0.1", "CC_MANAGER_HTTP_PORT": "0",
           "CC_MANAGER_GRPC_HOST": "127.0.0.1", "CC_MANAGER_GRPC_PORT": "0", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "manager_api"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                            text=True)


def wait_started(proc: subprocess.Popen, lines: list) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        entry = json.loads(line)
        lines.append(entry)
        if entry["msg"] == "manager started":
            return entry
    raise AssertionError(f"manager did not start: {lines}")


def test_sigterm_stops_cleanly():
    with agent_server() as (recorder, port, _):
        proc = start({"CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{port}"})
        lines: list = []
        try:
            started = wait_started(proc, lines)
            status, _, body = curl("-X", "POST", f"http://127.0.0.1:{started['http_port']}/run",
                                   "-H", "Content-Type: application/json",
                                   "-d", '{"name":"p","owner":"o","datasets":["d"],"algorithms":["a"],"ttl":1}')
            assert status == 200 and recorder.received[-1]["id"] == json.loads(body)["id"]
            proc.send_signal(signal.SIGTERM)
            _, rest = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    entries = lines + [json.loads(line) for line in rest.splitlines()]  # every line is JSON
    messages = [e["msg"] for e in entries]
    assert "request" in messages and messages[-1] == "manager stopped"


def test_sigterm_delivered_to_a_worker_thread_stops_it_too():
    # The kernel delivers a process's signal to any thread not blocking it; under a tracer (strace -f), often not the
    # main one. tgkill aims it at another thread on purpose.
    with agent_server() as (_, port, _):
        proc = start({"CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{port}"})
        lines: list = []
        try:
            wait_started(proc, lines)
            workers = [int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid]
            assert workers
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.syscall(SYS_TGKILL, proc.pid, workers[0], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
            _, rest = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    assert json.loads(rest.splitlines()[-1])["msg"] == "manager stopped"


def test_bad_configuration_exits_2_naming_the_variable():
    proc = start({"CC_MANAGER_HTTP_PORT": "90210", "CC_MANAGER_AGENT_GRPC_TIMEOUT": "soon"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    entry = json.loads(err.strip().splitlines()[-1])
    assert "CC_MANAGER_HTTP_PORT" in entry["error"] and "CC_MANAGER_AGENT_GRPC_TIMEOUT" in entry["error"]
