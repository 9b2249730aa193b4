"""Issue 8's convergence cases on the real qemu:///system: whatever libvirt rewrites, a rerun changes nothing.

Each case of the shared convergence list (found by replaying public bug reports) is here with the value it
must give: the first run changes, the rerun and check mode do not, a running guest has restart_required
false (and allow_restart restarts nothing), or the first run fails clearly and leaves nothing. Each test
first shows that libvirt really rewrote what the case is about, so it tests the rewrite, not a lucky input.
The logic runs the managers in-process (as the modules do, with the modules' argument specs); a few real
ansible runs keep the module contract (check, apply, apply, check), the warning channel and two concurrent
runs honest. Objects are named ctest-h1-conv-*, files live under /var/lib/cocos-test/h1/conv.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import ansible.module_utils
import libvirt
import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# As tests/conftest.py does; again here because the concurrent runs below import this module in a fresh process.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))  # type: ignore[attr-defined]

from library import libvirt_domain, libvirt_network, libvirt_pool, libvirt_volume  # noqa: E402
from module_utils.cocos_libvirt import domain, domain_record, network, pool, volume  # noqa: E402
from module_utils.cocos_libvirt.common import LibvirtModuleError, connect  # noqa: E402
from tests.helpers import drop_domains, drop_pool, run_module_via_ansible, run_steps_via_ansible  # noqa: E402

pytestmark = pytest.mark.system
URI = "qemu:///system"
PREFIX = "ctest-h1-conv-"
AREA = "/var/lib/cocos-test/h1/conv"
MODULES: dict[str, tuple[Any, Any]] = {
    "libvirt_domain": (libvirt_domain, domain.DomainManager),
    "libvirt_pool": (libvirt_pool, pool.build_manager),
    "libvirt_volume": (libvirt_volume, volume.build_manager),
    "libvirt_network": (libvirt_network, network.build_manager),
}


def manage(module: str, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """One run of a module's manager in-process, its arguments checked and defaulted by the module's spec."""
    spec, manager = MODULES[module]
    checked = ArgumentSpecValidator(spec.argument_spec()).validate({"uri": URI, **args})
    assert not checked.error_messages, checked.error_messages
    conn = connect(URI)
    try:
        return manager(conn, SimpleNamespace(params=checked.validated_parameters, check_mode=check, _diff=True)).run()
    finally:
        conn.close()


def settles(module: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    """apply (changed), apply again and check mode (neither changed); running objects need no restart."""
    results = [manage(module, args), manage(module, args), manage(module, args, check=True)]
    assert [r["changed"] for r in results] == [True, False, False], [r["actions"] for r in results]
    assert not any(r.get("restart_required") for r in results)
    assert results[1]["diff"]["before"] == results[1]["diff"]["after"]
    return results


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", URI, *args], check=True, capture_output=True, text=True).stdout


def remove_ours(conn: Any) -> None:
    drop_domains(conn, PREFIX)
    for obj in conn.listAllStoragePools():
        if obj.name().startswith(PREFIX):
            drop_pool(obj)
    for net in conn.listAllNetworks():
        if net.name().startswith(PREFIX):
            if net.isActive():
                net.destroy()
            net.undefine()


@pytest.fixture(name="conn")
def conn_fixture():
    """A qemu:///system connection; our objects and files are gone before and after each test."""
    connection = libvirt.open(URI)
    remove_ours(connection)
    shutil.rmtree(AREA, ignore_errors=True)
    os.makedirs(AREA)
    yield connection
    remove_ours(connection)
    shutil.rmtree(AREA, ignore_errors=True)
    connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def inactive(conn: Any, name: str) -> ET.Element:
    return ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def live(conn: Any, name: str) -> ET.Element:
    return ET.fromstring(conn.lookupByName(name).XMLDesc(0))


def xml_domain(name: str, body: str) -> str:
    return (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>"
            f"<os><type arch='x86_64'>hvm</type></os>{body}</domain>")


# ---- domains ----------------------------------------------------------------------------------------


def test_console_without_serial_settles(conn):
    name = PREFIX + "console"
    args = {"name": name, "xml": xml_domain(name, "<devices><console type='pty'/></devices>")}
    settles("libvirt_domain", args)
    assert inactive(conn, name).find("devices/serial") is not None  # libvirt added the port the console mirrors


def test_uppercase_mac_settles(conn):
    name = PREFIX + "mac"
    nic = "<interface type='network'><mac address='52:54:00:AB:CD:EF'/><source network='default'/></interface>"
    settles("libvirt_domain", {"name": name, "xml": xml_domain(name, f"<devices>{nic}</devices>")})
    assert inactive(conn, name).find("devices/interface/mac").get("address") == "52:54:00:ab:cd:ef"


