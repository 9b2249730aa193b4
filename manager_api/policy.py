"""The XML policy: what a pool, volume or domain definition sent to the manager may touch on the host.

The manager runs as root and its playbooks' modules have libvirt's full power, so it checks every definition
against an allow-list before any playbook runs. An element the policy does not know is refused, so a new libvirt
feature is closed until someone decides it is safe. The rules (SECURITY.md has the threat model):

- names: pool, volume and domain names are plain `[A-Za-z0-9][A-Za-z0-9._+-]*` (at most 100 characters);
- pools: `dir` pools whose target lies inside a storage root (CC_MANAGER_STORAGE_ROOTS) and neither contains nor
  lies inside the manager's own directories (state, logs, ISO roots, XML directory);
- disks: volumes of an allowed pool (by pool/volume, or a file path directly inside the pool's directory), or
  read-only media (cdrom, floppy) under an ISO root (CC_MANAGER_ISO_ROOTS); kernels and initrds likewise;
- console and serial output (`<log file>`, `type='file'` sources): only inside CC_MANAGER_LOG_DIR;
- `<qemu:commandline>`: only `-netdev user,...` with host forwards bound to 127.0.0.0/8 and the virtio-net-pci
  device using it;
- graphics listen on loopback only; firmware (loader, nvram), the emulator and security labels are chosen by libvirt;
- host devices (hostdev, a TPM's passthrough backend, direct and hostdev interfaces, bridges, filesystem shares,
  block disks, host input devices, smartcards, USB redirection) only when CC_MANAGER_ALLOW_PASSTHROUGH names them.
An emulated TPM (`<tpm><backend type='emulator'/>`) and UEFI (`<os firmware='efi'>`) are allowed.

Facts are read with module_utils.cocos_libvirt (domain_xml, xml_facts); this module only decides.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from manager_api.config import Config
from manager_api.errors import RequestError
from module_utils.cocos_libvirt import domain_xml, xml_facts
from module_utils.cocos_libvirt.domain_compare import QEMU_COMMANDLINE

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
NAME_RULE = "names are letters, digits and . _ + - (starting with a letter or digit, at most 100 characters)"
STORAGE_RULE = ("disks must be volumes of a pool inside a storage root (CC_MANAGER_STORAGE_ROOTS), given by "
                "pool/volume or by a path directly in that pool's directory, or read-only media under an ISO root "
                "(CC_MANAGER_ISO_ROOTS)")
ISO_RULE = "boot media (kernel, initrd, dtb) must be files under an ISO root (CC_MANAGER_ISO_ROOTS)"
LOG_RULE = "console and serial logs must be files inside the manager's log directory (CC_MANAGER_LOG_DIR)"
POOL_RULE = ("pools must be dir pools inside a storage root (CC_MANAGER_STORAGE_ROOTS), apart from the manager's own "
             "state, log, ISO and XML directories")
UNKNOWN_RULE = "not on the manager's allow-list of domain XML elements (unknown elements are refused)"
# Elements users meet most, with why they are refused.
REASONS = {
    "emulator": "libvirt chooses the emulator; a definition may not name a host binary",
    "seclabel": "security labels are chosen by libvirt",
    "bootloader": "a host bootloader program is not allowed",
    "resource": "host cgroup partitions are not chosen by requests",
    "blkiotune": "host block device tuning names host devices",
    "idmap": "user namespace maps are for containers",
    "shmem": "shared memory with host processes is not allowed",
    "memory": "memory devices backed by host files are not allowed",
    "lease": "lock leases name host paths",
    "pstore": "pstore devices write host files",
}
PASSTHROUGH_RULE = "host device passthrough ({kind}) is allowed only when CC_MANAGER_ALLOW_PASSTHROUGH names {kind!r}"
_NETDEV_KEYS = frozenset({"id", "hostfwd", "restrict", "net", "host", "dhcpstart", "dns", "hostname", "ipv4", "ipv6",
                          "domainname"})
_DEVICE_KEYS = frozenset({"netdev", "addr", "mac", "id", "bus", "bootindex"})
ACCEPT = True  # a check's verdict that its element's whole subtree is accepted as it is (an allowed passthrough)


class PolicyError(RequestError):
    """A definition the policy refuses: HTTP 400 / gRPC INVALID_ARGUMENT naming the element and the rule."""


def check_name(field: str, name: str, what: str) -> None:
    if not NAME.match(name):
        raise PolicyError(field, f"{what} name {_show(name)}: {NAME_RULE}")


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _absolute_clean(path: str) -> bool:
    return os.path.isabs(path) and ".." not in path.split(os.sep)


def _inside(path: str, root: str) -> bool:
    """Whether path's real location is root or below it (symbolic links resolved on both sides)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


