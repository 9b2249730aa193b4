"""The gRPC face of the agent: `agent.AgentService` (hand-written servicer beside the generated stubs) and health."""

import functools
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import tpm
from agent.computation import Session
from agent.config import AgentConfig
from agent.errors import AgentError, InvalidInput
from agent.runner import Runner
from cocos_pb import agent_pb2, agent_pb2_grpc, agent_v1_pb2, agent_v1_pb2_grpc

log = logging.getLogger("agent.service")
# The 64 bytes of report data SEV-SNP and TDX take (agent.attestation.REPORT_DATA_LEN; a unit test keeps them equal).
REPORT_DATA_LEN = 64
SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
V1_SERVICE_NAME = agent_v1_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
# Result calls block a worker for up to the ttl; uploads and health checks need workers meanwhile.
WORKERS = 8
Handler = TypeVar("Handler", bound=Callable[..., Any])


def _rpc(method: Handler) -> Handler:
    """Turn AgentErrors into their gRPC status and anything else into a bare INTERNAL; tracebacks stay in the log."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
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


class TeeDevices:
    """The SEV-SNP and TDX guest devices, opened only when a report is asked for: agent.attestation imports ctypes,
    which the agent's start-up under TCG need not pay for (every guest here has neither device)."""

    def __init__(self, sev_device: str, tdx_device: str) -> None:
        self._sev = sev_device
        self._tdx = tdx_device

    def report(self, report_data: bytes, kind: str | None = None) -> bytes:
        from agent.attestation import Attester

        return Attester(self._sev, self._tdx).report(report_data, kind)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, session: Session, attester: TeeDevices) -> None:
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


V1 = agent_v1_pb2
_TEE_DEVICE = {
    V1.ATTESTATION_TYPE_SNP: "sev-snp", V1.ATTESTATION_TYPE_TDX: "tdx", V1.ATTESTATION_TYPE_SNP_VTPM: "sev-snp"}
_WITH_QUOTE = (V1.ATTESTATION_TYPE_VTPM, V1.ATTESTATION_TYPE_SNP_VTPM)


class AttestationServicer(agent_v1_pb2_grpc.AgentServiceServicer):
    """`cocos.agent.v1.AgentService`: evidence for a caller's nonces (protos/agent_v1.proto)."""

    def __init__(self, session: Session, attester: TeeDevices) -> None:
        self._session = session
        self._attester = attester

    @_rpc
    def Attestation(self, request: V1.AttestationRequest, context: grpc.ServicerContext) -> V1.AttestationResponse:
        kind = request.type
        if kind not in _TEE_DEVICE and kind not in _WITH_QUOTE:
            raise InvalidInput(f"type must be one of SNP, TDX, VTPM, SNP_VTPM, got {V1.AttestationType.Name(kind)}"
                               if kind in V1.AttestationType.values() else f"unknown attestation type {kind}")
        if kind in _TEE_DEVICE and not 0 < len(request.tee_nonce) <= REPORT_DATA_LEN:
            raise InvalidInput(f"tee_nonce must be 1 to {REPORT_DATA_LEN} bytes for {V1.AttestationType.Name(kind)}")
        if kind in _WITH_QUOTE and not 0 < len(request.vtpm_nonce) <= tpm.MAX_NONCE:
            raise InvalidInput(f"vtpm_nonce must be 1 to {tpm.MAX_NONCE} bytes for {V1.AttestationType.Name(kind)}")
        reply = V1.AttestationResponse(type=kind)
        if kind in _TEE_DEVICE:
            report_data = request.tee_nonce.ljust(REPORT_DATA_LEN, b"\0")
            reply.tee_report = self._attester.report(report_data, _TEE_DEVICE[kind])
        if kind in _WITH_QUOTE:
            quote, measurements = self._session.attest(request.vtpm_nonce)
            reply.vtpm.CopyFrom(V1.VtpmQuote(
                attest=quote.attest, signature=quote.signature, ak_public=quote.ak_public, pcr_bank=tpm.BANK,
                pcrs=[V1.PcrValue(index=index, value=value) for index, value in sorted(quote.pcrs.items())],
                measurement_pcr=tpm.MEASUREMENT_PCR,
                measurements=[V1.Measurement(kind=m.kind, sha256=bytes.fromhex(m.sha256)) for m in measurements]))
        return reply


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


def start(config: AgentConfig, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> AgentServer:
    """Bind and start the server; `port` is the bound port (config.port may be 0). `interceptors` see every call
    before the agent does (gRPC server interceptors: auditing, logging)."""
    session = Session(config.work_dir, Runner(config), _tpm(config))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="agent-rpc"),
        interceptors=list(interceptors),
        options=[("grpc.max_receive_message_length", config.max_upload_bytes + 1024)],
    )
    attester = TeeDevices(config.sev_device, config.tdx_device)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(session, attester), server)
    agent_v1_pb2_grpc.add_AgentServiceServicer_to_server(AttestationServicer(session, attester), server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port(f"{_host(config.host)}:{config.port}")
    server.start()
    for name in ("", SERVICE_NAME, V1_SERVICE_NAME):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    return AgentServer(server, port, session, checker)


def _tpm(config: AgentConfig) -> tpm.Tpm | None:
    """The TPM that measures computations, or None (then nothing is measured and VTPM attestation is refused)."""
    tcti = tpm.detect_tcti(config.tpm_tcti)
    if tcti is None:
        log.info("no TPM: computations are not measured", extra={"devices": list(tpm.DEVICES)})
        return None
    if shutil.which("tpm2_pcrextend", path="/usr/bin:/bin") is None:
        log.warning("a TPM but no tpm2-tools: computations are not measured", extra={"tcti": tcti})
        return None
    log.info("computations are measured into the TPM", extra={"tcti": tcti, "pcr": tpm.MEASUREMENT_PCR})
    return tpm.Tpm(tcti, os.path.join(config.work_dir, "tpm"))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
