"""Forwarding to the agent's gRPC AgentService, over one long-lived channel per address.

While a VM boots its agent is not listening yet: UNAVAILABLE is retried with capped exponential backoff until a
total budget is spent; other errors are the agent's answer and are reported at once, with an HTTP status that says
what the agent meant (out of order is a conflict, a failed algorithm is unprocessable, ...), not a blanket 502.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from cocos_pb import agent_pb2, agent_pb2_grpc, agent_v1_pb2, agent_v1_pb2_grpc

log = logging.getLogger("manager_api.agent")

# Run is cheap and idempotent for a booting agent, so a client-side timeout is worth another try too.
RUN_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Uploads and Result are retried only while nothing reached the agent: DEADLINE_EXCEEDED from Result is the
# agent killing an algorithm that ran past its ttl, and an upload that timed out may have landed.
NOT_CONNECTED = frozenset({grpc.StatusCode.UNAVAILABLE})
# gRPC's own reconnect backoff starts at 1 s and grows to 2 min; a booting agent should be found within a
# fraction of a second of listening, so reconnect attempts stay short and frequent.
# Message limits: uploads go out as one message (the agent API is unary) and results come back as one.
MAX_MESSAGE = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.enable_http_proxy", 0),  # the agent is on loopback; a proxy from the environment must not intercept
]
# What the agent's status means for an HTTP client (agent/README.md, Errors). Anything else: 502.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.ABORTED: 422,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class AgentError(RuntimeError):
    """The agent answered with an error, or could not be reached in time (unavailable: HTTP 503)."""

    def __init__(self, message: str, code: grpc.StatusCode, unavailable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unavailable = unavailable

    @property
    def http_status(self) -> int:
        return 503 if self.unavailable else HTTP_STATUS.get(self.code, 502)


class AgentClient:
    def __init__(self, address: str, timeout: float = 5.0, retry_total: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.address = address
        self.timeout = timeout
        self.retry_total = retry_total
        self._sleep = sleep
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: agent_pb2_grpc.AgentServiceStub | None = None
        self._v1_stub: agent_v1_pb2_grpc.AgentServiceStub | None = None

    def _get_stub(self) -> agent_pb2_grpc.AgentServiceStub:
        with self._lock:
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
                self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
                self._v1_stub = agent_v1_pb2_grpc.AgentServiceStub(self._channel)
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = self._v1_stub = None

    def run(self, computation: bytes) -> str:
        """Send RunRequest{computation}; return RunResponse.Computation."""
        reply = self._call("Run", agent_pb2.RunRequest(computation=computation), "the run", RUN_RETRYABLE)
        return reply.Computation

    def algo(self, algorithm: bytes) -> str:
        """Upload the algorithm; return the agent's content id."""
        reply = self._call("Algo", agent_pb2.AlgoRequest(algorithm=algorithm), "the algorithm", NOT_CONNECTED)
        return reply.algorithmID

    def data(self, dataset: bytes) -> str:
        """Upload one dataset; return the agent's content id."""
        reply = self._call("Data", agent_pb2.DataRequest(dataset=dataset), "the dataset", NOT_CONNECTED)
        return reply.datasetID

    def result(self, wait: float) -> bytes:
        """The run's result; the agent runs the algorithm on the first call, so allow `wait` seconds for it."""
        reply = self._call("Result", agent_pb2.ResultRequest(), "the result request", NOT_CONNECTED,
                           call_timeout=self.timeout + wait)
        return reply.file

    def vtpm_attestation(self, nonce: bytes) -> agent_v1_pb2.VtpmQuote:
        """cocos.agent.v1 Attestation of type VTPM: the TPM quote with `nonce` and the computation's measurements."""
        request = agent_v1_pb2.AttestationRequest(type=agent_v1_pb2.ATTESTATION_TYPE_VTPM, vtpm_nonce=nonce)
        return self._call("Attestation", request, "the attestation request", NOT_CONNECTED, v1=True).vtpm

    def _call(self, method: str, request: Any, what: str, retryable: frozenset,
              call_timeout: float | None = None, v1: bool = False) -> Any:
        """One RPC with bounded retry while the agent is not reachable; AgentError on any failure."""
        stub = self._get_stub()
        rpc = getattr(self._v1_stub if v1 else stub, method)
        per_call = call_timeout or self.timeout
        deadline = time.monotonic() + self.retry_total
        delay, attempt = 0.05, 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                # A long call (Result) keeps its own timeout: the retry budget is for reaching the agent.
                timeout = per_call if call_timeout else max(min(per_call, remaining), 0.05)
                return rpc(request, timeout=timeout)
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
                if code not in retryable:
                    raise AgentError(f"agent at {self.address} refused {what}: {code.name}: {details}", code) from None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AgentError(
                        f"agent at {self.address} unavailable after {attempt} attempts in "
                        f"{self.retry_total:g} s: {details}", grpc.StatusCode.UNAVAILABLE, unavailable=True) from None
                log.info("agent not ready, retrying", extra={"attempt": attempt, "agent": self.address, "rpc": method})
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)


class AgentPool:
    """One client (one channel) per agent address: each domain's forwarded port is its own agent."""

    def __init__(self, timeout: float, retry_total: float) -> None:
        self.timeout = timeout
        self.retry_total = retry_total
        self._lock = threading.Lock()
        self._clients: dict[str, AgentClient] = {}

    def get(self, address: str) -> AgentClient:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = AgentClient(address, self.timeout, self.retry_total)
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
