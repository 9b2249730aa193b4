"""VolumeManager against test:///default (its default-pool), and libvirt_volume's main() in-process."""
from __future__ import annotations

import hashlib

import pytest

# conn_fixture is imported to register the conn fixture.
from libvirt_test_driver import conn_fixture, run_main  # noqa: F401  # pylint: disable=unused-import

from library import libvirt_volume
from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.volume import VolumeManager

NAME = "ctest-stor-vol"
POOL = "default-pool"


def params(**over):
    base = {"pool": POOL, "name": NAME, "state": "present", "capacity": "10MiB", "format": None,
            "allow_shrink": False, "xml": None, "source": None, "checksum": None}
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
