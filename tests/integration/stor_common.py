"""Shared by the pool/volume/network integration tests: the four-run check, cleanup on qemu:///system."""
from __future__ import annotations

import os
import shutil
import sys

import libvirt
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import check_apply_apply_check, run_module  # noqa: E402,F401

URI = "qemu:///system"
PREFIX = "ctest-stor-"
WORKDIR = "/var/lib/cocos-test/stor"

pytestmark = pytest.mark.system


def four_runs(module: str, args: dict, via_ansible: bool = False) -> dict:
    """helpers.check_apply_apply_check; returns the second apply."""
    return check_apply_apply_check(module, args, via_ansible)[2]


def assert_fails_cleanly(result: dict, *words: str) -> None:
    assert result["failed"] and not result.get("changed")
    assert "Traceback" not in result.get("msg", "") + result.get("module_stderr", "")
    for word in words:
        assert word in result["msg"], result["msg"]


def remove_ours(conn) -> None:
    """Remove only objects named with our prefix (other engineers share this libvirtd)."""
    for net in conn.listAllNetworks():
        if net.name().startswith(PREFIX):
            if net.isActive():
                net.destroy()
            net.undefine()
    for pool in conn.listAllStoragePools():
        if pool.name().startswith(PREFIX):
            if pool.isActive():
                for vol in pool.listAllVolumes():
                    vol.delete(0)
                pool.destroy()
            pool.undefine()


@pytest.fixture(name="lv")
def lv_fixture(request):
    """A qemu:///system connection and a private work dir, both cleaned up however the test ends."""
    conn = libvirt.open(URI)
    workdir = os.path.join(WORKDIR, request.node.name.replace("[", "-").replace("]", ""))
    os.makedirs(workdir, exist_ok=True)

    def cleanup():
        remove_ours(conn)
        shutil.rmtree(workdir, ignore_errors=True)
        conn.close()

    request.addfinalizer(cleanup)
    conn.workdir = workdir
    return conn
