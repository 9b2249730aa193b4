"""libvirt_domain and libvirt_domain_info through ansible against the real qemu:///system.

Every behaviour runs four times (check, apply, apply again, check again: changed, changed,
unchanged, unchanged) and is then verified with a fresh libvirt lookup. Guests are diskless TCG
domains: SeaBIOS keeps them running, which is all run-state tests need; only one runs at a time.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any

import libvirt
import pytest

from tests.helpers import check_apply_apply_check, run_module, run_module_via_ansible
from tests.host_kvm import expected_auto_domain_type

pytestmark = pytest.mark.system

URI = "qemu:///system"
AREA = "/var/lib/cocos-test/dom"
POOL = "ctest-dom-pool"
NAME = "ctest-dom-int"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", URI, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def conn():
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def remove_our_domains(conn: Any) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith("ctest-dom-"):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


@pytest.fixture
def clean(conn):
    remove_our_domains(conn)
    yield
    remove_our_domains(conn)


@pytest.fixture
def pool(conn, clean):
    """Our own dir pool, removed with its volumes afterwards."""
    path = f"{AREA}/pool"
    os.makedirs(path, exist_ok=True)
    xml = f"<pool type='dir'><name>{POOL}</name><target><path>{path}</path></target></pool>"
    try:
        obj = conn.storagePoolLookupByName(POOL)
    except libvirt.libvirtError:
        obj = conn.storagePoolDefineXML(xml, 0)
    if not obj.isActive():
        obj.create(0)
    yield obj
    remove_our_domains(conn)
    for vol in obj.listAllVolumes(0):
        vol.delete(0)
    obj.destroy()
    obj.undefine()
    shutil.rmtree(path, ignore_errors=True)


def base(**over: Any) -> dict[str, Any]:
    args = {"name": NAME, "uri": URI, "memory": "128MiB", "domain_type": "auto", "wait_timeout": 20,
            "serial_log": f"{AREA}/logs/{NAME}.log"}
    args.update(over)
    return args


def four_times(module: str, args: dict[str, Any], via_ansible: bool = False) -> list[dict[str, Any]]:
    """helpers.check_apply_apply_check (check, apply, apply, check)."""
    return check_apply_apply_check(module, args, via_ansible)


def fresh(name: str = NAME) -> Any:
    """A new connection, so nothing cached by the test's own connection hides the truth."""
    connection = libvirt.open(URI)
    try:
        return connection.lookupByName(name), connection
    except libvirt.libvirtError:
        connection.close()
        return None, None


def state_of(name: str = NAME) -> int | None:
    dom, connection = fresh(name)
    if dom is None:
        return None
    try:
        return dom.state()[0]
    finally:
        connection.close()


def inactive_xml(name: str = NAME) -> str:
    return virsh("dumpxml", "--inactive", name)


def test_define_resolves_auto_and_makes_log_dir(clean):
    shutil.rmtree(f"{AREA}/logs", ignore_errors=True)
    results = four_times("libvirt_domain", base(), via_ansible=True)
    assert results[1]["actions"] == ["define"]
    xml = inactive_xml()
    assert f"<domain type='{expected_auto_domain_type()}'" in xml  # what auto must pick on this host
    assert state_of() == libvirt.VIR_DOMAIN_SHUTOFF
    assert os.path.isdir(f"{AREA}/logs")
    assert results[2]["domain"]["uuid"] == results[1]["domain"]["uuid"]


def test_running_paused_destroyed(clean):
    four_times("libvirt_domain", base(state="running"))
    assert state_of() == libvirt.VIR_DOMAIN_RUNNING
    four_times("libvirt_domain", base(state="paused"))
    assert state_of() == libvirt.VIR_DOMAIN_PAUSED
    four_times("libvirt_domain", {"name": NAME, "uri": URI, "state": "destroyed"})
    assert state_of() == libvirt.VIR_DOMAIN_SHUTOFF


def test_memory_change_while_running(clean):
    run_module("libvirt_domain", base(state="running"))
    uuid = virsh("domuuid", NAME).strip()
    grown = base(state="running", memory="192MiB", wait_timeout=3)
    for r in four_times("libvirt_domain", grown):
        assert r["restart_required"]
    dom, connection = fresh()
    assert dom.UUIDString() == uuid and dom.isActive()
    assert "<memory unit='KiB'>196608</memory>" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert dom.info()[2] == 128 * 1024  # still the old guest: no restart without allow_restart
    connection.close()
    results = four_times("libvirt_domain", dict(grown, allow_restart=True))
    assert "restart" in results[1]["actions"] and not results[2]["restart_required"]
    dom, connection = fresh()
    assert dom.info()[2] == 192 * 1024 and dom.isActive() and dom.UUIDString() == uuid
    connection.close()


