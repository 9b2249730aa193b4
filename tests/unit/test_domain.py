"""Domain XML builder, semantic comparison, auto type detection, and the manager on test:///default."""
from __future__ import annotations

import copy
import os
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from module_utils.cocos_libvirt import domain, domain_carry, domain_compare, domain_xml
from module_utils.cocos_libvirt.common import LibvirtModuleError
from tests.helpers import drop_domains

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_URI = "test:///default"
LOG_DIR = "/var/lib/cocos-test/dom/unit"

DEFAULTS: dict[str, Any] = {
    "uri": TEST_URI, "state": "present", "xml": None, "domain_type": None, "memory": None, "vcpus": None,
    "machine": None, "disks": None, "boot": None, "interfaces": None, "serial_log": None, "autostart": None,
    "allow_restart": False, "force_shutdown": False, "wait_timeout": 5, "remove_storage": False,
}

# libvirt 9.0's inactive XML for a domain built from options (qemu:///system, measured): everything
# libvirt added (uuid, currentMemory, arch, versioned machine, cpu, clock, on_*, emulator,
# controllers, console, inputs, audio, addresses) must compare equal to the desired definition.
LIBVIRT_INACTIVE = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>ctest-dom-x</name>
  <uuid>e5cb1534-dcde-439d-8bb7-89d12abde626</uuid>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='p' volume='v'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <serial type='pty'>
      <log file='/var/log/x.log' append='off'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
    </serial>
    <console type='pty'><log file='/var/log/x.log' append='off'/><target type='serial' port='0'/></console>
    <input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:7020-:7002'/>
    <qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0,addr=0x10'/>
  </qemu:commandline>
