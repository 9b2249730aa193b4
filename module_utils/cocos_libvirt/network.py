"""Virtual network manager: definition, active and autostart converge in one plan.

A running network keeps its old definition until it restarts, and restarting it detaches every running
guest's interface from the bridge, so a changed definition of an active network is redefined at once
but applied only with allow_restart: true; until then the result says restart_required.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from . import render, xmlcanon
from .common import LibvirtModuleError, libvirt
from .lifecycle import LifecycleManager


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

    def render(self, desired: ET.Element) -> ET.Element:
        return render.network(desired, self.what)

    def carry_identity(self, desired: ET.Element, current: ET.Element) -> None:
        """The MAC and bridge name the network driver generated, where the definition leaves them to it."""
        mac = current.find("mac")
        if desired.find("mac") is None and mac is not None:
            desired.append(ET.Element("mac", dict(mac.attrib)))
        bridge = current.find("bridge")
        if bridge is not None and bridge.get("name"):
            wanted = desired.find("bridge")
            if wanted is None:
                wanted = ET.SubElement(desired, "bridge")
            wanted.attrib.setdefault("name", bridge.get("name", ""))

    def strip_started(self, live: ET.Element, stored: ET.Element) -> None:
        """Starting a network counts its guests' connections and fills in the NAT port range it uses."""
        live.attrib.pop("connections", None)
        if stored.find("forward/nat") is None:
            xmlcanon.remove(live, ["forward/nat"])
        elif stored.find("forward/nat/port") is None:
            xmlcanon.remove(live, ["forward/nat/port"])

    def describe(self, obj: Any) -> dict[str, Any]:
        root = xmlcanon.parse(self.running_xml(obj), self.what)
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
