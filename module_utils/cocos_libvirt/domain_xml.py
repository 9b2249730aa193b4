"""Domain XML from structured options, and facts read back from domain XML.

Building is pure (no libvirt calls) so it is cheap to test; the manager resolves what needs libvirt
(domain type `auto`, volume formats) before calling `build()`.
"""
from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from typing import Any

from .common import LibvirtModuleError
from .domain_compare import QEMU_COMMANDLINE, QEMU_NS
from .units import UnitError, parse_size

# The structured options that describe a definition; any of them given (not None) means "build one".
STRUCTURED_OPTIONS = ("memory", "vcpus", "machine", "disks", "boot", "interfaces", "serial_log", "domain_type")
TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd"}
# QEMU user-mode NICs sit on fixed slots 0x10.. so libvirt's own devices (which fill from 0x02) never collide.
USER_NIC_FIRST_SLOT = 0x10
USER_NIC_MAX = 16
QEMU_ARG = f"{{{QEMU_NS}}}arg"


def memory_kib(value: Any, what: str) -> int:
    """KiB for a domain memory option; a bare number is KiB, as in libvirt's <memory> element."""
    try:
        size = parse_size(value if isinstance(value, int) else str(value).strip(), "" if _has_unit(value) else "KiB")
    except UnitError as exc:
        raise LibvirtModuleError(f"{what}: memory: {exc}") from exc
    if size < 1024 * 1024:
        raise LibvirtModuleError(f"{what}: memory {value!r} is below 1 MiB")
    return -(-size // 1024)


def _has_unit(value: Any) -> bool:
    return isinstance(value, str) and any(ch.isalpha() for ch in value)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str | None) -> ET.Element:
    elem = ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        elem.text = text
    return elem


def structured_given(opts: dict[str, Any]) -> bool:
    """Whether the task describes a definition through options (an empty list is a description too)."""
    return any(opts.get(option) is not None for option in STRUCTURED_OPTIONS)


def build(name: str, opts: dict[str, Any], domain_type: str, volume_formats: dict[int, str]) -> ET.Element:
    """The <domain> element for structured options. volume_formats: disk index -> pool volume format.

    Without memory there is no <memory>: for an existing domain domain_carry fills it in, and the
    manager refuses to define a new domain without it.
    """
    what = f"domain {name}"
    root = ET.Element("domain", {"type": domain_type})
    _sub(root, "name", name)
    if opts.get("memory") is not None:
        _sub(root, "memory", str(memory_kib(opts["memory"], what)), unit="KiB")
    _sub(root, "vcpu", str(_vcpus(opts.get("vcpus"), what)))
    disks = opts.get("disks") or []
    _os(root, opts, disks, what)
    features = _sub(root, "features")
    _sub(features, "acpi")  # without ACPI a graceful shutdown request reaches nobody
    _sub(features, "apic")
    devices = _sub(root, "devices")
    for disk in _with_targets(disks, what):
        _disk(devices, disk, volume_formats.get(disk["_index"]), what)
    interfaces = opts.get("interfaces") or []
    for nic in interfaces:
        if nic.get("type", "network") == "network":
            _network_nic(devices, nic, what)
    if opts.get("serial_log"):
        _serial_log(devices, opts["serial_log"])
    user_nics = [nic for nic in interfaces if nic.get("type") == "user"]
    # The balloon would take a PCI slot and buys nothing for these guests; with user-mode NICs the
    # contract asks for it off. Rendered explicitly either way so removing it is a visible change.
    _sub(devices, "memballoon", model="none" if user_nics else "virtio")
    if user_nics:
        _user_networking(root, user_nics, what)
    return root


def _vcpus(value: Any, what: str) -> int:
    count = 1 if value is None else value
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise LibvirtModuleError(f"{what}: vcpus must be a positive whole number, not {value!r}")
    return count


def _os(root: ET.Element, opts: dict[str, Any], disks: list[dict[str, Any]], what: str) -> None:
    os_elem = _sub(root, "os")
    _sub(os_elem, "type", "hvm", machine=opts.get("machine") or None)
    boot = opts.get("boot")
    if any(d.get("boot_order") for d in disks):
        if boot:
            raise LibvirtModuleError(f"{what}: use either boot or a disk's boot_order, not both (libvirt refuses it)")
        return
    for dev in boot or ["hd"]:
        _sub(os_elem, "boot", dev=dev)


