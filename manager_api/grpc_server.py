"""gRPC front end: the original manager_proto.ManagerService, our cocos.manager.v1 additions, health, reflection."""
from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cocos_pb import agent_v1_pb2, manager_pb2, manager_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc
from manager_api import attestation, domain_view, grpc_runs, jobs, runs
from manager_api.agent_client import AgentError
from manager_api.domains import RequestError
from manager_api.services import Services

_STATE = {jobs.QUEUED: manager_v1_pb2.JOB_STATE_QUEUED, jobs.RUNNING: manager_v1_pb2.JOB_STATE_RUNNING,
          jobs.SUCCESSFUL: manager_v1_pb2.JOB_STATE_SUCCESSFUL, jobs.FAILED: manager_v1_pb2.JOB_STATE_FAILED,
          jobs.CANCELED: manager_v1_pb2.JOB_STATE_CANCELED}
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_REQUEST_STATUS = {404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
                   413: grpc.StatusCode.RESOURCE_EXHAUSTED}


def job_message(job: jobs.Job) -> manager_v1_pb2.Job:
    d = job.to_dict()
    return manager_v1_pb2.Job(
        id=d["id"], kind=d["kind"], target=d["target"], state=_STATE[d["state"]],
        created_at=grpc_runs.timestamp(d["created_at"]), started_at=grpc_runs.timestamp(d["started_at"]),
        finished_at=grpc_runs.timestamp(d["finished_at"]), changed=d["changed"], ok=d["ok"], failed=d["failed"],
        error=d["error"], result=d["result"], event_count=d["event_count"])


def event_message(event: dict) -> manager_v1_pb2.JobEvent:
    return manager_v1_pb2.JobEvent(
        seq=event["seq"], job_id=event["job_id"], type=event["type"], task=event.get("task", ""),
        host=event.get("host", ""), changed=bool(event.get("changed")), failed=bool(event.get("failed")),
        message=event.get("message", ""), time=grpc_runs.timestamp(event["time"]), state=_STATE[event["state"]])


def domain_message(d: dict) -> manager_v1_pb2.Domain:
    return manager_v1_pb2.Domain(name=d["name"], uuid=d["uuid"], state=d["state"],
                                 forwarded_ports=[manager_v1_pb2.ForwardedPort(**p) for p in d["forwarded_ports"]])


def _abort_for(context: grpc.ServicerContext, exc: Exception) -> None:
    """One mapping of our errors to status codes, shared by every RPC."""
    if isinstance(exc, RequestError):
        context.abort(_REQUEST_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), str(exc))
    if isinstance(exc, AgentError):
        context.abort(grpc.StatusCode.UNAVAILABLE if exc.unavailable else exc.code, str(exc))
    if isinstance(exc, domain_view.LibvirtUnavailable):
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    raise exc


def _guarded(fn: Callable) -> Callable:
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except (RequestError, AgentError, domain_view.LibvirtUnavailable) as exc:
            _abort_for(context, exc)
    return wrapper


class ManagerService(manager_pb2_grpc.ManagerServiceServicer):
    """The original API: synchronous like the original, so existing clients see no difference."""

    def __init__(self, services: Services) -> None:
        self.s = services

    @_guarded
    def Run(self, request: manager_pb2.RunRequest, context: grpc.ServicerContext) -> manager_pb2.RunResponse:
        return manager_pb2.RunResponse(ID=self.s.runs.run(grpc_runs.run_fields(request), require_positive_ttl=True))

    @_guarded
    def CreateDomain(self, request: manager_pb2.CreateDomainRequest,
                     context: grpc.ServicerContext) -> manager_pb2.CreateDomainResponse:
        job, _ = self.s.domains.create(request.pool, request.volume, request.domain)
        if not self.s.domains.wait(job):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"job {job.id} still {job.state}")
        if job.state != jobs.SUCCESSFUL:
            code = grpc.StatusCode.ABORTED if job.state == jobs.CANCELED else grpc.StatusCode.INTERNAL
            context.abort(code, f"create_domain {job.state}: {job.error} (job {job.id})")
        return manager_pb2.CreateDomainResponse(name=job.result or job.target)


