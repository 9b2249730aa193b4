"""Issue 12 benchmark: site.yml over 1 and over 3 fleet hosts (scripts/fleet.sh), cold and warm no-op.

For each fleet size: `scripts/fleet.sh up N`, one cold converge of site.yml over SSH (guest ISO streamed from the
controller into each host's ISO pool, TCG guests of 256 MiB booted to COCOS-GUEST-READY), then --runs warm no-op
runs (median, min, max, changed per host), then `scripts/fleet.sh down`. On one host it also times the warm no-op
with a local connection, ansible-playbook running inside hv1's namespace (as `make demo` runs site.yml on its own
host, without touching this machine's shared libvirtd). The machine's load average and the QEMU processes that are
not the fleet's are printed with each figure: the machine is shared. CPU seconds (ansible-playbook and what it ran
on this side) move far less with other people's load than wall seconds do.

Run from the repository root: .venv/bin/python bench/fleet_converge.py [--runs 5] [--sizes 1 3] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from playbook_run import ROOT, VENV_BIN, changed_by_host, task_times

FLEET = os.path.join(ROOT, "scripts", "fleet.sh")
INVENTORY = os.path.join(ROOT, "build", "fleet", "inventory.yml")
LOCAL = ["--limit", "hv1", "-e", "ansible_connection=local",
         "-e", f"ansible_python_interpreter={os.path.join(VENV_BIN, 'python')}", "-e", "alpine_vm_iso_upload_uri="]


def conditions() -> str:
    load = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
    qemus = subprocess.run(["pgrep", "-c", "-f", "qemu-system"], capture_output=True, text=True, check=False)
    return f"load {'/'.join(load)} on {os.cpu_count()} cores, {qemus.stdout.strip() or 0} QEMU processes running"


def fleet(*args: str) -> None:
    subprocess.run([FLEET, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(extra: list[str], times_file: str, prefix: list[str] | None = None,
             root: str = ROOT) -> tuple[float, float, dict[str, int]]:
    """Wall seconds, CPU seconds of ansible-playbook and everything it ran here (with a local connection that
    includes the modules; over SSH the host's side runs under its sshd and is not counted), changed per host."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "bench", "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="task_timer", COCOS_TASK_TIMES=times_file)
    cmd = [*(prefix or []), os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY,
           os.path.join(root, "site.yml"), *extra]
    start, cpu = time.monotonic(), children_cpu()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.monotonic() - start, children_cpu() - cpu
    if proc.returncode != 0:
        sys.exit(f"site.yml failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu, changed_by_host(proc.stdout)


def warm_runs(label: str, runs: int, tmp: str, extra: list[str], prefix: list[str] | None = None,
              roots: tuple[str, ...] = (ROOT,)) -> list[dict]:
    """Warm no-op runs of each tree's site.yml, interleaved so every tree meets the same load."""
    stats: list[dict] = [{"walls": [], "cpus": [], "changes": [], "tasks": {}, "conditions": []} for _ in roots]
    for i in range(runs):
        for index, (stat, root) in enumerate(zip(stats, roots, strict=True)):
            times_file = os.path.join(tmp, f"{label}{i}-{index}.jsonl")
            stat["conditions"].append(conditions())
            wall, cpu, by_host = playbook(extra, times_file, prefix, root)
            stat["walls"].append(wall)
            stat["cpus"].append(cpu)
            stat["changes"].append(sum(by_host.values()))
            for task, secs in task_times(times_file).items():
                stat["tasks"].setdefault(task, []).append(secs)
    return [{"median": statistics.median(s["walls"]), "min": min(s["walls"]), "max": max(s["walls"]),
             "cpu": statistics.median(s["cpus"]), "changes": s["changes"], "conditions": s["conditions"],
             "tasks": {t: statistics.median(v) for t, v in s["tasks"].items()}} for s in stats]


def measure(size: int, runs: int, tmp: str, baseline: str | None) -> dict:
    fleet("down")
    fleet("up", str(size))
    try:
        before = conditions()
        cold, cold_cpu, cold_changed = playbook([], os.path.join(tmp, f"cold{size}.jsonl"))
        result = {"size": size, "cold": cold, "cold_cpu": cold_cpu, "cold_changed": cold_changed,
                  "cold_conditions": before, "warm": warm_runs(f"warm{size}-", runs, tmp, [])[0]}
        if size == 1:
            # Inside hv1's namespace with a local connection (the ISO uploaded by the host itself), and the
            # baseline tree's site.yml on the same converged host, run for run in between.
            roots = (ROOT, baseline) if baseline else (ROOT,)
            local = warm_runs("local", runs, tmp, LOCAL, [FLEET, "exec", "hv1"], roots)
            result["local"] = local[0]
            if baseline:
                result["baseline"] = local[1]
        return result
    finally:
        fleet("down")


def report(results: list[dict], runs: int) -> None:
    print("| hosts | cold converge s (CPU s) | changed per host | warm no-op s, median of "
          f"{runs} (min-max) | CPU s | changed per run |\n|---|---|---|---|---|---|")
    for res in results:
        warm = res["warm"]
        print(f"| {res['size']} (SSH) | {res['cold']:.1f} ({res['cold_cpu']:.1f}) | "
              f"{sorted(res['cold_changed'].values())} | {warm['median']:.2f} ({warm['min']:.2f}-{warm['max']:.2f}) "
              f"| {warm['cpu']:.2f} | {warm['changes']} |")
        for key, label in (("local", "1, local connection in hv1"), ("baseline", "1, local, baseline tree")):
            if key in res:
                loc = res[key]
                print(f"| {label} | - | - | {loc['median']:.2f} ({loc['min']:.2f}-{loc['max']:.2f}) | "
                      f"{loc['cpu']:.2f} | {loc['changes']} |")
    by_size = {res["size"]: res for res in results}
    if 1 in by_size and 3 in by_size:
        print(f"\n3 hosts / 1 host: cold {by_size[3]['cold'] / by_size[1]['cold']:.2f}x, "
              f"warm {by_size[3]['warm']['median'] / by_size[1]['warm']['median']:.2f}x (target <= 1.5x)")
    for res in results:
        print(f"\nconditions, {res['size']} host(s): cold: {res['cold_conditions']}; warm: "
              + "; ".join(res["warm"]["conditions"]))
        for key in ("warm", "local", "baseline"):
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
    parser.add_argument("--baseline", help="another tree of this repository (e.g. `git archive REV | tar -x`): "
                                           "its site.yml is timed too on the converged single host")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(size, args.runs, tmp, args.baseline) for size in args.sizes]
    report(results, args.runs)


if __name__ == "__main__":
    main()
