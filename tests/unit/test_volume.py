"""VolumeManager against test:///default (its default-pool), and libvirt_volume's main() in-process."""
from __future__ import annotations

import hashlib

import pytest

# conn_fixture is imported to register the conn fixture.
from libvirt_test_driver import conn_fixture, run_main  # noqa: F401  # pylint: disable=unused-import

from library import libvirt_volume
from module_utils.cocos_libvirt import volume
from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.volume import VolumeManager

NAME = "ctest-stor-vol"
POOL = "default-pool"


def params(**over):
    base = {"pool": POOL, "name": NAME, "state": "present", "capacity": "10MiB", "format": None,
            "allow_shrink": False, "grow_to_source": False, "xml": None, "source": None, "checksum": None}
    base.update(over)
    return base


def run(conn, check=False, **over):
    return VolumeManager(conn, params(**over), check).run()


def volumes(conn):
    return conn.storagePoolLookupByName(POOL).listVolumes()


def test_create_check_apply_idempotent(conn):
    checked = run(conn, check=True)
    assert checked["actions"] == ["create"] and NAME not in volumes(conn)
    applied = run(conn)
    assert applied["diff"] == checked["diff"]
    assert applied["volume"]["capacity"] == 10 * 1024 ** 2 and applied["volume"]["format"] == "qcow2"
    assert not run(conn)["changed"] and not run(conn, check=True)["changed"]
    assert not run(conn, capacity="10485760")["changed"]  # same size in bytes


def test_grow_is_planned_and_libvirt_errors_carry_code(conn):
    run(conn)
    assert run(conn, check=True, capacity="1GiB")["actions"] == ["resize"]
    # test:///default cannot resize; the error must still name the volume and carry libvirt's code.
    with pytest.raises(LibvirtModuleError) as caught:
        run(conn, capacity="1GiB")
    assert caught.value.error_code is not None and NAME in caught.value.msg and POOL in caught.value.msg


@pytest.mark.parametrize("over, message", [
    ({"capacity": "5MiB"}, "allow_shrink"),
    ({"capacity": "10XB"}, "unknown size unit"),
    ({"format": "raw"}, "cannot convert"),
])
def test_bad_changes_to_existing_volume_change_nothing(conn, over, message):
    run(conn)
    with pytest.raises(LibvirtModuleError, match=message):
        run(conn, **over)
    assert run(conn, check=True)["volume"]["capacity"] == 10 * 1024 ** 2


def test_shrink_allowed_is_planned(conn):
    run(conn)
    assert run(conn, check=True, capacity="5MiB", allow_shrink=True)["actions"] == ["resize"]


def test_missing_pool_is_named_and_absent_there_is_ok(conn):
    with pytest.raises(LibvirtModuleError, match="storage pool 'ctest-stor-nopool' not found"):
        run(conn, pool="ctest-stor-nopool")
    assert not run(conn, pool="ctest-stor-nopool", state="absent")["changed"]


def test_absent(conn):
    assert not run(conn, state="absent")["changed"]
    run(conn)
    assert run(conn, state="absent")["actions"] == ["delete"]
    assert NAME not in volumes(conn)


def test_xml_definition(conn):
    xml = f"<volume><name>{NAME}</name><capacity unit='MiB'>10</capacity><target><format type='raw'/></target></volume>"
    assert run(conn, capacity=None, xml=xml)["volume"]["format"] == "raw"
    assert not run(conn, capacity=None, xml=xml)["changed"]
    with pytest.raises(LibvirtModuleError, match="malformed XML"):
        run(conn, capacity=None, xml="<volume>")


def test_capacity_required_to_create(conn):
    with pytest.raises(LibvirtModuleError, match="'capacity'"):
        run(conn, capacity=None)


def test_bad_checksum_creates_nothing(conn, tmp_path):
    image = tmp_path / "img.raw"
    image.write_bytes(b"\0" * 4096)
    with pytest.raises(LibvirtModuleError, match="checksum mismatch"):
        run(conn, source=str(image), checksum="sha256:" + "0" * 64)
    assert NAME not in volumes(conn)
    with pytest.raises(LibvirtModuleError, match="64 hex digits"):
        run(conn, source=str(image), checksum="md5:abc")
    with pytest.raises(LibvirtModuleError, match="is a raw image, not qcow2"):
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        run(conn, source=str(image), format="qcow2", checksum=f"sha256:{digest}")
    assert NAME not in volumes(conn)


