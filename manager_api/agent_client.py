"""Forwarding to the agent's gRPC AgentService, over one long-lived channel per address.

While a VM boots its agent is not listening yet: every call is made with gRPC's wait_for_ready and a deadline of the
retry budget plus the call's own timeout, so gRPC core reconnects (with short backoff) while the call waits; no
thread sleeps in a retry loop and admission (manager_api/admission.py) bounds how many calls wait at once. Other
errors are the agent's answer and are reported at once, with an HTTP status that says what the agent meant (out of
order is a conflict, a failed algorithm is unprocessable, ...), not a blanket 502.

The client watches its channel's connectivity: `losses` counts the times an established connection to the agent was
lost. The agent keeps its computation in memory only, so when an agent that lost its connection since a run was
forwarded answers that it holds no computation, it restarted (manager_api/runs.py then marks the run failed).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc

from cocos_pb import agent_pb2, agent_pb2_grpc, agent_v1_pb2, agent_v1_pb2_grpc

log = logging.getLogger("manager_api.agent")

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
    # Never drop an idle connection: a reconnect is how an agent restart is noticed (see the module docstring).
    ("grpc.client_idle_timeout_ms", 2**31 - 1),
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
    def __init__(self, address: str, timeout: float = 5.0, retry_total: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self.retry_total = retry_total
        self.losses = 0  # times an established connection was lost (the agent stopped, restarted, or cut it)
        self._closed = False
        self._lock = threading.Lock()
        self._state = grpc.ChannelConnectivity.IDLE
        self._channel: grpc.Channel | None = None
        self._stub: agent_pb2_grpc.AgentServiceStub | None = None
        self._v1_stub: agent_v1_pb2_grpc.AgentServiceStub | None = None

    def _get_stub(self) -> agent_pb2_grpc.AgentServiceStub:
        with self._lock:
            if self._closed:
                raise AgentError(f"agent at {self.address} unavailable: the manager is stopping",
                                 grpc.StatusCode.UNAVAILABLE, unavailable=True)
            if self._stub is None:
                self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
                self._channel.subscribe(self._connectivity, try_to_connect=False)
                self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
                self._v1_stub = agent_v1_pb2_grpc.AgentServiceStub(self._channel)
            return self._stub

    def _connectivity(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            if self._state == grpc.ChannelConnectivity.READY and state != grpc.ChannelConnectivity.READY:
                self.losses += 1
                log.info("agent connection lost", extra={"agent": self.address, "losses": self.losses})
            self._state = state

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._state == grpc.ChannelConnectivity.READY

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._stub, self._v1_stub = self._channel, None, None, None
            self._closed = True
        if channel is not None:
            channel.unsubscribe(self._connectivity)
            channel.close()  # calls in flight end at once with CANCELLED

    def run(self, computation: bytes) -> str:
        """Send RunRequest{computation}; return RunResponse.Computation."""
        return self._call("Run", agent_pb2.RunRequest(computation=computation), "the run").Computation

    def algo(self, algorithm: bytes) -> str:
        """Upload the algorithm; return the agent's content id."""
        return self._call("Algo", agent_pb2.AlgoRequest(algorithm=algorithm), "the algorithm").algorithmID

    def data(self, dataset: bytes) -> str:
        """Upload one dataset; return the agent's content id."""
        return self._call("Data", agent_pb2.DataRequest(dataset=dataset), "the dataset").datasetID

    def result(self, wait: float) -> bytes:
        """The run's result; the agent runs the algorithm on the first call, so allow `wait` seconds for it."""
        return self._call("Result", agent_pb2.ResultRequest(), "the result request", extra=wait).file

    def vtpm_attestation(self, nonce: bytes) -> agent_v1_pb2.VtpmQuote:
        """cocos.agent.v1 Attestation of type VTPM: the TPM quote with `nonce` and the computation's measurements."""
        request = agent_v1_pb2.AttestationRequest(type=agent_v1_pb2.ATTESTATION_TYPE_VTPM, vtpm_nonce=nonce)
        return self._call("Attestation", request, "the attestation request", v1=True).vtpm

    def _call(self, method: str, request: Any, what: str, extra: float = 0.0, v1: bool = False) -> Any:
        """One RPC that waits up to retry_total for the agent to be reachable; AgentError on any failure.

        Deadline: retry_total (reaching the agent) + the call timeout + extra (a Result's ttl). DEADLINE_EXCEEDED
        while the channel never became ready means the agent was unreachable (503); once connected it is the
        agent's own answer.
        """
        stub = self._get_stub()
        rpc = getattr(self._v1_stub if v1 else stub, method)
        start = time.monotonic()
        try:
            return rpc(request, timeout=self.retry_total + self.timeout + extra, wait_for_ready=True)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and not self.ready:
                raise AgentError(f"agent at {self.address} unavailable: not reachable within "
                                 f"{self.retry_total:g} s", grpc.StatusCode.UNAVAILABLE, unavailable=True) from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                with self._lock:
                    self.losses += 1  # the connection broke under a call: counted even before the callback says so
                raise AgentError(f"agent at {self.address} unavailable after {time.monotonic() - start:.1f} s: "
                                 f"{details}", grpc.StatusCode.UNAVAILABLE, unavailable=True) from None
            raise AgentError(f"agent at {self.address} refused {what}: {code.name}: {details}", code) from None


class AgentPool:
    """One client (one channel) per agent address: each domain's forwarded port is its own agent."""

    def __init__(self, timeout: float, retry_total: float) -> None:
        self.timeout = timeout
        self.retry_total = retry_total
        self._lock = threading.Lock()
        self._clients: dict[str, AgentClient] = {}
        self.closed = False

    def get(self, address: str) -> AgentClient:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = AgentClient(address, self.timeout, self.retry_total)
                client._closed = self.closed
            return client

    def close(self) -> None:
        """Ends every call in flight (CANCELLED) and refuses new ones: the manager is stopping."""
        with self._lock:
            clients = list(self._clients.values())
            self.closed = True
        for client in clients:
            client.close()
