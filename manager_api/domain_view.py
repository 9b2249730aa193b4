"""Read-only view of one host's libvirt for the API: domains (GET /domains), pools and definitions the policy needs.

Every function takes an open connection: the host registry (manager_api/hosts.py) keeps one per host and runs these
calls under its deadline, turning libvirt errors into HostUnavailable naming the host. Facts come from
module_utils.cocos_libvirt (one parser, one state table): forwarded ports from domain_xml, state names from
domain.state_name, pool directories from xml_facts.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import libvirt

from module_utils.cocos_libvirt import domain_xml, xml_facts, xmlcanon
from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.domain import STATE_NAMES, state_name

log = logging.getLogger("manager_api.libvirt")
# libvirt prints every error to stderr by default; ours are reported through exceptions instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
__all__ = ["STATE_NAMES", "LibvirtUnavailable", "describe", "domain_definition", "forwarded_ports", "get_domain",
           "list_domains", "pool_directories"]


class LibvirtUnavailable(RuntimeError):
    """libvirt could not be reached or answered with an error; the message names no host path (the log has it)."""


def forwarded_ports(xml_text: str) -> list[dict]:
    """Ports forwarded by QEMU user networking (<qemu:commandline> hostfwd=...), as domain_xml reads them."""
    return domain_xml.forwarded_ports(_parse(xml_text))


def _parse(xml_text: str) -> ET.Element:
    try:
        return xmlcanon.parse(xml_text, "domain")
    except LibvirtModuleError as exc:
        raise LibvirtUnavailable(f"libvirt returned an unreadable definition: {exc}") from None


def describe(dom: libvirt.virDomain) -> dict:
    return {"name": dom.name(), "uuid": dom.UUIDString(), "state": state_name(dom),
            "forwarded_ports": forwarded_ports(dom.XMLDesc(0))}


def list_domains(conn: libvirt.virConnect) -> list[dict]:
    out = []
    for dom in conn.listAllDomains(0):
        try:
            out.append(describe(dom))
        except libvirt.libvirtError:
            continue  # undefined between listing and reading: not an error
    return sorted(out, key=lambda d: d["name"])


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        log.error("domain lookup failed", extra={"domain": name, "error": exc.get_error_message()})
        raise LibvirtUnavailable("libvirt could not look the domain up; see the manager's log") from None


def get_domain(conn: libvirt.virConnect, name: str) -> dict | None:
    dom = _lookup(conn, name)
    return describe(dom) if dom is not None else None


def domain_definition(conn: libvirt.virConnect, name: str) -> ET.Element | None:
    """The domain's inactive definition, parsed, or None when there is no such domain."""
    dom = _lookup(conn, name)
    return _parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if dom is not None else None


def pool_directories(conn: libvirt.virConnect) -> dict[str, str | None]:
    """Every storage pool's name and target directory (None for pools without one)."""
    out: dict[str, str | None] = {}
    for pool in conn.listAllStoragePools(0):
        try:
            out[pool.name()] = xml_facts.pool_facts(xmlcanon.parse(pool.XMLDesc(0), "pool"))["path"]
        except (libvirt.libvirtError, LibvirtModuleError):
            continue
    return out


def domain_exists(conn: libvirt.virConnect, name: str) -> bool:
    return _lookup(conn, name) is not None


def storage_exists(conn: libvirt.virConnect, pool: str, volume: str) -> tuple[bool, bool]:
    """(pool exists, volume exists in it)."""
    try:
        found = conn.storagePoolLookupByName(pool)
    except libvirt.libvirtError:
        return False, False
    try:
        found.storageVolLookupByName(volume)
        return True, True
    except libvirt.libvirtError:
        return True, False
