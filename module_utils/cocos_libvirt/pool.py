"""Storage pool manager: definition, target directory, active and autostart converge in one plan.

Building: libvirt's build of dir, fs and netfs pools without flags only makes the target directory
(storage_backend_fs.c); every other type's build initialises devices (a volume group, a partition table,
a zpool), so those are never built: their storage is prepared by the user. A new pool whose build or
start fails is removed again with the directories its build made.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

from . import render, xmlcanon
from .common import LibvirtModuleError, from_libvirt, is_local, libvirt
from .lifecycle import LifecycleManager
from .plan import Plan, Step

# Written by libvirt from the storage it sees, never by the user.
_SIZES = ["capacity", "allocation", "available"]
# Pool types whose build (without flags) only makes the target directory.
DIRECTORY_TYPES = frozenset({"dir", "fs", "netfs"})


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

    def render(self, desired: ET.Element) -> ET.Element:
        return render.pool(desired, self.what)

    def strip_runtime(self, root: ET.Element, other: ET.Element) -> None:
        """Sizes, free extents found on source devices, and the target directory's permissions are what an
        active pool reports (libvirt replaces the defined permissions with those it finds on the directory):
        permission fields are kept only where `other` has them too."""
        xmlcanon.remove(root, _SIZES + ["source/device/freeExtent"])
        wanted = other.find("target/permissions")
        found = root.find("target/permissions")
        if found is not None:
            for child in list(found):
                if wanted is None or wanted.find(child.tag) is None:
                    found.remove(child)
            if not len(found):
                xmlcanon.remove(root, ["target/permissions"])

    def builds(self) -> bool:
        return self.pool_type() in DIRECTORY_TYPES

    def pool_type(self) -> str:
        if self.params.get("xml"):
            return xmlcanon.parse(self.params["xml"], self.what).get("type", "")
        return str(self.params["type"])

    def add_create_steps(self, plan: Plan, created: dict[str, Any], define: Step) -> None:
        if not self.builds():
            return
        made: list[str] = []
        # another run that started the pool meanwhile has built it (libvirt builds no active pool)
        plan.add("build", lambda: made.extend(self.build_new(created["obj"])),
                 undo=lambda: remove_dirs(made), undone="the directories it made were removed", done=self.running)

    def build_new(self, obj: Any) -> list[str]:
        """Build a new pool; the directories that did not exist before and do now (local URIs only)."""
        path = self.target_path(obj)
        missing = missing_dirs(path) if path and is_local(self.params.get("uri") or "") else []
        self.build(obj)
        return [d for d in missing if os.path.isdir(d)]

    def target_path(self, obj: Any) -> str | None:
        return xmlcanon.parse(self.xml_desc(obj, self.inactive_flag), self.what).findtext("target/path")

    def after_redefine(self, obj: Any) -> None:
        # A running pool cannot be built; it is built again right before its restart.
        if self.builds() and not self.call("cannot read the state of", obj.isActive):
            self.build(obj)

    def before_start(self, obj: Any) -> None:
        if self.builds():
            self.build(obj)  # the directory may be gone since the pool was defined; making it again is harmless

    def build(self, obj: Any) -> None:
        """libvirt's build without flags: for directory types only the target directory is made."""
        self.call("cannot build the target of", obj.build, 0)

    def remove_extra(self, obj: Any, plan: Plan) -> None:
        if self.params.get("delete_target"):
            plan.add("delete target", lambda: self.call("cannot delete the target of", obj.delete, 0))

    def describe(self, obj: Any) -> dict[str, Any]:
        root = xmlcanon.parse(self.running_xml(obj), self.what)
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
            "volumes": self.volumes(obj) if active else [],
        }

    def volumes(self, obj: Any) -> list[str]:
        """Sorted volume names; none when another run stopped the pool since its state was read."""
        try:
            return sorted(obj.listVolumes())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not obj.isActive():
                return []
            raise from_libvirt(exc, f"cannot list the volumes of {self.what}") from exc


def build_manager(conn: Any, module: Any) -> PoolManager:
    return PoolManager(conn, module.params, module.check_mode)


def missing_dirs(path: str) -> list[str]:
    """`path` and those of its parents that do not exist, deepest first."""
    out = []
    current = os.path.normpath(path)
    while current and not os.path.exists(current):
        out.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return out


def remove_dirs(paths: list[str]) -> None:
    """Remove directories (deepest first) a failed run made; an emptied one only, so no data goes.
    Raises OSError for one that is no longer empty."""
    for path in paths:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
