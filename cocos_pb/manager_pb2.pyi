import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunRequest(_message.Message):
    __slots__ = ("name", "description", "status", "owner", "start_time", "end_time", "datasets", "algorithms", "dataset_providers", "algorithm_providers", "result_consumers", "ttl")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    DATASET_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    RESULT_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    status: str
    owner: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    datasets: _containers.RepeatedScalarFieldContainer[str]
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    dataset_providers: _containers.RepeatedScalarFieldContainer[str]
    algorithm_providers: _containers.RepeatedScalarFieldContainer[str]
    result_consumers: _containers.RepeatedScalarFieldContainer[str]
    ttl: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., status: _Optional[str] = ..., owner: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., datasets: _Optional[_Iterable[str]] = ..., algorithms: _Optional[_Iterable[str]] = ..., dataset_providers: _Optional[_Iterable[str]] = ..., algorithm_providers: _Optional[_Iterable[str]] = ..., result_consumers: _Optional[_Iterable[str]] = ..., ttl: _Optional[int] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("ID",)
    ID_FIELD_NUMBER: _ClassVar[int]
    ID: str
    def __init__(self, ID: _Optional[str] = ...) -> None: ...

class CreateDomainRequest(_message.Message):
    __slots__ = ("pool", "volume", "domain")
    POOL_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    pool: str
    volume: str
    domain: str
    def __init__(self, pool: _Optional[str] = ..., volume: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class CreateDomainResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
