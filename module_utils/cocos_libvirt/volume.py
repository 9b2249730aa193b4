"""Storage volume manager: create (optionally seeded from a verified image), grow, delete.

Idempotence rule for `source`: content is uploaded only when the volume is created. An existing volume's
content is never compared or overwritten, because guests write to their disks and reading a disk back on
every run would cost minutes; remove the volume to seed it again.

Capacities are compared after the rounding libvirt and the image format apply (see `rounding`): a volume
holds its capacity when it is at least that large and larger only by less than that rounding.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from . import render, xmlcanon
from .common import LibvirtModuleError, from_libvirt, libvirt, lookup_or_none
from .plan import Plan, converge
from .units import UnitError, parse_size

_QCOW2_MAGIC = b"QFI\xfb"
# An ISO 9660 file system's volume descriptor: libvirt's format probe (src/storage_file/storage_file_probe.c,
# the "iso" entry) reports a raw file holding one as format "iso", in file pools and on upload.
_ISO_MAGIC_OFFSET, _ISO_MAGIC = 32769, b"CD001"
# Formats whose bytes are the disk as is: "iso" is libvirt's name for a raw image it recognised as ISO 9660.
RAW_FORMATS = ("raw", "iso")
_CHUNK = 1024 * 1024
# Pool types whose volumes are files that libvirt creates with qemu-img (every format but raw).
FILE_POOL_TYPES = frozenset({"dir", "fs", "netfs"})
LVM_EXTENT = 4 * 1024 ** 2
UPLOAD_PROBE_SECONDS = 60
SETTLE_SECONDS = 60


def rounding(fmt: str | None, pool_type: str) -> int:
    """Bytes libvirt and the image format may add to a requested capacity (1: none). Measured with libvirt
    9.0 and QEMU 7.2: in file pools raw files are exactly the size asked; other formats are created by
    qemu-img in whole KiB (100000000 bytes of qcow2 become 100000768) and resized in whole 512-byte
    sectors, and vpc rounds up to a whole CHS cylinder (at most 16 heads x 255 sectors). Other pool types
    allocate whole units of their own (a logical volume whole extents, 4 MiB by default)."""
    if pool_type not in FILE_POOL_TYPES:
        return LVM_EXTENT
    if fmt is None or fmt in RAW_FORMATS:
        return 1
    if fmt == "vpc":
        return 16 * 255 * 512
    return 1024


def holds(capacity: int, wanted: int, fmt: str | None, pool_type: str) -> bool:
    """Whether a volume of `capacity` bytes is what libvirt makes of a request for `wanted` bytes."""
    return wanted <= capacity < wanted + rounding(fmt, pool_type)


def virtual_size(path: str) -> int:
    """Bytes a guest sees of an image file: a qcow2 header's size field (big-endian at offset 24,
    https://qemu.readthedocs.io/en/latest/interop/qcow2.html), else the file's size (raw)."""
    with open(path, "rb") as handle:
        header = handle.read(32)
    if header[:4] == _QCOW2_MAGIC and len(header) == 32:
        return int.from_bytes(header[24:32], "big")
    return os.path.getsize(path)


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
    algo, _colon, digest = value.partition(":")
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
    """The format libvirt's probe gives the image file at `path`: "qcow2", "iso" (a raw ISO 9660 image) or
    "raw". Raises OSError when the file cannot be read."""
    with open(path, "rb") as handle:
        if handle.read(4) == _QCOW2_MAGIC:
            return "qcow2"
        handle.seek(_ISO_MAGIC_OFFSET)
        return "iso" if handle.read(len(_ISO_MAGIC)) == _ISO_MAGIC else "raw"


