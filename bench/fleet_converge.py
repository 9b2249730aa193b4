"""Issue 12 benchmark: site.yml over 1 and over 3 fleet hosts (scripts/fleet.sh), cold and warm no-op.

For each fleet size: `scripts/fleet.sh up N`, one cold converge of site.yml over SSH (guest ISO streamed from the
controller into each host's ISO pool, TCG guests of 256 MiB booted to COCOS-GUEST-READY), then --runs warm no-op
runs (median, min, max, changed per host), then `scripts/fleet.sh down`. On one host it also times the warm no-op
with a local connection, ansible-playbook running inside hv1's namespace (as `make demo` runs site.yml on its own
host, without touching this machine's shared libvirtd). The machine's load average and the QEMU processes that are
not the fleet's are printed with each figure: the machine is shared.

Run from the repository root: .venv/bin/python bench/fleet_converge.py [--runs 5] [--sizes 1 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from playbook_run import ROOT, VENV_BIN, changed_by_host, task_times

FLEET = os.path.join(ROOT, "scripts", "fleet.sh")
INVENTORY = os.path.join(ROOT, "build", "fleet", "inventory.yml")
SITE = os.path.join(ROOT, "site.yml")


def conditions() -> str:
    load = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
    qemus = subprocess.run(["pgrep", "-c", "-f", "qemu-system"], capture_output=True, text=True, check=False)
    return f"load {'/'.join(load)} on {os.cpu_count()} cores, {qemus.stdout.strip() or 0} QEMU processes running"


def fleet(*args: str) -> None:
    subprocess.run([FLEET, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def playbook(extra: list[str], times_file: str, prefix: list[str] | None = None) -> tuple[float, dict[str, int]]:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "bench", "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_timer", COCOS_TASK_TIMES=times_file)
    cmd = [*(prefix or []), os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, SITE, *extra]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"site.yml failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return wall, changed_by_host(proc.stdout)


def warm_runs(label: str, runs: int, tmp: str, extra: list[str], prefix: list[str] | None = None) -> dict:
    walls: list[float] = []
    changes: list[int] = []
    per_task: dict[str, list[float]] = {}
    seen: list[str] = []
    for i in range(runs):
        times_file = os.path.join(tmp, f"{label}{i}.jsonl")
        seen.append(conditions())
        wall, by_host = playbook(extra, times_file, prefix)
        walls.append(wall)
        changes.append(sum(by_host.values()))
        for task, secs in task_times(times_file).items():
            per_task.setdefault(task, []).append(secs)
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "changes": changes,
            "tasks": {t: statistics.median(s) for t, s in per_task.items()}, "conditions": seen}


def measure(size: int, runs: int, tmp: str) -> dict:
    fleet("down")
    fleet("up", str(size))
    try:
        before = conditions()
        cold, cold_changed = playbook([], os.path.join(tmp, f"cold{size}.jsonl"))
        result = {"size": size, "cold": cold, "cold_changed": cold_changed, "cold_conditions": before,
                  "warm": warm_runs(f"warm{size}-", runs, tmp, [])}
        if size == 1:
            # Inside hv1's namespace, a local connection; the ISO is uploaded by the host itself.
            result["local"] = warm_runs("local", runs, tmp,
                                        ["--limit", "hv1", "-e", "ansible_connection=local",
                                         "-e", f"ansible_python_interpreter={os.path.join(VENV_BIN, 'python')}",
                                         "-e", "alpine_vm_iso_upload_uri="],
                                        [FLEET, "exec", "hv1"])
        return result
    finally:
        fleet("down")


def report(results: list[dict], runs: int) -> None:
    print("| hosts | cold converge s | changed per host | warm no-op s, median of "
          f"{runs} (min-max) | changed per run |\n|---|---|---|---|---|")
    for res in results:
        warm = res["warm"]
        print(f"| {res['size']} (SSH) | {res['cold']:.1f} | {sorted(res['cold_changed'].values())} | "
              f"{warm['median']:.2f} ({warm['min']:.2f}-{warm['max']:.2f}) | {warm['changes']} |")
        if "local" in res:
            loc = res["local"]
            print(f"| 1 (local connection in hv1) | - | - | {loc['median']:.2f} ({loc['min']:.2f}-{loc['max']:.2f}) "
                  f"| {loc['changes']} |")
    by_size = {res["size"]: res for res in results}
    if 1 in by_size and 3 in by_size:
        print(f"\n3 hosts / 1 host: cold {by_size[3]['cold'] / by_size[1]['cold']:.2f}x, "
              f"warm {by_size[3]['warm']['median'] / by_size[1]['warm']['median']:.2f}x (target <= 1.5x)")
    for res in results:
        print(f"\nconditions, {res['size']} host(s): cold: {res['cold_conditions']}; warm: "
              + "; ".join(res["warm"]["conditions"]))
        for key in ("warm", "local"):
            if key not in res:
                continue
            tasks = res[key]["tasks"]
            print(f"\n| {res['size']} host(s), {key}: {len(tasks)} tasks, slowest | median s |\n|---|---|")
            for task, secs in sorted(tasks.items(), key=lambda item: -item[1])[:10]:
                print(f"| {task} | {secs:.2f} |")
    if any(any(r[k]["changes"]) for r in results for k in ("warm", "local") if k in r):
        sys.exit("a converged run reported changes: not idempotent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(size, args.runs, tmp) for size in args.sizes]
    report(results, args.runs)


if __name__ == "__main__":
    main()
