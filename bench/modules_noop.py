"""Issue 2 benchmark: converge one pool, one volume, one domain cold, then 5 converged no-op runs.

Prints the median no-op wall time, the median CPU time of ansible-playbook's whole process tree (user+sys:
on a machine other jobs load, wall time says more about them than about us), and the median time per task.
Run from the repository root: .venv/bin/python bench/modules_noop.py [--runs 5] [--keep] [--prefix P --dir D]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

from playbook_run import ROOT, VENV_BIN, changed, run, task_times

PLAYBOOK = os.path.join(ROOT, "bench", "modules_noop.yml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark objects defined")
    parser.add_argument("--prefix", default="ctest-bench",
                        help="name prefix of the benchmark's pool, volume and domain (engineers sharing a libvirtd "
                             "each use their own)")
    parser.add_argument("--dir", default="/var/lib/cocos-test/bench/pool", help="the pool's directory")
    args = parser.parse_args()
    extra = ["-e", f"bench_prefix={args.prefix}", "-e", f"bench_dir={args.dir}"]
    with tempfile.TemporaryDirectory() as tmp:
        cold_file = os.path.join(tmp, "cold.jsonl")
        cold, out = run(PLAYBOOK, extra, cold_file)
        cold_changed = changed(out)
        walls, cpus, per_task, changes = [], [], {}, []
        for i in range(args.runs):
            times_file = os.path.join(tmp, f"warm{i}.jsonl")
            before = children_cpu()
            wall, out = run(PLAYBOOK, extra, times_file)
            cpus.append(children_cpu() - before)
            walls.append(wall)
            changes.append(changed(out))
            for task, seconds in task_times(times_file).items():
                per_task.setdefault(task, []).append(seconds)
        if not args.keep:
            cleanup(args.prefix)
    print(f"cold converge: {cold:.2f} s (changed={cold_changed})")
    print(f"converged no-op, median of {args.runs}: {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}, max {max(walls):.2f}); changed per run: {changes}")
    print(f"CPU of ansible-playbook, its workers and modules, median of {args.runs}: {statistics.median(cpus):.2f} s "
          f"(min {min(cpus):.2f})")
    print("| task | median s |\n|---|---|")
    for task, secs in per_task.items():
        print(f"| {task} | {statistics.median(secs):.3f} |")
    if any(changes):
        sys.exit("a converged run reported changes: not idempotent")


def children_cpu() -> float:
    """User+sys seconds of every finished child process so far (ansible-playbook and what it forked)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cleanup(prefix: str) -> None:
    """Remove what the benchmark created, through the modules themselves."""
    tasks = [
        ("libvirt_domain", {"name": f"{prefix}-dom", "state": "absent", "remove_storage": True}),
        ("libvirt_pool", {"name": f"{prefix}-pool", "state": "absent"}),
    ]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    for module, margs in tasks:
        subprocess.run([os.path.join(VENV_BIN, "ansible"), "localhost", "-m", module,
                        "-a", json.dumps(margs)], cwd=ROOT, env=env, capture_output=True, check=False)


if __name__ == "__main__":
    main()
