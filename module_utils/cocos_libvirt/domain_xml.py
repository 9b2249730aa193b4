"""Domain XML from structured options, and facts read back from domain XML.

Building is pure (no libvirt calls) so it is cheap to test; the manager resolves what needs libvirt
(domain type `auto`, volume formats) before calling `build()`, and checks what the result asks of
the host against its domain capabilities (domcaps) before defining it.

This is the one builder of domain XML: libvirt_domain, the guest tooling (guest/domain.py) and the
shipped xml/dom.xml (scripts/gen_dom_xml.py) all come from `build()`.
"""
from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import xml.etree.ElementTree as ET
from typing import Any

from .common import LibvirtModuleError
from .domain_compare import QEMU_COMMANDLINE, QEMU_NS
from .units import UnitError, parse_size

# The structured options that describe a definition; any of them given (not None) means "build one".
STRUCTURED_OPTIONS = ("memory", "vcpus", "machine", "disks", "boot", "interfaces", "serial_log", "domain_type",
                      "firmware", "secure_boot", "tpm", "launch_security")
TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd"}
# QEMU user-mode NICs sit on fixed slots 0x10.. so libvirt's own devices (which fill from 0x02) never collide.
USER_NIC_FIRST_SLOT = 0x10
USER_NIC_MAX = 16
QEMU_ARG = f"{{{QEMU_NS}}}arg"

# Emulated TPMs (swtpm): libvirt's <tpm model=...>; `none` means no TPM device.
TPM_MODELS = ("tpm-crb", "tpm-tis")
TPM_VERSIONS = ("2.0",)
# https://libvirt.org/formatdomain.html#launch-security: the fields each type defines, as
# option -> (kind, XML name, bytes for base64 blobs). kind: attr (yes/no attribute), elem (element text),
# int (unsigned element), b64 (base64 element of exactly that many decoded bytes; 0: any length).
LAUNCH_SECURITY_FIELDS: dict[str, dict[str, tuple[str, str, int]]] = {
    "sev": {
        "kernel_hashes": ("attr", "kernelHashes", 0),
        "cbitpos": ("int", "cbitpos", 0),
        "reduced_phys_bits": ("int", "reducedPhysBits", 0),
        "policy": ("policy", "policy", 32),
        "dh_cert": ("b64", "dhCert", 0),
        "session": ("b64", "session", 0),
    },
    "sev-snp": {
        "kernel_hashes": ("attr", "kernelHashes", 0),
        "author_key": ("attr", "authorKey", 0),
        "vcek": ("attr", "vcek", 0),
        "cbitpos": ("int", "cbitpos", 0),
        "reduced_phys_bits": ("int", "reducedPhysBits", 0),
        "policy": ("policy", "policy", 64),
        "guest_visible_workarounds": ("b64", "guestVisibleWorkarounds", 16),
        "id_block": ("b64", "idBlock", 96),
        "id_auth": ("b64", "idAuth", 4096),
        "host_data": ("b64", "hostData", 32),
    },
    "tdx": {
        "policy": ("policy", "policy", 64),
        "mr_config_id": ("b64", "mrConfigId", 48),
        "mr_owner": ("b64", "mrOwner", 48),
        "mr_owner_config": ("b64", "mrOwnerConfig", 48),
        "quote_generation_service": ("qgs", "quoteGenerationService", 0),
    },
}
# libvirt refuses a SEV definition without a policy; SEV-SNP and TDX default theirs in QEMU.
LAUNCH_SECURITY_REQUIRED = {"sev": ("policy",)}


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
    efi, secure = firmware_choice(opts, what)
    _os(root, opts, disks, what)
    features = _sub(root, "features")
    _sub(features, "acpi")  # without ACPI a graceful shutdown request reaches nobody; UEFI needs it too
    _sub(features, "apic")
    write_firmware(root, efi, secure)
    devices = _sub(root, "devices")
    for disk in _with_targets(disks, what):
        _disk(devices, disk, volume_formats.get(disk["_index"]), what)
    interfaces = opts.get("interfaces") or []
    for nic in interfaces:
        if nic.get("type", "network") == "network":
            _network_nic(devices, nic, what)
    if opts.get("serial_log"):
        _serial_log(devices, opts["serial_log"])
    if opts.get("tpm") is not None:
        _tpm(devices, opts["tpm"], what)
    user_nics = [nic for nic in interfaces if nic.get("type") == "user"]
    # The balloon would take a PCI slot and buys nothing for these guests; with user-mode NICs the
    # contract asks for it off. Rendered explicitly either way so removing it is a visible change.
    _sub(devices, "memballoon", model="none" if user_nics else "virtio")
    if opts.get("launch_security") is not None:
        launch_security(root, opts["launch_security"], what)
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
    if opts.get("kernel"):
        _direct_kernel(os_elem, opts)
        return
    boot = opts.get("boot")
    if any(d.get("boot_order") for d in disks):
        if boot:
            raise LibvirtModuleError(f"{what}: use either boot or a disk's boot_order, not both (libvirt refuses it)")
        return
    for dev in boot or ["hd"]:
        _sub(os_elem, "boot", dev=dev)


