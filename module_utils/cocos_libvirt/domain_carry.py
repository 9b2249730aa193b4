"""What an omitted structured option leaves as it is, for a domain that already exists.

libvirt replaces a whole definition on every (re)define, so a definition built from options alone
would drop whatever the task did not mention: a task that only grows memory would remove the disks.
Unspecified options are therefore not converged (as in community.docker's docker_container): for each
omitted option (None), the part of the definition it governs is copied from libvirt's current
inactive XML into the built definition. That part is then kept by a redefinition and, being copied,
compares equal, so it never causes a change. A given option is converged exactly; lists given are
strict (``disks: []`` means no disks).

Which option governs which part (OWNERSHIP below, plus machine and boot, which need a rule of their own):

- memory      <memory>, <currentMemory>, <maxMemory>
- vcpus       <vcpu>, <vcpus>
- machine     the machine attribute of <os><type>
- boot        <os><boot> (only when no given disk has a boot_order: boot_order lives on disks)
- disks       <devices><disk>
- interfaces  <devices><interface>, <qemu:commandline> (user networking) and <memballoon>
- serial_log  <devices><serial> and <console>
- tpm         <devices><tpm>
- launch_security  <launchSecurity>
- firmware, secure_boot  the firmware part: <os firmware=...>, <os><firmware>, <loader>, <nvram> and
              <features><smm> (see carry_firmware: the two options share it)

Whatever is kept or given, a <launchSecurity> policy that equals libvirt's numerically takes libvirt's
spelling (0x30000 and 0x00030000 are one policy), so a hex written differently never counts as a change.

The domain type (``domain_type`` omitted) is the manager's part: it builds with the current type, so a
kvm domain is never flipped to qemu because ``auto`` would resolve differently today.
"""
from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

from . import domain_record
from .common import LibvirtModuleError
from .domain_compare import QEMU_COMMANDLINE
from .domain_xml import uses_efi, write_firmware

# A part of the definition: (parent path, child tags).
Part = tuple[str, tuple[str, ...]]
OWNERSHIP: dict[str, tuple[Part, ...]] = {
    "memory": ((".", ("memory", "currentMemory", "maxMemory")),),
    "vcpus": ((".", ("vcpu", "vcpus")),),
    "disks": (("devices", ("disk",)),),
    "interfaces": (("devices", ("interface", "memballoon")), (".", (QEMU_COMMANDLINE,))),
    "serial_log": (("devices", ("serial", "console")),),
    "tpm": (("devices", ("tpm",)),),
    "launch_security": ((".", ("launchSecurity",)),),
}
# Where a kept part goes when the built definition has none of it: libvirt does not care about the
# order, but the diff reads like libvirt's own XML.
ORDER: dict[str, tuple[str, ...]] = {
    ".": ("name", "uuid", "memory", "currentMemory", "maxMemory", "vcpu", "vcpus", "os", "features", "devices",
          "launchSecurity", QEMU_COMMANDLINE),
    "os": ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "boot"),
    "features": ("acpi", "apic", "smm"),
    "devices": ("disk", "interface", "serial", "console", "tpm", "memballoon"),
}


def omitted(opts: dict[str, Any], option: str) -> bool:
    """None is omitted; anything given (an empty list included) is converged."""
    return opts.get(option) is None


def carry_over(built: ET.Element, current: ET.Element, opts: dict[str, Any], what: str) -> ET.Element:
    """The built definition with every omitted option's part taken from libvirt's current XML."""
    out = copy.deepcopy(built)
    for option, parts in OWNERSHIP.items():
        if omitted(opts, option):
            for parent_path, tags in parts:
                _replace_children(out, current, parent_path, tags)
    if not opts.get("machine"):  # "" names no machine either: nothing to converge to
        _keep_machine(out, current)
    if omitted(opts, "boot") and not _boot_order_given(opts):
        _replace_children(out, current, "os", ("boot",))
    carry_firmware(out, current, opts)
    settle_launch_security(out, current)
    _check_boot_consistent(out, what)
    return out