class ManagerV1Service(manager_v1_pb2_grpc.ManagerServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services

    @_guarded
    def CreateDomainAsync(self, request: manager_pb2.CreateDomainRequest, context: grpc.ServicerContext):
        return job_message(self.s.domains.create(request.pool, request.volume, request.domain)[0])

    @_guarded
    def DeleteDomain(self, request, context):
        return job_message(self.s.domains.delete(request.name)[0])

    @_guarded
    def ListDomains(self, request, context):
        return manager_v1_pb2.ListDomainsResponse(
            domains=[domain_message(d) for d in domain_view.list_domains(self.s.config.libvirt_uri)])

    @_guarded
    def GetDomain(self, request, context):
        found = domain_view.get_domain(self.s.config.libvirt_uri, request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"domain {request.name!r} not found")
        return domain_message(found)

    def _job(self, job_id: str, context: grpc.ServicerContext) -> jobs.Job:
        job = self.s.store.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id!r} not found")
            raise AssertionError("abort raises")  # tells the type checker abort never returns
        return job

    def GetJob(self, request, context):
        return job_message(self._job(request.id, context))

    def ListJobs(self, request, context):
        return manager_v1_pb2.ListJobsResponse(jobs=[job_message(j) for j in self.s.store.list()])

    def WatchJob(self, request, context) -> Iterator[manager_v1_pb2.JobEvent]:
        job = self._job(request.id, context)
        for event in job.follow(request.after_seq, heartbeat=1.0):
            if not context.is_active():
                return
            if event is not None:
                yield event_message(event)

    def CancelJob(self, request, context):
        job = self._job(request.id, context)
        if job.done:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {request.id} already {job.state}")
        self.s.store.cancel(job)
        return job_message(job)

    @_guarded
    def CreateRun(self, request, context):
        fields = grpc_runs.run_fields(request.run)
        if request.domain:
            fields["domain"] = request.domain
        return grpc_runs.run_message(self.s.runs.get(self.s.runs.run(fields, require_positive_ttl=True)))

    @_guarded
    def GetRun(self, request, context):
        return grpc_runs.run_message(self.s.runs.get(request.id))

    @_guarded
    def UploadAlgorithm(self, request_iterator, context):
        return self._upload(request_iterator, runs.ALGORITHM)

    @_guarded
    def UploadDataset(self, request_iterator, context):
        return self._upload(request_iterator, runs.DATASET)

    def _upload(self, chunks, kind: str) -> manager_v1_pb2.UploadReply:
        run_id, content = grpc_runs.collect_upload(chunks, self.s.config.max_upload_bytes)
        content_id = self.s.runs.upload(run_id, kind, content)
        return manager_v1_pb2.UploadReply(id=content_id, run=grpc_runs.run_message(self.s.runs.get(run_id)))

    @_guarded
    def GetResult(self, request, context):
        # Fetched before the first chunk is sent, so agent errors still become this call's status.
        return grpc_runs.result_chunks(self.s.runs.result(request.id))

    @_guarded
    def AttestRun(self, request, context):
        answer = attestation.attest_run(self.s.runs, request.run_id, request.nonce or None)
        e = answer.evidence
        return manager_v1_pb2.RunAttestation(
            run_id=answer.run_id, verified=answer.verdict.verified, nonce=answer.nonce,
            nonce_from_client=answer.nonce_from_client,
            checks=[manager_v1_pb2.AttestationCheck(name=c.name, ok=c.ok, detail=c.detail)
                    for c in answer.verdict.checks],
            expected_pcr=attestation.MEASUREMENT_PCR, expected_pcr_value=answer.verdict.expected_pcr,
            expected_measurements=[agent_v1_pb2.Measurement(kind=k, sha256=d) for k, d in answer.expected],
            evidence=agent_v1_pb2.VtpmQuote(
                attest=e.attest, signature=e.signature, ak_public=e.ak_public, pcr_bank=e.pcr_bank,
                pcrs=[agent_v1_pb2.PcrValue(index=i, value=v) for i, v in sorted(e.pcrs.items())],
                measurement_pcr=e.measurement_pcr,
                measurements=[agent_v1_pb2.Measurement(kind=k, sha256=d) for k, d in e.measurements]),
            not_established=list(attestation.NOT_ESTABLISHED))


class _Interceptor(grpc.ServerInterceptor):
    """Bearer auth (health exempt) and per-method request metrics."""

    def __init__(self, services: Services) -> None:
        self.s = services

    def intercept_service(self, continuation, details):
        method = details.method
        token = self.s.config.token
        handler = continuation(details)
        if token and not method.startswith(_HEALTH_PREFIX) and "ServerReflection" not in method:
            given = dict(details.invocation_metadata).get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _deny(self.s, method, handler)
        # Calls with a single reply are timed; streamed replies (WatchJob, GetResult) pass as they are.
        if handler is not None and handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._timed(method, handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        if handler is not None and handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._timed(method, handler.stream_unary), handler.request_deserializer, handler.response_serializer)
        return handler

    def _timed(self, method: str, behaviour: Callable) -> Callable:
        def wrapper(request, context):
            start = time.perf_counter()
            status = "OK"
            try:
                return behaviour(request, context)
            except BaseException:
                status = "ERROR"
                raise
            finally:
                code = context.code() if hasattr(context, "code") else None
                status = code.name if isinstance(code, grpc.StatusCode) else status
                self.s.metrics.observe("grpc", "POST", method, status, time.perf_counter() - start)
        return wrapper


def _deny(services: Services, method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    def deny(request, context):
        services.metrics.observe("grpc", "POST", method, "UNAUTHENTICATED", 0.0)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token in authorization metadata")
    # The refusal must have the method's own shape, or a streaming client would see a protocol error instead.
    if handler is not None and handler.request_streaming and not handler.response_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler is not None and handler.response_streaming:  # WatchJob, GetResult (no bidirectional RPCs here)
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def build_server(services: Services, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """Create and start the server; returns it with the bound port (useful when the configured port is 0)."""
    cfg = services.config
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         interceptors=[_Interceptor(services)])
    manager_pb2_grpc.add_ManagerServiceServicer_to_server(ManagerService(services), server)
    manager_v1_pb2_grpc.add_ManagerServiceServicer_to_server(ManagerV1Service(services), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (manager_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name,
             manager_v1_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    address = f"{cfg.grpc_host}:{cfg.grpc_port}"
    if cfg.tls:
        creds = grpc.ssl_server_credentials([(_read(cfg.server_key), _read(cfg.server_cert))])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    server.start()
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def _read(path: str | None) -> bytes:
    with open(str(path), "rb") as handle:
        return handle.read()