def _direct_kernel(os_elem: ET.Element, opts: dict[str, Any]) -> None:
    """Direct kernel boot (the guest tooling's fast path; no libvirt_domain option): no firmware boot order."""
    _sub(os_elem, "kernel", str(opts["kernel"]))
    if opts.get("initrd"):
        _sub(os_elem, "initrd", str(opts["initrd"]))
    if opts.get("cmdline"):
        _sub(os_elem, "cmdline", str(opts["cmdline"]))


# ---- firmware, TPM, launch security ------------------------------------------------------------


def firmware_choice(opts: dict[str, Any], what: str) -> tuple[bool, bool]:
    """(UEFI, Secure Boot) for the firmware and secure_boot options.

    firmware efi, or secure_boot true alone, means UEFI; secure_boot false (or omitted) means no
    Secure Boot. BIOS with Secure Boot does not exist and is refused.
    """
    firmware, secure = opts.get("firmware"), opts.get("secure_boot")
    if firmware not in (None, "bios", "efi"):
        raise LibvirtModuleError(f"{what}: firmware must be bios or efi, not {firmware!r}")
    if firmware == "bios" and secure:
        raise LibvirtModuleError(f"{what}: secure_boot needs firmware: efi (BIOS has no Secure Boot)")
    return firmware == "efi" or (firmware is None and bool(secure)), bool(secure)


def write_firmware(root: ET.Element, efi: bool, secure: bool) -> None:
    """Set the firmware part of a <domain> (replacing what it had): libvirt's firmware auto-selection.

    UEFI is `<os firmware='efi'>` with the firmware features enrolled-keys and secure-boot both
    enabled or both disabled, always explicit: left open, libvirt 9.0 picks the Secure Boot firmware
    with Microsoft's keys enrolled (measured). Secure Boot firmware needs SMM, so `<smm state='on'/>`
    is written too; libvirt would add it at start, and saying it keeps live and inactive XML equal.
    The part: os@firmware, os/firmware, os/loader, os/nvram and features/smm
    (https://libvirt.org/formatdomain.html#bios-bootloader).
    """
    os_elem = root.find("os")
    if os_elem is None:
        os_elem = ET.SubElement(root, "os")
    os_elem.attrib.pop("firmware", None)
    for child in [c for c in os_elem if c.tag in ("firmware", "loader", "nvram")]:
        os_elem.remove(child)
    features = root.find("features")
    for smm in features.findall("smm") if features is not None else []:
        features.remove(smm)  # type: ignore[union-attr]
    if not efi:
        return
    os_elem.set("firmware", "efi")
    chosen = ET.Element("firmware")
    for name in ("enrolled-keys", "secure-boot"):  # libvirt's own order, so both sides compare alike
        _sub(chosen, "feature", enabled="yes" if secure else "no", name=name)
    os_elem.insert(1 if os_elem.find("type") is not None else 0, chosen)
    if secure:
        if features is None:
            features = ET.SubElement(root, "features")
        _sub(features, "smm", state="on")


def uses_efi(root: ET.Element) -> bool:
    """Whether a <domain> boots UEFI (auto-selected, or an explicit pflash loader)."""
    os_elem = root.find("os")
    loader = os_elem.find("loader") if os_elem is not None else None
    return os_elem is not None and (os_elem.get("firmware") == "efi" or
                                    (loader is not None and loader.get("type") == "pflash"))


def _tpm(devices: ET.Element, tpm: dict[str, Any], what: str) -> None:
    """An emulated TPM (swtpm): <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>."""
    model = tpm.get("model") or "tpm-crb"
    if model == "none":
        return
    version = str(tpm.get("version") or "2.0")
    if model not in TPM_MODELS:
        raise LibvirtModuleError(f"{what}: tpm model must be one of {', '.join(TPM_MODELS)} or none, not {model!r}")
    if version not in TPM_VERSIONS:
        raise LibvirtModuleError(f"{what}: tpm version must be {' or '.join(TPM_VERSIONS)}, not {version!r}")
    elem = _sub(devices, "tpm", model=model)
    _sub(elem, "backend", type="emulator", version=version)