@dataclass
class Context:
    """What one check knows: the configuration and the pools (name -> directory) a disk may use."""

    config: Config
    field: str
    pools: dict[str, str] = dataclasses.field(default_factory=dict)

    def refuse(self, where: str, rule: str) -> PolicyError:
        return PolicyError(self.field, f"{where}: {rule}")

    def passthrough(self, kind: str, where: str) -> bool:
        if kind not in self.config.allow_passthrough:
            raise self.refuse(where, PASSTHROUGH_RULE.format(kind=kind))
        return ACCEPT

    def pool_volume_path(self, path: str) -> bool:
        """A file directly inside the directory of an allowed pool: one of its volumes."""
        return _absolute_clean(path) and any(
            os.path.realpath(os.path.dirname(path)) == os.path.realpath(directory) for directory in self.pools.values())

    def under_iso_root(self, path: str) -> bool:
        return _absolute_clean(path) and any(_inside(path, root) for root in self.config.iso_roots)

    def log_file(self, path: str | None, where: str) -> None:
        if not path or not _absolute_clean(path) or os.path.realpath(path) == os.path.realpath(self.config.log_dir) \
                or not _inside(path, self.config.log_dir):
            raise self.refuse(where, LOG_RULE)


# ---- pools and volumes -------------------------------------------------------------------------


def pool_path_allowed(config: Config, path: str | None) -> bool:
    """POOL_RULE for a pool directory: inside a storage root, clear of the manager's own directories."""
    if not path or not _absolute_clean(path):
        return False
    if not any(_inside(path, root) for root in config.storage_roots):
        return False
    own = (config.state_dir, config.log_dir, config.xml_dir, *config.iso_roots)
    return not any(_inside(path, mine) or _inside(mine, path) for mine in own)


def check_pool(config: Config, root: ET.Element) -> dict[str, Any]:
    """Refuse a <pool> outside POOL_RULE; returns its facts (name, path)."""
    facts = xml_facts.pool_facts(root)
    check_name("pool", facts["name"], "pool")
    ctx = Context(config, "pool")
    _walk(root, _POOL, ctx, "<pool>")
    if facts["type"] != "dir" or facts["has_source"]:
        raise ctx.refuse(f"<pool type={facts['type']!r}>", POOL_RULE)
    if not pool_path_allowed(config, facts["path"]):
        raise ctx.refuse("<pool><target><path>", POOL_RULE)
    return facts


def check_volume(config: Config, root: ET.Element) -> str:
    """Refuse a <volume> with a backing store, a source or other host references; returns its name."""
    name = (root.findtext("name") or "").strip()
    check_name("volume", name, "volume")
    _walk(root, _VOLUME, Context(config, "volume"), "<volume>")
    return name


# ---- domains -----------------------------------------------------------------------------------


def check_domain(config: Config, root: ET.Element, pools: dict[str, str]) -> str:
    """Refuse a <domain> outside the policy; pools are the allowed ones (name -> directory). Returns its name."""
    name = (root.findtext("name") or "").strip()
    check_name("domain", name, "domain")
    ctx = Context(config, "domain", pools)
    if root.get("type") not in ("qemu", "kvm"):
        raise ctx.refuse(f"<domain type={root.get('type')!r}>", "only qemu and kvm domains are managed")
    _walk(root, _DOMAIN, ctx, "<domain>")
    _check_qemu_commandline(root, ctx)
    return name


def check_removable(config: Config, root: ET.Element, pools: dict[str, str]) -> None:
    """Before DELETE /domains/{name} (which removes the volumes of its disks): every disk is managed storage."""
    ctx = Context(config, "name", pools)
    for disk in domain_xml.disks(root):
        if disk["device"] != "disk":
            continue  # cdroms are never removed
        managed = disk["pool"] in pools if disk["pool"] else bool(disk["path"]) and ctx.pool_volume_path(disk["path"])
        if not managed:
            raise PolicyError("name", f"<disk> {disk['target']}: the manager removes only domains whose disks are "
                                      f"managed storage; {STORAGE_RULE}")


