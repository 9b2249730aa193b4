"""Forwarding to the agent's gRPC AgentService, over one long-lived channel per address.

While a VM boots its agent is not listening yet: UNAVAILABLE is retried with capped exponential backoff until a
total budget is spent; other errors are the agent's answer and are reported at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import grpc

from cocos_pb import agent_pb2, agent_pb2_grpc

log = logging.getLogger("manager_api.agent")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# gRPC's own reconnect backoff starts at 1 s and grows to 2 min; a booting agent should be found within a
# fraction of a second of listening, so reconnect attempts stay short and frequent.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class AgentError(RuntimeError):
    """The agent answered with an error (HTTP 502), or could not be reached in time (unavailable: HTTP 503)."""

    def __init__(self, message: str, code: grpc.StatusCode, unavailable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unavailable = unavailable

    @property
    def http_status(self) -> int:
        return 503 if self.unavailable else 502


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

    def _get_stub(self) -> agent_pb2_grpc.AgentServiceStub:
        with self._lock:
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
                self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
            return self._stub

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None

    def run(self, computation: bytes) -> str:
        """Send RunRequest{computation}; return RunResponse.Computation."""
        stub = self._get_stub()
        deadline = time.monotonic() + self.retry_total
        delay, attempt = 0.05, 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                reply = stub.Run(agent_pb2.RunRequest(computation=computation),
                                 timeout=max(min(self.timeout, remaining), 0.05))
                return reply.Computation
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
                if code not in RETRYABLE:
                    raise AgentError(f"agent at {self.address} refused the run: {code.name}: {details}", code) from None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AgentError(
                        f"agent at {self.address} unavailable after {attempt} attempts in "
                        f"{self.retry_total:g} s: {details}", grpc.StatusCode.UNAVAILABLE, unavailable=True) from None
                log.info("agent not ready, retrying", extra={"attempt": attempt, "agent": self.address})
                self._sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)