def running_case(conn: Any, name: str, args: dict[str, Any]) -> None:
    """A running guest settles, needs no restart, and allow_restart restarts nothing."""
    args = {"name": name, "state": "running", "domain_type": "qemu", "interfaces": [], "wait_timeout": 30, **args}
    settles("libvirt_domain", args)
    first_id = conn.lookupByName(name).ID()
    for check in (False, True):
        again = manage("libvirt_domain", dict(args, allow_restart=True), check=check)
        assert not again["changed"] and not again["restart_required"], again["actions"]
    assert conn.lookupByName(name).ID() == first_id  # the same QEMU process: never restarted


def test_memory_in_decimal_units_of_a_running_guest_settles(conn):
    name = PREFIX + "mem"
    running_case(conn, name, {"memory": "200MB", "disks": []})
    # QEMU aligned the running guest's memory: its live XML differs from the definition
    assert live(conn, name).findtext("memory") != inactive(conn, name).findtext("memory")


def test_empty_cdrom_of_a_running_guest_settles(conn):
    name = PREFIX + "cdrom"
    running_case(conn, name, {"memory": "128MiB", "disks": [{"device": "cdrom"}]})
    # the live XML of an empty drive has no driver type
    assert live(conn, name).find("devices/disk/driver").get("type") is None
    assert inactive(conn, name).find("devices/disk/driver").get("type") == "raw"


def test_removing_metadata_from_a_whole_xml_is_a_change(conn):
    name = PREFIX + "meta"
    app = "http://example.org/app/1.0"
    with_md = xml_domain(name, f"<metadata><app:info xmlns:app='{app}'><app:owner>team-a</app:owner></app:info>"
                               "</metadata><devices/>")
    settles("libvirt_domain", {"name": name, "xml": with_md})
    assert inactive(conn, name).find(f"metadata/{{{app}}}info") is not None  # beside our record
    dropped = settles("libvirt_domain", {"name": name, "xml": xml_domain(name, "<devices/>")})
    assert dropped[0]["actions"] == ["redefine"]
    root = inactive(conn, name)
    assert root.find(f"metadata/{{{app}}}info") is None and domain_record.found_in(root) is not None


def test_a_q35_guest_started_outside_the_module_settles(conn):
    """libvirt reorders a q35 guest's controllers in the stored XML when it first starts it (autostart at boot,
    virsh start): no drift, nothing to redefine, no restart."""
    name = PREFIX + "q35"
    body = ("<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
            "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>"
            "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
            "<console type='pty'/></devices>")  # a console: the semantic comparison would see libvirt's serial
    xml = (f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>{body}</domain>")
    settles("libvirt_domain", {"name": name, "xml": xml})
    before = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    virsh("start", name)
    assert conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) != before  # reordered
    for check in (False, True):
        again = manage("libvirt_domain", {"name": name, "xml": xml, "state": "running", "allow_restart": True},
                       check=check)
        assert not again["changed"] and not again["restart_required"], again["actions"]


def test_the_roles_options_and_the_managers_shipped_xml_describe_one_guest(conn, dir_pool):
    """site.yml converges the demo VM from options (roles/alpine_vm), POST /domain the same VM from xml/dom.xml
    (Molecule's verify requires changed=0): both are converged, in turn, with no restart."""
    name, port, iso, log = PREFIX + "demo", free_port(), f"{AREA}/guest.iso", f"{AREA}/logs/{PREFIX}demo.console.log"
    with open(iso, "wb") as handle:
        handle.truncate(1024 * 1024)
    subprocess.run(["virsh", "-c", URI, "vol-create-as", POOL, "boot.img", "16M", "--format", "qcow2"], check=True,
                   capture_output=True)
    options = {"name": name, "state": "running", "domain_type": "qemu", "memory": "1GiB", "vcpus": 1,
               "disks": [{"device": "cdrom", "path": iso}, {"pool": POOL, "volume": "boot.img"}],
               "boot": ["cdrom", "hd"], "serial_log": log, "wait_timeout": 30,
               "interfaces": [{"type": "user", "port_forwards": [{"host_port": port, "guest_port": 7002}]}]}
    with open(os.path.join(ROOT, "xml", "dom.xml"), encoding="utf-8") as handle:
        shipped = (handle.read().replace("QEmu-alpine-standard-x86_64.console.log", f"{PREFIX}demo.console.log")
                   .replace("QEmu-alpine-standard-x86_64", name).replace("virtimages", POOL)
                   .replace("/var/lib/cocos/iso/cocos-guest.iso", iso).replace("/var/lib/cocos/log", f"{AREA}/logs")
                   .replace(":7020-", f":{port}-"))
    settles("libvirt_domain", options)
    for _ in range(2):
        for args in ({"name": name, "state": "running", "xml": shipped}, options):
            for check in (True, False):
                again = manage("libvirt_domain", args, check=check)
                assert not again["changed"] and not again["restart_required"], again["actions"]


