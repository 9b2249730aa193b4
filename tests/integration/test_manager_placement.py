"""Placement against real figures: three hosts whose health checks read the real libvirtd (qemu:///system, read
only: nothing is defined), the ledger in a real SQLite file. Concurrent requests never share a port or overfill a
host, reservations and deadlines survive a reopened ledger, expired domains are handed to removal, and a placed
domain that vanished from its host is forgotten. The whole loop over fleet hosts is test_manager_fleet.py."""
from __future__ import annotations

import os
import threading
import time
from collections import Counter

import grpc
import libvirt
import pytest
from manager_support import make_config, manager_server, request

from cocos_pb import manager_v1_pb2, manager_v1_pb2_grpc
from manager_api.errors import Conflict, NoRoom, RequestError
from manager_api.hosts import REACHABLE, HostRegistry, HostSpec
from manager_api.placement import PLACED, RESERVED, PlacementService, Reaper

pytestmark = pytest.mark.system
URI = "qemu:///system"
MAX_VMS = 5
MEMORY = 64 * 1024 * 1024


@pytest.fixture()
def registry():
    hosts = HostRegistry([HostSpec(f"hv{i}", URI, f"127.0.0.{23 + i}", MAX_VMS, (6100, 6200)) for i in (1, 2, 3)],
                         interval=0.2, timeout=5)
    hosts.start()
    hosts.wait_checked(10)
    yield hosts
    hosts.stop()


def test_health_checks_read_libvirts_figures(registry):
    for host in registry.hosts():
        assert host.health() == (REACHABLE, "") and host.snapshot is not None
        assert host.snapshot.memory_total > host.snapshot.memory_available > 0


