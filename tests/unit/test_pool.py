"""PoolManager against test:///default, and libvirt_pool's main() in-process."""
from __future__ import annotations

import libvirt
import pytest

# conn_fixture is imported to register the conn fixture.
from libvirt_test_driver import conn_fixture, run_main  # noqa: F401  # pylint: disable=unused-import

from library import libvirt_pool
from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.pool import PoolManager

NAME = "ctest-stor-pool"


def params(**over):
    base = {"name": NAME, "state": "present", "active": True, "autostart": None, "type": "dir",
            "path": "/ctest-stor/p1", "xml": None, "delete_target": False}
    base.update(over)
    return base


def run(conn, check=False, **over):
    return PoolManager(conn, params(**over), check).run()


def test_create_check_apply_idempotent(conn):
    first_check = run(conn, check=True, autostart=True)
    assert first_check["changed"] and first_check["actions"] == ["define", "build", "start", "autostart"]
    with pytest.raises(libvirt.libvirtError):
        conn.storagePoolLookupByName(NAME)  # check mode changed nothing
    applied = run(conn, autostart=True)
    assert applied["changed"] and applied["diff"] == first_check["diff"]
    assert applied["pool"]["active"] and applied["pool"]["autostart"] and applied["pool"]["path"] == "/ctest-stor/p1"
    assert not run(conn, autostart=True)["changed"]
    assert not run(conn, check=True, autostart=True)["changed"]


def test_path_drift_is_redefined_keeping_uuid(conn):
    # test:///default keeps an active pool's old definition across a restart, so this runs inactive;
    # the restart of an active pool is covered against qemu:///system in the integration tests.
    uuid = run(conn, active=False)["pool"]["uuid"]
    moved = run(conn, active=False, path="/ctest-stor/p2/")
    assert moved["actions"] == ["redefine"]
    assert "/ctest-stor/p1" in moved["diff"]["before"] and "/ctest-stor/p2" in moved["diff"]["after"]
    pool = conn.storagePoolLookupByName(NAME)
    assert "<path>/ctest-stor/p2</path>" in pool.XMLDesc(0) and pool.UUIDString() == uuid
    assert not run(conn, active=False, path="/ctest-stor/p2")["changed"]  # trailing slash is the same path


def test_active_pool_with_changed_definition_plans_a_restart(conn):
    run(conn)
    assert run(conn, check=True, path="/ctest-stor/p2")["actions"] == ["redefine", "restart"]


def test_active_and_autostart_drift_converge(conn):
    run(conn, autostart=True)
    pool = conn.storagePoolLookupByName(NAME)
    pool.destroy()
    pool.setAutostart(0)
    result = run(conn, autostart=True)
    assert result["actions"] == ["start", "autostart"]
    assert pool.isActive() and pool.autostart()
    assert run(conn, active=False)["actions"] == ["stop"]
    assert not pool.isActive()


def test_autostart_unset_leaves_it(conn):
    run(conn, autostart=True)
    assert not run(conn)["changed"]


def volume_xml(name):
    return f"<volume><name>{name}</name><capacity unit='MiB'>1</capacity></volume>"


def test_volumes_are_listed_sorted_after_the_run_and_only_while_active(conn):
    assert run(conn)["pool"]["volumes"] == []
    pool = conn.storagePoolLookupByName(NAME)
    pool.createXML(volume_xml("ctest-stor-b.img"), 0)
    pool.createXML(volume_xml("ctest-stor-a.img"), 0)
    assert run(conn)["pool"]["volumes"] == ["ctest-stor-a.img", "ctest-stor-b.img"]
    stopped = run(conn, active=False)  # describes the pool after the stop, not before it
    assert stopped["actions"] == ["stop"] and stopped["pool"]["volumes"] == []


def test_check_mode_reads_the_volumes_of_an_existing_pool(conn):
    # domain.yml's rollback reads a pool's volumes this way: its own definition, in check mode, changes nothing.
    default = conn.storagePoolLookupByName("default-pool")
    default.createXML(volume_xml("ctest-stor-d.img"), 0)
    xml = default.XMLDesc(0)
    seen = PoolManager(conn, params(name="default-pool", path=None, xml=xml), True).run()
    assert not seen["changed"] and "ctest-stor-d.img" in seen["pool"]["volumes"]
    assert seen["pool"]["volumes"] == sorted(default.listVolumes())
    assert default.XMLDesc(0) == xml


def test_absent_missing_is_ok_and_existing_is_removed(conn):
    assert not run(conn, state="absent")["changed"]
    run(conn)
    removed = run(conn, state="absent")
    assert removed["actions"] == ["stop", "undefine"] and removed["diff"]["after"] == ""
    assert NAME not in [p.name() for p in conn.listAllStoragePools()]


def test_xml_definition_and_name_mismatch(conn):
    xml = f"<pool type='dir'><name>{NAME}</name><target><path>/ctest-stor/x</path></target></pool>"
    assert run(conn, path=None, xml=xml)["changed"]
    assert not run(conn, path=None, xml=xml)["changed"]
    with pytest.raises(LibvirtModuleError, match="names pool 'other'"):
        run(conn, path=None, xml=xml.replace(NAME, "other"))


def test_malformed_xml_changes_nothing(conn):
    with pytest.raises(LibvirtModuleError, match="malformed XML"):
        run(conn, path=None, xml="<pool type='dir'><name>")
    assert NAME not in [p.name() for p in conn.listAllStoragePools()]


def test_libvirt_rejection_carries_code_and_names_pool(conn):
    with pytest.raises(LibvirtModuleError) as caught:
        run(conn, path=None, xml=f"<pool type='nosuchtype'><name>{NAME}</name></pool>")
    assert caught.value.error_code is not None and NAME in caught.value.msg
    assert NAME not in [p.name() for p in conn.listAllStoragePools()]


def test_main_reports_result_and_check_mode(monkeypatch):
    ended = run_main(libvirt_pool.main, monkeypatch, {"name": NAME, "path": "/ctest-stor/m"}, check=True)
    assert not ended.failed and ended.result["changed"] and ended.result["pool"] == {}


def test_main_fails_cleanly_without_path(monkeypatch):
    ended = run_main(libvirt_pool.main, monkeypatch, {"name": NAME})
    assert ended.failed and "'path'" in ended.result["msg"]


def test_main_fails_cleanly_on_bad_uri(monkeypatch):
    ended = run_main(libvirt_pool.main, monkeypatch, {"name": NAME, "path": "/x", "uri": "nosuch:///x"})
    assert ended.failed and "error_code" in ended.result and "nosuch" in ended.result["msg"]