Check = Callable[[ET.Element, Context, str], Any]
ANY: dict = {}  # marker: every child allowed (plain data, no host resources)
Spec = dict[str, tuple["Check | None", Any]]


def _tag(elem: ET.Element) -> str:
    return "qemu:commandline" if elem.tag == QEMU_COMMANDLINE else elem.tag


def _walk(elem: ET.Element, spec: Spec, ctx: Context, where: str) -> None:
    for child in elem:
        tag = _tag(child)
        here = f"{where}<{tag}>"
        if tag not in spec:
            raise ctx.refuse(here, REASONS.get(tag, UNKNOWN_RULE))
        check, children = spec[tag]
        if check is not None and check(child, ctx, here) is ACCEPT:
            continue
        if children is not ANY:
            _walk(child, children, ctx, here)


def _leaf(*_: Any) -> None:
    return None


TEXT: Spec = {}


def _no_text(attrs: frozenset[str], rule: str) -> Check:
    def check(elem: ET.Element, ctx: Context, where: str) -> None:
        if (elem.text or "").strip() or set(elem.attrib) - attrs or len(elem):
            raise ctx.refuse(where, rule)
    return check


def _target_label(elem: ET.Element) -> str:
    target = elem.find("target")
    label = target.get("dev") or target.get("port") if target is not None else None
    return f" {label}" if label else ""


def _disk(elem: ET.Element, ctx: Context, where: str) -> Any:
    dtype, device = elem.get("type", "file"), elem.get("device", "disk")
    where = f"<disk>{_target_label(elem)}"
    if dtype == "block":
        return ctx.passthrough("block", where)
    if dtype not in ("file", "volume") or device not in ("disk", "cdrom", "floppy"):
        raise ctx.refuse(f"{where} (type {dtype!r}, device {device!r})", STORAGE_RULE)
    source = elem.find("source")
    if source is None:
        if device == "disk":
            raise ctx.refuse(where, STORAGE_RULE)
        return None  # an empty drive
    if set(source.attrib) - {"file", "pool", "volume", "mode", "startupPolicy", "index"} or len(source):
        raise ctx.refuse(f"{where}<source>", STORAGE_RULE)
    if dtype == "volume":
        if source.get("pool") not in ctx.pools or not source.get("volume"):
            raise ctx.refuse(where, STORAGE_RULE)
        return None
    path = source.get("file") or ""
    read_only_media = device in ("cdrom", "floppy") and ctx.under_iso_root(path)
    if not (read_only_media or ctx.pool_volume_path(path)):
        raise ctx.refuse(where, STORAGE_RULE)
    return None


def _backing_store(elem: ET.Element, ctx: Context, where: str) -> None:
    if elem.attrib or len(elem):  # <backingStore/> alone says "no backing store"
        raise ctx.refuse(where, "backing stores are not accepted: " + STORAGE_RULE)


_DISK: Spec = {
    "driver": (None, ANY), "source": (None, ANY), "target": (None, TEXT), "readonly": (None, TEXT),
    "shareable": (None, TEXT), "transient": (None, TEXT), "boot": (None, TEXT), "serial": (None, TEXT),
    "wwn": (None, TEXT), "vendor": (None, TEXT), "product": (None, TEXT), "address": (None, TEXT),
    "alias": (None, TEXT), "iotune": (None, ANY), "blockio": (None, TEXT), "geometry": (None, TEXT),
    "backingStore": (_backing_store, TEXT),
}


def _interface(elem: ET.Element, ctx: Context, where: str) -> Any:
    kind = elem.get("type")
    if kind in ("bridge", "direct", "hostdev"):
        return ctx.passthrough("hostdev" if kind == "hostdev" else kind, f"<interface type={kind!r}>")
    if kind not in ("network", "user"):
        raise ctx.refuse(f"<interface type={kind!r}>", "interfaces are libvirt networks (type network) or QEMU user "
                                                       "networking; host-side types are refused")
    source = elem.find("source")
    allowed = {"network", "portgroup", "portid"} if kind == "network" else set()
    if source is not None and (set(source.attrib) - allowed or len(source)):
        raise ctx.refuse(f"{where}<source>", "an interface's source names a libvirt network only")
    rom = elem.find("rom")
    if rom is not None and rom.get("file"):
        raise ctx.refuse(f"{where}<rom>", "option ROM files are host paths")
    return None


