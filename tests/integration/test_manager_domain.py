"""POST /domain and friends on the real libvirtd: playbooks through ansible-runner, TCG guests, jobs and SSE.

Every object is named ctest-mgr-<random> and removed at the end; the guest boots no OS (its cdrom is a small
dummy file), so it costs little CPU while other areas' guests run.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import libvirt
import pytest
from manager_support import curl_shell, make_config, manager_server, request

from cocos_pb import manager_pb2, manager_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc
from tests.helpers import drop, drop_domain, drop_pool

pytestmark = pytest.mark.system
URI = "qemu:///system"
TEST_ROOT = Path("/var/lib/cocos-test/mgr")
# The original README's command, one line as there; the placeholders and the port are the only substitutions.
README_DOMAIN = """curl -i -X POST -H "Content-Type: application/json" localhost:9021/domain -d '{"pool":"<path/to/pool.xml>", "volume":"<path/to/vol.xml>", "domain":"<path/to/dom.xml>"}'"""  # noqa: E501


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_definitions(xml_dir: Path, tag: str, work: Path, fwd_port: int) -> dict:
    names = {"pool": f"ctest-mgr-pool-{tag}", "volume": "ctest-mgr-boot.qcow2", "domain": f"ctest-mgr-dom-{tag}"}
    dummy_iso = work / "iso" / "dummy.iso"
    dummy_iso.parent.mkdir()
    dummy_iso.write_bytes(b"\0" * 4096)
    (xml_dir / "pool.xml").write_text(
        f"<pool type='dir'><name>{names['pool']}</name><target><path>{work / 'img'}</path></target></pool>")
    (xml_dir / "vol.xml").write_text(
        f"<volume><name>{names['volume']}</name><capacity unit='MiB'>16</capacity>"
        "<target><format type='qcow2'/></target></volume>")
    (xml_dir / "dom.xml").write_text(f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{names['domain']}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dummy_iso}'/>
      <target dev='hdc' bus='ide'/><readonly/></disk>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
      <source pool='{names['pool']}' volume='{names['volume']}'/><target dev='vda' bus='virtio'/></disk>
    <serial type='pty'><log file='{work / 'log' / 'serial.log'}' append='off'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:{fwd_port}-:7002'/>
    <qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0,addr=0x10'/>
  </qemu:commandline>
</domain>""")
    return names


def policy_config(work: Path, **overrides):
    """The XML policy pointed at the test's own directory: storage under it, boot media in iso/, logs in log/."""
    return make_config(storage_roots=(str(work),), iso_roots=(str(work / "iso"),), log_dir=str(work / "log"),
                       **overrides)


def cleanup(names: dict) -> None:
    conn = libvirt.open(URI)
    try:
        drop(conn.lookupByName, names["domain"], drop_domain)
        drop(conn.storagePoolLookupByName, names["pool"], drop_pool)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def env():
    tag = uuid.uuid4().hex[:8]
    work = TEST_ROOT / f"run-{tag}"
    xml_dir = work / "xml"
    xml_dir.mkdir(parents=True)
    names = write_definitions(xml_dir, tag, work, free_port())
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        with manager_server(policy_config(work, xml_dir=str(xml_dir), libvirt_uri=URI, domain_timeout=300)) as mgr:
            yield mgr, names, xml_dir
    finally:
        cleanup(names)
        shutil.rmtree(work, ignore_errors=True)


def libvirt_state(names: dict) -> dict:
    conn = libvirt.openReadOnly(URI)
    try:
        out = {"domains": [d.name() for d in conn.listAllDomains() if d.name() == names["domain"]]}
        if out["domains"]:
            out["running"] = conn.lookupByName(names["domain"]).isActive() == 1
        try:
            out["volumes"] = conn.storagePoolLookupByName(names["pool"]).listVolumes()
        except libvirt.libvirtError:
            out["volumes"] = []
        return out
    finally:
        conn.close()


def jobs_for(mgr, target: str) -> list:
    return [j for j in mgr.services.store.list() if j.target == target]


def test_readme_domain_command_verbatim(env):
    mgr, names, xml_dir = env
    command = (README_DOMAIN.replace("localhost:9021", f"localhost:{mgr.http_port}")
               .replace("<path/to/pool.xml>", str(xml_dir / "pool.xml"))
               .replace("<path/to/vol.xml>", "vol.xml")  # relative: taken from CC_MANAGER_XML_DIR
               .replace("<path/to/dom.xml>", str(xml_dir / "dom.xml")))
    status, headers, body = curl_shell(command, timeout=300)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"name": names["domain"], "host": "localhost"}  # the inventory's one host
    state = libvirt_state(names)
    assert state["domains"] == [names["domain"]] and state["running"] and state["volumes"] == [names["volume"]]
    assert jobs_for(mgr, names["domain"])[-1].changed >= 3  # pool, volume, domain were all created