def test_drift_made_with_virsh_is_detected_and_converged(conn):
    name = PREFIX + "drift"
    nic = "<interface type='network'><mac address='52:54:00:AB:CD:01'/><source network='default'/></interface>"
    args = {"name": name, "xml": xml_domain(name, f"<devices><console type='pty'/>{nic}</devices>")}
    settles("libvirt_domain", args)
    virsh("setmaxmem", name, "256M", "--config")
    drifted = manage("libvirt_domain", args, check=True)
    assert drifted["actions"] == ["redefine"] and "262144" in drifted["diff"]["before"]
    settles("libvirt_domain", args)  # converged back (changed), then settled again
    assert inactive(conn, name).findtext("memory") == "131072"


def test_a_running_guest_started_from_an_older_definition_needs_a_restart(conn):
    name = PREFIX + "older"
    # No OS answers the ACPI power button: the restart's graceful stop always waits out wait_timeout, then forces.
    args = {"name": name, "state": "running", "domain_type": "qemu", "memory": "128MiB", "interfaces": [],
            "wait_timeout": 3}
    settles("libvirt_domain", args)
    grown = dict(args, memory="160MiB")
    assert [manage("libvirt_domain", grown)["restart_required"] for _ in range(2)] == [True, True]
    restarted = manage("libvirt_domain", dict(grown, allow_restart=True))
    assert restarted["actions"] == ["restart"] and not restarted["restart_required"]
    assert conn.lookupByName(name).info()[2] == 160 * 1024  # the guest runs the new memory
    assert not manage("libvirt_domain", dict(grown, allow_restart=True))["changed"]


# ---- volumes ----------------------------------------------------------------------------------------

POOL = PREFIX + "pool"


@pytest.fixture(name="dir_pool")
def dir_pool_fixture(conn):
    assert manage("libvirt_pool", {"name": POOL, "path": f"{AREA}/pool"})["changed"]
    return conn.storagePoolLookupByName(POOL)


def test_odd_qcow2_capacity_settles(dir_pool):
    results = settles("libvirt_volume", {"pool": POOL, "name": PREFIX + "odd.qcow2", "capacity": "100000000"})
    assert results[0]["volume"]["capacity"] == 100000768  # qemu-img made whole KiB of it


def test_source_image_larger_than_capacity_fails_first_unless_grow_to_source(dir_pool):
    source = f"{AREA}/src64m.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", source, "64M"], check=True)
    args = {"pool": POOL, "name": PREFIX + "seeded.qcow2", "source": source, "capacity": "32MiB"}
    for check in (True, False):
        with pytest.raises(LibvirtModuleError, match="holds 67108864 bytes, more than capacity 33554432; nothing"):
            manage("libvirt_volume", args, check=check)
    dir_pool.refresh(0)
    assert dir_pool.listVolumes() == []
    grown = settles("libvirt_volume", dict(args, grow_to_source=True))
    assert grown[0]["actions"] == ["create", "upload"] and grown[0]["volume"]["capacity"] == 64 * 1024 ** 2


def test_a_smaller_source_image_is_grown_once_after_libvirt_read_it(dir_pool):
    """libvirt re-reads an uploaded image in a thread of its own: growing it before then lengthened only the
    file, and every rerun grew it again."""
    source = f"{AREA}/src16m.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", source, "16M"], check=True)
    args = {"pool": POOL, "name": PREFIX + "grown.qcow2", "source": source, "capacity": "48MiB"}
    results = settles("libvirt_volume", args)
    assert results[0]["actions"] == ["create", "upload", "resize"]
    assert [(r["volume"]["format"], r["volume"]["capacity"]) for r in results] == [("qcow2", 48 * 1024 ** 2)] * 3


def test_volume_xml_without_format_is_reported_as_created(dir_pool):
    xml = f"<volume><name>{PREFIX}plain.img</name><capacity unit='MiB'>2</capacity></volume>"
    args = {"pool": POOL, "name": PREFIX + "plain.img", "xml": xml}
    checked = manage("libvirt_volume", args, check=True)
    results = settles("libvirt_volume", args)
    assert checked["diff"] == results[0]["diff"] and "format: raw" in checked["diff"]["after"]
    assert results[0]["volume"]["format"] == "raw"