</domain>"""

OPTS = {"memory": "128MiB", "disks": [{"pool": "p", "volume": "v"}], "serial_log": "/var/log/x.log",
        "interfaces": [{"type": "user", "port_forwards": [{"host_port": 7020, "guest_port": 7002}]}]}


def build(name: str = "ctest-dom-x", **over: Any) -> ET.Element:
    return domain_xml.build(name, {**OPTS, **over}, "qemu", {0: "qcow2"})


def aliases(alias: str) -> str | None:
    return {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}.get(alias)


def differs(desired: ET.Element, current: str = LIBVIRT_INACTIVE) -> bool:
    return domain_compare.compare(ET.fromstring(current), desired, "domain x", aliases)[0]


# ---- builder ---------------------------------------------------------------------------------


def test_build_renders_user_networking_with_loopback_default():
    root = build()
    args = [a.get("value") for a in root.iter(domain_xml.QEMU_ARG)]
    assert args == ["-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:7020-:7002",
                    "-device", "virtio-net-pci,netdev=n0,addr=0x10"]
    assert root.find("devices/memballoon").get("model") == "none"
    assert "xmlns:qemu" in domain_xml.to_text(root)


def test_build_memory_units_and_bare_kib():
    assert build(memory="1GiB").findtext("memory") == "1048576"
    assert build(memory="1 GB").findtext("memory") == str(-(-10**9 // 1024))
    assert build(memory="2048").findtext("memory") == "2048"  # bare number is KiB as in libvirt


@pytest.mark.parametrize("memory", ["12XB", "1.5GiB", "512", ""])
def test_build_rejects_bad_memory(memory):
    with pytest.raises(LibvirtModuleError, match="memory"):
        build(memory=memory)


def test_build_assigns_targets_and_cdrom_defaults():
    disks = [{"pool": "p", "volume": "v"}, {"device": "cdrom", "path": "/x.iso"}, {"path": "/y.qcow2"}]
    root = domain_xml.build("d", {**OPTS, "disks": disks}, "qemu", {})
    got = [(d.find("target").get("dev"), d.find("target").get("bus"), d.find("driver").get("type"),
            d.find("readonly") is not None) for d in root.findall("devices/disk")]
    assert got == [("vda", "virtio", "qcow2", False), ("sda", "sata", "raw", True), ("vdb", "virtio", "qcow2", False)]


@pytest.mark.parametrize("fwds, match", [
    ([{"host_port": 7020, "guest_port": 1}, {"host_port": 7020, "guest_port": 2}], "forwarded twice"),
    ([{"host_port": 0, "guest_port": 1}], "1-65535"),
    ([{"host_port": 70000, "guest_port": 1}], "1-65535"),
    ([{"host_port": 7020, "guest_port": 1, "host_address": "localhost"}], "IPv4"),
])
def test_build_rejects_bad_port_forwards(fwds, match):
    with pytest.raises(LibvirtModuleError, match=match):
        build(interfaces=[{"type": "user", "port_forwards": fwds}])


def test_build_rejects_boot_with_boot_order_and_half_disks():
    with pytest.raises(LibvirtModuleError, match="boot_order"):
        build(boot=["hd"], disks=[{"path": "/x", "boot_order": 1}])
    with pytest.raises(LibvirtModuleError, match="pool and volume"):
        build(disks=[{"pool": "p"}])


@pytest.mark.repository
def test_forwarded_ports_from_raw_manager_xml():
    with open(os.path.join(ROOT, "xml", "dom.xml"), encoding="utf-8") as handle:
        root = ET.fromstring(handle.read())
    assert domain_xml.forwarded_ports(root) == [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002, "protocol": "tcp"}]


def _user_netdev_domain(netdev: str) -> ET.Element:
    return ET.fromstring(f"<domain xmlns:qemu='{domain_compare.QEMU_NS}'><name>d</name><qemu:commandline>"
                         f"<qemu:arg value='-netdev'/><qemu:arg value='{netdev}'/>"
                         "<qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0'/>"
                         "</qemu:commandline></domain>")


def test_the_agent_forward_is_rewritten_and_nothing_else():
    root = _user_netdev_domain(
        "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:7020-10.0.2.15:7002,restrict=on")
    assert domain_xml.set_host_forward(root, 7002, "127.0.0.22", 6101)
    assert domain_xml.forwarded_ports(root) == [
        {"host_address": "127.0.0.1", "host_port": 2222, "guest_port": 22, "protocol": "tcp"},
        {"host_address": "127.0.0.22", "host_port": 6101, "guest_port": 7002, "protocol": "tcp"}]
    assert "-10.0.2.15:7002,restrict=on" in domain_xml.to_text(root)
    assert not domain_xml.set_host_forward(root, 7002, "127.0.0.22", 6101)  # already so: unchanged
    udp_only = _user_netdev_domain("user,id=n0,hostfwd=udp::7002-:7002")
    assert not domain_xml.set_host_forward(udp_only, 7002, "127.0.0.1", 6100)  # no TCP forward to rewrite


# ---- comparison --------------------------------------------------------------------------------


def test_libvirt_additions_are_not_a_change():
    assert not differs(build())


def test_machine_alias_matches_versioned_machine():
    assert not differs(build(machine="pc"))
    assert differs(build(machine="q35"))


@pytest.mark.parametrize("over", [
    {"memory": "256MiB"},
    {"vcpus": 2},
    {"disks": [{"pool": "p", "volume": "v"}, {"pool": "p", "volume": "w"}]},  # disk added
    {"disks": []},  # disk removed: strict list
    {"interfaces": [{"type": "user", "port_forwards": [{"host_port": 7021, "guest_port": 7002}]}]},
    {"interfaces": []},  # user networking removed: qemu:commandline gone, balloon back
    {"serial_log": None},  # serial removed
])
def test_real_changes_are_detected(over):
    assert differs(build(**over))


def test_diff_shows_only_the_change():
    before, after = domain_compare.compare(ET.fromstring(LIBVIRT_INACTIVE), build(memory="256MiB"), "x", aliases)[1:]
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ['  <memory unit="KiB">262144</memory>']
    assert "qemu:arg" in after and "{http" not in after


def test_unknown_unit_in_raw_xml_is_an_error():
    desired = ET.fromstring("<domain type='qemu'><name>x</name><memory unit='XB'>1</memory></domain>")
    with pytest.raises(LibvirtModuleError, match="unknown size unit"):
        domain_compare.compare(None, desired, "domain x")


def test_cdrom_readonly_added_by_libvirt_is_not_a_change():
    target = "<target dev='vda' bus='virtio'/>"
    current = LIBVIRT_INACTIVE.replace(target, target + "<readonly/>")
    assert differs(build(), current)  # a readonly flag on a disk the user wants writable is drift
    desired = ET.fromstring("<domain><devices><disk device='cdrom'><target dev='sda'/></disk></devices></domain>")
    current = ("<domain><devices><disk device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>"
               "</devices></domain>")
    assert not differs(desired, current)


# ---- domain type auto --------------------------------------------------------------------------


@pytest.mark.parametrize("dev, pvm, caps, want", [
    (True, False, True, "kvm"), (True, True, True, "qemu"), (False, False, True, "qemu"), (True, False, False, "qemu"),
])
def test_pick_domain_type(dev, pvm, caps, want):
    assert domain.pick_domain_type(dev, pvm, caps) == want


def test_kvm_pvm_detection(tmp_path):
    sys_module = tmp_path / "module"
    (sys_module / "kvm").mkdir(parents=True)
    modules = tmp_path / "modules"
    modules.write_text("kvm 1 0 - Live 0x0\n")
    assert not domain.kvm_pvm_loaded(str(sys_module), str(modules))
    modules.write_text("kvm_pvm 1 0 - Live 0x0\nkvm 1 1 kvm_pvm, Live 0x0\n")
    assert domain.kvm_pvm_loaded(str(sys_module), str(modules))
    (sys_module / "kvm_pvm").mkdir()
    assert domain.kvm_pvm_loaded(str(sys_module), str(tmp_path / "missing"))


def test_this_host_resolves_to_qemu(conn):
    manager = domain.DomainManager(conn, module(uri="qemu:///system"))
    manager._caps = conn.getCapabilities()  # test driver caps: no kvm offered
    assert manager.auto_domain_type() == "qemu"
    if os.path.isdir("/sys/module/kvm_pvm"):
        assert domain.pick_domain_type(domain.kvm_device_usable(), domain.kvm_pvm_loaded(), True) == "qemu"


# ---- manager on test:///default ----------------------------------------------------------------


@pytest.fixture
def conn():
    connection = libvirt.open(TEST_URI)
    yield connection
    drop_domains(connection, "ctest-dom-")
    connection.close()


def module(check: bool = False, **params: Any) -> SimpleNamespace:
    return SimpleNamespace(params={**DEFAULTS, "name": "ctest-dom-u", **params}, check_mode=check, _diff=True)


def run(conn: Any, check: bool = False, **params: Any) -> dict[str, Any]:
    return domain.DomainManager(conn, module(check, **params)).run()


def four_times(conn: Any, **params: Any) -> list[dict[str, Any]]:
    """check, apply, apply again, check again: the changed flags must read True, True, False, False."""
    results = [run(conn, True, **params), run(conn, **params), run(conn, **params), run(conn, True, **params)]
    assert [r["changed"] for r in results] == [True, True, False, False], [r.get("actions") for r in results]
    assert results[0]["actions"] == results[1]["actions"]
    assert results[0]["diff"] == results[1]["diff"]
    return results


SIMPLE = {"memory": "64MiB", "serial_log": f"{LOG_DIR}/u.log"}


def test_define_four_times(conn):
    four_times(conn, **SIMPLE)
    dom = conn.lookupByName("ctest-dom-u")
    assert dom.maxMemory() == 64 * 1024 and not dom.isActive()
    assert os.path.isdir(LOG_DIR)


def test_check_mode_defines_nothing(conn):
    result = run(conn, True, **SIMPLE, state="running")
    assert result["changed"] and result["domain"]["state"] == "running" and result["domain"]["uuid"] is None
    assert "ctest-dom-u" not in [d.name() for d in conn.listAllDomains(0)]


@pytest.mark.parametrize("state, libvirt_state", [
    ("running", libvirt.VIR_DOMAIN_RUNNING), ("paused", libvirt.VIR_DOMAIN_PAUSED),
])
def test_run_states(conn, state, libvirt_state):
    run(conn, **SIMPLE)
    four_times(conn, **SIMPLE, state=state)
    assert conn.lookupByName("ctest-dom-u").state()[0] == libvirt_state


def test_destroyed_and_shutdown(conn):
    run(conn, **SIMPLE, state="running")
    four_times(conn, state="destroyed")
    run(conn, state="running")
    four_times(conn, state="shutdown")  # the test driver powers off at once
    assert not conn.lookupByName("ctest-dom-u").isActive()


def test_redefine_keeps_uuid_and_reports_restart(conn):
    first = run(conn, **SIMPLE, state="running")
    uuid = first["domain"]["uuid"]
    grown = {**SIMPLE, "memory": "128MiB"}
    results = four_times(conn, **grown, state="running")
    assert all(r["restart_required"] for r in results)
    dom = conn.lookupByName("ctest-dom-u")
    assert dom.UUIDString() == uuid and dom.isActive()
    assert "131072" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    restarted = run(conn, **grown, state="running", allow_restart=True)
    assert restarted["changed"] and "restart" in restarted["actions"] and not restarted["restart_required"]
    assert not run(conn, **grown, state="running", allow_restart=True)["changed"]
    assert conn.lookupByName("ctest-dom-u").info()[2] == 128 * 1024  # the live guest runs the new memory


def test_autostart_converged(conn):
    run(conn, **SIMPLE)
    four_times(conn, autostart=True)
    assert conn.lookupByName("ctest-dom-u").autostart() == 1


def test_missing_domain_without_definition_fails(conn):
    with pytest.raises(LibvirtModuleError, match="does not exist"):
        run(conn, state="running")


def test_absent_with_storage(conn):
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>ctest-dom-u.img</name><capacity>1048576</capacity></volume>", 0)
    disks = [{"pool": "default-pool", "volume": "ctest-dom-u.img", "format": "raw"}]
    run(conn, **SIMPLE, disks=disks, state="running")
    four_times(conn, state="absent", remove_storage=True)
    assert "ctest-dom-u" not in [d.name() for d in conn.listAllDomains(0)]
    assert "ctest-dom-u.img" not in pool.listVolumes()


def test_bad_input_changes_nothing(conn):
    for params, match in [({"xml": "<domain><name>"}, "malformed"),
                          ({"memory": "1QB"}, "unknown size unit"),
                          ({"memory": "64MiB", "disks": [{"pool": "ctest-dom-nopool", "volume": "v"}]}, "not found"),
                          ({"xml": "<domain type='nonsense'><name>ctest-dom-u</name></domain>"}, "rejected")]:
        with pytest.raises(LibvirtModuleError, match=match) as caught:
            run(conn, **params)
        assert "ctest-dom-u" in caught.value.msg
        assert "ctest-dom-u" not in [d.name() for d in conn.listAllDomains(0)]


def test_info_reads_disks_and_resolves_volume_paths(conn):
    # the test driver drops <qemu:commandline>; ports are read back in the integration tests
    pool = conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML("<volume><name>ctest-dom-i.img</name><capacity>1048576</capacity></volume>", 0)
    try:
        run(conn, memory="64MiB", disks=[{"pool": "default-pool", "volume": "ctest-dom-i.img", "format": "raw"}])
        info = domain.DomainInfo(conn, SimpleNamespace(params={"name": "ctest-dom-u"})).run()
        assert not info["changed"]
        (facts,) = info["domains"]
        assert facts["state"] == "shutoff" and facts["memory"] == 64 * 1024 * 1024
        assert facts["disks"][0]["path"] == vol.path() and facts["disks"][0]["target"] == "vda"
        assert domain.DomainInfo(conn, SimpleNamespace(params={"name": "ctest-dom-none"})).run()["domains"] == []
    finally:
        vol.delete(0)


def test_boot_default_added_by_libvirt_is_not_a_change_but_listed_boots_are_strict():
    desired = ET.fromstring("<domain><os><type>hvm</type></os></domain>")
    assert not differs(desired, "<domain><os><type arch='x86_64'>hvm</type><boot dev='hd'/></os></domain>")
    listed = ET.fromstring("<domain><os><type>hvm</type><boot dev='cdrom'/></os></domain>")
    assert differs(listed, "<domain><os><type>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os></domain>")


def test_keep_identity_carries_uuid_and_macs():
    current = ("<domain><name>d</name><uuid>u-1</uuid><devices><interface type='network'>"
               "<mac address='52:54:00:00:00:01'/><source network='n'/></interface></devices></domain>")
    desired = domain_xml.build("d", {"memory": "64MiB", "interfaces": [{"network": "n"}]}, "qemu", {})
    kept = domain.keep_identity(desired, current)
    assert kept.findtext("uuid") == "u-1" and list(kept).index(kept.find("uuid")) == 1
    assert kept.find("devices/interface/mac").get("address") == "52:54:00:00:00:01"
    assert desired.find("uuid") is None  # the desired element itself is left alone


# ---- omitted options leave the definition as it is -------------------------------------------------


class KeepsQemuNamespace:
    """test:///default with <qemu:commandline> kept, as the qemu driver keeps it.

    The test driver has no parser for the qemu namespace and silently drops it; user networking (the
    port forwards) would vanish on every define and never converge. Only that is added here: each
    domain's XML gets back the commandline it was last defined with.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._cmdlines: dict[str, ET.Element | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def defineXML(self, text: str) -> Any:  # noqa: N802 - libvirt's name
        dom = self._conn.defineXML(text)
        self._cmdlines[dom.name()] = ET.fromstring(text).find(domain_compare.QEMU_COMMANDLINE)
        return self._wrap(dom)

    def lookupByName(self, name: str) -> Any:  # noqa: N802 - libvirt's name
        return self._wrap(self._conn.lookupByName(name))

    def _wrap(self, dom: Any) -> Any:
        cmdlines = self._cmdlines

        class Dom:
            def __getattr__(self, name: str) -> Any:
                return getattr(dom, name)

            def XMLDesc(self, flags: int = 0) -> str:  # noqa: N802 - libvirt's name
                root = ET.fromstring(dom.XMLDesc(flags))
                if cmdlines.get(dom.name()) is not None:
                    root.append(copy.deepcopy(cmdlines[dom.name()]))
                return ET.tostring(root, encoding="unicode")

        return Dom()