def test_repeat_reuses_the_domain_without_change(env):
    mgr, names, _ = env
    status, _, body = request("POST", mgr.base + "/domain", {"pool": "", "volume": "", "domain": ""}, timeout=300)
    assert status == 200 and body == {"name": names["domain"], "host": "localhost"}
    job = jobs_for(mgr, names["domain"])[-1]
    assert job.changed == 0, "\n".join(str(e) for e in job.events if "changed': True" in str(e))


def test_domain_listing_shows_forwarded_port(env):
    mgr, names, xml_dir = env
    status, _, body = request("GET", f"{mgr.base}/domains/{names['domain']}")
    assert status == 200 and body["state"] == "running"
    assert body["forwarded_ports"][0]["guest_port"] == 7002
    assert body["forwarded_ports"][0]["host_address"] == "127.0.0.1"
    _, _, listing = request("GET", mgr.base + "/domains")
    assert names["domain"] in [d["name"] for d in listing["domains"]]


def test_symlink_escape_is_refused(env):
    mgr, _, xml_dir = env
    link = xml_dir / "escape.xml"
    link.symlink_to("/etc/hostname")
    try:
        status, _, body = request("POST", mgr.base + "/domain", {"domain": "escape.xml"})
    finally:
        link.unlink()
    assert status == 400 and body["field"] == "domain" and "outside" in body["error"]
    assert str(xml_dir) not in body["error"]  # the rule is named, not the directory


def test_async_create_job_and_sse_events(env):
    mgr, names, _ = env
    status, headers, job = request("POST", mgr.base + "/domain?async=true", {})
    assert status == 202 and job["state"] in ("queued", "running") and headers["Location"] == f"/jobs/{job['id']}"
    with urllib.request.urlopen(f"{mgr.base}/jobs/{job['id']}/events", timeout=300) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(resp.read().decode())
    kinds = [e["event"] for e in events]
    assert "playbook_on_task_start" in kinds and "runner_on_ok" in kinds and kinds[-1] == "end"
    tasks = {e["data"].get("task") for e in events if e["event"] == "playbook_on_task_start"}
    assert "Domain is defined and running" in tasks
    final = events[-1]["data"]
    assert final["state"] == "successful" and final["changed"] == 0 and final["finished_at"] >= final["started_at"]
    _, _, again = request("GET", f"{mgr.base}/jobs/{job['id']}")
    assert again["state"] == "successful" and again["result"] == names["domain"]


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if "data" in fields:
            events.append({"event": fields.get("event", "message"), "data": json.loads(fields["data"])})
    return events


def test_delete_job_cancels(env):
    mgr, names, _ = env
    _, _, job = request("POST", mgr.base + "/domain?async=true", {})
    # At once: the job is running, its playbook guard may not have written its pid yet; the cancel must not be lost.
    status, _, body = request("DELETE", f"{mgr.base}/jobs/{job['id']}")
    assert status == 202
    final = wait_job(mgr, job["id"])
    assert final["state"] == "canceled" and final["error"]
    assert request("DELETE", f"{mgr.base}/jobs/{job['id']}")[0] == 409


def wait_job(mgr, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, _, body = request("GET", f"{mgr.base}/jobs/{job_id}")
        if body["state"] in ("successful", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not final after {timeout} s")


def test_grpc_create_domain_and_async_watch(env):
    mgr, names, _ = env
    with grpc.insecure_channel(mgr.grpc_target) as chan:
        reply = manager_pb2_grpc.ManagerServiceStub(chan).CreateDomain(manager_pb2.CreateDomainRequest(), timeout=300)
        assert reply.name == names["domain"]
        v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
        job = v1.CreateDomainAsync(manager_v1_pb2.CreateDomainRequest(domain="dom.xml", host="localhost"), timeout=30)
        assert job.host == "localhost"
        events = list(v1.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=300))
        assert events[-1].state == manager_v1_pb2.JOB_STATE_SUCCESSFUL
        assert any(e.type == "playbook_on_task_start" for e in events)


def test_delete_then_parallel_creates_converge_once(env):
    mgr, names, _ = env
    status, _, body = request("DELETE", f"{mgr.base}/domains/{names['domain']}", timeout=300)
    assert status == 200 and body == {"name": names["domain"], "host": "localhost", "deleted": True}
    state = libvirt_state(names)
    assert state["domains"] == [] and state["volumes"] == []
    assert request("DELETE", f"{mgr.base}/domains/{names['domain']}")[0] == 404

    before = len(jobs_for(mgr, names["domain"]))
    barrier = threading.Barrier(6)

    def create(_):
        barrier.wait()
        return request("POST", mgr.base + "/domain", {}, timeout=300)
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(create, range(6)))
    assert [r[0] for r in replies] == [200] * 6 and {r[2]["name"] for r in replies} == {names["domain"]}
    new_jobs = jobs_for(mgr, names["domain"])[before:]
    assert len(new_jobs) == 1 and new_jobs[0].kind == "create_domain" and new_jobs[0].changed >= 2
    state = libvirt_state(names)
    assert state["domains"] == [names["domain"]] and state["running"] and state["volumes"] == [names["volume"]]


