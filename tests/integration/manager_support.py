"""Shared helpers for the manager's integration tests: real servers on ephemeral loopback ports.

Not a conftest: other areas' tests live beside these and must not inherit our fixtures.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

from cocos_pb import agent_pb2, agent_pb2_grpc
from manager_api import grpc_server
from manager_api.config import Config
from manager_api.http_server import HttpServer
from manager_api.services import build_services

LOOPBACK = "127.0.0.1"
STATE_PREFIX = "cocos-mgr-state-"

# The original README's command, character for character; only the port differs (ours is ephemeral).
README_RUN = r"""curl -X POST \
  http://localhost:9021/run \
  -H 'Content-Type: application/json' \
  -d '{
        "name": "my-run",
        "description": "this is a test run",
        "owner": "John Doe",
        "datasets": ["dataset1", "dataset2"],
        "algorithms": ["algorithm1", "algorithm2"],
        "dataset_providers": ["provider1", "provider2"],
        "algorithm_providers": ["provider3", "provider4"],
        "result_consumers": ["consumer1", "consumer2"],
        "ttl": 3600
    }'"""


class RecordingAgent(agent_pb2_grpc.AgentServiceServicer):
    """A stand-in for the agent, not the agent: it implements Run only (keeps every computation it receives and
    answers with its id); every other method answers UNIMPLEMENTED, gRPC's default. Tests of what the manager sends
    use it; tests that need an agent's behaviour use the reference agent (run_support.reference_agent)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.lock = threading.Lock()

    def Run(self, request, context):
        computation = json.loads(request.computation)
        with self.lock:
            self.received.append(computation)
        return agent_pb2.RunResponse(Computation=computation["id"])


@contextmanager
def agent_server(port: int = 0) -> Iterator[tuple[RecordingAgent, int, grpc.Server]]:
    agent = RecordingAgent()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agent, server)
    bound = server.add_insecure_port(f"{LOOPBACK}:{port}")
    server.start()
    try:
        yield agent, bound, server
    finally:
        server.stop(0)


@dataclasses.dataclass
class Manager:
    config: Config
    http_port: int
    grpc_port: int
    services: Any

    @property
    def base(self) -> str:
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"


def make_config(**overrides: Any) -> Config:
    """Loopback, ephemeral ports, a fast-failing agent, and a fresh state directory (job database) per manager."""
    base = {"http_host": LOOPBACK, "http_port": 0, "grpc_host": LOOPBACK, "grpc_port": 0,
            "agent_grpc_url": f"{LOOPBACK}:1", "agent_retry_total": 1.0, "agent_grpc_timeout": 1.0,
            "state_dir": tempfile.mkdtemp(prefix=STATE_PREFIX)}
    base.update(overrides)
    return Config(**base)


@contextmanager
def manager_server(config: Config) -> Iterator[Manager]:
    services = build_services(config)
    grpc_srv, grpc_port = grpc_server.build_server(services)
    http = HttpServer(services)
    http_port = http.start()
    try:
        yield Manager(config, http_port, grpc_port, services)
    finally:
        http.stop()
        grpc_srv.stop(0)
        services.close()
        if os.path.basename(config.state_dir).startswith(STATE_PREFIX):
            shutil.rmtree(config.state_dir, ignore_errors=True)


def request(method: str, url: str, body: Any = None, headers: dict | None = None,
            raw: bytes | None = None, timeout: float = 60, context: Any = None) -> tuple[int, Any, Any]:
    """One HTTP request; returns status, headers and the decoded JSON body (or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.headers, _decode(resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return err.code, err.headers, _decode(err.read(), err.headers.get("Content-Type", ""))


def _decode(payload: bytes, ctype: str) -> Any:
    return json.loads(payload) if "json" in ctype else payload.decode()


def readme_command(text: str, port: int) -> str:
    """The README's command pointed at our ephemeral port, asserting it names the README's port exactly once."""
    assert text.count("localhost:9021") == 1
    return text.replace("localhost:9021", f"localhost:{port}")


def curl_shell(command: str, timeout: float = 120) -> tuple[int, dict, str]:
    """Run a curl command line through bash exactly as a user would type it (continuations, quoting and all).

    A shell function adds -sS -i so the status and headers can be read; the command text itself is untouched.
    """
    script = 'curl() { command curl -sS -i "$@"; }\n' + command
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout, check=True)
    return parse_curl_output(out.stdout)


def curl(*args: str, timeout: float = 120) -> tuple[int, dict, str]:
    """Run the real curl; returns (status, headers, body) parsed from `-i` output."""
    out = subprocess.run(["curl", "-sS", "-i", *args], capture_output=True, text=True, timeout=timeout, check=True)
    return parse_curl_output(out.stdout)


def parse_curl_output(stdout: str) -> tuple[int, dict, str]:
    head, _, body = stdout.replace("\r\n", "\n").partition("\n\n")
    while head.startswith("HTTP/1.1 100"):
        head, _, body = body.partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body
