"""libvirt's own parser as a renderer: the definition libvirt will store for a network, pool or volume.

A private instance of libvirt's test driver (`test:///<file>` with a `<node/>` file: every open is a
fresh, empty instance; https://libvirt.org/drvtest.html) parses and formats network, storage pool and
storage volume XML with the same code the real drivers use, so what it gives back is the user's
definition with every rewrite libvirt makes (lower-cased MACs, compressed IPv6 addresses, default
`<bridge stp delay>`, a normalised target path, a volume's default format for the pool type, ...)
already applied. Comparing that with the stored XML settles whatever libvirt rewrites, without a list
of rewrites. What the real driver adds beyond parsing is the identity it allocates (uuid, generated MAC,
bridge name `virbrN`), which the managers carry over from the existing object, and data of XML
namespaces only the real driver knows (`dnsmasq:options`, `fs:mount_opts`), which is passed through as given.
Domains are not rendered here: the qemu driver adds far more than its parser (devices, machine types),
so domains converge against a record of what was applied (domain_record).
"""
from __future__ import annotations

import copy
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .common import from_libvirt, libvirt
from .xmlcanon import parse


@contextmanager
def test_driver() -> Iterator[Any]:
    """A private, empty instance of libvirt's test driver, closed afterwards. Raises LibvirtModuleError."""
    handle, path = tempfile.mkstemp(prefix="cocos-render-", suffix=".xml")
    try:
        os.write(handle, b"<node/>")
        os.close(handle)
        try:
            conn = libvirt.open(f"test://{path}")
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, "cannot open libvirt's test driver to render a definition") from exc
    finally:
        os.unlink(path)
    try:
        yield conn
    finally:
        conn.close()


def _rendered(define: Callable[[Any], Any], desired: ET.Element, what: str) -> ET.Element:
    """The desired element defined in a private test driver and formatted back, with namespaced children
    (extensions only the real driver parses) passed through as given. Raises LibvirtModuleError."""
    with test_driver() as conn:
        try:
            text = define(conn).XMLDesc(0)  # the test driver rejects the INACTIVE flags; its objects are inactive
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{what}: libvirt rejects the definition") from exc
    out = parse(text, what)
    for child in desired:
        if child.tag.startswith("{") and out.find(child.tag) is None:
            out.append(copy.deepcopy(child))
    return out


def network(desired: ET.Element, what: str) -> ET.Element:
    """The <network> libvirt stores for `desired` (uuid, MAC and bridge name: as given, or the test driver's)."""
    text = ET.tostring(desired, encoding="unicode")
    return _rendered(lambda conn: conn.networkDefineXML(text), desired, what)


def pool(desired: ET.Element, what: str) -> ET.Element:
    """The <pool> libvirt stores for `desired`; capacity, allocation and available are the test driver's."""
    text = ET.tostring(desired, encoding="unicode")
    return _rendered(lambda conn: conn.storagePoolDefineXML(text, 0), desired, what)


def volume(pool_xml: str, desired: ET.Element, what: str) -> ET.Element:
    """The <volume> libvirt creates for `desired` in a pool defined by `pool_xml` (its type decides the
    default format: raw in directory pools, none in logical and disk pools)."""
    text = ET.tostring(desired, encoding="unicode")

    def create(conn: Any) -> Any:
        pool_obj = conn.storagePoolDefineXML(pool_xml, 0)
        pool_obj.create(0)
        return pool_obj.createXML(text, 0)

    return _rendered(create, desired, what)
