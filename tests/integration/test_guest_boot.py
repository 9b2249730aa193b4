"""Boot the built guest ISO under TCG on the real libvirtd: marker, agent over the forwarded port, ACPI power-off."""
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import guest
from guest.build import ensure_built

libvirt = pytest.importorskip("libvirt")
pytestmark = [pytest.mark.system, pytest.mark.vm]

URI = "qemu:///system"
WORK = Path("/var/lib/cocos-test/guest")
BOOT_TIMEOUT = 120  # TCG boots this guest in seconds; two minutes leaves room for a loaded CI machine
AGENT_TIMEOUT = 60
SHUTDOWN_TIMEOUT = 30


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_text(path: Path, text: str, timeout: float) -> float:
    """Seconds until `text` appears in the file; fails quoting the end of the file."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if path.exists() and text in path.read_text(errors="replace"):
            return time.monotonic() - started
        time.sleep(0.2)
    tail = path.read_text(errors="replace")[-3000:] if path.exists() else "(no console log)"
    pytest.fail(f"{text!r} not on the console after {timeout} s; console ends with:\n{tail}")


class BootedGuest:
    def __init__(self, name: str, dom, port: int, console: Path, boot_seconds: float, manifest: dict):
        self.name, self.dom, self.port, self.console = name, dom, port, console
        self.boot_seconds, self.manifest = boot_seconds, manifest


def _remove(conn, name: str, workdir: Path) -> None:
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    except libvirt.libvirtError:
        pass  # never defined, or already gone
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def booted():
    built = ensure_built()
    name = f"ctest-guest-{uuid.uuid4().hex[:8]}"
    workdir = WORK / name
    workdir.mkdir(parents=True)
    iso = workdir / "cocos-guest.iso"
    shutil.copyfile(built.iso, iso)  # libvirt relabels the file it boots: give it our own copy
    console, port = workdir / "console.log", free_loopback_port()
    conn = libvirt.open(URI)
    try:
        dom = conn.defineXML(guest.domain_xml(name, iso, port, console))
        started = time.monotonic()
        dom.create()
        wait_for_text(console, guest.MARKER, BOOT_TIMEOUT)
        yield BootedGuest(name, dom, port, console, time.monotonic() - started, built.manifest)
    finally:
        _remove(conn, name, workdir)
        conn.close()


def test_console_shows_marker_after_network(booted):
    log = booted.console.read_text(errors="replace")
    assert "cocos-init: eth0 10.0.2.15/24" in log  # the marker comes after the address, never before
    assert log.index("cocos-init: eth0") < log.index(guest.MARKER)
    assert "insmod" not in log, "a kernel module failed to load"
    print(f"boot to marker: {booted.boot_seconds:.1f} s")


def test_agent_answers_health_check_on_forwarded_port(booted):
    if not booted.manifest["agent"]:
        wait_for_text(booted.console, guest.AGENT_MISSING_MARKER, 10)
        pytest.skip("image built before agent/ existed: COCOS-AGENT-MISSING seen, nothing to ask")
    # QEMU accepts on the host side even when nothing listens in the guest, so only an RPC proves the agent.
    deadline = time.monotonic() + AGENT_TIMEOUT
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{booted.port}", options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_virsh_shutdown_powers_off(booted):
    subprocess.run(["virsh", "-c", URI, "shutdown", booted.name], check=True, capture_output=True)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT
    while booted.dom.isActive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not booted.dom.isActive(), f"still running {SHUTDOWN_TIMEOUT} s after virsh shutdown"
    assert "COCOS-GUEST-POWEROFF" in booted.console.read_text(errors="replace")
