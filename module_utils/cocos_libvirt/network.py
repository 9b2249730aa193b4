"""Virtual network manager: definition, active and autostart converge in one plan.

A running network keeps its old definition until it restarts, and restarting it detaches every running
guest's interface from the bridge, so a changed definition of an active network is redefined at once
but applied only with allow_restart: true; until then the result says restart_required.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from . import xmlcanon
from .common import LibvirtModuleError, libvirt
from .lifecycle import LifecycleManager, drop_unrequested

# Filled in by libvirt when the definition leaves them out (generated MAC, virbrN, NAT port range, ...).
_FILLED_ELEMENTS = ["mac", "bridge", "forward/nat"]
_FILLED_ATTRIBUTES = [("bridge", "name"), ("bridge", "stp"), ("bridge", "delay"), (".", "connections")]


class NetworkManager(LifecycleManager):
    kind = "network"
    inactive_flag = libvirt.VIR_NETWORK_XML_INACTIVE if libvirt else 0
    result_key = "network"

    def lookup_raw(self, name: str) -> Any:
        return self.conn.networkLookupByName(name)

    def define_raw(self, xml: str) -> Any:
        return self.conn.networkDefineXML(xml)

    def restart_allowed(self) -> bool:
        return bool(self.params.get("allow_restart"))

    def build_desired(self) -> ET.Element:
        if self.params.get("xml"):
            return xmlcanon.parse_definition(self.params["xml"], "network", self.name, self.what)
        return self.desired_from_options()

    def desired_from_options(self) -> ET.Element:
        params = self.params
        if not params.get("ip_address"):
            raise LibvirtModuleError(f"{self.what}: 'ip_address' (or a whole 'xml' definition) is needed to define it")
        if bool(params.get("dhcp_start")) != bool(params.get("dhcp_end")):
            raise LibvirtModuleError(f"{self.what}: give both 'dhcp_start' and 'dhcp_end', or neither")
        root = ET.Element("network")
        ET.SubElement(root, "name").text = self.name
        if params["forward_mode"] != "isolated":
            ET.SubElement(root, "forward", {"mode": params["forward_mode"]})
        if params.get("bridge"):
            ET.SubElement(root, "bridge", {"name": params["bridge"]})
        ip = ET.SubElement(root, "ip", {"address": params["ip_address"], "netmask": params["netmask"]})
        if params.get("dhcp_start"):
            dhcp = ET.SubElement(ip, "dhcp")
            ET.SubElement(dhcp, "range", {"start": params["dhcp_start"], "end": params["dhcp_end"]})
        return root

    def normalise(self, current: ET.Element, desired: ET.Element) -> None:
        drop_unrequested(current, desired, elements=_FILLED_ELEMENTS, attributes=_FILLED_ATTRIBUTES)

    def describe(self, obj: Any) -> dict[str, Any]:
        root = xmlcanon.parse(self.xml_desc(obj, 0), self.what)
        bridge = root.find("bridge")
        ip = root.find("ip")
        forward = root.find("forward")
        return {
            "name": self.name,
            "uuid": self.call("cannot read the UUID of", obj.UUIDString),
            "bridge": bridge.get("name") if bridge is not None else None,
            "forward_mode": forward.get("mode") if forward is not None else "isolated",
            "ip_address": ip.get("address") if ip is not None else None,
            "netmask": ip.get("netmask") if ip is not None else None,
            "active": bool(self.call("cannot read the state of", obj.isActive)),
            "autostart": bool(self.call("cannot read autostart of", obj.autostart)),
            "persistent": bool(self.call("cannot read the persistence of", obj.isPersistent)),
        }


def build_manager(conn: Any, module: Any) -> NetworkManager:
    return NetworkManager(conn, module.params, module.check_mode)
