"""The gRPC face of the agent: `agent.AgentService` (hand-written servicer beside the generated stubs) and health."""

import functools
import logging
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.attestation import REPORT_DATA_LEN, Attester
from agent.computation import Session
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.runner import Runner
from cocos_pb import agent_pb2, agent_pb2_grpc

log = logging.getLogger("agent.service")
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
# Result calls block a worker for up to the ttl; uploads and health checks need workers meanwhile.
WORKERS = 8
Handler = TypeVar("Handler", bound=Callable[..., Any])


def _rpc(method: Handler) -> Handler:
    """Turn AgentErrors into their gRPC status and anything else into a bare INTERNAL; tracebacks stay in the log."""

    @functools.wraps(method)
    def wrapper(self: "AgentServicer", request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except AgentError as exc:
            log.warning("rpc refused", extra={"rpc": method.__name__, "code": exc.code.name, "reason": str(exc)})
            code, message = exc.code, str(exc)
        except Exception:
            log.exception("rpc failed unexpectedly", extra={"rpc": method.__name__})
            code, message = grpc.StatusCode.INTERNAL, f"internal agent error in {method.__name__} (see the agent log)"
        context.abort(code, message)

    return wrapper  # type: ignore[return-value]


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, session: Session, attester: Attester) -> None:
        self._session = session
        self._attester = attester

    @_rpc
    def Run(self, request: agent_pb2.RunRequest, context: grpc.ServicerContext) -> agent_pb2.RunResponse:
        return agent_pb2.RunResponse(Computation=self._session.run(request.computation))

    @_rpc
    def Algo(self, request: agent_pb2.AlgoRequest, context: grpc.ServicerContext) -> agent_pb2.AlgoResponse:
        return agent_pb2.AlgoResponse(algorithmID=self._session.upload("algorithm", request.algorithm))

    @_rpc
    def Data(self, request: agent_pb2.DataRequest, context: grpc.ServicerContext) -> agent_pb2.DataResponse:
        return agent_pb2.DataResponse(datasetID=self._session.upload("dataset", request.dataset))

    @_rpc
    def Result(self, request: agent_pb2.ResultRequest, context: grpc.ServicerContext) -> agent_pb2.ResultResponse:
        return agent_pb2.ResultResponse(file=self._session.result(wait_seconds=context.time_remaining()))

    @_rpc
    def Attestation(
        self, request: agent_pb2.AttestationRequest, context: grpc.ServicerContext
    ) -> agent_pb2.AttestationResponse:
        digest = self._session.manifest_digest() or b""
        return agent_pb2.AttestationResponse(file=self._attester.report(digest.ljust(REPORT_DATA_LEN, b"\0")))


@dataclass
class AgentServer:
    server: grpc.Server
    port: int
    session: Session
    health: health.HealthServicer

    def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let calls in flight finish for `grace` seconds, then kill any running algorithm."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.session.close()


def start(config: AgentConfig) -> AgentServer:
    """Bind and start the server; `port` is the bound port (config.port may be 0)."""
    session = Session(config.work_dir, Runner(config))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="agent-rpc"),
        options=[("grpc.max_receive_message_length", config.max_upload_bytes + 1024)],
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(session, Attester(config.sev_device, config.tdx_device)), server
    )
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port(f"{_host(config.host)}:{config.port}")
    server.start()
    for name in ("", SERVICE_NAME):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    return AgentServer(server, port, session, checker)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