def test_concurrent_requests_never_share_a_port_or_overfill_a_host(registry, tmp_path):
    placement = PlacementService(registry, str(tmp_path / "placements.sqlite3"))
    requests = 3 * MAX_VMS + 25
    barrier = threading.Barrier(requests)
    results: dict[str, object] = {}

    def place(i: int) -> None:
        barrier.wait()
        try:
            results[f"ctest-h8-p{i}"] = placement.reserve(f"ctest-h8-p{i}", MEMORY)[0]
        except NoRoom as exc:
            results[f"ctest-h8-p{i}"] = exc
    threads = [threading.Thread(target=place, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    placed = [r for r in results.values() if not isinstance(r, NoRoom)]
    refused = [r for r in results.values() if isinstance(r, NoRoom)]
    assert len(placed) == 3 * MAX_VMS and len(refused) == requests - 3 * MAX_VMS
    assert Counter(r.host for r in placed) == {"hv1": MAX_VMS, "hv2": MAX_VMS, "hv3": MAX_VMS}
    for host in ("hv1", "hv2", "hv3"):
        ports = [r.port for r in placed if r.host == host]
        assert len(set(ports)) == MAX_VMS and all(6100 <= p <= 6200 for p in ports)
    assert "5 of 5 VMs placed" in str(refused[0])
    # The ledger agrees: one row per placement, and a reopened ledger (a restarted manager) has the same rows.
    assert {r.domain for r in placement.rows()} == {r.domain for r in placed}
    placement.close()
    again = PlacementService(registry, str(tmp_path / "placements.sqlite3"))
    assert sorted(again.rows(), key=lambda r: r.domain) == sorted(placed, key=lambda r: r.domain)
    # Reservations whose jobs died with that manager are given back at start; their slots and ports are free again.
    assert sorted(again.release_reservations()) == sorted(r.domain for r in placed)
    assert again.reserve("ctest-h8-again", MEMORY)[0].port == 6100
    again.close()


def test_deadlines_survive_a_reopened_ledger_and_expired_domains_are_removed(registry, tmp_path):
    path = str(tmp_path / "placements.sqlite3")
    placement = PlacementService(registry, path)
    row, new = placement.reserve("ctest-h8-ttl", MEMORY, host="hv2", ttl=30)
    assert new and row.state == RESERVED and row.host == "hv2"
    confirmed = placement.confirm(row.domain, row.token, 30, row.host, row.port, row.memory)
    assert confirmed.state == PLACED and confirmed.expires_at == pytest.approx(time.time() + 30, abs=5)
    placement.close()

    reopened = PlacementService(registry, path)
    assert reopened.get("ctest-h8-ttl") == confirmed
    removed: list[tuple[str, str]] = []
    reaper = Reaper(reopened, lambda domain, host: removed.append((domain, host)))
    assert reaper.tick(now=time.time()) == [] and removed == []  # not yet due
    assert reaper.tick(now=confirmed.expires_at + 1) == ["ctest-h8-ttl"]
    assert removed == [("ctest-h8-ttl", "hv2")]
    reopened.close()


def test_a_placed_domain_that_vanished_from_its_host_is_forgotten(registry, tmp_path):
    placement = PlacementService(registry, str(tmp_path / "placements.sqlite3"))
    row, _ = placement.reserve("ctest-h8-never-defined", MEMORY, host="hv3")
    placement.confirm(row.domain, row.token, None, row.host, row.port, row.memory)
    assert placement.reconcile() == []  # the host's last check is older than the placement: no verdict yet
    deadline = time.monotonic() + 30
    while placement.get(row.domain) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        placement.reconcile()
    assert placement.get(row.domain) is None
    placement.close()


ADOPTED_XML = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
  <qemu:commandline><qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.24:6150-:7002'/>
  <qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0,addr=0x10'/></qemu:commandline>
</domain>"""


def test_a_domain_that_exists_stays_where_it_is_with_its_port(registry, tmp_path):
    # Defined (never started) outside the manager; all three test hosts read the same libvirtd, so all list it.
    name = f"ctest-h8-adopt-{os.getpid()}"
    conn = libvirt.open(URI)
    dom = conn.defineXML(ADOPTED_XML.format(name=name))
    try:
        placement = PlacementService(registry, str(tmp_path / "placements.sqlite3"))
        wait = time.monotonic() + 30
        while not all(any(d.name == name for d in h.snapshot.domains) for h in registry.hosts()):
            assert time.monotonic() < wait, "the health checks never listed the domain"
            time.sleep(0.2)
        with pytest.raises(RequestError, match="exists on hosts hv1, hv2, hv3: name one") as err:
            placement.reserve(name, MEMORY)
        assert err.value.status == 409
        row, new = placement.reserve(name, MEMORY, host="hv1")
        assert new and (row.host, row.port) == ("hv1", 6150)  # its own forward, not the range's first free port
        with pytest.raises(Conflict, match="placed on host hv1"):
            placement.reserve(name, MEMORY, host="hv2")
        placement.close()
    finally:
        dom.undefine()
        conn.close()


def test_single_host_api_hosts_and_refusals(tmp_path):
    """The default inventory's one host over HTTP and gRPC, and bad host and ttl values refused before anything."""
    with manager_server(make_config()) as mgr:
        status, _, body = request("GET", mgr.base + "/hosts")
        assert status == 200 and [h["name"] for h in body["hosts"]] == ["localhost"]
        host = body["hosts"][0]
        assert host["health"] == "reachable" and host["agent_address"] == "127.0.0.1" and host["max_vms"] == 10
        assert host["memory"]["total"] > 0 and host["agent_ports"]["first"] == 6100
        for payload, field in (({"host": "nowhere"}, "host"), ({"ttl": 0}, "ttl"), ({"ttl": "1h"}, "ttl")):
            status, _, reply = request("POST", mgr.base + "/domain", payload)
            assert status == 400 and reply["field"] == field, reply
        assert "no host 'nowhere' in the inventory (hosts: localhost)" in \
            request("POST", mgr.base + "/domain", {"host": "nowhere"})[2]["error"]
        status, _, listing = request("GET", mgr.base + "/domains")
        assert status == 200 and listing["unreachable_hosts"] == []
        assert all(d["host"] == "localhost" for d in listing["domains"])
        with grpc.insecure_channel(mgr.grpc_target) as chan:
            v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
            hosts = v1.ListHosts(manager_v1_pb2.ListHostsRequest(), timeout=30).hosts
            assert [(h.name, h.health) for h in hosts] == [("localhost", manager_v1_pb2.HOST_HEALTH_REACHABLE)]
            with pytest.raises(grpc.RpcError) as err:
                v1.CreateDomainAsync(manager_v1_pb2.CreateDomainRequest(host="nowhere"), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nowhere" in err.value.details()
