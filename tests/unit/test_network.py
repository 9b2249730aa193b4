"""NetworkManager against test:///default, and libvirt_network's main() in-process."""
from __future__ import annotations

import pytest

# conn_fixture is imported to register the conn fixture.
from libvirt_test_driver import conn_fixture, run_main  # noqa: F401  # pylint: disable=unused-import

from library import libvirt_network
from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.network import NetworkManager

NAME = "ctest-stor-net"


def params(**over):
    base = {"name": NAME, "state": "present", "active": True, "autostart": None, "allow_restart": False,
            "xml": None, "forward_mode": "nat", "bridge": "ctst-unit0", "ip_address": "10.213.99.1",
            "netmask": "255.255.255.0", "dhcp_start": "10.213.99.10", "dhcp_end": "10.213.99.20"}
    base.update(over)
    return base


def run(conn, check=False, **over):
    return NetworkManager(conn, params(**over), check).run()


def names(conn):
    return [n.name() for n in conn.listAllNetworks()]


def test_create_check_apply_idempotent(conn):
    checked = run(conn, check=True, autostart=True)
    assert checked["changed"] and checked["actions"] == ["define", "start", "autostart"]
    assert NAME not in names(conn)
    applied = run(conn, autostart=True)
    assert applied["diff"] == checked["diff"]
    assert applied["network"]["bridge"] == "ctst-unit0" and applied["network"]["active"]
    assert not run(conn, autostart=True)["changed"]
    assert not run(conn, check=True, autostart=True)["changed"]


def test_libvirt_fill_ins_are_not_drift(conn):
    # Without a bridge name libvirt picks one and adds stp/delay: that is not a difference.
    run(conn, bridge=None)
    assert not run(conn, bridge=None)["changed"]


def test_changed_definition_of_inactive_network_is_redefined(conn):
    run(conn, active=False)
    uuid = conn.networkLookupByName(NAME).UUIDString()
    result = run(conn, active=False, dhcp_end="10.213.99.30")
    assert result["actions"] == ["redefine"] and not result["restart_required"]
    net = conn.networkLookupByName(NAME)
    assert "10.213.99.30" in net.XMLDesc(0) and net.UUIDString() == uuid


def test_active_network_restarts_only_when_allowed(conn):
    run(conn)
    held = run(conn, check=True, dhcp_end="10.213.99.30")
    assert held["actions"] == ["redefine"] and held["restart_required"] and held["warnings"]
    allowed = run(conn, check=True, dhcp_end="10.213.99.30", allow_restart=True)
    assert allowed["actions"] == ["redefine", "restart"] and not allowed["restart_required"]


def test_active_and_autostart_drift_converge(conn):
    run(conn, autostart=True)
    net = conn.networkLookupByName(NAME)
    net.destroy()
    net.setAutostart(0)
    assert run(conn, autostart=True)["actions"] == ["start", "autostart"]
    assert net.isActive() and net.autostart()


def test_absent(conn):
    assert not run(conn, state="absent")["changed"]
    run(conn)
    assert run(conn, state="absent")["actions"] == ["stop", "undefine"]
    assert NAME not in names(conn)


@pytest.mark.parametrize("over, message", [
    ({"xml": "<network><name>"}, "malformed XML"),
    ({"xml": "<pool><name>x</name></pool>"}, "<network> as its root"),
    ({"ip_address": None}, "'ip_address'"),
    ({"dhcp_end": None}, "both 'dhcp_start' and 'dhcp_end'"),
])
def test_bad_input_changes_nothing(conn, over, message):
    with pytest.raises(LibvirtModuleError, match=message):
        run(conn, **over)
    assert NAME not in names(conn)


def test_main_fails_cleanly_on_bad_xml(monkeypatch):
    ended = run_main(libvirt_network.main, monkeypatch, {"name": NAME, "xml": "<network"})
    assert ended.failed and "malformed XML" in ended.result["msg"] and NAME in ended.result["msg"]


def test_main_check_mode(monkeypatch):
    ended = run_main(libvirt_network.main, monkeypatch, {"name": NAME, "ip_address": "10.213.98.1"}, check=True)
    assert not ended.failed and ended.result["changed"] and ended.result["actions"] == ["define", "start"]