def _with_targets(disks: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """Disks with bus and target filled in: vda, vdb... per bus, skipping targets the user chose."""
    out = []
    taken = {d["target"] for d in disks if d.get("target")}
    if len(taken) != len([d for d in disks if d.get("target")]):
        raise LibvirtModuleError(f"{what}: two disks use the same target")
    for index, disk in enumerate(disks):
        item = dict(disk, _index=index)
        device = item.get("device") or "disk"
        item["device"] = device
        item["bus"] = item.get("bus") or ("sata" if device == "cdrom" else "virtio")
        if not item.get("target"):
            item["target"] = _next_target(TARGET_PREFIX.get(item["bus"], "sd"), taken)
            taken.add(item["target"])
        _check_disk_source(item, index, what)
        out.append(item)
    return out


def _next_target(prefix: str, taken: set) -> str:
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in taken:
            return prefix + letter
    raise LibvirtModuleError(f"no free disk target left with prefix {prefix}")


def _check_disk_source(disk: dict[str, Any], index: int, what: str) -> None:
    by_volume = bool(disk.get("pool") or disk.get("volume"))
    if by_volume and not (disk.get("pool") and disk.get("volume")):
        raise LibvirtModuleError(f"{what}: disk {index}: pool and volume go together")
    if by_volume and disk.get("path"):
        raise LibvirtModuleError(f"{what}: disk {index}: give either pool/volume or path, not both")
    if not by_volume and not disk.get("path") and disk["device"] != "cdrom":
        raise LibvirtModuleError(f"{what}: disk {index}: needs pool and volume, or path (only a cdrom may be empty)")


def _disk(devices: ET.Element, disk: dict[str, Any], volume_format: str | None, what: str) -> None:
    if disk.get("pool"):
        elem = _sub(devices, "disk", type="volume", device=disk["device"])
    else:
        elem = _sub(devices, "disk", type="file", device=disk["device"])
    fmt = disk.get("format") or volume_format or ("raw" if disk["device"] == "cdrom" else "qcow2")
    _sub(elem, "driver", name="qemu", type=fmt)
    if disk.get("pool"):
        _sub(elem, "source", pool=disk["pool"], volume=disk["volume"])
    elif disk.get("path"):
        _sub(elem, "source", file=disk["path"])
    _sub(elem, "target", dev=disk["target"], bus=disk["bus"])
    if disk.get("readonly") or disk["device"] == "cdrom":
        _sub(elem, "readonly")  # libvirt adds it to every cdrom itself; say it so both sides agree
    if disk.get("boot_order"):
        _sub(elem, "boot", order=str(int(disk["boot_order"])))


def _network_nic(devices: ET.Element, nic: dict[str, Any], what: str) -> None:
    if not nic.get("network"):
        raise LibvirtModuleError(f"{what}: an interface of type network needs network: NAME")
    if nic.get("port_forwards"):
        raise LibvirtModuleError(f"{what}: port_forwards need an interface of type user")
    elem = _sub(devices, "interface", type="network")
    if nic.get("mac"):
        _sub(elem, "mac", address=nic["mac"].lower())
    _sub(elem, "source", network=nic["network"])
    _sub(elem, "model", type=nic.get("model") or "virtio")


def _serial_log(devices: ET.Element, path: str) -> None:
    # A pty keeps `virsh console` working while virtlogd copies everything into the file.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=path, append="off")
    _sub(serial, "target", port="0")


def _user_networking(root: ET.Element, nics: list[dict[str, Any]], what: str) -> None:
    if len(nics) > USER_NIC_MAX:
        raise LibvirtModuleError(f"{what}: at most {USER_NIC_MAX} user-mode interfaces")
    seen: dict[tuple, int] = {}
    cmdline = ET.SubElement(root, QEMU_COMMANDLINE)
    for index, nic in enumerate(nics):
        if nic.get("network"):
            raise LibvirtModuleError(f"{what}: an interface of type user takes no network")
        netdev = f"user,id=n{index}"
        for fwd in nic.get("port_forwards") or []:
            netdev += ",hostfwd=" + _hostfwd(fwd, seen, what)
        device = f"virtio-net-pci,netdev=n{index},addr={USER_NIC_FIRST_SLOT + index:#x}"
        if nic.get("mac"):
            device += f",mac={nic['mac'].lower()}"
        for value in ("-netdev", netdev, "-device", device):
            ET.SubElement(cmdline, QEMU_ARG, value=value)


def _hostfwd(fwd: dict[str, Any], seen: dict[tuple, int], what: str) -> str:
    protocol = fwd.get("protocol") or "tcp"
    address = fwd.get("host_address") or "127.0.0.1"
    if protocol not in ("tcp", "udp"):
        raise LibvirtModuleError(f"{what}: port forward protocol must be tcp or udp, not {protocol!r}")
    try:
        ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise LibvirtModuleError(f"{what}: port forward host_address must be an IPv4 address: {exc}") from exc
    host_port, guest_port = _port(fwd.get("host_port"), what), _port(fwd.get("guest_port"), what)
    if (protocol, host_port) in seen:
        raise LibvirtModuleError(f"{what}: host port {protocol}/{host_port} is forwarded twice")
    seen[(protocol, host_port)] = guest_port
    return f"{protocol}:{address}:{host_port}-:{guest_port}"


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LibvirtModuleError(f"{what}: port {value!r} is not in 1-65535")
    return value


def to_text(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def set_host_forward(root: ET.Element, guest_port: int, host_address: str, host_port: int) -> bool:
    """Point the first TCP forward to guest_port of QEMU user networking at host_address:host_port, in place.

    The guest side of the rule is kept as written; other forwards and options are untouched. Returns whether the
    definition changed (False also when it has no such forward). Rule syntax: QEMU's `hostfwd=[tcp|udp]:[hostaddr]:
    hostport-[guestaddr]:guestport` (qemu-system `-netdev user`).
    """
    for arg in _user_netdev_args(root):
        parts = arg.get("value", "").split(",")
        for index, part in enumerate(parts):
            fwd = _parse_hostfwd(part[len("hostfwd="):]) if part.startswith("hostfwd=") else None
            if fwd is None or fwd["protocol"] != "tcp" or fwd["guest_port"] != guest_port:
                continue
            guest_side = part.split("-", 1)[1]
            parts[index] = f"hostfwd=tcp:{host_address}:{int(host_port)}-{guest_side}"
            changed = parts[index] != part
            arg.set("value", ",".join(parts))
            return changed
    return False


def _user_netdev_args(root: ET.Element) -> list[ET.Element]:
    """The <qemu:arg> elements holding a `-netdev user,...` or `-nic user,...` value, in order."""
    args = root.findall(f"{QEMU_COMMANDLINE}/{QEMU_ARG}")
    return [value for flag, value in zip(args, args[1:], strict=False)
            if flag.get("value") in ("-netdev", "-nic") and value.get("value", "").startswith("user")]


# ---- facts read back from XML ------------------------------------------------------------------


def forwarded_ports(root: ET.Element) -> list[dict[str, Any]]:
    """Port forwards of QEMU user networking found in <qemu:commandline> (-netdev/-nic user,...)."""
    args = [arg.get("value", "") for arg in root.findall(f"{QEMU_COMMANDLINE}/{QEMU_ARG}")]
    out: list[dict[str, Any]] = []
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-netdev", "-nic") and value.startswith("user"):
            out.extend(_parse_hostfwds(value))
    return out


def _parse_hostfwds(netdev: str) -> list[dict[str, Any]]:
    out = []
    for part in netdev.split(","):
        if not part.startswith("hostfwd="):
            continue
        parsed = _parse_hostfwd(part[len("hostfwd="):])
        if parsed:
            out.append(parsed)
    return out


def _parse_hostfwd(rule: str) -> dict[str, Any] | None:
    """`[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport`, as QEMU documents it."""
    try:
        host, guest = rule.split("-", 1)
        protocol, host_address, host_port = host.split(":")
        guest_port = guest.rsplit(":", 1)[1]
        return {"host_address": host_address or "0.0.0.0", "host_port": int(host_port),
                "guest_port": int(guest_port), "protocol": protocol or "tcp"}
    except ValueError:
        return None  # not a form we understand; QEMU will say more when it starts


def disks(root: ET.Element) -> list[dict[str, Any]]:
    out = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        driver = disk.find("driver")
        src = source.attrib if source is not None else {}
        out.append({
            "device": disk.get("device", "disk"),
            "type": disk.get("type"),
            "target": target.get("dev") if target is not None else None,
            "bus": target.get("bus") if target is not None else None,
            "format": driver.get("type") if driver is not None else None,
            "path": src.get("file") or src.get("dev"),
            "pool": src.get("pool"),
            "volume": src.get("volume"),
        })
    return out


def interfaces(root: ET.Element) -> list[dict[str, Any]]:
    out = []
    for nic in root.findall("devices/interface"):
        source = nic.find("source")
        mac = nic.find("mac")
        model = nic.find("model")
        out.append({
            "type": nic.get("type"),
            "network": source.get("network") if source is not None else None,
            "bridge": source.get("bridge") if source is not None else None,
            "mac": mac.get("address") if mac is not None else None,
            "model": model.get("type") if model is not None else None,
        })
    args = [arg.get("value", "") for arg in root.findall(f"{QEMU_COMMANDLINE}/{QEMU_ARG}")]
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-netdev", "-nic") and value.startswith("user"):
            ident = next((p[3:] for p in value.split(",") if p.startswith("id=")), None)
            user: dict[str, Any] = {"type": "user", "id": ident, "port_forwards": _parse_hostfwds(value)}
            out.append(user)
    return out


def memory_bytes(root: ET.Element) -> int | None:
    elem = root.find("memory")
    if elem is None:
        return None
    try:
        return parse_size((elem.text or "").strip(), elem.get("unit", "KiB"))
    except UnitError:
        return None


def vcpus(root: ET.Element) -> int | None:
    text = (root.findtext("vcpu") or "").strip()
    return int(text) if text.isdigit() else None