def test_url_source_needs_checksum_and_known_scheme(conn):
    with pytest.raises(LibvirtModuleError, match="checksum"):
        run(conn, source="http://127.0.0.1:1/img")
    with pytest.raises(LibvirtModuleError, match="local path or a file, http or https URL"):
        run(conn, source="ftp://127.0.0.1/img")


def test_main_unknown_unit_fails_cleanly(monkeypatch):
    ended = run_main(libvirt_volume.main, monkeypatch, {"pool": POOL, "name": NAME, "capacity": "3 parsecs"})
    assert ended.failed and "capacity" in ended.result["msg"]


def test_main_check_mode(monkeypatch):
    ended = run_main(libvirt_volume.main, monkeypatch, {"pool": POOL, "name": NAME, "capacity": "1G"}, check=True)
    assert not ended.failed and ended.result["actions"] == ["create"]


@pytest.mark.parametrize("fmt, pool_type, asked, have, holds", [
    ("qcow2", "dir", 100000000, 100000768, True),  # created in whole KiB by qemu-img
    ("qcow2", "dir", 200000001, 200000512, True),  # resized in whole sectors
    ("qcow2", "dir", 100000000, 100001024, False),  # more than rounding: bigger than asked
    ("qcow2", "dir", 100000000, 99999744, False),  # smaller than asked
    ("raw", "dir", 100000001, 100000001, True),
    ("raw", "dir", 100000000, 100000001, False),  # raw files are exactly what is asked
    ("vpc", "dir", 100000001, 100061184, True),  # a whole cylinder
    (None, "logical", 100000000, 100663296, True),  # whole 4 MiB extents (24 of them)
])
def test_capacity_holds_after_the_formats_rounding(fmt, pool_type, asked, have, holds):
    assert volume.holds(have, asked, fmt, pool_type) is holds


def test_virtual_size_reads_the_qcow2_header(tmp_path):
    image = tmp_path / "x.qcow2"
    image.write_bytes(b"QFI\xfb\0\0\0\3" + bytes(16) + (64 * 1024 ** 2).to_bytes(8, "big") + bytes(100))
    assert volume.virtual_size(str(image)) == 64 * 1024 ** 2
    raw = tmp_path / "x.raw"
    raw.write_bytes(bytes(4096))
    assert volume.virtual_size(str(raw)) == 4096


def test_xml_without_format_is_reported_as_libvirt_creates_it(conn):
    xml = f"<volume><name>{NAME}</name><capacity unit='MiB'>1</capacity></volume>"
    checked = run(conn, check=True, capacity=None, xml=xml)
    assert "format: raw" in checked["diff"]["after"]
    assert run(conn, capacity=None, xml=xml)["volume"]["format"] == "raw"


def test_source_larger_than_capacity_fails_before_anything_is_created(conn, tmp_path):
    image = tmp_path / "img.raw"
    image.write_bytes(bytes(2 * 1024 ** 2))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    args = {"source": str(image), "checksum": f"sha256:{digest}", "capacity": "1MiB"}
    for check in (True, False):
        with pytest.raises(LibvirtModuleError, match="holds 2097152 bytes, more than capacity 1048576; nothing was"):
            run(conn, check=check, **args)
    assert NAME not in volumes(conn)
    grown = run(conn, check=True, grow_to_source=True, **args)
    assert grown["actions"] == ["create", "upload"] and "capacity: 2097152" in grown["diff"]["after"]
    with pytest.raises(LibvirtModuleError, match="cannot be combined with allow_shrink"):
        run(conn, check=True, grow_to_source=True, allow_shrink=True, **args)


def test_image_format_names_what_libvirts_probe_reports(tmp_path):
    raw, iso, qcow2 = tmp_path / "a.img", tmp_path / "b.iso", tmp_path / "c.qcow2"
    raw.write_bytes(b"\0" * 40000)
    iso.write_bytes(b"\0" * 32769 + b"CD001" + b"\0" * 100)
    qcow2.write_bytes(b"QFI\xfb" + b"\0" * 100)
    assert [volume.image_format(str(p)) for p in (raw, iso, qcow2)] == ["raw", "iso", "qcow2"]


@pytest.mark.parametrize("wanted, actual, same", [
    ("raw", "iso", True), ("raw", "raw", True), ("iso", "iso", True), ("iso", "raw", False),
    ("qcow2", "raw", False), ("raw", "qcow2", False)])
def test_same_format_treats_an_iso_as_raw_only_one_way(wanted, actual, same):
    assert volume.same_format(wanted, actual) is same
