"""Run the built guest on libvirt for tests and benchmarks: one TCG domain, its files in one directory.

Everything here talks to 127.0.0.1 only (the forwarded agent port); the guest's own address is never used.
"""
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from guest.build import Guest
from guest.contract import MARKER
from guest.domain import domain_xml

URI = "qemu:///system"


class GuestTimeout(AssertionError):
    """The guest did not reach a state in time; the message quotes the end of its console."""


@dataclass
class RunningGuest:
    name: str
    dom: object  # libvirt.virDomain
    port: int
    console: Path
    workdir: Path
    started: float  # time.monotonic() right before the domain was started
    manifest: dict  # the build's manifest.json (kernel, agent included, sizes)


def free_loopback_port() -> int:
    """An ephemeral port that was free on 127.0.0.1 a moment ago (QEMU binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def console_tail(console: Path, chars: int = 3000) -> str:
    return console.read_text(errors="replace")[-chars:] if console.exists() else "(no console log yet)"


def wait_for_console(console: Path, text: str, timeout: float) -> float:
    """Seconds until `text` is on the console; GuestTimeout quoting the console otherwise."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if console.exists() and text in console.read_text(errors="replace"):
            return time.monotonic() - started
        time.sleep(0.1)
    raise GuestTimeout(f"{text!r} not on the console after {timeout} s; it ends with:\n{console_tail(console)}")


def wait_for_agent(port: int, timeout: float, address: str = "127.0.0.1") -> float:
    """Seconds until the agent's gRPC health check answers SERVING on address:port (a loopback address).

    Raises GuestTimeout after `timeout` seconds, naming the last answer: a status other than SERVING (e.g.
    NOT_SERVING) or the last gRPC error (e.g. UNAVAILABLE while nothing listens). A TCP connect alone proves
    nothing: QEMU accepts on the host side even when nothing listens inside. The channel reconnects every 50 ms:
    gRPC's default backoff (1 s, growing by 1.6x) would add up to seconds to the moment measured.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    options = [("grpc.enable_http_proxy", 0), ("grpc.initial_reconnect_backoff_ms", 50),
               ("grpc.min_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 50)]
    started = time.monotonic()
    last = "no answer"
    with grpc.insecure_channel(f"{address}:{port}", options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise GuestTimeout(f"the agent's health check on {address}:{port} did not answer SERVING within "
                                   f"{timeout} s; last answer: {last}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=min(5.0, left))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - started
                last = f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            except grpc.RpcError as err:
                last = f"gRPC error {err.code().name}: {err.details()}"  # type: ignore[attr-defined]
            time.sleep(0.05)


def start(conn, name: str, built: Guest, workdir: Path, direct: bool = False, **xml_options) -> RunningGuest:
    """Define and start `name` from copies of the build in workdir (libvirt relabels the files it boots).

    direct=True boots vmlinuz + initrd.img without firmware, the ISO otherwise. xml_options go to
    guest.domain.domain_xml (e.g. firmware="efi", secure_boot=False, tpm="tpm-crb", memory_mib=256).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    files = {}
    for source in (built.iso, built.vmlinuz, built.initrd) if direct else (built.iso,):
        files[source.name] = workdir / source.name
        shutil.copyfile(source, files[source.name])
    console, port = workdir / "console.log", free_loopback_port()
    if direct:
        xml = domain_xml(name, None, port, console, kernel=files["vmlinuz"], initrd=files["initrd.img"], **xml_options)
    else:
        xml = domain_xml(name, files[built.iso.name], port, console, **xml_options)
    dom = conn.defineXML(xml)
    started = time.monotonic()
    dom.create()
    return RunningGuest(name, dom, port, console, workdir, started, built.manifest)


def wait_for_marker(guest: RunningGuest, timeout: float) -> float:
    """Seconds from start to COCOS-GUEST-READY."""
    wait_for_console(guest.console, MARKER, timeout)
    return time.monotonic() - guest.started


def wait_for_shutoff(guest: RunningGuest, timeout: float) -> float:
    started = time.monotonic()
    while guest.dom.isActive():  # type: ignore[attr-defined]
        if time.monotonic() - started > timeout:
            raise GuestTimeout(f"{guest.name} still running after {timeout} s:\n{console_tail(guest.console)}")
        time.sleep(0.1)
    return time.monotonic() - started


def remove(conn, name: str, workdir: Path) -> None:
    """Destroy and undefine `name` if it exists, with its NVRAM and TPM state, then delete its directory;
    safe to call twice."""
    remove_domain(conn, name)
    shutil.rmtree(workdir, ignore_errors=True)


def remove_domain(conn, name: str) -> None:
    """Destroy and undefine `name` if it exists, with its NVRAM and TPM state; safe to call twice."""
    import libvirt

    from module_utils.cocos_libvirt.domain import undefine

    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        undefine(dom)
    except libvirt.libvirtError:
        pass  # never defined, or already gone
