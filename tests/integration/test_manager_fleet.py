"""The manager over a fleet of three test hypervisors (scripts/fleet.sh, reached over qemu+ssh as real hosts are),
as real processes: placement of three VMs on three hosts, concurrent requests for the last slots, a computation on
the one that boots the guest, a ttl that outlives a manager restart, and a host taken down while the others keep
being served and requests for it get 503 naming it.

Every host takes one VM (CC_MANAGER_MAX_VMS=1), so the fourth concurrent request must be refused and no host may be
overfilled. Only one guest boots an OS (direct kernel boot, TCG); the others start from a dummy cdrom and idle.
Objects are named ctest-h8-*, live inside the fleet's own hosts, and go with `fleet.sh down`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import libvirt
import pytest
from manager_support import request
from run_support import DATASET_A, DATASET_B, EXPECTED, SUM_ALGORITHM, run_body

from cocos_pb import manager_v1_pb2, manager_v1_pb2_grpc
from guest.e2e import ManagerProcess, dead_loopback_port, start_manager_process
from guest.fleet import WORK_ROOT, Fleet, fleet_down, fleet_up, write_definitions
from guest.vm import wait_for_agent
from manager_api.client import ManagerClient
from manager_api.placement import METADATA_NS

pytestmark = [pytest.mark.system, pytest.mark.vm]
HOSTS = ("hv1", "hv2", "hv3")
BOOTS, DUMMIES = "ctest-h8-a", ("ctest-h8-b", "ctest-h8-c", "ctest-h8-d")
LATE = "ctest-h8-e"
AGENT_TIMEOUT = 300  # direct kernel boot to agent under TCG on a loaded 2-core machine
JOB_TIMEOUT = 300
TTL = 45


class Loop:
    """What the tests share: the fleet, the manager process (restarted once) and where each VM went."""

    def __init__(self, fleet: Fleet, work: Path) -> None:
        self.fleet = fleet
        self.work = work
        self.manager: ManagerProcess | None = None
        self.placed: dict[str, dict] = {}  # domain -> its GET /domains/{name} entry

    def start(self) -> None:
        self.manager = start_manager_process(self.work / f"manager-{time.time():.0f}.log", {
            "CC_MANAGER_LIBVIRT_URI": "", "CC_MANAGER_INVENTORY": str(self.fleet.inventory),
            "CC_MANAGER_MAX_VMS": "1", "CC_MANAGER_XML_DIR": str(self.work / "xml"),
            "CC_MANAGER_STATE_DIR": str(self.work / "state"),
            "CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{dead_loopback_port()}",
            "CC_MANAGER_STORAGE_ROOTS": "/var/lib/cocos", "CC_MANAGER_ISO_ROOTS": "/var/lib/cocos/iso",
            "CC_MANAGER_LOG_DIR": "/var/lib/cocos/log", "CC_MANAGER_DOMAIN_TIMEOUT": str(JOB_TIMEOUT),
            "CC_MANAGER_AGENT_RETRY_TOTAL": "60"}, timeout=120)

    @property
    def base(self) -> str:
        assert self.manager is not None
        return self.manager.base

    def get(self, path: str) -> tuple[int, dict]:
        status, _, body = request("GET", self.base + path, timeout=60)
        return status, body

    def create(self, name: str, **extra: object) -> tuple[int, dict]:
        status, _, body = request("POST", self.base + "/domain?async=true",
                                  {"pool": "pool.xml", "volume": f"vol-{name}.xml", "domain": f"dom-{name}.xml",
                                   **extra}, timeout=120)
        return status, body

    def wait_job(self, job_id: str) -> dict:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            status, job = self.get(f"/jobs/{job_id}")
            if job["state"] in ("successful", "failed", "canceled"):
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not final after {JOB_TIMEOUT} s")

    def hosts(self) -> dict[str, dict]:
        return {h["name"]: h for h in self.get("/hosts")[1]["hosts"]}


def wait_until(what: str, condition, timeout: float) -> float:
    """Seconds until condition() is true; AssertionError naming `what` after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def loop():
    if not (Path(__file__).resolve().parents[2] / "build" / "guest" / "vmlinuz").exists():
        pytest.fail("build/guest/vmlinuz is missing: run 'make guest' first (make test does)")
    work = WORK_ROOT / f"mgr-{os.getpid()}"
    write_definitions(work / "xml", {BOOTS: True, **{name: False for name in (*DUMMIES, LATE)}})
    fleet = fleet_up(3)
    state = Loop(fleet, work)
    try:
        state.start()
        yield state
    finally:
        if state.manager is not None:
            state.manager.stop()
        print(fleet_down(fleet))
        leftovers = [d for d in (fleet.dir,) if d.exists()]
        shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"fleet.sh down left {leftovers}"


