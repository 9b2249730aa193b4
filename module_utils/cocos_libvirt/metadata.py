"""Application metadata on a domain: one element of our own per XML namespace in the domain's `<metadata>`.

libvirt stores and returns it through virDomainSetMetadata / virDomainGetMetadata with
VIR_DOMAIN_METADATA_ELEMENT (https://libvirt.org/formatdomain.html#general-metadata): each namespace holds one
element, elements of other namespaces are left alone, and libvirt itself adds the namespace prefix. The
library's own record (domain_record) and the manager's placement both use it; this is the one place that
builds and reads such an element.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from .common import libvirt


def element_text(tag: str, attributes: Mapping[str, str]) -> str:
    """`<tag a="v" .../>` with the attribute values escaped, as virDomainSetMetadata takes it (no namespace:
    libvirt puts the element in the namespace it is given)."""
    return ET.tostring(ET.Element(tag, dict(attributes)), encoding="unicode")


def write_attributes(dom: Any, tag: str, attributes: Mapping[str, str], prefix: str, namespace: str) -> None:
    """Store `<prefix:tag .../>` in `namespace`: in the persistent definition, and in the live one too when the
    domain runs. Replaces an earlier element of the namespace. Raises libvirt.libvirtError."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element_text(tag, attributes), prefix, namespace, flags)


def read_attributes(dom: Any, namespace: str, flags: int = 0) -> dict[str, str] | None:
    """The attributes of the domain's element in `namespace`: with flags 0 its persistent definition when
    inactive, else the live one (VIR_DOMAIN_AFFECT_LIVE / _CONFIG choose); None when there is none or libvirt
    returns something unreadable. Raises libvirt.libvirtError for other libvirt failures."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace, flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
            return None
        raise
    try:
        return dict(ET.fromstring(text).attrib)
    except ET.ParseError:
        return None