def test_port_forward_rendered_and_reported(clean):
    port = free_port()
    args = base(state="running", interfaces=[{"type": "user", "port_forwards": [{"host_port": port,
                                                                                  "guest_port": 7002}]}])
    four_times("libvirt_domain", args)
    xml = inactive_xml()
    assert f"hostfwd=tcp:127.0.0.1:{port}-:7002" in xml and "addr=0x10" in xml
    assert "<memballoon model='none'/>" in xml
    info = run_module_via_ansible("libvirt_domain_info", {"name": NAME, "uri": URI})
    assert not info["changed"]
    assert info["domains"][0]["forwarded_ports"] == [
        {"host_address": "127.0.0.1", "host_port": port, "guest_port": 7002, "protocol": "tcp"}]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # QEMU's slirp listens on the host side as soon as the guest runs
    moved = free_port()
    args["interfaces"][0]["port_forwards"][0]["host_port"] = moved
    assert four_times("libvirt_domain", args)[1]["restart_required"]
    assert f"127.0.0.1:{moved}-:7002" in inactive_xml()


def test_raw_xml_with_user_networking(pool):
    virsh("vol-create-as", POOL, "ctest-dom-raw.qcow2", "16M", "--format", "qcow2")
    port = free_port()
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "xml", "dom.xml"), encoding="utf-8") as handle:
        xml = handle.read()
    xml = (xml.replace("QEmu-alpine-standard-x86_64", "ctest-dom-raw")
              .replace("virtimages", POOL).replace("boot.img", "ctest-dom-raw.qcow2")
              .replace("/var/lib/cocos/log/", f"{AREA}/logs/").replace("/var/lib/cocos/iso/", f"{AREA}/iso/")
              .replace(":7020-", f":{port}-"))
    four_times("libvirt_domain", {"name": "ctest-dom-raw", "uri": URI, "xml": xml})
    info = run_module("libvirt_domain_info", {"name": "ctest-dom-raw", "uri": URI})
    facts = info["domains"][0]
    assert facts["forwarded_ports"][0]["host_port"] == port
    assert {d["target"]: d["device"] for d in facts["disks"]} == {"sda": "cdrom", "vda": "disk"}
    assert facts["disks"][1]["path"] == f"{AREA}/pool/ctest-dom-raw.qcow2"


def test_absent_with_remove_storage(pool):
    virsh("vol-create-as", POOL, "ctest-dom-disk.qcow2", "16M", "--format", "qcow2")
    run_module("libvirt_domain", base(state="running", disks=[{"pool": POOL, "volume": "ctest-dom-disk.qcow2"}],
                                      autostart=True))
    assert "type='qcow2'" in inactive_xml()  # format read from the volume
    results = four_times("libvirt_domain", {"name": NAME, "uri": URI, "state": "absent", "remove_storage": True})
    assert results[1]["removed_volumes"] == [f"{AREA}/pool/ctest-dom-disk.qcow2"]
    assert state_of() is None
    pool.refresh(0)
    assert "ctest-dom-disk.qcow2" not in pool.listVolumes()


def test_drift_is_converged(clean):
    run_module("libvirt_domain", base(autostart=False))
    virsh("setmaxmem", NAME, "256M", "--config")
    virsh("autostart", NAME)
    drifted = run_module("libvirt_domain", base(autostart=False), diff=True)
    assert drifted["changed"] and set(drifted["actions"]) == {"redefine", "no_autostart"}
    assert "131072" in drifted["diff"]["after"] and "262144" in drifted["diff"]["before"]
    assert not run_module("libvirt_domain", base(autostart=False))["changed"]
    assert "<memory unit='KiB'>131072</memory>" in inactive_xml()
    assert "disable" in virsh("dominfo", NAME).split("Autostart:")[1].splitlines()[0]


