from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RunRequest(_message.Message):
    __slots__ = ("computation",)
    COMPUTATION_FIELD_NUMBER: _ClassVar[int]
    computation: bytes
    def __init__(self, computation: _Optional[bytes] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("Computation",)
    COMPUTATION_FIELD_NUMBER: _ClassVar[int]
    Computation: str
    def __init__(self, Computation: _Optional[str] = ...) -> None: ...

class AlgoRequest(_message.Message):
    __slots__ = ("algorithm",)
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    algorithm: bytes
    def __init__(self, algorithm: _Optional[bytes] = ...) -> None: ...

class AlgoResponse(_message.Message):
    __slots__ = ("algorithmID",)
    ALGORITHMID_FIELD_NUMBER: _ClassVar[int]
    algorithmID: str
    def __init__(self, algorithmID: _Optional[str] = ...) -> None: ...

class DataRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: bytes
    def __init__(self, dataset: _Optional[bytes] = ...) -> None: ...

class DataResponse(_message.Message):
    __slots__ = ("datasetID",)
    DATASETID_FIELD_NUMBER: _ClassVar[int]
    datasetID: str
    def __init__(self, datasetID: _Optional[str] = ...) -> None: ...

class ResultRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResultResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: bytes
    def __init__(self, file: _Optional[bytes] = ...) -> None: ...

class AttestationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttestationResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: bytes
    def __init__(self, file: _Optional[bytes] = ...) -> None: ...
