"""Read-only view of libvirt domains for GET /domains: quick, so listing needs no playbook run."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import libvirt

# libvirt prints every error to stderr by default; ours are reported through exceptions instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"
_HOSTFWD = re.compile(r"hostfwd=(tcp|udp):([^:,]*):(\d+)-[^:,]*:(\d+)")
_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


class LibvirtUnavailable(RuntimeError):
    pass


def forwarded_ports(xml_text: str) -> list[dict]:
    """Ports forwarded by QEMU user networking, written as <qemu:commandline> -netdev hostfwd=... arguments."""
    root = ET.fromstring(xml_text)
    ports = []
    for arg in root.iter(f"{QEMU_NS}arg"):
        for proto, address, host_port, guest_port in _HOSTFWD.findall(arg.get("value", "")):
            ports.append({"host_address": address or "0.0.0.0", "host_port": int(host_port),
                          "guest_port": int(guest_port), "protocol": proto})
    return ports


def describe(dom: libvirt.virDomain) -> dict:
    state, _ = dom.state()
    return {"name": dom.name(), "uuid": dom.UUIDString(), "state": _STATES.get(state, str(state)),
            "forwarded_ports": forwarded_ports(dom.XMLDesc(0))}


def _open(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(f"cannot connect to {uri}: {exc.get_error_message()}") from None


def list_domains(uri: str) -> list[dict]:
    conn = _open(uri)
    try:
        return sorted((describe(d) for d in conn.listAllDomains(0)), key=lambda d: d["name"])
    finally:
        conn.close()


def get_domain(uri: str, name: str) -> dict | None:
    conn = _open(uri)
    try:
        try:
            return describe(conn.lookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise LibvirtUnavailable(f"lookup of {name!r} failed: {exc.get_error_message()}") from None
    finally:
        conn.close()
