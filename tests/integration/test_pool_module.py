"""libvirt_pool through ansible against qemu:///system: four runs, drift, bad input."""
import os
import subprocess

import pytest
from stor_common import assert_fails_cleanly, four_runs, lv_fixture, run_module  # noqa: F401

pytestmark = pytest.mark.system
NAME = "ctest-stor-int-pool"


def test_create_four_times_then_verify(lv):
    path = os.path.join(lv.workdir, "p")
    args = {"name": NAME, "path": path, "autostart": True}
    result = four_runs("libvirt_pool", args, via_ansible=True)
    assert result["pool"]["path"] == path and result["pool"]["volumes"] == []
    pool = lv.storagePoolLookupByName(NAME)
    assert pool.isActive() and pool.autostart() and os.path.isdir(path)
    # A volume made behind the module's back shows in its result, even in check mode.
    pool.createXML("<volume><name>ctest-stor-v.img</name><capacity unit='MiB'>1</capacity></volume>", 0)
    seen = run_module("libvirt_pool", args, check=True)
    assert not seen["changed"] and seen["pool"]["volumes"] == ["ctest-stor-v.img"] == pool.listVolumes()


def test_drift_is_converged(lv):
    path = os.path.join(lv.workdir, "p")
    args = {"name": NAME, "path": path, "autostart": True}
    run_module("libvirt_pool", args)
    subprocess.run(["virsh", "-c", "qemu:///system", "pool-destroy", NAME], check=True, capture_output=True)
    subprocess.run(["virsh", "-c", "qemu:///system", "pool-autostart", NAME, "--disable"], check=True,
                   capture_output=True)
    assert run_module("libvirt_pool", args)["actions"] == ["start", "autostart"]
    moved = os.path.join(lv.workdir, "q")
    result = four_runs("libvirt_pool", dict(args, path=moved))
    pool = lv.storagePoolLookupByName(NAME)
    assert f"<path>{moved}</path>" in pool.XMLDesc(0) and os.path.isdir(moved) and pool.isActive()
    assert result["pool"]["uuid"] == pool.UUIDString()


def test_absent_with_delete(lv):
    path = os.path.join(lv.workdir, "p")
    run_module("libvirt_pool", {"name": NAME, "path": path})
    four_runs("libvirt_pool", {"name": NAME, "state": "absent", "delete": True})
    assert NAME not in [p.name() for p in lv.listAllStoragePools()] and not os.path.exists(path)


def test_malformed_xml_changes_nothing(lv):
    result = run_module("libvirt_pool", {"name": NAME, "xml": "<pool type='dir'><name>"})
    assert_fails_cleanly(result, "malformed XML", NAME)
    assert NAME not in [p.name() for p in lv.listAllStoragePools()]