_INTERFACE: Spec = {
    "source": (None, TEXT), "mac": (None, TEXT), "model": (None, TEXT), "address": (None, TEXT),
    "alias": (None, TEXT), "boot": (None, TEXT), "driver": (None, ANY), "link": (None, TEXT), "mtu": (None, TEXT),
    "bandwidth": (None, ANY), "vlan": (None, ANY), "coalesce": (None, ANY), "filterref": (None, ANY),
    "rom": (None, TEXT), "ip": (None, TEXT), "route": (None, TEXT), "acpi": (None, TEXT),
}
_CHAR_TYPES_WITHOUT_HOST = ("pty", "null", "vc", "spicevmc", "spiceport", "qemu-vdagent")


def _char_device(elem: ET.Element, ctx: Context, where: str) -> None:
    kind = elem.get("type", "pty")
    source = elem.find("source")
    log = elem.find("log")
    if log is not None:
        if set(log.attrib) - {"file", "append"}:
            raise ctx.refuse(f"{where}<log>", LOG_RULE)
        ctx.log_file(log.get("file"), f"{where}<log>")
    if kind == "file":
        if source is None or set(source.attrib) - {"path", "append"}:
            raise ctx.refuse(f"{where}<source>", LOG_RULE)
        ctx.log_file(source.get("path"), f"{where}<source>")
    elif kind == "unix":
        if source is not None and (source.get("path") or set(source.attrib) - {"mode"}):
            raise ctx.refuse(f"{where}<source>", "unix sockets are placed by libvirt; a definition may not name one")
    elif kind in _CHAR_TYPES_WITHOUT_HOST:
        if source is not None and set(source.attrib) - {"channel"}:
            raise ctx.refuse(f"{where}<source>", f"a {kind} device takes no host source")
    else:
        raise ctx.refuse(f"{where} (type {kind!r})", "character devices may be pty, file (under CC_MANAGER_LOG_DIR), "
                                                     "unix (placed by libvirt), null, vc or spice channels")


_CHAR: Spec = {"source": (None, TEXT), "target": (None, ANY), "log": (None, TEXT), "address": (None, TEXT),
               "alias": (None, TEXT)}


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _graphics(elem: ET.Element, ctx: Context, where: str) -> None:
    rule = "graphics listen on loopback only (127.0.0.0/8 or ::1), on an address libvirt chooses no host path"
    if elem.get("type") not in ("vnc", "spice") or elem.get("socket"):
        raise ctx.refuse(f"<graphics type={elem.get('type')!r}>", rule)
    if elem.get("listen") is not None and not _loopback(elem.get("listen")):
        raise ctx.refuse(where, rule)
    for listen in elem.findall("listen"):
        kind = listen.get("type", "address")
        ok = (kind == "address" and (listen.get("address") is None or _loopback(listen.get("address")))) or \
             kind == "none" or (kind == "socket" and not listen.get("socket"))
        if not ok:
            raise ctx.refuse(f"{where}<listen>", rule)
    gl = elem.find("gl")
    if gl is not None and gl.get("rendernode"):
        raise ctx.refuse(f"{where}<gl>", "render nodes are host devices")


_GRAPHICS: Spec = {name: (None, ANY) for name in ("channel", "image", "streaming", "clipboard", "mouse", "filetransfer",
                                                 "gl", "audio")}
_GRAPHICS["listen"] = (None, TEXT)


def _tpm(elem: ET.Element, ctx: Context, where: str) -> Any:
    backend = elem.find("backend")
    kind = backend.get("type") if backend is not None else "passthrough"
    if kind in ("passthrough", "external"):
        return ctx.passthrough("tpm", f"<tpm><backend type={kind!r}>")
    if kind != "emulator":
        raise ctx.refuse(f"<tpm><backend type={kind!r}>", "a TPM is emulated (backend type emulator)")
    return None