def test_failed_playbook_reports_the_task(env):
    mgr, names, xml_dir = env
    bad = xml_dir / "bad-dom.xml"
    # Valid XML, invalid for libvirt: the failure comes from the domain task and must say so.
    bad.write_text(f"<domain type='qemu'><name>ctest-mgr-bad-{os.getpid()}</name><memory>0</memory></domain>")
    status, _, body = request("POST", mgr.base + "/domain", {"domain": "bad-dom.xml"}, timeout=300)
    assert status == 500 and "Domain is defined and running" in body["error"] and body["job_id"]


def test_grpc_cancel_job_stops_a_running_playbook(env):
    mgr, names, _ = env
    with grpc.insecure_channel(mgr.grpc_target) as chan:
        v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
        job = v1.CreateDomainAsync(manager_v1_pb2.CreateDomainRequest(), timeout=30)
        first = next(v1.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=300))
        assert first.state == manager_v1_pb2.JOB_STATE_RUNNING
        while not any(e["type"] == "playbook_on_task_start" for e in mgr.services.store.get(job.id).events):
            assert not mgr.services.store.get(job.id).done, "the playbook ended before a task started"
            time.sleep(0.05)  # polling the condition: ansible-playbook runs (its guard's pid is written)
        v1.CancelJob(manager_v1_pb2.CancelJobRequest(id=job.id), timeout=30)
        events = list(v1.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=300))
        assert events[-1].state == manager_v1_pb2.JOB_STATE_CANCELED
        got = v1.GetJob(manager_v1_pb2.GetJobRequest(id=job.id), timeout=10)
        assert got.state == manager_v1_pb2.JOB_STATE_CANCELED and got.error.startswith("canceled")
        # What the database holds. The error goes on after the final state to say what the rollback did
        # ("canceled; nothing to roll back ..."), so it is compared by what it starts with.
        row = mgr.services.store.db.load(job.id)
        assert row.state == "canceled" and row.error.startswith("canceled")
        with pytest.raises(grpc.RpcError) as err:
            v1.CancelJob(manager_v1_pb2.CancelJobRequest(id=job.id), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_grpc_list_domains_is_what_libvirt_has(env):
    mgr, names, _ = env
    request("POST", mgr.base + "/domain", {}, timeout=300)  # ours exists and runs, whatever ran before
    conn = libvirt.openReadOnly(URI)
    try:
        before = {d.name(): d for d in conn.listAllDomains()}
        with grpc.insecure_channel(mgr.grpc_target) as chan:
            reply = manager_v1_pb2_grpc.ManagerServiceStub(chan).ListDomains(manager_v1_pb2.ListDomainsRequest(),
                                                                             timeout=30)
        after = {d.name() for d in conn.listAllDomains()}
        ours = conn.lookupByName(names["domain"])
        uuid_, active = ours.UUIDString(), ours.isActive()
    finally:
        conn.close()
    listed = {d.name: d for d in reply.domains}
    # Other people's domains come and go on this libvirtd: what existed throughout must be listed, nothing else.
    assert set(before) & after <= set(listed) <= set(before) | after
    assert list(reply.unreachable_hosts) == []
    mine = listed[names["domain"]]
    assert active and (mine.uuid, mine.state, mine.host) == (uuid_, "running", "localhost")
    assert [(p.guest_port, p.host_address) for p in mine.forwarded_ports] == [(7002, "127.0.0.1")]


def test_grpc_delete_domain_removes_it_from_libvirt(env):
    mgr, names, _ = env
    request("POST", mgr.base + "/domain", {}, timeout=300)
    assert libvirt_state(names)["domains"] == [names["domain"]]
    with grpc.insecure_channel(mgr.grpc_target) as chan:
        v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
        job = v1.DeleteDomain(manager_v1_pb2.DeleteDomainRequest(name=names["domain"]), timeout=30)
        assert (job.kind, job.target, job.host) == ("delete_domain", names["domain"], "localhost")
        events = list(v1.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=300))
        assert events[-1].state == manager_v1_pb2.JOB_STATE_SUCCESSFUL, [e.message for e in events[-3:]]
        state = libvirt_state(names)
        assert state["domains"] == [] and state["volumes"] == []
        listed = v1.ListDomains(manager_v1_pb2.ListDomainsRequest(), timeout=30)
        assert names["domain"] not in [d.name for d in listed.domains]
        with pytest.raises(grpc.RpcError) as err:
            v1.DeleteDomain(manager_v1_pb2.DeleteDomainRequest(name=names["domain"]), timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            v1.DeleteDomain(manager_v1_pb2.DeleteDomainRequest(name="../etc"), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
