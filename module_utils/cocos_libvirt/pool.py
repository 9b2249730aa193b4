"""Storage pool manager: definition, target directory, active and autostart converge in one plan."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from . import xmlcanon
from .common import LibvirtModuleError, libvirt
from .lifecycle import LifecycleManager, Plan, drop_empty, drop_unrequested

# Written by libvirt from the storage it sees, never by the user.
_RUNTIME = ["capacity", "allocation", "available"]


class PoolManager(LifecycleManager):
    kind = "storage pool"
    inactive_flag = libvirt.VIR_STORAGE_XML_INACTIVE if libvirt else 0
    result_key = "pool"

    def lookup_raw(self, name: str) -> Any:
        return self.conn.storagePoolLookupByName(name)

    def define_raw(self, xml: str) -> Any:
        return self.conn.storagePoolDefineXML(xml, 0)

    def build_desired(self) -> ET.Element:
        if self.params.get("xml"):
            return xmlcanon.parse_definition(self.params["xml"], "pool", self.name, self.what)
        if not self.params.get("path"):
            raise LibvirtModuleError(f"{self.what}: 'path' (or a whole 'xml' definition) is needed to define it")
        root = ET.Element("pool", {"type": self.params["type"]})
        ET.SubElement(root, "name").text = self.name
        ET.SubElement(ET.SubElement(root, "target"), "path").text = self.params["path"]
        return root

    def normalise(self, current: ET.Element, desired: ET.Element) -> None:
        xmlcanon.remove(current, _RUNTIME)
        drop_empty(current, ["source"])
        drop_unrequested(current, desired, elements=["target/permissions"])
        # libvirt stores "/a/b/" as "/a/b"; compare what it will store.
        for path in current.findall("target/path"):
            path.text = os.path.normpath((path.text or "").strip())

    def after_define(self, obj: Any) -> None:
        # A running pool cannot be built; it is built again right before its restart.
        if not self.call("cannot read the state of", obj.isActive):
            self.build(obj)

    def prepare_start(self, obj: Any) -> None:
        self.build(obj)

    def build(self, obj: Any) -> None:
        """Create the target directory; for dir pools building an existing directory is harmless."""
        self.call("cannot build the target of", obj.build, 0)

    def remove_extra(self, obj: Any, plan: Plan) -> None:
        if self.params.get("delete_target"):
            plan.add("delete target", lambda: self.call("cannot delete the target of", obj.delete, 0))

    def describe(self, obj: Any) -> dict[str, Any]:
        root = xmlcanon.parse(self.xml_desc(obj, 0), self.what)
        state, capacity, allocation, available = self.call("cannot read the state of", obj.info)
        active = state == libvirt.VIR_STORAGE_POOL_RUNNING
        return {
            "name": self.name,
            "uuid": self.call("cannot read the UUID of", obj.UUIDString),
            "type": root.get("type"),
            "path": root.findtext("target/path"),
            "active": active,
            "autostart": bool(self.call("cannot read autostart of", obj.autostart)),
            "capacity": capacity,
            "allocation": allocation,
            "available": available,
            # Only a running pool can list its volumes; callers decide from this whether it is still in use.
            "volumes": sorted(self.call("cannot list the volumes of", obj.listVolumes)) if active else [],
        }


def build_manager(conn: Any, module: Any) -> PoolManager:
    return PoolManager(conn, module.params, module.check_mode)