_TPM: Spec = {"backend": (None, {"encryption": (_no_text(frozenset({"secret"}), "an encryption secret only"), TEXT),
                                 "active_pcr_banks": (None, ANY), "profile": (None, TEXT)}),
              "alias": (None, TEXT), "address": (None, TEXT)}


def _rng_backend(elem: ET.Element, ctx: Context, where: str) -> None:
    path = (elem.text or "").strip()
    if elem.get("model") not in ("random", "builtin") or path not in ("", "/dev/urandom", "/dev/random"):
        raise ctx.refuse(where, "random number generators read /dev/urandom or /dev/random, or are builtin")


def _audio(elem: ET.Element, ctx: Context, where: str) -> None:
    if elem.get("type") not in ("none", "spice"):
        raise ctx.refuse(f"<audio type={elem.get('type')!r}>", "audio backends are none or spice (others use the "
                                                               "host's sound system or files)")


def _input(elem: ET.Element, ctx: Context, where: str) -> Any:
    if elem.get("type") in ("passthrough", "evdev"):
        return ctx.passthrough("input", f"<input type={elem.get('type')!r}>")
    return None


def _passthrough(kind: str) -> Check:
    def check(elem: ET.Element, ctx: Context, where: str) -> Any:
        return ctx.passthrough(kind, where)
    return check


_DEVICES: Spec = {
    "disk": (_disk, _DISK),
    "interface": (_interface, _INTERFACE),
    **{name: (_char_device, _CHAR) for name in xml_facts.CHAR_DEVICES},
    "graphics": (_graphics, _GRAPHICS),
    "tpm": (_tpm, _TPM),
    "rng": (None, {"backend": (_rng_backend, TEXT), "rate": (None, TEXT), "address": (None, TEXT),
                   "alias": (None, TEXT), "driver": (None, TEXT)}),
    "audio": (_audio, TEXT),
    "input": (_input, {"address": (None, TEXT), "alias": (None, TEXT), "driver": (None, TEXT)}),
    "hostdev": (_passthrough("hostdev"), ANY),
    "filesystem": (_passthrough("filesystem"), ANY),
    "smartcard": (_passthrough("smartcard"), ANY),
    "redirdev": (_passthrough("redirdev"), ANY),
    "redirfilter": (_passthrough("redirdev"), ANY),
    **{name: (None, ANY) for name in ("controller", "video", "sound", "memballoon", "watchdog", "panic", "iommu",
                                      "vsock", "hub", "nvram")},
}


def _media(elem: ET.Element, ctx: Context, where: str) -> None:
    if not ctx.under_iso_root((elem.text or "").strip()) or elem.attrib or len(elem):
        raise ctx.refuse(where, ISO_RULE)


_OS: Spec = {
    "type": (None, TEXT), "boot": (None, TEXT), "bootmenu": (None, TEXT), "smbios": (None, TEXT),
    "bios": (None, TEXT), "firmware": (None, ANY), "cmdline": (None, TEXT),
    "loader": (_no_text(frozenset({"readonly", "secure", "type", "format", "stateless"}),
                        "the firmware is chosen by libvirt (<os firmware='efi'>): a loader may not name a host file"),
               TEXT),
    "nvram": (_no_text(frozenset({"format"}), "the NVRAM store is placed by libvirt: it may not name a host file"),
              TEXT),
    "kernel": (_media, TEXT), "initrd": (_media, TEXT), "dtb": (_media, TEXT),
}


def _sysinfo(elem: ET.Element, ctx: Context, where: str) -> None:
    if elem.get("type") == "fwcfg" and any(entry.get("file") for entry in elem.iter("entry")):
        raise ctx.refuse(f"{where}<entry file>", "firmware config entries may not read host files")


def _launch_security(elem: ET.Element, ctx: Context, where: str) -> None:
    if elem.get("type") not in ("sev", "sev-snp", "tdx", "s390-pv"):
        raise ctx.refuse(where, "launch security is sev, sev-snp, tdx or s390-pv")
    qgs = elem.find("quoteGenerationService")
    if qgs is not None and (qgs.attrib or len(qgs)):
        raise ctx.refuse(f"{where}<quoteGenerationService>", "the quote service socket is chosen by libvirt")


