"""The placement decision and what feeds it, from figures given as data: ranking by uncommitted memory, room (VM
count, both memory figures, agent ports), ports taken by any covering forward, the inventory's host rules and the
placement's metadata element."""
from __future__ import annotations

import pytest

# conn_fixture is imported to register the conn fixture (test:///default).
from libvirt_test_driver import conn_fixture  # noqa: F401  # pylint: disable=unused-import

from manager_api.config import ConfigError, from_env
from manager_api.errors import NoRoom
from manager_api.hosts import DomainFacts, HostSpec, Snapshot, host_spec
from manager_api.placement import (
    METADATA_NS,
    PLACED,
    RESERVED,
    Placement,
    capacity,
    decide,
    placement_attributes,
    read_metadata,
)
from module_utils.cocos_libvirt import metadata

MIB = 1024 * 1024
GIB = 1024 * MIB


def spec(name: str, max_vms: int = 10, ports: tuple[int, int] = (6100, 6200), address: str = "127.0.0.21") -> HostSpec:
    return HostSpec(name, f"test:///{name}", address, max_vms, ports)


def snap(total: int = 8 * GIB, available: int = 6 * GIB, *domains: DomainFacts) -> Snapshot:
    return Snapshot(0.0, total, available, tuple(domains))


def dom(name: str, memory: int, active: bool = True, *forwards: tuple[str, int]) -> DomainFacts:
    return DomainFacts(name, active, memory, tuple({"host_address": a, "host_port": p, "guest_port": 7002,
                                                   "protocol": "tcp"} for a, p in forwards))


def row(domain: str, host: str, port: int | None, memory: int, state: str = PLACED) -> Placement:
    return Placement(domain, host, port, memory, state=state)


def always(_address: str, _port: int) -> bool:
    return True


def test_the_host_with_most_uncommitted_memory_wins():
    hosts = [(spec("hv1"), snap(8 * GIB, 6 * GIB, dom("big", 3 * GIB)), []),
             (spec("hv2"), snap(8 * GIB, 6 * GIB, dom("small", 1 * GIB)), []),
             (spec("hv3"), snap(4 * GIB, 6 * GIB), [])]
    assert decide(hosts, 512 * MIB, True, bindable=always).host == "hv2"  # 7 GiB free beats 5 and 4


def test_placed_but_not_running_domains_count_as_committed():
    # hv1's last check predates a 4 GiB domain placed there: the ledger row keeps hv1 from looking empty.
    hosts = [(spec("hv1"), snap(), [row("new", "hv1", 6100, 4 * GIB, RESERVED)]), (spec("hv2"), snap(), [])]
    assert decide(hosts, 512 * MIB, True, bindable=always).host == "hv2"
    # Once it runs (the check lists it active) it is counted once, not twice.
    running = snap(8 * GIB, 6 * GIB, dom("new", 4 * GIB))
    assert capacity(spec("hv1"), running, [row("new", "hv1", 6100, 4 * GIB)]).memory_committed == 4 * GIB


def test_ties_go_to_fewer_vms_then_inventory_order():
    one = [row("a", "hv1", 6100, 0)]
    hosts = [(spec("hv1"), snap(), one), (spec("hv2"), snap(), []), (spec("hv3"), snap(), [])]
    assert decide(hosts, 0, True, bindable=always).host == "hv2"
    assert decide(hosts[1:], 0, True, bindable=always).host == "hv2"


@pytest.mark.parametrize("host, memory, reason", [
    ((spec("hv1", max_vms=1), snap(), [row("a", "hv1", 6100, 0)]), MIB, "1 of 1 VMs placed"),
    ((spec("hv1"), snap(1 * GIB, 6 * GIB), []), 2 * GIB, "1024 MiB uncommitted, 2048 MiB needed"),
    ((spec("hv1"), snap(8 * GIB, 100 * MIB), []), 2 * GIB, "100 MiB available on the node"),
    ((spec("hv1", ports=(6100, 6100)), snap(), [row("a", "hv1", 6100, 0)]), MIB, "no free agent port in 6100-6100"),
])
def test_no_room_names_each_hosts_reason(host, memory, reason):
    with pytest.raises(NoRoom) as err:
        decide([host], memory, True, refused={"hv9": "unreachable"}, bindable=always)
    assert f"hv1: {reason}" in str(err.value) and "hv9: unreachable" in str(err.value)


