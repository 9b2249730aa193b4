"""The manager as a real process under faults (issue 9, cases 5-7): a flood of runs to a dead agent, SIGTERM while
work runs, kill -9 in the middle of a job, and two different definitions for one domain at once.

The domain playbooks run from a copy of playbooks/ whose domain.yml waits for a file after the volume step, so a
job is reliably caught half done; everything else (guard, runner, recovery, rollback playbook) is the product's.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import pytest
from manager_support import request

from manager_api.config import ROOT
from module_utils.cocos_libvirt import domain_xml, xmlcanon
from tests.helpers import drop, drop_domain, drop_pool

pytestmark = pytest.mark.system
URI = "qemu:///system"
TEST_ROOT = Path("/var/lib/cocos-test/h3")
RUN = {"name": "r", "owner": "o", "datasets": ["d"], "algorithms": ["a"], "ttl": 5}
HOLD = """
        - name: Hold here until the test releases the job
          ansible.builtin.wait_for:
            path: "{{ lookup('ansible.builtin.env', 'COCOS_TEST_RELEASE') }}"
            timeout: 600

"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagerProcess:
    def __init__(self, env: dict) -> None:
        full = {**os.environ, "CC_MANAGER_HTTP_HOST": "127.0.0.1", "CC_MANAGER_HTTP_PORT": "0",
                "CC_MANAGER_GRPC_HOST": "127.0.0.1", "CC_MANAGER_GRPC_PORT": "0", "CC_MANAGER_LIBVIRT_URI": URI,
                **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "manager_api"], cwd=ROOT, env=full,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        started = self._wait_for("manager started")
        self.base = f"http://127.0.0.1:{started['http_port']}"
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for(self, msg: str) -> dict:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            entry = _entry(line)
            self.lines.append(entry)
            if entry.get("msg") == msg:
                return entry
        raise AssertionError(f"manager did not log {msg!r}: {self.lines[-5:]}")

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(_entry(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then the exit status within `timeout` seconds; None (and SIGKILL) when it did not stop."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None


def _entry(line: str) -> dict:
    """A JSON log line, or the raw text of anything else the process printed (kept for failure messages)."""
    try:
        return json.loads(line)
    except ValueError:
        return {"raw": line}


@pytest.fixture
def work():
    tag = uuid.uuid4().hex[:8]
    path = TEST_ROOT / f"faults-{tag}"
    for sub in ("xml", "storage", "iso", "log", "state"):
        (path / sub).mkdir(parents=True)
    playbooks = path / "playbooks"
    shutil.copytree(ROOT / "playbooks", playbooks)
    domain = (playbooks / "domain.yml").read_text()
    marker = "        # A domain this task defines but cannot start"
    assert marker in domain
    (playbooks / "domain.yml").write_text(domain.replace(marker, HOLD.strip("\n") + "\n\n" + marker, 1))
    libvirt.registerErrorHandler(lambda *_: None, None)
    names = {"pool": f"ctest-h3-{tag}-pool", "volume": f"ctest-h3-{tag}.qcow2", "domain": f"ctest-h3-{tag}-dom"}
    for memory, suffix in ((128, ""), (96, "-small")):
        write_definitions(path, names, memory, suffix)
    try:
        yield path, names, tag
    finally:
        (path / "release").touch()
        conn = libvirt.open(URI)
        try:
            drop(conn.lookupByName, names["domain"], drop_domain)
            drop(conn.storagePoolLookupByName, names["pool"], drop_pool)
        finally:
            conn.close()
        shutil.rmtree(path, ignore_errors=True)


def write_definitions(work: Path, names: dict, memory: int, suffix: str) -> None:
    xml = work / "xml"
    (xml / "pool.xml").write_text(f"<pool type='dir'><name>{names['pool']}</name>"
                                  f"<target><path>{work / 'storage' / 'img'}</path></target></pool>")
    (xml / "vol.xml").write_text(f"<volume><name>{names['volume']}</name><capacity unit='MiB'>8</capacity>"
                                 "<target><format type='qcow2'/></target></volume>")
    (xml / f"dom{suffix}.xml").write_text(f"""<domain type='qemu'><name>{names['domain']}</name>
  <memory unit='MiB'>{memory}</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
    <source pool='{names['pool']}' volume='{names['volume']}'/><target dev='vda' bus='virtio'/></disk>
    <memballoon model='none'/></devices></domain>""")


def manager_env(work: Path, **extra: str) -> dict:
    return {"CC_MANAGER_XML_DIR": str(work / "xml"), "CC_MANAGER_STATE_DIR": str(work / "state"),
            "CC_MANAGER_STORAGE_ROOTS": str(work / "storage"), "CC_MANAGER_ISO_ROOTS": str(work / "iso"),
            "CC_MANAGER_LOG_DIR": str(work / "log"), "CC_MANAGER_PLAYBOOK_DIR": str(work / "playbooks"),
            "COCOS_TEST_RELEASE": str(work / "release"), **extra}


def libvirt_has(names: dict) -> dict:
    conn = libvirt.openReadOnly(URI)
    try:
        pools = [p.name() for p in conn.listAllStoragePools()]
        out = {"domain": names["domain"] in [d.name() for d in conn.listAllDomains()], "pool": names["pool"] in pools,
               "volume": False}
        if out["pool"]:
            pool = conn.storagePoolLookupByName(names["pool"])
            out["volume"] = pool.isActive() == 1 and names["volume"] in pool.listVolumes()
        return out
    finally:
        conn.close()


def playbook_processes(state_dir: Path) -> list[str]:
    """Processes whose command line mentions a job directory of this manager (guard, ansible-playbook, workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmdline:
            found.append(f"{entry}: {cmdline[:120]}")
    return found


def wait_until(condition, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    return condition()


def test_kill_9_mid_job_leaves_no_playbook_and_a_restart_fails_and_rolls_it_back(work):
    path, names, _ = work
    mgr = ManagerProcess(manager_env(path))
    try:
        status, _, job = request("POST", mgr.base + "/domain?async=true", {})
        assert status == 202, job
        assert wait_until(lambda: libvirt_has(names)["volume"], 240), "the job never created its volume"
        assert playbook_processes(path / "state"), "the playbook should be running now"
        mgr.proc.send_signal(signal.SIGKILL)
        mgr.proc.wait()
        leftover = wait_until(lambda: not playbook_processes(path / "state"), 15)
        assert leftover, playbook_processes(path / "state")
    finally:
        mgr.stop()
    mgr = ManagerProcess(manager_env(path))
    try:
        assert job["id"] in next(e for e in mgr.lines if e["msg"] == "manager started")["interrupted_jobs"]
        _, _, listing = request("GET", mgr.base + "/jobs")
        found = next(j for j in listing["jobs"] if j["id"] == job["id"])
        assert found["state"] == "failed" and found["error"].startswith("interrupted: the manager stopped"), found

        def rolled_back():
            again = request("GET", f"{mgr.base}/jobs/{job['id']}")[2]
            return again if "rolled back by job" in again["error"] else None
        final = wait_until(rolled_back, 240)
        assert final, request("GET", f"{mgr.base}/jobs/{job['id']}")[2]
        assert f"removed volume {names['volume']}, pool {names['pool']}" in final["error"], final["error"]
        assert "kept nothing" in final["error"]
        assert libvirt_has(names) == {"domain": False, "pool": False, "volume": False}
        rollback = next(j for j in request("GET", mgr.base + "/jobs")[2]["jobs"] if j["kind"] == "rollback_domain")
        assert rollback["state"] == "successful"
        assert os.listdir(path / "state" / "run") == []  # no directory holding the request's XML is left
        # The startup rollback ran a playbook from the main thread, where ansible-runner once took SIGTERM for itself.
        assert mgr.terminate(15) == 0, "the manager ignored SIGTERM after its startup rollback"
    finally:
        mgr.stop()


def test_a_different_definition_for_a_busy_domain_is_409_an_identical_one_joins(work):
    path, names, _ = work
    mgr = ManagerProcess(manager_env(path))
    try:
        status, _, first = request("POST", mgr.base + "/domain?async=true", {"domain": "dom.xml"})
        assert status == 202
        status, _, same = request("POST", mgr.base + "/domain?async=true", {"domain": "dom.xml"})
        assert status == 202 and same["id"] == first["id"]
        status, _, other = request("POST", mgr.base + "/domain?async=true", {"domain": "dom-small.xml"})
        assert status == 409 and other["job_id"] == first["id"] and "different definition" in other["error"]
        (path / "release").touch()
        status, _, body = request("POST", mgr.base + "/domain", {"domain": "dom.xml"}, timeout=300)
        assert status == 200 and body == {"name": names["domain"], "host": "localhost"}
        _, _, done = request("GET", f"{mgr.base}/jobs/{first['id']}")
        assert done["state"] == "successful"
        # Once the first job is over, the other definition is applied by a job of its own.
        status, _, body = request("POST", mgr.base + "/domain", {"domain": "dom-small.xml"}, timeout=300)
        assert status == 200, body
    finally:
        mgr.stop()
    conn = libvirt.openReadOnly(URI)
    try:
        inactive = conn.lookupByName(names["domain"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    assert domain_xml.memory_bytes(xmlcanon.parse(inactive, "domain")) == 96 * 1024 * 1024


def test_flood_of_runs_to_a_dead_agent_leaves_health_fast_and_sigterm_stops_within_10_s(work):
    path, _, _ = work
    mgr = ManagerProcess(manager_env(path, CC_MANAGER_AGENT_GRPC_URL=f"127.0.0.1:{free_port()}",
                                     CC_MANAGER_AGENT_RETRY_TOTAL="30"))
    try:
        results: list = []

        def one(_):
            start = time.monotonic()
            status, headers, _ = request("POST", mgr.base + "/run", RUN, timeout=90)
            results.append((status, headers.get("Retry-After"), time.monotonic() - start))
        pool = ThreadPoolExecutor(40)
        futures = [pool.submit(one, i) for i in range(40)]
        # Until every request beyond the agent-call bound has its answer: the bound is full, 8 calls are waiting.
        assert wait_until(lambda: len([r for r in results if r[0] == 503]) >= 40 - 8, 30), results
        for _ in range(5):
            start = time.monotonic()
            assert request("GET", mgr.base + "/health", timeout=5)[0] == 200
            assert time.monotonic() - start < 1.0
            time.sleep(0.2)
        refused = [r for r in results if r[0] == 503]
        assert len(refused) >= 40 - 8, results  # beyond CC_MANAGER_MAX_AGENT_CALLS (8): refused at once
        assert all(r[1] == "5" and r[2] < 3.0 for r in refused), refused
        start = time.monotonic()
        mgr.proc.send_signal(signal.SIGTERM)
        mgr.proc.wait(timeout=15)
        assert time.monotonic() - start < 10.0 and mgr.proc.returncode == 0
        for future in futures:
            future.result(timeout=30)  # the waiting calls ended too (503 or a closed connection)
        pool.shutdown()
    finally:
        mgr.stop()


def test_runs_queued_behind_a_dead_agent_fail_within_two_budgets_not_one_after_another(work):
    """Admitted calls to one agent take turns. Behind an unreachable one, each used to wait its own whole budget in
    turn (the 8th answered after 280 s, saying "not reachable within 30 s"): now a turn that does not come within the
    budget fails at once, saying the agent is busy."""
    path, _, _ = work
    budget = 3.0
    mgr = ManagerProcess(manager_env(path, CC_MANAGER_AGENT_GRPC_URL=f"127.0.0.1:{free_port()}",
                                     CC_MANAGER_AGENT_RETRY_TOTAL=str(budget)))
    try:
        def one(_):
            start = time.monotonic()
            status, _, body = request("POST", mgr.base + "/run", RUN, timeout=60)
            return status, body.get("error", ""), time.monotonic() - start
        with ThreadPoolExecutor(4) as pool:  # within the admission bound (8): all four are admitted
            results = list(pool.map(one, range(4)))
        assert all(status == 503 for status, _, _ in results), results
        # The caller whose turn it is waits for the agent up to its deadline (budget + the 5 s call timeout); one
        # after another, the fourth answered after four such waits (32 s). Those queued fail within one budget.
        seconds = sorted(seconds for _, _, seconds in results)
        assert seconds[-1] < budget + 5 + 2 and seconds[-2] < budget + 1.5, results
        assert sum("is busy" in error for _, error, _ in results) == 3, results
    finally:
        mgr.stop()


def test_sigterm_cancels_a_running_job_and_the_next_start_rolls_it_back(work):
    path, names, _ = work
    mgr = ManagerProcess(manager_env(path))
    try:
        status, _, job = request("POST", mgr.base + "/domain?async=true", {})
        assert status == 202
        assert wait_until(lambda: libvirt_has(names)["volume"], 240)
        start = time.monotonic()
        mgr.proc.send_signal(signal.SIGTERM)
        mgr.proc.wait(timeout=15)
        assert time.monotonic() - start < 10.0
        assert wait_until(lambda: not playbook_processes(path / "state"), 5), playbook_processes(path / "state")
    finally:
        mgr.stop()
    mgr = ManagerProcess(manager_env(path))
    try:
        final = wait_until(lambda: (lambda j: j if "rolled back by job" in j["error"] else None)(
            request("GET", f"{mgr.base}/jobs/{job['id']}")[2]), 240)
        assert final and final["state"] in ("canceled", "failed"), request("GET", f"{mgr.base}/jobs/{job['id']}")[2]
        assert libvirt_has(names) == {"domain": False, "pool": False, "volume": False}
    finally:
        mgr.stop()
