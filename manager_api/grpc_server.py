"""gRPC front end: the original manager_proto.ManagerService, our cocos.manager.v1 additions, health, reflection."""
from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cocos_pb import agent_v1_pb2, manager_pb2, manager_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc
from manager_api import attestation, domain_view, grpc_runs, hosts, jobs, runs
from manager_api.agent_client import AgentError
from manager_api.domains import check_domain_name
from manager_api.errors import Busy, Conflict, HostUnavailable, NoRoom, RequestError, check_text
from manager_api.services import Services

log = logging.getLogger("manager_api.grpc")

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
        error=d["error"], result=d["result"], event_count=d["event_count"], host=d["host"])


def event_message(event: dict) -> manager_v1_pb2.JobEvent:
    return manager_v1_pb2.JobEvent(
        seq=event["seq"], job_id=event["job_id"], type=event["type"], task=event.get("task", ""),
        host=event.get("host", ""), changed=bool(event.get("changed")), failed=bool(event.get("failed")),
        message=event.get("message", ""), time=grpc_runs.timestamp(event["time"]), state=_STATE[event["state"]])


def domain_message(d: dict) -> manager_v1_pb2.Domain:
    return manager_v1_pb2.Domain(name=d["name"], uuid=d["uuid"], state=d["state"],
                                 forwarded_ports=[manager_v1_pb2.ForwardedPort(**p) for p in d["forwarded_ports"]],
                                 host=d["host"], agent_port=d["agent_port"] or 0, ttl=d["ttl"] or 0,
                                 expires_at=grpc_runs.timestamp(d["expires_at"]))


_HEALTH = {hosts.REACHABLE: manager_v1_pb2.HOST_HEALTH_REACHABLE,
           hosts.UNREACHABLE: manager_v1_pb2.HOST_HEALTH_UNREACHABLE, hosts.UNKNOWN: manager_v1_pb2.HOST_HEALTH_UNKNOWN}


def host_message(h: dict) -> manager_v1_pb2.Host:
    memory = h["memory"] or {}
    return manager_v1_pb2.Host(
        name=h["name"], health=_HEALTH[h["health"]], error=h["error"], checked_at=grpc_runs.timestamp(h["checked_at"]),
        agent_address=h["agent_address"], vms=h["vms"], max_vms=h["max_vms"], domains=h["domains"] or 0,
        memory_total=memory.get("total", 0), memory_committed=memory.get("committed", 0),
        memory_free=memory.get("free", 0), memory_available=memory.get("available", 0),
        agent_port_first=h["agent_ports"]["first"], agent_port_last=h["agent_ports"]["last"],
        agent_ports_used=h["agent_ports"]["used"])


def _abort_for(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    """One mapping of our errors to status codes, shared by every RPC; anything else is INTERNAL, without its text."""
    if isinstance(exc, Conflict):
        context.abort(grpc.StatusCode.ABORTED, f"{exc} (job {exc.job_id})")
    if isinstance(exc, RequestError):
        context.abort(_REQUEST_STATUS.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), str(exc))
    if isinstance(exc, AgentError):
        context.abort(grpc.StatusCode.UNAVAILABLE if exc.unavailable else exc.code, str(exc))
    if isinstance(exc, Busy | HostUnavailable):
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, NoRoom):
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, domain_view.LibvirtUnavailable):
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    error_id = uuid.uuid4().hex
    log.error("unhandled error", exc_info=exc, extra={"method": method, "error_id": error_id})
    context.abort(grpc.StatusCode.INTERNAL, f"internal error; see the manager's log for error id {error_id}")


def _guarded(fn: Callable) -> Callable:
    """Kept for the servicers' readability: the interceptor maps every error (see _Interceptor._guard)."""
    return fn