FULL_VOLUME = "ctest-dom-full.img"
FULL = {"memory": "128MiB", "serial_log": f"{LOG_DIR}/full.log",
        "disks": [{"pool": "default-pool", "volume": FULL_VOLUME, "format": "raw"},
                  {"device": "cdrom", "path": "/var/lib/cocos-test/dom/unit/guest.iso", "boot_order": 1}],
        "interfaces": [{"type": "user", "port_forwards": [{"host_port": 7020, "guest_port": 7002}]}]}


@pytest.fixture
def full(conn):
    """A running domain with a pool-volume disk, a boot cdrom, a port forward and a serial log."""
    pool = conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML(f"<volume><name>{FULL_VOLUME}</name><capacity>1048576</capacity></volume>", 0)
    kept = KeepsQemuNamespace(conn)
    first = run(kept, **FULL, state="running")
    assert first["actions"] == ["define", "start"]
    assert not run(kept, **FULL, state="running")["changed"]
    yield kept
    drop_domains(conn, "ctest-dom-")
    vol.delete(0)


def diff_definition(text: str) -> str:
    """The definition in a diff text: without the state/autostart lines, qemu: prefix declared again."""
    body = "".join(line for line in text.splitlines(True) if not line.startswith("# "))
    return body.replace("<domain ", f'<domain xmlns:qemu="{domain_compare.QEMU_NS}" ', 1)


