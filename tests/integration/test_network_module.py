"""libvirt_network through ansible against qemu:///system. The bridge and 10.213.77.0/24 are ours alone;
the network only creates a bridge on this host, no traffic is sent there."""
import subprocess

import pytest
from stor_common import assert_fails_cleanly, four_runs, lv_fixture, run_module  # noqa: F401

pytestmark = pytest.mark.system
NAME = "ctest-stor-int-net"
ARGS = {"name": NAME, "bridge": "ctst-stor-b0", "ip_address": "10.213.77.1",
        "dhcp_start": "10.213.77.10", "dhcp_end": "10.213.77.20", "autostart": True}


def virsh(*args):
    subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True)


def test_create_four_times_then_verify(lv):
    result = four_runs("libvirt_network", ARGS, via_ansible=True)
    net = lv.networkLookupByName(NAME)
    assert net.isActive() and net.autostart() and net.bridgeName() == "ctst-stor-b0"
    assert result["network"]["uuid"] == net.UUIDString()


def test_state_drift_is_converged(lv):
    run_module("libvirt_network", ARGS)
    virsh("net-destroy", NAME)
    virsh("net-autostart", NAME, "--disable")
    assert run_module("libvirt_network", ARGS)["actions"] == ["start", "autostart"]
    net = lv.networkLookupByName(NAME)
    assert net.isActive() and net.autostart()


def test_definition_change_waits_for_allow_restart(lv):
    run_module("libvirt_network", ARGS)
    changed = dict(ARGS, dhcp_end="10.213.77.30")
    held = run_module("libvirt_network", changed)
    assert held["actions"] == ["redefine"] and held["restart_required"]
    assert "10.213.77.20" in lv.networkLookupByName(NAME).XMLDesc(0)  # still running the old one
    restarted = four_runs("libvirt_network", dict(changed, allow_restart=True))
    assert not restarted["restart_required"]
    assert "10.213.77.30" in lv.networkLookupByName(NAME).XMLDesc(0)


def test_absent_four_times(lv):
    run_module("libvirt_network", ARGS)
    four_runs("libvirt_network", {"name": NAME, "state": "absent"})
    assert NAME not in [n.name() for n in lv.listAllNetworks()]


def test_failed_start_leaves_no_definition(lv):
    run_module("libvirt_network", ARGS)
    clash = dict(ARGS, name=NAME + "2", bridge="ctst-stor-b1")  # same subnet: libvirt refuses to start it
    result = run_module("libvirt_network", clash)
    assert_fails_cleanly(result, NAME + "2", "removed again")
    assert result.get("error_code")
    assert NAME + "2" not in [n.name() for n in lv.listAllNetworks()]


def test_malformed_xml_changes_nothing(lv):
    assert_fails_cleanly(run_module("libvirt_network", {"name": NAME, "xml": "<network><name>"}), "malformed XML")
    assert NAME not in [n.name() for n in lv.listAllNetworks()]
