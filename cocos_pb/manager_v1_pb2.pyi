import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cocos_pb import manager_pb2 as _manager_pb2
from cocos_pb import agent_v1_pb2 as _agent_v1_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCESSFUL: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELED: _ClassVar[JobState]

class HostHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_HEALTH_UNSPECIFIED: _ClassVar[HostHealth]
    HOST_HEALTH_REACHABLE: _ClassVar[HostHealth]
    HOST_HEALTH_UNREACHABLE: _ClassVar[HostHealth]
    HOST_HEALTH_UNKNOWN: _ClassVar[HostHealth]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_FORWARDED: _ClassVar[RunState]
    RUN_STATE_RECEIVING: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_COMPLETE: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_SUPERSEDED: _ClassVar[RunState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCESSFUL: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELED: JobState
HOST_HEALTH_UNSPECIFIED: HostHealth
HOST_HEALTH_REACHABLE: HostHealth
HOST_HEALTH_UNREACHABLE: HostHealth
HOST_HEALTH_UNKNOWN: HostHealth
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_FORWARDED: RunState
RUN_STATE_RECEIVING: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_COMPLETE: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_SUPERSEDED: RunState

class CreateDomainRequest(_message.Message):
    __slots__ = ("pool", "volume", "domain", "host", "ttl")
    POOL_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    pool: str
    volume: str
    domain: str
    host: str
    ttl: int
    def __init__(self, pool: _Optional[str] = ..., volume: _Optional[str] = ..., domain: _Optional[str] = ..., host: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "target", "state", "created_at", "started_at", "finished_at", "changed", "ok", "failed", "error", "result", "event_count", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    target: str
    state: JobState
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    changed: int
    ok: int
    failed: int
    error: str
    result: str
    event_count: int
    host: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed: _Optional[int] = ..., ok: _Optional[int] = ..., failed: _Optional[int] = ..., error: _Optional[str] = ..., result: _Optional[str] = ..., event_count: _Optional[int] = ..., host: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("seq", "job_id", "type", "task", "host", "changed", "failed", "message", "time", "state")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    job_id: str
    type: str
    task: str
    host: str
    changed: bool
    failed: bool
    message: str
    time: _timestamp_pb2.Timestamp
    state: JobState
    def __init__(self, seq: _Optional[int] = ..., job_id: _Optional[str] = ..., type: _Optional[str] = ..., task: _Optional[str] = ..., host: _Optional[str] = ..., changed: _Optional[bool] = ..., failed: _Optional[bool] = ..., message: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ForwardedPort(_message.Message):
    __slots__ = ("host_address", "host_port", "guest_port", "protocol")
    HOST_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    GUEST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    host_address: str
    host_port: int
    guest_port: int
    protocol: str
    def __init__(self, host_address: _Optional[str] = ..., host_port: _Optional[int] = ..., guest_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ("name", "uuid", "state", "forwarded_ports", "host", "agent_port", "ttl", "expires_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_PORTS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORT_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    uuid: str
    state: str
    forwarded_ports: _containers.RepeatedCompositeFieldContainer[ForwardedPort]
    host: str
    agent_port: int
    ttl: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., uuid: _Optional[str] = ..., state: _Optional[str] = ..., forwarded_ports: _Optional[_Iterable[_Union[ForwardedPort, _Mapping]]] = ..., host: _Optional[str] = ..., agent_port: _Optional[int] = ..., ttl: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeleteDomainRequest(_message.Message):
    __slots__ = ("name", "host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ListDomainsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDomainsResponse(_message.Message):
    __slots__ = ("domains", "unreachable_hosts")
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_HOSTS_FIELD_NUMBER: _ClassVar[int]
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    unreachable_hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ..., unreachable_hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDomainRequest(_message.Message):
    __slots__ = ("name", "host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[Host]
    def __init__(self, hosts: _Optional[_Iterable[_Union[Host, _Mapping]]] = ...) -> None: ...

class Host(_message.Message):
    __slots__ = ("name", "health", "error", "checked_at", "agent_address", "vms", "max_vms", "domains", "memory_total", "memory_committed", "memory_free", "memory_available", "agent_port_first", "agent_port_last", "agent_ports_used")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    MAX_VMS_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORT_FIRST_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORT_LAST_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORTS_USED_FIELD_NUMBER: _ClassVar[int]
    name: str
    health: HostHealth
    error: str
    checked_at: _timestamp_pb2.Timestamp
    agent_address: str
    vms: int
    max_vms: int
    domains: int
    memory_total: int
    memory_committed: int
    memory_free: int
    memory_available: int
    agent_port_first: int
    agent_port_last: int
    agent_ports_used: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., health: _Optional[_Union[HostHealth, str]] = ..., error: _Optional[str] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_address: _Optional[str] = ..., vms: _Optional[int] = ..., max_vms: _Optional[int] = ..., domains: _Optional[int] = ..., memory_total: _Optional[int] = ..., memory_committed: _Optional[int] = ..., memory_free: _Optional[int] = ..., memory_available: _Optional[int] = ..., agent_port_first: _Optional[int] = ..., agent_port_last: _Optional[int] = ..., agent_ports_used: _Optional[_Iterable[int]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "after_seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_seq: int
    def __init__(self, id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CreateRunRequest(_message.Message):
    __slots__ = ("run", "domain")
    RUN_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    run: _manager_pb2.RunRequest
    domain: str
    def __init__(self, run: _Optional[_Union[_manager_pb2.RunRequest, _Mapping]] = ..., domain: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "name", "agent", "domain", "ttl", "state", "created_at", "updated_at", "algorithm", "datasets", "error", "result_bytes", "superseded_by", "host")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    agent: str
    domain: str
    ttl: int
    state: RunState
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    algorithm: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    error: str
    result_bytes: int
    superseded_by: str
    host: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., agent: _Optional[str] = ..., domain: _Optional[str] = ..., ttl: _Optional[int] = ..., state: _Optional[_Union[RunState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., algorithm: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., result_bytes: _Optional[int] = ..., superseded_by: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("run_id", "data")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    data: bytes
    def __init__(self, run_id: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("id", "run")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    run: Run
    def __init__(self, id: _Optional[str] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class AttestRunRequest(_message.Message):
    __slots__ = ("run_id", "nonce")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    nonce: bytes
    def __init__(self, run_id: _Optional[str] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class AttestationCheck(_message.Message):
    __slots__ = ("name", "ok", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class RunAttestation(_message.Message):
    __slots__ = ("run_id", "verified", "nonce", "nonce_from_client", "checks", "expected_pcr", "expected_pcr_value", "expected_measurements", "evidence", "not_established")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FROM_CLIENT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PCR_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PCR_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    NOT_ESTABLISHED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    verified: bool
    nonce: bytes
    nonce_from_client: bool
    checks: _containers.RepeatedCompositeFieldContainer[AttestationCheck]
    expected_pcr: int
    expected_pcr_value: bytes
    expected_measurements: _containers.RepeatedCompositeFieldContainer[_agent_v1_pb2.Measurement]
    evidence: _agent_v1_pb2.VtpmQuote
    not_established: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., verified: _Optional[bool] = ..., nonce: _Optional[bytes] = ..., nonce_from_client: _Optional[bool] = ..., checks: _Optional[_Iterable[_Union[AttestationCheck, _Mapping]]] = ..., expected_pcr: _Optional[int] = ..., expected_pcr_value: _Optional[bytes] = ..., expected_measurements: _Optional[_Iterable[_Union[_agent_v1_pb2.Measurement, _Mapping]]] = ..., evidence: _Optional[_Union[_agent_v1_pb2.VtpmQuote, _Mapping]] = ..., not_established: _Optional[_Iterable[str]] = ...) -> None: ...