class _BadRequest:
    """What a request that could not be decoded becomes; the guard turns it into INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _checked_text(message: Any, prefix: str = "") -> None:
    """check_text on every string field of a request message, naming the field."""
    for descriptor, value in message.ListFields():
        name = f"{prefix}{descriptor.name}"
        if descriptor.type == descriptor.TYPE_STRING:
            for item in (value if descriptor.is_repeated else [value]):
                check_text(name, item)
        elif descriptor.type == descriptor.TYPE_MESSAGE:
            for item in (value if descriptor.is_repeated else [value]):
                _checked_text(item, f"{name}.")


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
        with self.s.waiters.enter():
            job, _ = self.s.domains.create(request.pool, request.volume, request.domain)
            self.s.domains.wait(job)
        if not job.done:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"job {job.id} still {job.state}")
        if job.state != jobs.SUCCESSFUL:
            code = grpc.StatusCode.ABORTED if job.state == jobs.CANCELED else grpc.StatusCode.INTERNAL
            context.abort(code, f"create_domain {job.state}: {job.error} (job {job.id})")
        return manager_pb2.CreateDomainResponse(name=job.result or job.target)


class ManagerV1Service(manager_v1_pb2_grpc.ManagerServiceServicer):
    def __init__(self, services: Services) -> None:
        self.s = services

    @_guarded
    def CreateDomainAsync(self, request: manager_v1_pb2.CreateDomainRequest, context: grpc.ServicerContext):
        if request.ttl < 0:
            raise RequestError("ttl", "must be 0 (none) or a positive number of seconds")
        return job_message(self.s.domains.create(request.pool, request.volume, request.domain, request.host or None,
                                                 request.ttl or None)[0])

    @_guarded
    def DeleteDomain(self, request, context):
        check_domain_name(request.name)
        return job_message(self.s.domains.delete(request.name, request.host or None)[0])

    @_guarded
    def ListDomains(self, request, context):
        domains, unreachable = self.s.domains.all_domains()
        return manager_v1_pb2.ListDomainsResponse(domains=[domain_message(d) for d in domains],
                                                  unreachable_hosts=unreachable)

    @_guarded
    def GetDomain(self, request, context):
        return domain_message(self.s.domains.get(request.name, request.host or None))

    @_guarded
    def ListHosts(self, request, context):
        return manager_v1_pb2.ListHostsResponse(hosts=[host_message(h) for h in self.s.placement.hosts_view()])

    def _job(self, job_id: str, context: grpc.ServicerContext) -> jobs.Job:
        job = self.s.store.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "id: no such job")
            raise AssertionError("abort raises")  # tells the type checker abort never returns
        return job

    def GetJob(self, request, context):
        return job_message(self._job(request.id, context))

    def ListJobs(self, request, context):
        return manager_v1_pb2.ListJobsResponse(jobs=[job_message(j) for j in self.s.store.list()])

    def WatchJob(self, request, context) -> Iterator[manager_v1_pb2.JobEvent]:
        job = self._job(request.id, context)
        with self.s.streams.enter():
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
    """Bearer auth (only health is exempt: reflection too needs the token), request checks, error mapping, metrics.

    Every call's request is decoded here (a message that does not decode is INVALID_ARGUMENT), its strings are
    checked (NUL bytes and control characters are INVALID_ARGUMENT), and an unexpected exception becomes INTERNAL
    without its text. Metrics label a call with its method only when a registered service has that method.
    """

    def __init__(self, services: Services) -> None:
        self.s = services

    def intercept_service(self, continuation, details):
        method = details.method
        token = self.s.config.token
        handler = continuation(details)
        if token and not method.startswith(_HEALTH_PREFIX):
            given = dict(details.invocation_metadata).get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _deny(self.s, method, handler)
        if handler is None:
            self.s.metrics.observe("grpc", "POST", method, grpc.StatusCode.UNIMPLEMENTED.name, 0.0)
            return None
        deserializer = _safe(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._timed(method, handler.unary_unary), deserializer, handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._timed(method, handler.stream_unary, streamed=True), deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream), deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, handler.stream_stream, streamed=True), deserializer, handler.response_serializer)

    def _checked(self, request: Any, streamed: bool) -> Any:
        if streamed:
            return (self._checked(item, False) for item in request)
        if isinstance(request, _BadRequest):
            raise RequestError("request", f"cannot be decoded: {type(request.error).__name__}")
        if request is not None:
            _checked_text(request)
        return request

    def _timed(self, method: str, behaviour: Callable, streamed: bool = False) -> Callable:
        def wrapper(request, context):
            start = time.perf_counter()
            try:
                return behaviour(self._checked(request, streamed), context)
            except Exception as exc:
                if _aborted(context):
                    raise
                _abort_for(context, exc, method)
            finally:
                code = context.code() if hasattr(context, "code") else None
                status = code.name if isinstance(code, grpc.StatusCode) else "OK"
                self.s.metrics.observe("grpc", "POST", method, status, time.perf_counter() - start)
        return wrapper

    def _streaming(self, method: str, behaviour: Callable, streamed: bool = False) -> Callable:
        def wrapper(request, context):
            try:
                yield from behaviour(self._checked(request, streamed), context)
            except Exception as exc:
                if _aborted(context):
                    raise
                _abort_for(context, exc, method)
        return wrapper


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether the servicer already chose a status (context.abort raised)."""
    code = context.code() if hasattr(context, "code") else None
    return isinstance(code, grpc.StatusCode) and code != grpc.StatusCode.OK


def _safe(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf's DecodeError, invalid UTF-8 in a string field, ...
            return _BadRequest(exc)
    return decode


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


def build_server(services: Services) -> tuple[grpc.Server, int]:
    """Create and start the server; returns it with the bound port (useful when the configured port is 0).

    Its threads exceed the admission bounds (agent calls, waiting CreateDomain, WatchJob streams) by a reserve, so
    health checks and quick calls always find one.
    """
    cfg = services.config
    workers = cfg.max_agent_calls + cfg.max_waiters + cfg.max_streams + 8
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         interceptors=[_Interceptor(services)])
    manager_pb2_grpc.add_ManagerServiceServicer_to_server(ManagerService(services), server)
    manager_v1_pb2_grpc.add_ManagerServiceServicer_to_server(ManagerV1Service(services), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (manager_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name,
             manager_v1_pb2.DESCRIPTOR.services_by_name["ManagerService"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
    services.metrics.grpc_methods = frozenset(_method_names(server_services=(
        manager_pb2.DESCRIPTOR.services_by_name["ManagerService"],
        manager_v1_pb2.DESCRIPTOR.services_by_name["ManagerService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"])) | {f"/{reflection.SERVICE_NAME}/ServerReflectionInfo"})
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


def _method_names(server_services: tuple) -> set[str]:
    return {f"/{service.full_name}/{method.name}" for service in server_services for method in service.methods}


def _read(path: str | None) -> bytes:
    with open(str(path), "rb") as handle:
        return handle.read()
