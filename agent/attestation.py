"""Hardware attestation reports through the guest kernel's TEE drivers; never a made-up report.

Layouts follow the kernel uapi headers:
- linux/sev-guest.h: SNP_GET_REPORT = _IOWR('S', 0, struct snp_guest_request_ioctl) with msg_version 1 and
  pointers to snp_report_req {user_data[64], vmpl, rsvd[28]} and snp_report_resp {data[4000]}. The response
  holds the firmware's MSG_REPORT_RSP: status (u32), report_size (u32), 24 reserved bytes, then the report.
- linux/tdx-guest.h: TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req {reportdata[64],
  tdreport[1024]}); the TDREPORT comes back in place. (Turning it into a remotely verifiable quote needs the
  host's quoting service, which is outside the agent.)
The 64 bytes of report data are the sha256 of the current computation manifest followed by 32 zero bytes (all
zeros before any Run), so a verifier can tie the report to the computation it agreed to.
"""

import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from agent.errors import AttestationFailed, NoAttestationDevice

REPORT_DATA_LEN = 64
_IOC_READ_WRITE = 3  # _IOC_READ | _IOC_WRITE on x86 and arm64 (asm-generic/ioctl.h)
_SNP_RESPONSE_HEADER = 32


def iowr(kind: str, number: int, size: int) -> int:
    """The kernel's _IOWR(type, nr, size) macro."""
    return (_IOC_READ_WRITE << 30) | (size << 16) | (ord(kind) << 8) | number


class SnpReportRequest(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32), ("rsvd", ctypes.c_uint8 * 28)]


class SnpReportResponse(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class SnpGuestRequestIoctl(ctypes.Structure):
    # exitinfo2 is a union in the header: bits 0-31 firmware error, bits 32-63 VMM error.
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]


class TdxReportRequest(ctypes.Structure):
    _fields_ = [("reportdata", ctypes.c_uint8 * 64), ("tdreport", ctypes.c_uint8 * 1024)]


SNP_GET_REPORT = iowr("S", 0, ctypes.sizeof(SnpGuestRequestIoctl))
TDX_CMD_GET_REPORT0 = iowr("T", 1, ctypes.sizeof(TdxReportRequest))


@dataclass(frozen=True)
class Device:
    kind: str  # "sev-snp" or "tdx"
    path: str


class Attester:
    """Picks the device present in this guest (SEV-SNP first; a guest is never both) and asks it for a report."""

    def __init__(self, sev_device: str = "/dev/sev-guest", tdx_device: str = "/dev/tdx_guest") -> None:
        self._sev = sev_device
        self._tdx = tdx_device

    def device(self) -> Device | None:
        if os.path.exists(self._sev):
            return Device("sev-snp", self._sev)
        if os.path.exists(self._tdx):
            return Device("tdx", self._tdx)
        return None

    def _named(self, kind: str) -> Device:
        path = {"sev-snp": self._sev, "tdx": self._tdx}[kind]
        if not os.path.exists(path):
            raise NoAttestationDevice(f"no {kind.upper()} guest device {path} in this guest: no {kind.upper()} report")
        return Device(kind, path)

    def report(self, report_data: bytes, kind: str | None = None) -> bytes:
        """A report from the device present (`kind` None) or from the named one ("sev-snp" or "tdx").

        NoAttestationDevice names the device that is missing; AttestationFailed when it refuses.
        """
        if len(report_data) != REPORT_DATA_LEN:
            raise ValueError(f"report data must be {REPORT_DATA_LEN} bytes")
        device = self.device() if kind is None else self._named(kind)
        if device is None:
            raise NoAttestationDevice(f"no TEE attestation device ({self._sev}, {self._tdx}) in this guest")
        fd = _open(device.path)
        try:
            request = _snp_report if device.kind == "sev-snp" else _tdx_report
            return request(fd, device.path, report_data)
        finally:
            os.close(fd)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise AttestationFailed(f"cannot open attestation device {path}: {exc.strerror}") from None


def _snp_report(fd: int, path: str, report_data: bytes) -> bytes:
    request = SnpReportRequest()
    ctypes.memmove(request.user_data, report_data, REPORT_DATA_LEN)
    response = SnpReportResponse()
    guest_request = SnpGuestRequestIoctl(
        msg_version=1, req_data=ctypes.addressof(request), resp_data=ctypes.addressof(response)
    )
    try:
        fcntl.ioctl(fd, SNP_GET_REPORT, guest_request, True)
    except OSError as exc:
        firmware, vmm = guest_request.exitinfo2 & 0xFFFFFFFF, guest_request.exitinfo2 >> 32
        raise AttestationFailed(
            f"SNP_GET_REPORT on {path} failed: {_reason(exc)} (firmware error 0x{firmware:x}, VMM error 0x{vmm:x})"
        ) from None
    return _snp_payload(bytes(response.data))


def _snp_payload(data: bytes) -> bytes:
    status, size = struct.unpack_from("<II", data)
    if status != 0:
        raise AttestationFailed(f"SEV-SNP firmware refused the report request with status 0x{status:x}")
    if size == 0 or size > len(data) - _SNP_RESPONSE_HEADER:
        raise AttestationFailed(f"SEV-SNP firmware returned an implausible report size {size}")
    return data[_SNP_RESPONSE_HEADER : _SNP_RESPONSE_HEADER + size]


def _tdx_report(fd: int, path: str, report_data: bytes) -> bytes:
    request = TdxReportRequest()
    ctypes.memmove(request.reportdata, report_data, REPORT_DATA_LEN)
    try:
        fcntl.ioctl(fd, TDX_CMD_GET_REPORT0, request, True)
    except OSError as exc:
        raise AttestationFailed(f"TDX_CMD_GET_REPORT0 on {path} failed: {_reason(exc)}") from None
    return bytes(request.tdreport)


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "unknown error")
