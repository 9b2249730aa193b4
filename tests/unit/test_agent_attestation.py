"""Attestation device selection and absence, health checking, and upload size limits, over real gRPC."""

import ctypes
import os
import subprocess
import sys

import grpc
import pytest
from agent_testlib import manifest, rpc_error, running_agent
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent import attestation, service

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ioctl_numbers_match_the_kernel_headers():
    # Values of _IOWR('S', 0, struct snp_guest_request_ioctl) and _IOWR('T', 1, struct tdx_report_req) on x86-64.
    assert ctypes.sizeof(attestation.SnpGuestRequestIoctl) == 32
    assert ctypes.sizeof(attestation.SnpReportRequest) == 96
    assert ctypes.sizeof(attestation.TdxReportRequest) == 1088
    assert attestation.SNP_GET_REPORT == 0xC0205300
    assert attestation.TDX_CMD_GET_REPORT0 == 0xC4405401


def test_the_service_pads_report_data_to_the_devices_length_and_imports_ctypes_only_when_asked():
    assert service.REPORT_DATA_LEN == attestation.REPORT_DATA_LEN == 64
    probe = "import sys; import agent.service; print('ctypes' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip() == "False"


def test_absent_devices_give_failed_precondition(tmp_path):
    sev, tdx = str(tmp_path / "sev-guest"), str(tmp_path / "tdx_guest")
    with running_agent(sev_device=sev, tdx_device=tdx) as agent:
        error = rpc_error(agent.attestation)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == f"no TEE attestation device ({sev}, {tdx}) in this guest"


@pytest.mark.skipif(os.path.exists("/dev/sev-guest") or os.path.exists("/dev/tdx_guest"), reason="a real TEE guest")
def test_default_devices_are_absent_on_this_host():
    with running_agent() as agent:
        error = rpc_error(agent.attestation)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "(/dev/sev-guest, /dev/tdx_guest)" in error.details()


@pytest.mark.parametrize(
    ("present", "ioctl"),
    [(("sev",), "SNP_GET_REPORT"), (("tdx",), "TDX_CMD_GET_REPORT0"), (("sev", "tdx"), "SNP_GET_REPORT")],
)
def test_device_selection_issues_the_matching_ioctl(tmp_path, present, ioctl):
    # A regular file is not the driver: the real ioctl reaches the kernel and fails, which proves which was chosen.
    paths = {name: tmp_path / name for name in ("sev", "tdx")}
    for name in present:
        paths[name].write_bytes(b"")
    with running_agent(sev_device=str(paths["sev"]), tdx_device=str(paths["tdx"])) as agent:
        agent.run(manifest())
        error = rpc_error(agent.attestation)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details().startswith(f"{ioctl} on {paths[present[0]]} failed: Inappropriate ioctl for device")


def test_health_reports_serving_for_the_server_and_both_agent_services():
    with running_agent() as agent:
        health = health_pb2_grpc.HealthStub(agent.channel)
        for service in ("", "agent.AgentService", "cocos.agent.v1.AgentService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        error = rpc_error(health.Check, health_pb2.HealthCheckRequest(service="nope"))
        assert error.code() == grpc.StatusCode.NOT_FOUND


def test_upload_larger_than_the_limit_is_refused_by_the_server():
    with running_agent(max_upload_bytes=4096) as agent:
        agent.run(manifest())
        error = rpc_error(agent.data, b"1," * 10000)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert agent.state == "receiving_algorithm"