# ---- pools ------------------------------------------------------------------------------------------


def lvm_pool(name: str) -> str:
    return (f"<pool type='logical'><name>{name}</name><source><name>{name}</name><format type='lvm2'/></source>"
            f"<target><path>/dev/{name}</path></target></pool>")


def pools(conn: Any) -> list[str]:
    return [p.name() for p in conn.listAllStoragePools() if p.name().startswith(PREFIX)]


def test_an_inactive_logical_pool_is_defined_and_never_built(conn):
    name = PREFIX + "vg"
    results = settles("libvirt_pool", {"name": name, "active": False, "xml": lvm_pool(name)})
    assert results[0]["actions"] == ["define"]  # building would initialise devices as a volume group


def test_a_new_pool_that_cannot_start_leaves_nothing(conn):
    name = PREFIX + "vg2"
    with pytest.raises(LibvirtModuleError) as caught:
        manage("libvirt_pool", {"name": name, "xml": lvm_pool(name)})
    assert caught.value.msg.endswith("(step 'start' failed after define; rolled back: define (the new definition "
                                     "was removed again); nothing of this run remains)")
    assert name not in pools(conn)


def test_a_new_pool_whose_build_fails_leaves_nothing(conn):
    open(f"{AREA}/file", "w", encoding="utf-8").close()
    name = PREFIX + "nobuild"
    with pytest.raises(LibvirtModuleError, match="step 'build' failed after define; rolled back: define"):
        manage("libvirt_pool", {"name": name, "path": f"{AREA}/file/sub"})
    assert name not in pools(conn)


def test_a_new_fs_pool_that_cannot_mount_leaves_no_directories(conn):
    name = PREFIX + "fs"
    xml = (f"<pool type='fs'><name>{name}</name><source><device path='/dev/{name}'/></source>"
           f"<target><path>{AREA}/fs/mnt</path></target></pool>")
    with pytest.raises(LibvirtModuleError) as caught:
        manage("libvirt_pool", {"name": name, "xml": xml})
    assert "rolled back: build (the directories it made were removed), define" in caught.value.msg
    assert name not in pools(conn) and not os.path.exists(f"{AREA}/fs")


def test_pool_rewrites_settle_and_drift_is_converged(conn):
    name = PREFIX + "rewrites"
    # a doubled and a trailing slash, and permissions given in part and with a security label: libvirt stores
    # the path without them, and an active pool reports the permissions it finds on the directory instead
    # (owner and group, no label where there is no SELinux)
    xml = (f"<pool type='dir'><name>{name}</name><target><path>{AREA}//rw/</path><permissions><mode>0750</mode>"
           "<label>system_u:object_r:virt_image_t:s0</label></permissions></target></pool>")
    settles("libvirt_pool", {"name": name, "xml": xml})
    virsh("pool-destroy", name)
    moved = conn.storagePoolLookupByName(name).XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE).replace("/rw<", "/moved<")
    virsh("pool-define", write(f"{AREA}/moved-pool.xml", moved))
    drifted = manage("libvirt_pool", {"name": name, "xml": xml})
    assert drifted["actions"] == ["redefine", "start"]
    assert not manage("libvirt_pool", {"name": name, "xml": xml})["changed"]


# ---- networks ---------------------------------------------------------------------------------------


NET_XML = """<network><name>{name}</name><forward mode='nat'/><mac address='52:54:00:AA:BB:{last}'/>
  <bridge name='ctst-h1-{last}'/>
  <ip address='10.213.{subnet}.1' netmask='255.255.255.0'>
    <dhcp><range start='10.213.{subnet}.10' end='10.213.{subnet}.20'/></dhcp></ip>
  <ip family='ipv6' address='fd00:0000:0000:00{subnet}:0000:0000:0000:0001' prefix='64'/>
</network>"""


def test_network_rewrites_settle_running_and_drift_is_converged(conn):
    name = PREFIX + "net"
    xml = NET_XML.format(name=name, last="C1", subnet=86)
    settles("libvirt_network", {"name": name, "xml": xml})
    stored = conn.networkLookupByName(name).XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    assert "52:54:00:aa:bb:c1" in stored and "fd00:0:0:86::1" in stored  # libvirt's own spelling
    virsh("net-destroy", name)
    virsh("net-define", write(f"{AREA}/drifted-net.xml", stored.replace(".20'", ".30'")))
    drifted = manage("libvirt_network", {"name": name, "xml": xml})
    assert drifted["actions"] == ["redefine", "start"]
    assert not manage("libvirt_network", {"name": name, "xml": xml})["changed"]


