"""Running a playbook for a benchmark: wall time, the recap's changed count, per-task seconds.

Shared by bench/modules_noop.py and bench/site_converge.py. Per-task times come from the task_timer
callback in bench/callback_plugins (ansible-core has no profile_tasks).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def run(playbook: str, extra: list[str], times_file: str | None = None,
        env_extra: dict[str, str] | None = None) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), **(env_extra or {}))
    if times_file:
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, "bench", "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="task_timer", COCOS_TASK_TIMES=times_file)
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), playbook, *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{playbook} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def changed_by_host(stdout: str) -> dict[str, int]:
    """The play recap's changed count per host."""
    out = {}
    for line in stdout.splitlines():
        host, sep, rest = line.partition(" : ")
        if sep and "changed=" in rest:
            out[host.strip()] = int(rest.split("changed=")[1].split()[0])
    return out


def changed(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise ValueError("no play recap in output")


def task_times(path: str) -> dict[str, float]:
    """Seconds per task name, summed over loop items and repeated names."""
    totals: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            totals[row["task"]] = totals.get(row["task"], 0.0) + row["seconds"]
    return totals