def launch_security(root: ET.Element, spec: dict[str, Any], what: str) -> None:
    """<launchSecurity type=...> with the fields libvirt defines for the type; `none` writes nothing.

    Fields another type defines are refused rather than ignored (a tdx policy is not a sev policy).
    """
    kind = spec.get("type")
    if kind == "none":
        return
    fields = LAUNCH_SECURITY_FIELDS.get(kind or "")
    if fields is None:
        raise LibvirtModuleError(f"{what}: launch_security type must be one of "
                                 f"{', '.join(LAUNCH_SECURITY_FIELDS)} or none, not {kind!r}")
    given = {k: v for k, v in spec.items() if k != "type" and v is not None}
    foreign = sorted(set(given) - set(fields))
    if foreign:
        raise LibvirtModuleError(f"{what}: launch_security type {kind} has no field {', '.join(foreign)} "
                                 f"(it defines {', '.join(sorted(fields))})")
    for required in LAUNCH_SECURITY_REQUIRED.get(kind or "", ()):
        if required not in given:
            raise LibvirtModuleError(f"{what}: launch_security type {kind} needs {required}")
    elem = ET.Element("launchSecurity", {"type": kind or ""})
    for option, (form, name, size) in fields.items():
        if option in given:
            _launch_field(elem, option, given[option], form, name, size, f"{what}: launch_security {option}")
    root.append(elem)


def _launch_field(elem: ET.Element, option: str, value: Any, form: str, name: str, size: int, what: str) -> None:
    if form == "attr":
        elem.set(name, "yes" if _boolean(value, what) else "no")
    elif form == "int":
        _sub(elem, name, str(_unsigned(value, 32, what)))
    elif form == "policy":
        _sub(elem, name, f"0x{_unsigned(value, size, what):04x}")
    elif form == "b64":
        _sub(elem, name, _base64(value, size, what))
    elif form == "qgs":
        path = value.get("path") if isinstance(value, dict) else value
        _sub(elem, name, path=str(path) if path else None)


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise LibvirtModuleError(f"{what} must be true or false, not {value!r}")
    return value


def _unsigned(value: Any, bits: int, what: str) -> int:
    """An unsigned integer of at most `bits` bits, given as a number or a decimal or 0x-hex string."""
    try:
        number = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value).strip(), 0)
    except ValueError:
        number = -1
    if not 0 <= number < 2 ** bits:
        raise LibvirtModuleError(f"{what} must be an unsigned {bits}-bit number (e.g. 0x30000), not {value!r}")
    return number


def _base64(value: Any, size: int, what: str) -> str:
    text = str(value).strip()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LibvirtModuleError(f"{what} must be base64: {exc}") from exc
    if size and len(decoded) != size:
        raise LibvirtModuleError(f"{what} must encode {size} bytes, not {len(decoded)}")
    return text


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


def firmware(root: ET.Element) -> dict[str, Any]:
    """{type: bios|efi, secure_boot: bool|None}: None when a UEFI definition leaves it to libvirt."""
    if not uses_efi(root):
        return {"type": "bios", "secure_boot": False}
    secure = None
    for feature in root.findall("os/firmware/feature[@name='secure-boot']"):
        secure = feature.get("enabled") == "yes"
    loader = root.find("os/loader")
    if secure is None and loader is not None and loader.get("secure") in ("yes", "no"):
        secure = loader.get("secure") == "yes"
    return {"type": "efi", "secure_boot": secure}


def live_form(desired: ET.Element) -> ET.Element:
    """The desired definition as libvirt shows it while the domain runs: firmware auto-selection
    (<os firmware='efi'>) is resolved at start into a pflash <loader> (and <nvram>), the attribute gone."""
    out = copy.deepcopy(desired)
    os_elem = out.find("os")
    if os_elem is not None and os_elem.attrib.pop("firmware", None) == "efi" and os_elem.find("loader") is None:
        after = [c.tag for c in os_elem].index("firmware") + 1 if os_elem.find("firmware") is not None else 1
        os_elem.insert(after, ET.Element("loader", {"type": "pflash"}))
    return out


def nvram_stale(before: ET.Element, after: ET.Element) -> bool:
    """Whether a domain that boots UEFI after a change may find an NVRAM made for other firmware.

    libvirt creates the varstore from the firmware's template once and keeps it, also across
    redefinitions (a BIOS interlude included); a domain whose Secure Boot choice changed would boot the
    new firmware with the old variables (Microsoft's keys enrolled, or none). The manager then starts it
    with VIR_DOMAIN_START_RESET_NVRAM, which also just creates a varstore that does not exist yet.
    """
    return uses_efi(after) and firmware(before) != firmware(after)