@pytest.mark.parametrize("over, match", [
    ({"xml": "<domain type='qemu'><name>ctest-dom-int</name><memory>", "memory": None, "serial_log": None,
      "domain_type": None}, "malformed XML"),
    ({"memory": "128 XiB"}, "unknown size unit"),
    ({"disks": [{"pool": "ctest-dom-nopool", "volume": "v.qcow2"}]}, "storage pool 'ctest-dom-nopool' not found"),
    ({"interfaces": [{"type": "user", "port_forwards": [{"host_port": 40001, "guest_port": 1},
                                                        {"host_port": 40001, "guest_port": 2}]}]},
     "forwarded twice"),
])
def test_bad_input_changes_nothing(clean, over, match):
    run_module("libvirt_domain", base())
    before = inactive_xml()
    args = {k: v for k, v in base(**{"memory": "256MiB", **over}).items() if v is not None}
    for check in (True, False):
        result = run_module("libvirt_domain", args, check=check)
        assert result["failed"] and match in result["msg"] and NAME in result["msg"]
    assert inactive_xml() == before
    fresh_args = dict(args, name="ctest-dom-new")
    if "xml" in fresh_args:
        fresh_args["xml"] = fresh_args["xml"].replace(NAME, "ctest-dom-new")
    assert run_module("libvirt_domain", fresh_args)["failed"]
    assert state_of("ctest-dom-new") is None


def test_libvirt_rejection_leaves_nothing(clean):
    xml = "<domain type='qemu'><name>ctest-dom-new</name><memory>131072</memory><os><type>nonsense</type></os></domain>"
    result = run_module("libvirt_domain", {"name": "ctest-dom-new", "uri": URI, "xml": xml, "state": "running"})
    assert result["failed"] and "ctest-dom-new" in result["msg"] and result["error_code"] and result["libvirt_message"]
    assert state_of("ctest-dom-new") is None


def test_shutdown_timeout_fails_clearly_then_forces(clean):
    assert not run_module("libvirt_domain", base(state="running"))["failed"]
    assert state_of() == libvirt.VIR_DOMAIN_RUNNING  # what the shutdown below starts from (the module waited)
    started = time.monotonic()
    result = run_module("libvirt_domain", {"name": NAME, "uri": URI, "state": "shutdown", "wait_timeout": 2})
    assert result["failed"] and "force_shutdown" in result["msg"] and "still running" in result["msg"]
    assert time.monotonic() - started < 30
    assert state_of() == libvirt.VIR_DOMAIN_RUNNING
    four_times("libvirt_domain", {"name": NAME, "uri": URI, "state": "shutdown", "wait_timeout": 2,
                                  "force_shutdown": True})
    assert state_of() == libvirt.VIR_DOMAIN_SHUTOFF


def test_only_memory_keeps_disk_and_forward(pool):
    """The module's example "Grow memory": a task naming only memory restarts the guest with it,
    and the disk and port forward it does not mention stay."""
    virsh("vol-create-as", POOL, "ctest-dom-keep.qcow2", "16M", "--format", "qcow2")
    port = free_port()
    defined = run_module("libvirt_domain", base(
        state="running", disks=[{"pool": POOL, "volume": "ctest-dom-keep.qcow2"}],
        interfaces=[{"type": "user", "port_forwards": [{"host_port": port, "guest_port": 7002}]}]))
    assert not defined["failed"], defined.get("msg")
    first_id = virsh("domid", NAME).strip()
    grow = {"name": NAME, "uri": URI, "state": "running", "memory": "192MiB", "allow_restart": True,
            "wait_timeout": 3}
    results = four_times("libvirt_domain", grow)
    assert results[1]["actions"] == ["redefine", "restart"] and not results[1]["restart_required"]
    dom, connection = fresh()
    try:
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert dom.isActive() and str(dom.ID()) != first_id and dom.info()[2] == 192 * 1024
        assert f"<source pool='{POOL}' volume='ctest-dom-keep.qcow2'/>" in xml
        assert f"hostfwd=tcp:127.0.0.1:{port}-:7002" in xml and f"{AREA}/logs/{NAME}.log" in xml
    finally:
        connection.close()
    facts = run_module("libvirt_domain_info", {"name": NAME, "uri": URI})["domains"][0]
    assert facts["forwarded_ports"] == [
        {"host_address": "127.0.0.1", "host_port": port, "guest_port": 7002, "protocol": "tcp"}]
    assert [(d["target"], d["volume"]) for d in facts["disks"]] == [("vda", "ctest-dom-keep.qcow2")]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the restarted QEMU forwards the port again
