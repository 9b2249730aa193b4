"""What this module applied to a domain, recorded in the domain's own <metadata>.

libvirt keeps application data in a domain's `<metadata>`, one element per XML namespace
(https://libvirt.org/formatdomain.html#general-metadata, virDomainSetMetadata). Ours is

    <cocos:applied xmlns:cocos="urn:cocos-ai-manager:libvirt:applied:1" version="1" source="xml" desired="D"
                   stored="S"/>

- source: what described the definition, a whole `xml` or structured `options`;
- D: sha256 of the desired definition as the task gave it, canonicalised (xmlcanon.canonical): the whole
  `xml`, or what the structured options alone describe (not the parts kept from libvirt's XML);
- S: sha256 of libvirt's stored inactive XML, without this record, read right after our define, with the
  devices taken as a set (stored_digest): libvirt reorders them in the stored XML when it first starts a
  guest (q35 controllers, measured with libvirt 9.0), and every stored device has its address or target.

It is written with VIR_DOMAIN_AFFECT_CONFIG right after each define and before any start, so a running
guest's live XML carries the record of the definition it was started from. A rerun then needs no
prediction of what libvirt rewrites (MAC case, devices it adds, memory rounding, ...): D and S unchanged
means converged. The decision table is in DomainManager.plan and docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import copy
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import metadata
from .common import libvirt
from .xmlcanon import canonical

NAMESPACE = "urn:cocos-ai-manager:libvirt:applied:1"
PREFIX = "cocos"
VERSION = "1"
TAG = f"{{{NAMESPACE}}}applied"


@dataclass(frozen=True)
class Record:
    """desired and stored: sha256 hex digests; source: "xml" or "options" (see the module docstring)."""

    desired: str
    stored: str
    source: str

    def element_text(self) -> str:
        """The element as virDomainSetMetadata takes it (libvirt adds the namespace and prefix)."""
        return metadata.element_text("applied", {"version": VERSION, "source": self.source,
                                                 "desired": self.desired, "stored": self.stored})


def digest(root: ET.Element) -> str:
    """sha256 hex of an element's canonical text (attribute order and whitespace do not count)."""
    return hashlib.sha256(canonical(root).encode("utf-8")).hexdigest()


def stored_digest(root: ET.Element) -> str:
    """digest() of libvirt's stored XML with its devices sorted and without <metadata>.

    The order libvirt keeps devices in is no part of the definition (each has an explicit address or target
    there), and changes when it starts. <metadata> is application data that other programs write with
    virDomainSetMetadata at any time (the manager's placement, a management tool's): it changes nothing of the
    guest, so it is not drift, and converging it back would erase their records. A change to metadata given in
    `xml` still redefines: it changes the desired digest."""
    metadata = [(index, child) for index, child in enumerate(root) if child.tag == "metadata"]
    devices = root.find("devices")
    kept = list(devices) if devices is not None else []
    for _index, meta in metadata:
        root.remove(meta)
    if devices is not None:
        devices[:] = sorted(kept, key=canonical)
    try:
        return digest(root)
    finally:  # sorted and removed for the digest only
        if devices is not None:
            devices[:] = kept
        for index, meta in metadata:  # ascending: each goes back where it was
            root.insert(index, meta)


def strip(root: ET.Element) -> ET.Element:
    """`root` without our record, in place; a <metadata> left empty goes too, so a definition digests the
    same before and after the record is added."""
    for meta in root.findall("metadata"):
        for ours in meta.findall(TAG):
            meta.remove(ours)
        if not len(meta) and not (meta.text or "").strip():
            root.remove(meta)
    return root


def without(root: ET.Element) -> ET.Element:
    """A copy of `root` without our record."""
    return strip(copy.deepcopy(root))


def found_in(root: ET.Element) -> Record | None:
    """The record in a domain's XML; None when absent or of another version (then it says nothing)."""
    elem = root.find(f"metadata/{TAG}")
    return _from_attributes(elem.attrib) if elem is not None else None


def _from_attributes(attrs: Mapping[str, str]) -> Record | None:
    if attrs.get("version") != VERSION or not attrs.get("desired") or not attrs.get("stored"):
        return None
    return Record(attrs.get("desired", ""), attrs.get("stored", ""), attrs.get("source", ""))


def live(dom: Any) -> Record | None:
    """The record in a running domain's live definition: what it was started from. None when missing.
    Raises libvirt.libvirtError."""
    attrs = metadata.read_attributes(dom, NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    return _from_attributes(attrs) if attrs is not None else None


def write(dom: Any, record: Record) -> None:
    """Store the record in the persistent definition (a running guest's live one is left as it is).
    Raises libvirt.libvirtError."""
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, record.element_text(), PREFIX, NAMESPACE,
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
