"""Manager benchmark: /run forwarding overhead against calling the agent directly, and POST /domain when converged.

Three processes, as in production: a minimal agent (this file with --serve-agent), the manager
(`python -m manager_api`) and this client. Everything stays on 127.0.0.1 with ephemeral ports.

    .venv/bin/python bench/manager_forwarding.py [--calls 1000] [--clients 8] [--domain-runs 5] [--no-domain]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocos_pb import agent_pb2, agent_pb2_grpc, manager_pb2, manager_pb2_grpc  # noqa: E402

RUN = {"name": "bench", "description": "forwarding benchmark", "owner": "bench", "datasets": ["d1", "d2"],
       "algorithms": ["a1"], "dataset_providers": ["p1"], "algorithm_providers": ["p2"],
       "result_consumers": ["c1"], "ttl": 3600}
BENCH_ROOT = Path("/var/lib/cocos-test/mgr")


class EchoAgent(agent_pb2_grpc.AgentServiceServicer):
    """Parses the computation and answers with its id: the work any agent does before queuing a run."""

    def Run(self, request, context):
        return agent_pb2.RunResponse(Computation=json.loads(request.computation)["id"])


def serve_agent() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(EchoAgent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()  # SIGTERM from the benchmark ends the process


def start_agent() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-agent"], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def start_manager(agent_port: int, xml_dir: str | None) -> tuple[subprocess.Popen, int, int]:
    env = {**os.environ, "CC_MANAGER_HTTP_HOST": "127.0.0.1", "CC_MANAGER_HTTP_PORT": "0",
           "CC_MANAGER_GRPC_HOST": "127.0.0.1", "CC_MANAGER_GRPC_PORT": "0",
           # info, as in production: one JSON access line per request is part of the measured cost.
           "CC_MANAGER_LOG_LEVEL": "info", "CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{agent_port}"}
    if xml_dir:  # the domain fixture's directory: storage root and the manager's state (job database)
        work = os.path.dirname(xml_dir)
        env.update({"CC_MANAGER_XML_DIR": xml_dir, "CC_MANAGER_STORAGE_ROOTS": work,
                    "CC_MANAGER_STATE_DIR": os.path.join(work, "state"),
                    "CC_MANAGER_ISO_ROOTS": os.path.join(work, "iso"), "CC_MANAGER_LOG_DIR": os.path.join(work, "log")})
    else:
        env["CC_MANAGER_STATE_DIR"] = str(BENCH_ROOT / f"state-{uuid.uuid4().hex[:8]}")
    proc = subprocess.Popen([sys.executable, "-m", "manager_api"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    while True:
        entry = json.loads(proc.stderr.readline())
        if entry["msg"] == "manager started":
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain logs so the pipe never fills
            return proc, entry["http_port"], entry["grpc_port"]


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000  # noqa: E731
    return {"p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3), "n": len(ordered)}


def direct_caller(agent_port: int):
    channel = grpc.insecure_channel(f"127.0.0.1:{agent_port}")
    stub = agent_pb2_grpc.AgentServiceStub(channel)

    def call():
        doc = {**RUN, "id": str(uuid.uuid4()), "metadata": {}}
        stub.Run(agent_pb2.RunRequest(computation=json.dumps(doc).encode()), timeout=10)
    return call


def http_caller(http_port: int):
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)  # keep-alive, as curl loops would not
    body = json.dumps(RUN)

    def call():
        conn.request("POST", "/run", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/run answered {resp.status}: {payload[:200]!r}")
    return call


def grpc_caller(grpc_port: int):
    stub = manager_pb2_grpc.ManagerServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
    request = manager_pb2.RunRequest(**RUN)

    def call():
        stub.Run(request, timeout=10)
    return call


def latency(call, calls: int) -> dict:
    for _ in range(min(50, calls)):  # warm up: connections, caches
        call()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def throughput(make_call, clients: int, calls: int) -> float:
    callers = [make_call() for _ in range(clients)]
    per_client = calls // clients

    def work(call):
        for _ in range(per_client):
            call()
    start = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, callers))
    return round(per_client * clients / (time.perf_counter() - start), 1)


def domain_fixture() -> tuple[Path, dict]:
    tag = uuid.uuid4().hex[:8]
    work = BENCH_ROOT / f"bench-{tag}"
    (work / "xml").mkdir(parents=True)
    (work / "dummy.iso").write_bytes(b"\0" * 4096)
    names = {"pool": f"ctest-mgr-bench-{tag}", "domain": f"ctest-mgr-bench-{tag}"}
    (work / "xml" / "pool.xml").write_text(
        f"<pool type='dir'><name>{names['pool']}</name><target><path>{work / 'img'}</path></target></pool>")
    (work / "xml" / "vol.xml").write_text("<volume><name>boot.qcow2</name><capacity unit='MiB'>16</capacity>"
                                          "<target><format type='qcow2'/></target></volume>")
    (work / "xml" / "dom.xml").write_text(
        f"<domain type='qemu'><name>{names['domain']}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><devices>"
        f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='{names['pool']}' "
        "volume='boot.qcow2'/><target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices></domain>")
    return work, names


def domain_latency(http_port: int, runs: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=600)
    samples = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        conn.request("POST", "/domain", body="{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/domain answered {resp.status}: {payload[:300]!r}")
        if i:  # the first run creates; the rest are the converged case being measured
            samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def remove_domain(names: dict, work: Path) -> None:
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open("qemu:///system")
    try:
        for finish in (lambda: _drop_domain(conn.lookupByName(names["domain"])),
                       lambda: _drop_pool(conn.storagePoolLookupByName(names["pool"]))):
            try:
                finish()
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()
        shutil.rmtree(work, ignore_errors=True)


def _drop_domain(dom) -> None:
    if dom.isActive():
        dom.destroy()
    dom.undefine()


def _drop_pool(pool) -> None:
    for vol in pool.listAllVolumes():
        vol.delete()
    pool.destroy()
    pool.undefine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-agent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--domain-runs", type=int, default=5)
    parser.add_argument("--no-domain", action="store_true")
    args = parser.parse_args()
    if args.serve_agent:
        return serve_agent()
    agent, agent_port = start_agent()
    work, names = (None, None) if args.no_domain else domain_fixture()
    manager, http_port, grpc_port = start_manager(agent_port, str(work / "xml") if work else None)
    results: dict = {}
    try:
        results["direct_agent"] = latency(direct_caller(agent_port), args.calls)
        results["http_run"] = latency(http_caller(http_port), args.calls)
        results["grpc_run"] = latency(grpc_caller(grpc_port), args.calls)
        results["overhead_p50_ms"] = {k: round(results[k]["p50_ms"] - results["direct_agent"]["p50_ms"], 3)
                                      for k in ("http_run", "grpc_run")}
        total = args.calls * 2
        results["throughput_rps"] = {
            "clients": args.clients,
            "direct_agent": throughput(lambda: direct_caller(agent_port), args.clients, total),
            "http_run": throughput(lambda: http_caller(http_port), args.clients, total),
            "grpc_run": throughput(lambda: grpc_caller(grpc_port), args.clients, total)}
        if work:
            results["post_domain_converged"] = domain_latency(http_port, args.domain_runs)
    finally:
        manager.send_signal(signal.SIGTERM)
        manager.wait(20)
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        if work:
            remove_domain(names, work)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