def assert_full_parts(text: str) -> None:
    """The disks, the forward and the serial log of FULL are in this definition text."""
    root = ET.fromstring(text)
    assert [d.get("device") for d in root.findall("devices/disk")] == ["disk", "cdrom"]
    assert root.find("devices/disk/source").get("volume") == FULL_VOLUME
    assert root.find("devices/disk[@device='cdrom']/boot").get("order") == "1"
    assert domain_xml.forwarded_ports(root) == [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002, "protocol": "tcp"}]
    assert root.find("devices/serial/log").get("file") == f"{LOG_DIR}/full.log"


def test_only_memory_keeps_disks_forward_and_serial(full):
    """The module's example "Grow memory": nothing it does not mention is lost."""
    grow = {"memory": "256MiB", "vcpus": 1, "state": "running", "allow_restart": True}
    results = four_times(full, **grow)
    assert results[1]["actions"] == ["redefine", "restart"]
    assert_full_parts(diff_definition(results[1]["diff"]["after"]))
    dom = full.lookupByName("ctest-dom-u")
    assert_full_parts(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert dom.maxMemory() == 256 * 1024 and dom.isActive()


def test_only_vcpus_on_an_existing_domain(full):
    four_times(full, vcpus=2)
    dom = full.lookupByName("ctest-dom-u")
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert root.findtext("vcpu") == "2" and dom.maxMemory() == 128 * 1024
    assert_full_parts(ET.tostring(root, encoding="unicode"))


def test_empty_disks_list_removes_the_disks(full):
    results = four_times(full, disks=[])
    assert "<disk" in results[1]["diff"]["before"] and "<disk" not in results[1]["diff"]["after"]
    root = ET.fromstring(full.lookupByName("ctest-dom-u").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert root.findall("devices/disk") == []
    assert domain_xml.forwarded_ports(root) and root.find("devices/serial/log") is not None


def test_boot_given_against_kept_boot_orders_fails_before_changing(full):
    before = full.lookupByName("ctest-dom-u").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(LibvirtModuleError, match="boot cannot be combined"):
        run(full, boot=["hd"])
    assert full.lookupByName("ctest-dom-u").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


@pytest.mark.parametrize("check", [True, False])
def test_new_domain_without_memory_fails_clearly(conn, check):
    with pytest.raises(LibvirtModuleError, match="ctest-dom-u does not exist; memory is required"):
        run(conn, check, vcpus=2, disks=[])
    assert "ctest-dom-u" not in [d.name() for d in conn.listAllDomains(0)]


def test_omitted_domain_type_keeps_the_current_one(conn):
    run(conn, memory="64MiB", domain_type="kvm")  # auto would pick qemu here: the test driver offers no kvm
    four_times(conn, memory="96MiB")
    assert ET.fromstring(conn.lookupByName("ctest-dom-u").XMLDesc(0)).get("type") == "kvm"


def test_carry_over_keeps_machine_and_replaces_only_omitted_parts():
    current = ET.fromstring(LIBVIRT_INACTIVE.replace("pc-i440fx-7.2", "pc-q35-7.2"))
    built = domain_xml.build("ctest-dom-x", {"vcpus": 2}, "qemu", {})
    out = domain_carry.carry_over(built, current, {"vcpus": 2}, "domain x")
    assert out.find("os/type").get("machine") == "pc-q35-7.2"
    assert out.findtext("vcpu") == "2" and out.findtext("memory") == "131072"
    assert [c.tag for c in out][:4] == ["name", "memory", "currentMemory", "vcpu"]
    assert not differs(out, LIBVIRT_INACTIVE.replace("pc-i440fx-7.2", "pc-q35-7.2").replace(">1</vcpu>", ">2</vcpu>"))