def test_1_hosts_are_listed_reachable_with_their_capacity(loop):
    hosts = loop.hosts()
    assert list(hosts) == list(HOSTS)
    for name, host in hosts.items():
        assert host["health"] == "reachable" and host["vms"] == 0 and host["max_vms"] == 1, host
        assert host["agent_address"] == loop.fleet.address(name)
        assert host["agent_ports"] == {"first": 6100, "last": 6200, "used": []}
        assert host["memory"]["total"] >= host["memory"]["free"] > 0 and host["memory"]["available"] > 0


def test_2_three_vms_land_on_three_hosts_and_concurrent_requests_never_overfill(loop):
    status, first = loop.create(BOOTS)
    assert status == 202 and first["host"] in HOSTS, first
    with ThreadPoolExecutor(len(DUMMIES)) as pool:  # three requests for the two hosts left, at once
        replies = dict(zip(DUMMIES, pool.map(loop.create, DUMMIES), strict=True))
    accepted = {name: body for name, (status, body) in replies.items() if status == 202}
    refused = [body for status, body in replies.values() if status != 202]
    assert len(accepted) == 2 and len(refused) == 1, replies
    assert refused[0]["status"] == 503 and "no host has room" in refused[0]["error"]
    assert "1 of 1 VMs placed" in refused[0]["error"]
    jobs = {BOOTS: first, **accepted}
    assert {job["host"] for job in jobs.values()} == set(HOSTS)  # one per host
    for name, job in jobs.items():
        final = loop.wait_job(job["id"])
        assert final["state"] == "successful", final
        status, found = loop.get(f"/domains/{name}")
        assert status == 200 and found["host"] == job["host"] and found["state"] == "running", found
        loop.placed[name] = found
    for name, found in loop.placed.items():
        address = loop.fleet.address(found["host"])
        forward = next(f for f in found["forwarded_ports"] if f["guest_port"] == 7002)
        # The manager wrote the host's own loopback address and a port of its range into the definition.
        assert forward["host_address"] == address and forward["host_port"] == found["agent_port"]
        assert 6100 <= forward["host_port"] <= 6200
        conn = libvirt.openReadOnly(loop.fleet.socket_uri(found["host"]))
        try:
            recorded = conn.lookupByName(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        finally:
            conn.close()
        assert f'host="{found["host"]}"' in recorded and f'agent-port="{found["agent_port"]}"' in recorded
    status, listing = loop.get("/domains")
    assert status == 200 and listing["unreachable_hosts"] == []
    assert {d["name"]: d["host"] for d in listing["domains"] if d["name"].startswith("ctest-h8-")} == \
        {name: found["host"] for name, found in loop.placed.items()}
    assert all(h["vms"] == 1 for h in loop.hosts().values())


def test_3_a_ttl_outlives_a_restart_of_the_manager(loop):
    dummy = next(name for name in loop.placed if name != BOOTS)
    host = loop.placed[dummy]["host"]
    status, _, body = request("DELETE", f"{loop.base}/domains/{dummy}", timeout=JOB_TIMEOUT)
    assert status == 200 and body == {"name": dummy, "host": host, "deleted": True}
    del loop.placed[dummy]
    status, job = loop.create(LATE, ttl=TTL)  # the only host with room now
    assert status == 202 and job["host"] == host, job
    assert loop.wait_job(job["id"])["state"] == "successful"
    _, late = loop.get(f"/domains/{LATE}")
    assert late["ttl"] == TTL and late["expires_at"] > time.time()

    assert loop.manager is not None and loop.manager.stop() == 0
    loop.start()
    # Placements, ports and the deadline came back from the state directory: every host is still full.
    status, again = loop.get(f"/domains/{LATE}")
    assert status == 200, again
    assert (again["host"], again["agent_port"], again["expires_at"]) == (host, late["agent_port"], late["expires_at"])
    assert all(h["vms"] == 1 for h in loop.hosts().values())
    status, body = loop.create(dummy)
    assert status == 503 and "no host has room" in body["error"], body
    # The removal is a delete job: libvirt loses the domain first, the ledger forgets it when the job ends.
    waited = wait_until(f"{LATE} removed after its ttl",
                        lambda: loop.get(f"/domains/{LATE}")[0] == 404 and loop.hosts()[host]["vms"] == 0,
                        late["expires_at"] - time.time() + 180)
    print(f"{LATE} gone {waited:.1f} s after the restart's checks (ttl {TTL} s)")
    assert not [j for j in loop.get("/jobs")[1]["jobs"] if j["target"] == LATE and j["state"] == "failed"]


def test_4_a_computation_runs_in_the_vm_at_its_hosts_address(loop):
    found = loop.placed[BOOTS]
    address = loop.fleet.address(found["host"])
    waited = wait_for_agent(found["agent_port"], AGENT_TIMEOUT, address)
    print(f"agent on {address}:{found['agent_port']} SERVING after {waited:.1f} s more")
    client = ManagerClient(loop.base)
    run_id = client.run(run_body(domain=BOOTS))
    status = client.run_status(run_id)
    assert status["agent"] == f"{address}:{found['agent_port']}" and status["host"] == found["host"]
    client.upload_algorithm(run_id, SUM_ALGORITHM)
    for dataset in (DATASET_A, DATASET_B):
        client.upload_dataset(run_id, dataset)
    assert client.result(run_id) == EXPECTED


def test_5_a_host_taken_down_is_unreachable_its_requests_get_503_and_the_others_keep_working(loop):
    down = next(found["host"] for name, found in loop.placed.items() if name != BOOTS)
    victim = next(name for name, found in loop.placed.items() if found["host"] == down)
    for daemon in ("sshd", "libvirtd"):  # the host's libvirt and its way in both go
        os.kill(loop.fleet.pid(down, daemon), signal.SIGKILL)
    waited = wait_until(f"{down} marked unreachable", lambda: loop.hosts()[down]["health"] == "unreachable", 60)
    print(f"{down} unreachable {waited:.1f} s after its libvirtd and sshd were killed")
    hosts = loop.hosts()
    assert hosts[down]["error"] and all(h["health"] == "reachable" for n, h in hosts.items() if n != down)

    status, body = loop.get(f"/domains/{victim}")
    assert status == 503 and body["host"] == down and f"host {down} is unreachable" in body["error"], body
    status, _, body = request("DELETE", f"{loop.base}/domains/{victim}")
    assert status == 503 and body["host"] == down
    status, body = loop.create(victim, host=down)
    assert status == 503 and body["host"] == down
    status, listing = loop.get("/domains")
    assert status == 200 and listing["unreachable_hosts"] == [down], listing
    states = {d["name"]: d["state"] for d in listing["domains"] if d["name"].startswith("ctest-h8-")}
    assert states[victim] == "unknown" and states[BOOTS] == "running"

    # The other hosts' VMs keep being served: a whole run on the guest again.
    client = ManagerClient(loop.base)
    run_id = client.run(run_body(domain=BOOTS))
    client.upload_algorithm(run_id, SUM_ALGORITHM)
    for dataset in (DATASET_A, DATASET_B):
        client.upload_dataset(run_id, dataset)
    assert client.result(run_id) == EXPECTED

    assert loop.manager is not None
    with grpc.insecure_channel(f"127.0.0.1:{loop.manager.grpc_port}") as chan:
        v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
        health = {h.name: h.health for h in v1.ListHosts(manager_v1_pb2.ListHostsRequest(), timeout=30).hosts}
        assert health[down] == manager_v1_pb2.HOST_HEALTH_UNREACHABLE
        with pytest.raises(grpc.RpcError) as err:
            v1.GetDomain(manager_v1_pb2.GetDomainRequest(name=victim), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and f"host {down}" in err.value.details()
        assert v1.GetDomain(manager_v1_pb2.GetDomainRequest(name=BOOTS), timeout=30).host == loop.placed[BOOTS]["host"]
    _, _, metrics = request("GET", loop.base + "/metrics")
    assert f'cocos_manager_host_up{{host="{down}"}} 0.0' in metrics
    assert f'cocos_manager_host_up{{host="{loop.placed[BOOTS]["host"]}"}} 1.0' in metrics
    print(json.dumps(loop.hosts()[down]))
