"""End-to-end benchmark: POST /domain to agent ready, and POST /run to result, split into phases.

Per round, on the real libvirtd with a fresh `ctest-e2e-` TCG guest (one at a time: 2 shared cores):
  define  POST /domain?async=true until the job is final: playbook start-up, pool and volume (`prepare`), then
          the libvirt_domain task that defines and starts the domain (`define+start`)
  boot    domain started → COCOS-GUEST-READY on the serial console (kernel, init, network)
  agent   marker → the agent's gRPC health check answers SERVING through the 127.0.0.1 forward
  run     POST /run (manager locates the agent from the domain, forwards the manifest), three uploads, and
          GET /runs/{id}/result (the agent runs `python3 sum.py a.csv b.csv` in the guest)
  attest  POST /runs/{id}/attestation: a quote from the guest's emulated TPM for a fresh nonce, verified
then DELETE /domains/{name}. boot_cpu and agent_cpu are the CPU seconds the domain's QEMU process used from its
start to the marker and from the marker to SERVING: on a shared, loaded machine wall times stretch with other
people's work while this CPU time does not, and for the CPU-bound agent start it is what an idle machine's wall
time would be. Wall-clock times (the manager's event times share the host clock). The guest has
libvirt's emulated TPM 2.0 (tpm-crb) and boots the ISO from SeaBIOS.

    .venv/bin/python bench/e2e.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guest import e2e  # noqa: E402
from guest.contract import MARKER  # noqa: E402
from guest.demo import DATASET_A, DATASET_B, EXPECTED, SUM_ALGORITHM, run_body  # noqa: E402
from guest.vm import wait_for_agent, wait_for_console  # noqa: E402
from manager_api.client import ManagerClient, ManagerError  # noqa: E402

DOMAIN_TASK = "Domain is defined and running"
FAILURE_LOG = e2e.WORK_ROOT / "bench-failed-manager.log"
PHASES = ("prepare", "define+start", "boot", "agent", "boot_cpu", "agent_cpu", "post_run", "uploads", "result",
          "run_total", "attest", "delete")
TICKS = os.sysconf("SC_CLK_TCK")


def qemu_cpu(domain: str) -> float:
    """CPU seconds (user + system, all threads) the domain's QEMU process has used since it started."""
    pid = Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def job_events(base: str, job_id: str) -> list[dict]:
    """Every event of the job, read from its SSE stream, which ends once the job is final."""
    events = []
    with _NO_PROXY.open(f"{base}/jobs/{job_id}/events", timeout=600) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def create_domain(manager: e2e.ManagerProcess) -> dict[str, float]:
    t0 = time.time()
    body = json.dumps({"pool": "pool.xml", "volume": "vol.xml", "domain": "dom.xml"}).encode()
    req = urllib.request.Request(manager.base + "/domain?async=true", method="POST", data=body,
                                 headers={"Content-Type": "application/json"})
    with _NO_PROXY.open(req, timeout=60) as resp:
        job = json.load(resp)
    events = job_events(manager.base, job["id"])
    final = events[-1]  # the "end" event carries the job itself
    if final.get("state") != "successful":
        raise RuntimeError(f"POST /domain failed: {final.get('error')}; events: {events[-4:]}")
    task_start = next(e["time"] for e in events if e.get("type") == "playbook_on_task_start"
                      and e.get("task") == DOMAIN_TASK)
    task_end = next(e["time"] for e in events if e.get("type") in ("runner_on_ok", "runner_on_changed")
                    and e.get("task") == DOMAIN_TASK)
    return {"prepare": task_start - t0, "define+start": task_end - task_start, "_started": task_end}


def computation(client: ManagerClient) -> dict[str, float]:
    t0 = time.time()
    run_id = client.run(run_body(name="bench"))
    t1 = time.time()
    client.upload_algorithm(run_id, SUM_ALGORITHM)
    for dataset in (DATASET_A, DATASET_B):
        client.upload_dataset(run_id, dataset)
    t2 = time.time()
    if client.result(run_id) != EXPECTED:
        raise SystemExit("wrong result")
    t3 = time.time()
    verdict = client.attest(run_id)
    if not verdict["verified"]:
        raise SystemExit(f"attestation not verified: {verdict['checks']}")
    t4 = time.time()
    return {"post_run": t1 - t0, "uploads": t2 - t1, "result": t3 - t2, "run_total": t3 - t0, "attest": t4 - t3}


def one_round() -> dict[str, float]:
    setting = e2e.prepare(f"{e2e.PREFIX}-bench")
    manager = e2e.start_manager(setting)
    try:
        client = ManagerClient(manager.base)
        figures = create_domain(manager)
        started = figures.pop("_started")
        wait_for_console(setting.console, MARKER, 300)
        marker_at, marker_cpu = time.time(), qemu_cpu(setting.domain)
        figures["boot"], figures["boot_cpu"] = marker_at - started, marker_cpu
        wait_for_agent(setting.port, 300)
        figures["agent"], figures["agent_cpu"] = time.time() - marker_at, qemu_cpu(setting.domain) - marker_cpu
        figures.update(computation(client))
        t0 = time.time()
        try:
            client.delete_domain(setting.domain)
            figures["delete"] = time.time() - t0
        except ManagerError as exc:  # reported, not fatal: cleanup removes the domain; the other figures stand
            print(f"DELETE /domains/{setting.domain} failed: {exc}; manager log tail:\n"
                  f"{manager.log.read_text()[-2000:]}", file=sys.stderr)
            figures["delete"] = float("nan")
        return figures
    except BaseException:
        shutil.copyfile(manager.log, FAILURE_LOG)  # the workdir goes with cleanup; keep the evidence
        print(f"round failed; manager log kept in {FAILURE_LOG}", file=sys.stderr)
        raise
    finally:
        manager.stop()
        e2e.cleanup(setting)


def main() -> None:
    parser = argparse.ArgumentParser(description="POST /domain to agent ready, POST /run to result")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not e2e.ISO.exists():
        raise SystemExit(f"{e2e.ISO} is missing: run 'make guest'")
    rounds = []
    for number in range(1, args.rounds + 1):
        rounds.append(one_round())
        print(f"round {number}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()), flush=True)
    print("\n| phase | median | min | max |\n|---|---|---|---|")
    for phase in PHASES:
        values = [r[phase] for r in rounds if r[phase] == r[phase]]  # NaN: that round's step failed
        if not values:
            continue
        print(f"| {phase} | {statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s |")
    ready = [r["prepare"] + r["define+start"] + r["boot"] + r["agent"] for r in rounds]
    print(f"\nPOST /domain to agent ready: median {statistics.median(ready):.2f} s; "
          f"POST /run to result: median {statistics.median(r['run_total'] for r in rounds):.2f} s")


if __name__ == "__main__":
    main()