def carry_firmware(out: ET.Element, current: ET.Element, opts: dict[str, Any]) -> None:
    """The firmware part for an existing domain, from the two options that share it.

    Both omitted: kept as it is. firmware efi alone on a UEFI domain: kept too (its Secure Boot
    choice, or its explicit loader, stays). secure_boot false alone: a UEFI domain turns Secure Boot
    off, a BIOS domain stays BIOS. Everything else was decided by the builder (firmware_choice).
    """
    fw, secure = opts.get("firmware"), opts.get("secure_boot")
    if (fw is None and secure is None) or (fw == "efi" and secure is None and uses_efi(current)):
        kept = current.find("os")
        chosen = kept.get("firmware") if kept is not None else None
        if chosen:
            _ensure(out, "os").set("firmware", chosen)
        else:
            _ensure(out, "os").attrib.pop("firmware", None)
        _replace_children(out, current, "os", ("firmware", "loader", "nvram"))
        _replace_children(out, current, "features", ("smm",))
    elif fw is None and secure is False:
        write_firmware(out, uses_efi(current), False)


def settle_launch_security(out: ET.Element, current: ET.Element) -> None:
    """Take libvirt's spelling of a launch security policy that is numerically the same."""
    want_ls, have_ls = out.find("launchSecurity"), current.find("launchSecurity")
    if want_ls is None or have_ls is None or want_ls.get("type") != have_ls.get("type"):
        return
    want, have = want_ls.find("policy"), have_ls.find("policy")
    if want is None or have is None:
        return
    try:
        same = int((want.text or "").strip(), 16) == int((have.text or "").strip(), 16)
    except ValueError:
        return
    if same:
        want.text = have.text


def keep_metadata(out: ET.Element, current: ET.Element) -> None:
    """Other applications' <metadata> (libosinfo's, a management tool's) is no option's part: a redefinition
    from options keeps it. Our own record (domain_record) is not kept: it is written anew after the define."""
    found = current.find("metadata")
    if found is None or out.find("metadata") is not None:
        return
    kept = ET.Element("metadata")
    kept[:] = [copy.deepcopy(child) for child in found if child.tag != domain_record.TAG]
    if len(kept):
        name = out.find("name")
        out.insert(list(out).index(name) + 1 if name is not None else 0, kept)


def _replace_children(out: ET.Element, current: ET.Element, parent_path: str, tags: tuple[str, ...]) -> None:
    """Swap out's children with these tags for copies of current's, in the place out had them."""
    parent = _ensure(out, parent_path)
    source = current.find(parent_path)
    kept = [copy.deepcopy(c) for c in source if c.tag in tags] if source is not None else []
    index = _insert_index(parent, tags, ORDER[parent_path])
    for child in [c for c in parent if c.tag in tags]:
        parent.remove(child)
    for offset, child in enumerate(kept):
        parent.insert(index + offset, child)


def _ensure(out: ET.Element, path: str) -> ET.Element:
    found = out if path == "." else out.find(path)
    if found is None:
        found = ET.SubElement(out, path)
    return found


def _insert_index(parent: ET.Element, tags: tuple[str, ...], order: tuple[str, ...]) -> int:
    """Position of the first child with these tags; else before the first child `order` puts later."""
    children = list(parent)
    first = next((i for i, c in enumerate(children) if c.tag in tags), None)
    if first is not None:
        return first
    rank = max(order.index(tag) for tag in tags)
    later = (i for i, c in enumerate(children) if c.tag in order and order.index(c.tag) > rank)
    return next(later, len(children))


def _keep_machine(out: ET.Element, current: ET.Element) -> None:
    """A redefinition without the machine would move a q35 guest to libvirt's default machine."""
    machine = current.find("os/type")
    target = out.find("os/type")
    if machine is not None and target is not None and machine.get("machine"):
        target.set("machine", machine.get("machine", ""))


def _boot_order_given(opts: dict[str, Any]) -> bool:
    return any(disk.get("boot_order") for disk in opts.get("disks") or [])


def _check_boot_consistent(out: ET.Element, what: str) -> None:
    """libvirt refuses <os><boot> next to per-device boot orders, e.g. `boot` given, kept disks ordered."""
    if out.find("os/boot") is not None and out.find("devices/*/boot") is not None:
        raise LibvirtModuleError(f"{what}: boot cannot be combined with the boot_order of the domain's current "
                                 "disks or interfaces (kept because disks/interfaces are omitted); give disks "
                                 "with their boot order, or leave boot out")