_LAUNCH_SECURITY: Spec = {name: (None, TEXT) for name in (
    "cbitpos", "reducedPhysBits", "policy", "dhCert", "session", "guestVisibleWorkarounds", "idBlock", "idAuth",
    "hostData", "authorKey", "vcek", "kernelHashes", "mrConfigId", "mrOwner", "mrOwnerConfig",
    "quoteGenerationService")}

_DOMAIN: Spec = {
    **{name: (None, TEXT) for name in ("name", "uuid", "genid", "title", "description", "memory", "currentMemory",
                                       "maxMemory", "vcpu", "iothreads", "on_poweroff", "on_reboot", "on_crash",
                                       "on_lockfailure")},
    **{name: (None, ANY) for name in ("metadata", "memoryBacking", "memtune", "vcpus", "iothreadids", "cputune",
                                      "numatune", "cpu", "clock", "features", "pm", "perf", "keywrap",
                                      "throttlegroups")},
    "sysinfo": (_sysinfo, ANY),
    "os": (None, _OS),
    "devices": (None, _DEVICES),
    "launchSecurity": (_launch_security, _LAUNCH_SECURITY),
    "qemu:commandline": (None, {f"{{{xml_facts.QEMU_NS}}}arg": (None, TEXT)}),
}

_POOL: Spec = {"name": (None, TEXT), "uuid": (None, TEXT), "target": (None, {"path": (None, TEXT)}),
               "source": (None, TEXT), "capacity": (None, TEXT), "allocation": (None, TEXT),
               "available": (None, TEXT)}
_VOLUME: Spec = {"name": (None, TEXT), "key": (None, TEXT), "capacity": (None, TEXT), "allocation": (None, TEXT),
                 "target": (None, {"format": (None, TEXT), "compat": (None, TEXT), "nocow": (None, TEXT),
                                   "clusterSize": (None, TEXT), "features": (None, ANY)})}


# ---- <qemu:commandline> ------------------------------------------------------------------------

QEMU_RULE = ("<qemu:commandline> may only add QEMU user networking: "
             "'-netdev user,id=ID,hostfwd=tcp:127.0.0.1:PORT-:PORT' (host forwards bound to 127.0.0.0/8) and "
             "'-device virtio-net-pci,netdev=ID'")


def _check_qemu_commandline(root: ET.Element, ctx: Context) -> None:
    if xml_facts.qemu_environment(root):
        raise ctx.refuse("<qemu:commandline><qemu:env>", QEMU_RULE)
    args = xml_facts.qemu_arguments(root)
    if len(args) % 2:
        raise ctx.refuse("<qemu:commandline>", QEMU_RULE)
    user_nics = {nic["id"]: nic for nic in domain_xml.interfaces(root) if nic.get("type") == "user"}
    netdevs: list[str] = []
    devices: list[list[tuple[str, str | None]]] = []
    for index in range(0, len(args), 2):
        flag, value = args[index], args[index + 1]
        where = f"<qemu:commandline><qemu:arg> {index + 2}"
        options = xml_facts.qemu_option_list(value)
        if flag == "-netdev" and options[0] == ("user", None):
            netdevs.append(_netdev(options, user_nics, ctx, where))
        elif flag == "-device" and options[0] == ("virtio-net-pci", None):
            devices.append(options)
        else:
            raise ctx.refuse(where, QEMU_RULE)
    for options in devices:
        keys = [key for key, _ in options[1:]]
        netdev = dict(options[1:]).get("netdev")
        if set(keys) - _DEVICE_KEYS or len(keys) != len(set(keys)) or netdev not in netdevs:
            raise ctx.refuse("<qemu:commandline> -device", QEMU_RULE)


def _netdev(options: list[tuple[str, str | None]], user_nics: dict, ctx: Context, where: str) -> str:
    keys = [key for key, _ in options[1:]]
    single = [key for key in keys if key != "hostfwd"]
    ident = dict(options[1:]).get("id")
    if set(keys) - _NETDEV_KEYS or len(single) != len(set(single)) or not ident or ident not in user_nics:
        raise ctx.refuse(where, QEMU_RULE)
    forwards = user_nics[ident]["port_forwards"]
    # domain_xml reads the forwards it understands; one it could not read is one nobody checked.
    if len(forwards) != keys.count("hostfwd") or not all(_loopback(fwd["host_address"]) for fwd in forwards):
        raise ctx.refuse(where, QEMU_RULE)
    return ident
