"""XML helpers shared by the managers: safe parsing and canonical text for comparison.

Comparison works on canonical text: attributes sorted, insignificant whitespace dropped, and the
parts libvirt fills in by itself (uuid, mac, addresses, aliases, ...) removed by the caller's paths.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .common import LibvirtModuleError

# Larger definitions are not hand-written libvirt XML; refuse them before parsing.
MAX_XML_BYTES = 1024 * 1024


def parse(text: str, what: str) -> ET.Element:
    """Parse a user-supplied XML document, failing with a message that names the object."""
    if text is None or not str(text).strip():
        raise LibvirtModuleError(f"{what}: XML definition is empty")
    if len(text.encode("utf-8")) > MAX_XML_BYTES:
        raise LibvirtModuleError(f"{what}: XML definition is larger than {MAX_XML_BYTES} bytes")
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise LibvirtModuleError(f"{what}: XML definitions with DOCTYPE or ENTITY declarations are not accepted")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise LibvirtModuleError(f"{what}: malformed XML: {exc}") from exc


def parse_definition(text: str, tag: str, name: str, what: str) -> ET.Element:
    """Parse a user's whole <tag> definition; its <name> must be `name`, and is added when left out."""
    root = parse(text, what)
    if root.tag != tag:
        raise LibvirtModuleError(f"{what}: the XML definition must have <{tag}> as its root, not <{root.tag}>")
    found = root.find("name")
    if found is None:
        ET.SubElement(root, "name").text = name
    elif (found.text or "").strip() != name:
        raise LibvirtModuleError(f"{what}: the XML definition names {tag} '{found.text}'")
    return root


def remove(root: ET.Element, paths: Iterable[str]) -> None:
    """Remove every element matched by each ElementTree path, e.g. "uuid" or ".//alias"."""
    parents = {child: parent for parent in root.iter() for child in parent}
    for path in paths:
        for elem in root.findall(path):
            parents[elem].remove(elem)


def remove_attrs(root: ET.Element, specs: Iterable[tuple[str, str]]) -> None:
    """Drop attribute `attr` from every element matched by `path` ("." is the root)."""
    for path, attr in specs:
        targets = [root] if path == "." else root.findall(path)
        for elem in targets:
            elem.attrib.pop(attr, None)


def _canon(elem: ET.Element, indent: int, out: list) -> None:
    pad = "  " * indent
    attrs = "".join(f' {k}="{v}"' for k, v in sorted(elem.attrib.items()))
    text = (elem.text or "").strip()
    children = list(elem)
    if not children and not text:
        out.append(f"{pad}<{elem.tag}{attrs}/>")
    elif not children:
        out.append(f"{pad}<{elem.tag}{attrs}>{text}</{elem.tag}>")
    else:
        out.append(f"{pad}<{elem.tag}{attrs}>" + (text if text else ""))
        for child in children:
            _canon(child, indent + 1, out)
        out.append(f"{pad}</{elem.tag}>")


def canonical(elem: ET.Element) -> str:
    """Stable, indented text of an element: equal text means equal definitions."""
    lines: list = []
    _canon(elem, 0, lines)
    return "\n".join(lines) + "\n"