def test_a_full_host_is_skipped_for_the_next_best():
    hosts = [(spec("hv1", max_vms=1), snap(16 * GIB), [row("a", "hv1", 6100, 0)]), (spec("hv2"), snap(), [])]
    assert decide(hosts, MIB, True, bindable=always).host == "hv2"


def test_ports_taken_by_ledger_forwards_wildcards_and_listeners_are_skipped():
    facts = snap(8 * GIB, 6 * GIB, dom("x", 0, True, ("127.0.0.21", 6101)), dom("y", 0, False, ("0.0.0.0", 6102)),
                 dom("z", 0, True, ("127.0.0.99", 6104)))  # another address: does not take the port here
    rows = [row("a", "hv1", 6100, 0)]
    assert capacity(spec("hv1"), facts, rows).ports_used == {6100, 6101, 6102}
    listening = {6103}
    choice = decide([(spec("hv1"), facts, rows)], 0, True, bindable=lambda _a, port: port not in listening)
    assert choice.port == 6104
    assert decide([(spec("hv1"), facts, rows)], 0, False, bindable=always).port is None  # no forward: no port


def test_inventory_host_rules():
    assert host_spec("localhost", {}, 10, (6100, 6200)) == HostSpec("localhost", "qemu:///system", "127.0.0.1", 10,
                                                                      (6100, 6200))
    ours = host_spec("hv1", {"cocos_libvirt_uri": "qemu+ssh://root@127.0.0.21/system",
                             "cocos_agent_address": "127.0.0.21", "cocos_max_vms": "3",
                             "cocos_agent_port_range": "7100-7109"}, 10, (6100, 6200))
    assert (ours.max_vms, ours.ports) == (3, (7100, 7109))
    for values, message in (({}, "required"),
                            ({"cocos_libvirt_uri": "x", "cocos_agent_address": "192.168.1.5"}, "127.0.0.0/8"),
                            ({"cocos_libvirt_uri": "x", "cocos_agent_address": "127.0.0.2", "cocos_max_vms": 0},
                             "cocos_max_vms"),
                            ({"cocos_libvirt_uri": "x", "cocos_agent_address": "127.0.0.2",
                              "cocos_agent_port_range": "7200-7100"}, "port range")):
        with pytest.raises(ConfigError, match=message):
            host_spec("hv1", values, 10, (6100, 6200))
    with pytest.raises(ConfigError, match="host name"):
        host_spec("{{ evil }}", {}, 10, (6100, 6200))


def test_fleet_settings_from_the_environment(tmp_path):
    cfg = from_env({"CC_MANAGER_INVENTORY": str(tmp_path), "CC_MANAGER_MAX_VMS": "2",
                    "CC_MANAGER_AGENT_PORT_RANGE": "7000-7010", "CC_MANAGER_HOST_TIMEOUT": "2s"})
    assert (cfg.inventory, cfg.max_vms, cfg.agent_port_range, cfg.host_timeout) == (str(tmp_path), 2, (7000, 7010),
                                                                                     2.0)
    assert from_env({}).agent_port_range == (6100, 6200) and from_env({}).max_vms == 10
    with pytest.raises(ConfigError, match="CC_MANAGER_AGENT_PORT_RANGE"):
        from_env({"CC_MANAGER_AGENT_PORT_RANGE": "6100"})
    with pytest.raises(ConfigError, match="CC_MANAGER_INVENTORY"):
        from_env({"CC_MANAGER_INVENTORY": str(tmp_path / "missing")})


def test_metadata_element_is_in_our_attributes_only(conn):
    """Written to and read back from a real (test:///default) domain through libvirt's metadata API."""
    row = Placement("test", "hv1", 6100, 0, ttl=60, expires_at=0.0)
    metadata.write_attributes(conn.lookupByName("test"), "placement", placement_attributes(row, spec("hv1")),
                              "cocos-manager", METADATA_NS)
    assert read_metadata(conn, "test") == {"host": "hv1", "agent-address": "127.0.0.21",
                                                             "agent-port": "6100", "ttl": "60",
                                                             "expires-at": "1970-01-01T00:00:00Z"}