def same_format(wanted: str, actual: str) -> bool:
    """Whether a volume libvirt reports as `actual` has the format the user asked for: the same name, or a
    raw image that libvirt's probe calls "iso" when "raw" was asked for (both are the bytes as they are)."""
    return wanted == actual or (wanted == "raw" and actual in RAW_FORMATS)


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
        self.vol: Any = None
        self._source: Source | None = None  # fetched once, however often the run plans

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
        if self._source is not None:
            return self._source
        checksum = parse_checksum(self.params.get("checksum"))
        scheme = urlparse(location).scheme
        if scheme not in ("", "file", "http", "https"):
            raise LibvirtModuleError(f"{self.what}: source must be a local path or a file, http or https URL, "
                                     f"not {location!r}")
        if scheme in ("http", "https") and checksum is None:
            raise LibvirtModuleError(f"{self.what}: a downloaded source needs 'checksum: sha256:...'")
        if self.params.get("grow_to_source") and self.params.get("allow_shrink"):
            raise LibvirtModuleError(f"{self.what}: grow_to_source makes capacity a minimum; it cannot be "
                                     "combined with allow_shrink")
        self._source = Source(location, checksum)
        return self._source

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
        """The plan from what libvirt says now; the pool and volume it found are kept in self.pool, self.vol."""
        desired = self.desired()
        source = self.source() if self.params["state"] == "present" else None
        self.pool = pool = self.lookup_pool()
        if pool is None:
            if self.params["state"] == "absent":
                return Plan(self.what)  # no pool, so no volume: nothing to remove
            raise LibvirtModuleError(f"storage pool '{self.pool_name}' not found (needed for {self.what})",
                                     error_code=libvirt.VIR_ERR_NO_STORAGE_POOL)
        vol, now = self.settled(pool)
        self.vol = vol
        if self.params["state"] == "absent":
            return self.plan_absent(vol, now)
        if vol is None or now is None:
            return self.plan_create(pool, desired, source)
        return self.plan_update(pool, vol, now, desired)

    def settled(self, pool: Any) -> tuple[Any, tuple[int, str] | None]:
        """The volume and its (capacity, format), or (None, None). A volume another run is still creating is
        listed before libvirt can read it ('no storage vol with matching path'): wait until it can, or is gone."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            vol = self.lookup_volume(pool)
            if vol is None:
                return None, None
            try:
                return vol, self.current(vol)
            except LibvirtModuleError as exc:
                busy = exc.error_code in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_OPERATION_INVALID)
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)

    def text(self, capacity: int | str | None, fmt: str | None) -> str:
        return f"volume: {self.pool_name}/{self.name}\nformat: {fmt}\ncapacity: {capacity}\n"

    def plan_absent(self, vol: Any, now: tuple[int, str] | None) -> Plan:
        plan = Plan(self.what)
        if vol is not None and now is not None:
            plan.before = self.text(*now)
            plan.add("delete", lambda: self.call("cannot delete", vol.delete, 0),
                     done=lambda: self.lookup_volume(self.pool) is None)
        return plan

    def pool_type(self, pool: Any) -> str:
        return xmlcanon.parse(self.call("cannot read the definition of the pool of", pool.XMLDesc, 0),
                              self.what).get("type", "")

    def plan_update(self, pool: Any, vol: Any, now: tuple[int, str], desired: Desired) -> Plan:
        capacity, fmt = now
        if desired.format and not same_format(desired.format, fmt):
            raise LibvirtModuleError(f"{self.what} has format {fmt}, not {desired.format}; libvirt cannot convert "
                                     "a volume in place: remove it first")
        wanted = desired.capacity
        target = capacity
        if wanted is not None and wanted != capacity:
            # grow_to_source: the capacity is a minimum (the image may have made the volume larger)
            floor = bool(self.params.get("grow_to_source") and self.params.get("source")) and capacity > wanted
            if not floor and not (capacity > wanted and holds(capacity, wanted, fmt, self.pool_type(pool))):
                target = wanted
        if target < capacity and not self.params.get("allow_shrink"):
            raise LibvirtModuleError(f"{self.what}: shrinking from {capacity} to {target} bytes loses data; "
                                     "set allow_shrink: true to do it anyway")
        plan = Plan(self.what, before=self.text(capacity, fmt), after=self.text(target, fmt))
        if target != capacity:
            flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if target < capacity else 0
            plan.add("resize", lambda: self.resize(vol, target, flags, fmt, pool))
        return plan

    def resize(self, vol: Any, target: int, flags: int, fmt: str, pool: Any) -> None:
        """Resize; a volume another run is still creating ('still being allocated') is waited for, and
        left alone when it then holds the target."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                vol.resize(target, flags)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID or time.monotonic() >= deadline:
                    raise from_libvirt(exc, f"cannot resize {self.what}") from exc
            time.sleep(0.2)
            try:
                if holds(self.current(vol)[0], target, fmt, self.pool_type(pool)):
                    return
            except LibvirtModuleError:
                pass  # still not readable: try again

    def plan_create(self, pool: Any, desired: Desired, source: Source | None) -> Plan:
        plan = Plan(self.what)
        if source is not None:
            return self.plan_upload(plan, pool, desired, source)
        if desired.capacity is None:
            raise LibvirtModuleError(f"{self.what}: 'capacity' (or 'source') is needed to create it")
        xml = desired.xml if desired.xml is not None else self.volume_xml(desired.capacity, desired.format or "qcow2")
        plan.after = self.text(desired.capacity, self.created_format(pool, xml))
        plan.add("create", lambda: self.call("cannot create", pool.createXML, ET.tostring(xml, encoding="unicode"), 0))
        return plan

    def created_format(self, pool: Any, xml: ET.Element) -> str:
        """The format libvirt gives the volume `xml` describes: its own, else the pool type's default, as
        libvirt's parser renders it (raw in directory pools, none in logical and disk pools)."""
        fmt = xml.find("target/format")
        if fmt is not None and fmt.get("type"):
            return fmt.get("type", "")
        pool_xml = self.call("cannot read the definition of the pool of", pool.XMLDesc, 0)
        found = render.volume(pool_xml, xml, self.what).find("target/format")
        return found.get("type", "none") if found is not None else "none"

    def plan_upload(self, plan: Plan, pool: Any, desired: Desired, source: Source) -> Plan:
        """create (undone by deleting it), upload, and resize when the image is smaller than capacity.

        Local images, and in a real run downloaded ones too, are fetched and verified first, so a bad
        checksum or an image larger than capacity fails before anything is created; check mode does not
        download, so for a URL it cannot tell the image's size and plans the resize whenever capacity is given.
        """
        local = urlparse(source.location).scheme in ("", "file")
        size = None
        if local or not self.check_mode:
            self.prepare(source, desired)
            if source.path is None:
                raise AssertionError("prepare() makes the source local")
            size = virtual_size(source.path)
        # what libvirt will report: the image's own format once probed (an ISO asked for as raw shows as iso)
        fmt = image_format(source.path) if source.path else (desired.format or "qcow2")
        wanted = desired.capacity
        pool_type = self.pool_type(pool) if wanted is not None and size is not None else ""
        if wanted is not None and size is not None and size > wanted and not holds(size, wanted, fmt, pool_type) \
                and not self.params.get("grow_to_source"):
            raise LibvirtModuleError(
                f"{self.what}: the source image {source.location} holds {size} bytes, more than capacity "
                f"{wanted}; nothing was created. Give a capacity of at least {size} bytes, or set "
                "grow_to_source: true to create the volume at the image's size")
        grow = wanted is not None and (size is None or size < wanted)
        final = wanted if grow else (size if size is not None else "size of source")
        plan.after = self.text(final, fmt)
        created: dict[str, Any] = {}
        plan.add("create", lambda: created.update(vol=self.create_for_upload(pool, source)),
                 undo=lambda: self.call("cannot delete", created["vol"].delete, 0),
                 undone="the volume was deleted again")
        plan.add("upload", lambda: self.upload(created["vol"], source))
        if grow:
            plan.add("resize", lambda: self.grow_after_upload(created["vol"], desired))
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
        if source.path is None:
            raise AssertionError("fetch() sets source.path or raises")
        actual = image_format(source.path)
        if desired.format and not same_format(desired.format, actual):
            raise LibvirtModuleError(f"{self.what}: source {source.location} is a {actual} image, "
                                     f"not {desired.format}")
        source.verified = True

    def create_for_upload(self, pool: Any, source: Source) -> Any:
        """A raw volume of the image file's byte size, so the upload fills it exactly; libvirt then probes
        the uploaded header and reports the image's own format and virtual size."""
        self.prepare(source, Desired())  # done in planning unless check mode skipped a download
        if source.path is None:
            raise AssertionError("prepare() makes the source local")
        xml = ET.tostring(self.volume_xml(os.path.getsize(source.path), "raw"), encoding="unicode")
        return self.call("cannot create", pool.createXML, xml, 0)

    def upload(self, vol: Any, source: Source) -> None:
        if source.path is None:
            raise AssertionError("create_for_upload() made the source local")
        path, size = source.path, os.path.getsize(source.path)
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
            raise from_libvirt(exc, f"cannot upload {source.location} into {self.what}") from exc
        self.wait_probed(vol, image_format(path))

    def wait_probed(self, vol: Any, fmt: str) -> None:
        """Wait until libvirt reports the uploaded image's own format. It re-reads the pool in a thread of
        its own once the upload stream closes; until then the volume still looks raw, and a resize would
        only lengthen the file (measured under load: the rerun then had to resize again). A raw image (or
        one libvirt calls iso) was created raw and has no header that sets a size: there is nothing to wait for,
        and a pool type that does not probe would never report iso."""
        if fmt in RAW_FORMATS:
            return
        deadline = time.monotonic() + UPLOAD_PROBE_SECONDS
        while self.current(vol)[1] != fmt:
            if time.monotonic() >= deadline:
                raise LibvirtModuleError(f"{self.what}: libvirt still reports the uploaded {fmt} image as "
                                         f"{self.current(vol)[1]} after {UPLOAD_PROBE_SECONDS} s")
            time.sleep(0.1)

    def grow_after_upload(self, vol: Any, desired: Desired) -> None:
        capacity = self.current(vol)[0]
        if desired.capacity is not None and desired.capacity > capacity:
            self.call("cannot resize", vol.resize, desired.capacity, 0)

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
        try:
            plan = converge(self.plan, self.check_mode)
        finally:
            for path in self._source.cleanup if self._source is not None else []:
                shutil.rmtree(path, ignore_errors=True)
        pool = self.pool
        vol = None
        if pool is not None and self.params["state"] == "present":
            vol = self.vol if not plan.changed else self.lookup_volume(pool)
        return {
            "changed": plan.changed,
            "actions": plan.actions,
            "diff": {"before": plan.before, "after": plan.after},
            "volume": self.describe(vol) if vol is not None else {},
        }


def build_manager(conn: Any, module: Any) -> VolumeManager:
    return VolumeManager(conn, module.params, module.check_mode)
