from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttestationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTESTATION_TYPE_UNSPECIFIED: _ClassVar[AttestationType]
    ATTESTATION_TYPE_SNP: _ClassVar[AttestationType]
    ATTESTATION_TYPE_TDX: _ClassVar[AttestationType]
    ATTESTATION_TYPE_VTPM: _ClassVar[AttestationType]
    ATTESTATION_TYPE_SNP_VTPM: _ClassVar[AttestationType]
ATTESTATION_TYPE_UNSPECIFIED: AttestationType
ATTESTATION_TYPE_SNP: AttestationType
ATTESTATION_TYPE_TDX: AttestationType
ATTESTATION_TYPE_VTPM: AttestationType
ATTESTATION_TYPE_SNP_VTPM: AttestationType

class AttestationRequest(_message.Message):
    __slots__ = ("tee_nonce", "vtpm_nonce", "type")
    TEE_NONCE_FIELD_NUMBER: _ClassVar[int]
    VTPM_NONCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    tee_nonce: bytes
    vtpm_nonce: bytes
    type: AttestationType
    def __init__(self, tee_nonce: _Optional[bytes] = ..., vtpm_nonce: _Optional[bytes] = ..., type: _Optional[_Union[AttestationType, str]] = ...) -> None: ...

class AttestationResponse(_message.Message):
    __slots__ = ("type", "tee_report", "vtpm")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEE_REPORT_FIELD_NUMBER: _ClassVar[int]
    VTPM_FIELD_NUMBER: _ClassVar[int]
    type: AttestationType
    tee_report: bytes
    vtpm: VtpmQuote
    def __init__(self, type: _Optional[_Union[AttestationType, str]] = ..., tee_report: _Optional[bytes] = ..., vtpm: _Optional[_Union[VtpmQuote, _Mapping]] = ...) -> None: ...

class VtpmQuote(_message.Message):
    __slots__ = ("attest", "signature", "ak_public", "pcr_bank", "pcrs", "measurement_pcr", "measurements")
    ATTEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    AK_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    PCR_BANK_FIELD_NUMBER: _ClassVar[int]
    PCRS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_PCR_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    attest: bytes
    signature: bytes
    ak_public: bytes
    pcr_bank: str
    pcrs: _containers.RepeatedCompositeFieldContainer[PcrValue]
    measurement_pcr: int
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    def __init__(self, attest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., ak_public: _Optional[bytes] = ..., pcr_bank: _Optional[str] = ..., pcrs: _Optional[_Iterable[_Union[PcrValue, _Mapping]]] = ..., measurement_pcr: _Optional[int] = ..., measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ...) -> None: ...

class PcrValue(_message.Message):
    __slots__ = ("index", "value")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    index: int
    value: bytes
    def __init__(self, index: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("kind", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: str
    sha256: bytes
    def __init__(self, kind: _Optional[str] = ..., sha256: _Optional[bytes] = ...) -> None: ...
