"""Storage volume manager: create (optionally seeded from a verified image), grow, delete.

Idempotence rule for `source`: content is uploaded only when the volume is created. An existing volume's
content is never compared or overwritten, because guests write to their disks and reading a disk back on
every run would cost minutes; remove the volume to seed it again.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from . import xmlcanon
from .common import LibvirtModuleError, from_libvirt, libvirt, lookup_or_none
from .plan import Plan, converge
from .units import UnitError, parse_size

_QCOW2_MAGIC = b"QFI\xfb"
_CHUNK = 1024 * 1024


@dataclass
class Desired:
    capacity: int | None = None
    format: str | None = None
    xml: ET.Element | None = None


@dataclass
class Source:
    """An image to seed the volume with; `path` is set once it is available locally."""
    location: str
    checksum: str | None
    path: str | None = None
    verified: bool = False
    cleanup: list[str] = field(default_factory=list)


def parse_checksum(value: str | None) -> str | None:
    if not value:
        return None
    algo, _, digest = value.partition(":")
    digest = digest.strip().lower()
    if algo.lower() != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise LibvirtModuleError(f"checksum must be 'sha256:' followed by 64 hex digits, not {value!r}")
    return digest


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_format(path: str) -> str:
    with open(path, "rb") as handle:
        return "qcow2" if handle.read(4) == _QCOW2_MAGIC else "raw"


def fetch(source: Source, what: str) -> None:
    """Make the source available as a local file: a path as is, an http(s) URL downloaded to a temp dir."""
    url = urlparse(source.location)
    if url.scheme in ("", "file"):
        source.path = unquote(url.path) if url.scheme else source.location
        if not os.path.isfile(source.path):
            raise LibvirtModuleError(f"{what}: source file {source.path} does not exist")
        return
    from ansible.module_utils.urls import open_url

    tmp = tempfile.mkdtemp(prefix="cocos-volume-")
    source.cleanup.append(tmp)
    source.path = os.path.join(tmp, "image")
    try:
        with open_url(source.location, timeout=60) as response, open(source.path, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except Exception as exc:  # urllib raises many types; the user needs only which URL and why
        raise LibvirtModuleError(f"{what}: cannot download {source.location}: {exc}") from exc


def verify(source: Source, what: str) -> None:
    if source.checksum is None or source.path is None:
        return
    actual = sha256_of(source.path)
    if actual != source.checksum:
        raise LibvirtModuleError(f"{what}: checksum mismatch for {source.location}: expected sha256:"
                                 f"{source.checksum}, got sha256:{actual}; nothing was created")


class VolumeManager:
    def __init__(self, conn: Any, params: dict[str, Any], check_mode: bool) -> None:
        self.conn = conn
        self.params = params
        self.check_mode = check_mode
        self.name: str = params["name"]
        self.pool_name: str = params["pool"]
        self.what = f"volume '{self.name}' in storage pool '{self.pool_name}'"
        self.pool: Any = None  # what the last plan() found

    # --- inputs, all checked before anything changes --------------------------------------
    def desired(self) -> Desired:
        if self.params.get("xml"):
            return self.desired_from_xml(self.params["xml"])
        capacity = self.params.get("capacity")
        try:
            size = None if capacity in (None, "") else parse_size(capacity)
        except UnitError as exc:
            raise LibvirtModuleError(f"{self.what}: capacity: {exc}") from exc
        return Desired(capacity=size, format=self.params.get("format"))

    def desired_from_xml(self, text: str) -> Desired:
        root = xmlcanon.parse_definition(text, "volume", self.name, self.what)
        cap = root.find("capacity")
        try:
            size = None if cap is None else parse_size((cap.text or "").strip(), cap.get("unit", ""))
        except UnitError as exc:
            raise LibvirtModuleError(f"{self.what}: <capacity>: {exc}") from exc
        fmt = root.find("target/format")
        return Desired(capacity=size, format=None if fmt is None else fmt.get("type"), xml=root)

    def source(self) -> Source | None:
        location = self.params.get("source")
        if not location:
            return None
        checksum = parse_checksum(self.params.get("checksum"))
        scheme = urlparse(location).scheme
        if scheme not in ("", "file", "http", "https"):
            raise LibvirtModuleError(f"{self.what}: source must be a local path or a file, http or https URL, "
                                     f"not {location!r}")
        if scheme in ("http", "https") and checksum is None:
            raise LibvirtModuleError(f"{self.what}: a downloaded source needs 'checksum: sha256:...'")
        return Source(location, checksum)

    # --- libvirt lookups -----------------------------------------------------------------
    def lookup_pool(self) -> Any:
        pool = lookup_or_none(self.conn.storagePoolLookupByName, self.pool_name,
                              f"cannot look up storage pool '{self.pool_name}'")
        if pool is None:
            return None
        if not self.call("cannot read the state of storage pool for", pool.isActive):
            raise LibvirtModuleError(f"storage pool '{self.pool_name}' is not active (needed for {self.what})")
        return pool

    def lookup_volume(self, pool: Any) -> Any:
        return lookup_or_none(pool.storageVolLookupByName, self.name, f"cannot look up {self.what}")

    def call(self, what: str, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{what} {self.what}") from exc

    def current(self, vol: Any) -> tuple[int, str]:
        root = xmlcanon.parse(self.call("cannot read", vol.XMLDesc, 0), self.what)
        fmt = root.find("target/format")
        capacity = self.call("cannot read the size of", vol.info)[1]
        return capacity, (fmt.get("type") or "raw") if fmt is not None else "raw"

    # --- planning ------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The plan from what libvirt says now; the pool it found is kept in self.pool."""
        desired = self.desired()
        source = self.source() if self.params["state"] == "present" else None
        self.pool = pool = self.lookup_pool()
        if pool is None:
            if self.params["state"] == "absent":
                return Plan(self.what)  # no pool, so no volume: nothing to remove
            raise LibvirtModuleError(f"storage pool '{self.pool_name}' not found (needed for {self.what})",
                                     error_code=libvirt.VIR_ERR_NO_STORAGE_POOL)
        vol = self.lookup_volume(pool)
        if self.params["state"] == "absent":
            return self.plan_absent(vol)
        if vol is None:
            return self.plan_create(pool, desired, source)
        return self.plan_update(vol, desired)

    def text(self, capacity: int | str | None, fmt: str | None) -> str:
        return f"volume: {self.pool_name}/{self.name}\nformat: {fmt}\ncapacity: {capacity}\n"

    def plan_absent(self, vol: Any) -> Plan:
        plan = Plan(self.what)
        if vol is not None:
            plan.before = self.text(*self.current(vol))
            plan.add("delete", lambda: self.call("cannot delete", vol.delete, 0))
        return plan

    def plan_update(self, vol: Any, desired: Desired) -> Plan:
        capacity, fmt = self.current(vol)
        if desired.format and desired.format != fmt:
            raise LibvirtModuleError(f"{self.what} has format {fmt}, not {desired.format}; libvirt cannot convert "
                                     "a volume in place: remove it first")
        target = capacity if desired.capacity is None else desired.capacity
        if target < capacity and not self.params.get("allow_shrink"):
            raise LibvirtModuleError(f"{self.what}: shrinking from {capacity} to {target} bytes loses data; "
                                     "set allow_shrink: true to do it anyway")
        plan = Plan(self.what, before=self.text(capacity, fmt), after=self.text(target, fmt))
        if target != capacity:
            flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if target < capacity else 0
            plan.add("resize", lambda: self.call("cannot resize", vol.resize, target, flags))
        return plan

    def plan_create(self, pool: Any, desired: Desired, source: Source | None) -> Plan:
        plan = Plan(self.what)
        if source is not None:
            return self.plan_upload(plan, pool, desired, source)
        if desired.capacity is None:
            raise LibvirtModuleError(f"{self.what}: 'capacity' (or 'source') is needed to create it")
        fmt = desired.format or "qcow2"
        plan.after = self.text(desired.capacity, fmt)
        xml = desired.xml if desired.xml is not None else self.volume_xml(desired.capacity, fmt)
        plan.add("create", lambda: self.call("cannot create", pool.createXML, ET.tostring(xml, encoding="unicode"), 0))
        return plan

    def plan_upload(self, plan: Plan, pool: Any, desired: Desired, source: Source) -> Plan:
        local = urlparse(source.location).scheme in ("", "file")
        if local:  # cheap to check now, so check mode already reports a bad file or checksum
            self.prepare(source, desired)
        fmt = desired.format or (image_format(source.path) if local and source.path else "qcow2")
        plan.after = self.text(desired.capacity if desired.capacity is not None else "size of source", fmt)
        plan.add("create and upload", lambda: self.create_from(pool, desired, source))
        return plan

    # --- actions -------------------------------------------------------------------------
    def volume_xml(self, capacity: int, fmt: str) -> ET.Element:
        root = ET.Element("volume")
        ET.SubElement(root, "name").text = self.name
        ET.SubElement(root, "capacity", {"unit": "bytes"}).text = str(capacity)
        ET.SubElement(root, "allocation", {"unit": "bytes"}).text = "0"
        ET.SubElement(ET.SubElement(root, "target"), "format", {"type": fmt})
        return root

    def prepare(self, source: Source, desired: Desired) -> None:
        """Fetch and verify the source before anything is created (once, even when planned first)."""
        if source.verified:
            return
        if source.path is None:
            fetch(source, self.what)
        verify(source, self.what)
        assert source.path is not None  # fetch() sets it or raises
        actual = image_format(source.path)
        if desired.format and desired.format != actual:
            raise LibvirtModuleError(f"{self.what}: source {source.location} is a {actual} image, "
                                     f"not {desired.format}")
        source.verified = True

    def create_from(self, pool: Any, desired: Desired, source: Source) -> None:
        try:
            self.prepare(source, desired)
            assert source.path is not None  # prepare() made the source local
            size = os.path.getsize(source.path)
            # Created raw at the image's byte size so the upload fills it exactly; libvirt then probes
            # the uploaded header and reports the image's own format and virtual size.
            xml = ET.tostring(self.volume_xml(size, "raw"), encoding="unicode")
            vol = self.call("cannot create", pool.createXML, xml, 0)
            try:
                self.upload(vol, source.path, size)
                self.grow_after_upload(vol, desired)
            except LibvirtModuleError as exc:
                self.remove_after_failure(vol, exc)
                raise
        finally:
            for path in source.cleanup:
                shutil.rmtree(path, ignore_errors=True)

    def upload(self, vol: Any, path: str, size: int) -> None:
        stream = self.call("cannot open an upload stream for", self.conn.newStream, 0)
        try:
            vol.upload(stream, 0, size, 0)
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    stream.send(chunk)
            stream.finish()
        except libvirt.libvirtError as exc:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass  # the stream is already dead; the upload error below is what matters
            raise from_libvirt(exc, f"cannot upload {path} into {self.what}") from exc

    def grow_after_upload(self, vol: Any, desired: Desired) -> None:
        capacity = self.current(vol)[0]
        if desired.capacity is not None and desired.capacity > capacity:
            self.call("cannot resize", vol.resize, desired.capacity, 0)

    def remove_after_failure(self, vol: Any, exc: LibvirtModuleError) -> None:
        try:
            vol.delete(0)
            exc.msg += "; the volume created for the upload was deleted again"
        except libvirt.libvirtError as cleanup:
            exc.msg += f"; deleting the volume created for the upload also failed: {cleanup}"
        exc.args = (exc.msg,)

    # --- running -------------------------------------------------------------------------
    def describe(self, vol: Any) -> dict[str, Any]:
        capacity, fmt = self.current(vol)
        return {
            "name": self.name,
            "pool": self.pool_name,
            "path": self.call("cannot read the path of", vol.path),
            "key": self.call("cannot read the key of", vol.key),
            "format": fmt,
            "capacity": capacity,
            "allocation": self.call("cannot read the size of", vol.info)[2],
        }

    def run(self) -> dict[str, Any]:
        plan = converge(self.plan, self.check_mode)
        pool = self.pool
        vol = self.lookup_volume(pool) if pool is not None and self.params["state"] == "present" else None
        return {
            "changed": plan.changed,
            "actions": plan.actions,
            "diff": {"before": plan.before, "after": plan.after},
            "volume": self.describe(vol) if vol is not None else {},
        }


def build_manager(conn: Any, module: Any) -> VolumeManager:
    return VolumeManager(conn, module.params, module.check_mode)