def test_network_from_options_without_bridge_keeps_the_drivers_name(conn):
    name = PREFIX + "opts"
    args = {"name": name, "ip_address": "10.213.87.1", "dhcp_start": "10.213.87.10", "dhcp_end": "10.213.87.20"}
    settles("libvirt_network", args)
    bridge = conn.networkLookupByName(name).bridgeName()
    changed = manage("libvirt_network", dict(args, dhcp_end="10.213.87.30", allow_restart=True))
    assert changed["actions"] == ["redefine", "restart"]
    assert conn.networkLookupByName(name).bridgeName() == bridge  # a redefinition keeps virbrN and the MAC


# ---- the module contract through ansible ---------------------------------------------------------------


def test_ansible_check_apply_apply_check(conn):
    name = PREFIX + "ansible"
    args = {"name": name, "uri": URI, "state": "running", "domain_type": "qemu", "memory": "200MB",
            "interfaces": [], "disks": [{"device": "cdrom"}], "wait_timeout": 30}
    results = run_steps_via_ansible([("libvirt_domain", args, check) for check in (True, False, False, True)])
    assert [r["failed"] for r in results] == [False] * 4, [r.get("msg") for r in results]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert results[0]["actions"] == results[1]["actions"] == ["define", "start"]
    assert not results[2]["restart_required"] and not results[3]["restart_required"]


def test_warnings_reach_ansible_through_module_warn(conn):
    name = PREFIX + "warn"
    args = {"name": name, "uri": URI, "ip_address": "10.213.88.1", "bridge": "ctst-h1-w0"}
    assert not run_module_via_ansible("libvirt_network", args)["failed"]
    held = run_module_via_ansible("libvirt_network", dict(args, ip_address="10.213.89.1"))
    assert held["restart_required"] and any("allow_restart" in w for w in held.get("warnings", []))


# ---- two runs at once -----------------------------------------------------------------------------------


def _race(module: str, args: dict[str, Any], barrier: Any, results: Any) -> None:
    """One of two concurrent runs (spawned process): wait for the other, then converge."""
    barrier.wait()
    try:
        result = manage(module, args)
        results.put(("ok", result["changed"], result["actions"]))
    except LibvirtModuleError as exc:
        results.put(("failed", exc.msg, []))


def race(module: str, args: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Two real runs of the same task released at the same instant; both results."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    runs = [ctx.Process(target=_race, args=(module, args, barrier, results)) for _ in range(2)]
    for run in runs:
        run.start()
    out = [results.get(timeout=300) for _ in runs]
    for run in runs:
        run.join(60)
    return out


@pytest.mark.parametrize("module, args", [
    ("libvirt_domain", {"name": PREFIX + "race", "state": "running", "domain_type": "qemu", "memory": "64MiB",
                        "interfaces": [], "wait_timeout": 30}),
    ("libvirt_pool", {"name": PREFIX + "race", "path": f"{AREA}/race", "autostart": True}),
    ("libvirt_network", {"name": PREFIX + "race", "ip_address": "10.213.90.1", "bridge": "ctst-h1-race"}),
], ids=["domain", "pool", "network"])
def test_two_runs_creating_the_same_object_both_converge(conn, module, args):
    for _ in range(3):  # the window between reading and defining is short: give the race three chances
        outcomes = race(module, args)
        assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes  # never "not found" or "already exists"
        assert any(o[1] for o in outcomes)  # one of them created it
        assert not manage(module, args)["changed"]
        remove_ours(conn)


def test_two_runs_creating_the_same_volume_both_converge(dir_pool):
    """The loser may find the volume while libvirt still creates it ('no storage vol with matching path')."""
    args = {"pool": POOL, "name": PREFIX + "race.qcow2", "capacity": "16MiB"}
    for _ in range(3):
        outcomes = race("libvirt_volume", args)
        assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
        assert any("create" in o[2] for o in outcomes)  # one created it; the other found it (and, when it read it
        # before libvirt finished, waited for it and may report the resize it then found done)
        assert not manage("libvirt_volume", args)["changed"]
        dir_pool.storageVolLookupByName(args["name"]).delete(0)


def test_two_ansible_runs_creating_the_same_domain_both_converge(conn):
    args = {"name": PREFIX + "race-ansible", "uri": URI, "state": "running", "domain_type": "qemu",
            "memory": "64MiB", "interfaces": [], "wait_timeout": 30}
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(run_module_via_ansible("libvirt_domain", args)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["failed"] for r in results] == [False, False], [r.get("msg") for r in results]
    assert not run_module_via_ansible("libvirt_domain", args)["changed"]


if __name__ == "__main__":  # pragma: no cover - spawned race workers import this module by name
    sys.exit("run with pytest")
