"""Read-only facts from pool and domain XML that the manager's policy needs beyond domain_xml's.

Nothing here changes or builds XML; every function takes an element parsed by xmlcanon.parse. Element and
attribute names follow libvirt's formatdomain and formatstorage pages.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .domain_compare import QEMU_COMMANDLINE, QEMU_NS

QEMU_ARG = f"{{{QEMU_NS}}}arg"
QEMU_ENV = f"{{{QEMU_NS}}}env"
# Character devices (formatdomain "Consoles, serial, parallel & channel devices").
CHAR_DEVICES = ("serial", "console", "parallel", "channel")


def pool_facts(root: ET.Element) -> dict[str, Any]:
    """type, name and target path of a <pool> definition (path None when absent), and whether it has a <source>."""
    return {"type": root.get("type"), "name": (root.findtext("name") or "").strip(),
            "path": (root.findtext("target/path") or "").strip() or None,
            "has_source": root.find("source") is not None and len(root.find("source") or []) > 0}


def qemu_arguments(root: ET.Element) -> list[str]:
    """The values of <qemu:commandline><qemu:arg>, in order (what libvirt appends to QEMU's command line)."""
    return [arg.get("value", "") for arg in root.findall(f"{QEMU_COMMANDLINE}/{QEMU_ARG}")]


def qemu_environment(root: ET.Element) -> list[str]:
    """Names of <qemu:commandline><qemu:env> variables."""
    return [env.get("name", "") for env in root.findall(f"{QEMU_COMMANDLINE}/{QEMU_ENV}")]


def qemu_option_list(text: str) -> list[tuple[str, str | None]]:
    """QEMU's `a,key=value,...` option syntax as (key, value) pairs; a bare item gives (item, None).

    A doubled comma is an escaped comma inside a value (QEMU's qemu-options "option syntax").
    """
    items: list[str] = []
    current = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "," and text[index + 1:index + 2] == ",":
            current += ","
            index += 2
            continue
        if char == ",":
            items.append(current)
            current = ""
        else:
            current += char
        index += 1
    items.append(current)
    pairs: list[tuple[str, str | None]] = []
    for item in items:
        key, sep, value = item.partition("=")
        pairs.append((key, value if sep else None))
    return pairs


def char_devices(root: ET.Element) -> list[dict[str, Any]]:
    """serial, console, parallel and channel devices: element, type, <source> attributes, <log file>, target type."""
    out = []
    for elem in root.findall("devices/*"):
        if elem.tag not in CHAR_DEVICES:
            continue
        source = elem.find("source")
        log = elem.find("log")
        target = elem.find("target")
        out.append({"element": elem.tag, "type": elem.get("type"),
                    "source": dict(source.attrib) if source is not None else {},
                    "log_file": log.get("file") if log is not None else None,
                    "target_type": target.get("type") if target is not None else None})
    return out


def graphics(root: ET.Element) -> list[dict[str, Any]]:
    """<graphics> devices: type, attributes, and each <listen> child's attributes."""
    return [{"type": elem.get("type"), "attributes": dict(elem.attrib),
             "listens": [dict(listen.attrib) for listen in elem.findall("listen")]}
            for elem in root.findall("devices/graphics")]
