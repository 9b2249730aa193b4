"""Issue 3 benchmark: site.yml cold converge, warm no-op and boot to marker, and the converged no-op of
site.yml's libvirt objects written with our modules beside the same written with community.libvirt.

community.libvirt comes from the pinned `ansible` package, installed (collections only, --no-deps) into
its own venv under .cache/ so the test venv stays lean; both sides run on the same ansible-core from
.venv, so only the modules differ. The local guest ISO stands in for Alpine, as in `make demo`.
Leaves site.yml converged (the VM running), like `make demo`.

Run from the repository root: .venv/bin/python bench/site_converge.py [--runs 5]
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from playbook_run import ROOT, changed, run, task_times

ANSIBLE_PIN = "ansible==12.3.0"  # ships community.libvirt 2.0.0, built for ansible-core 2.19
COMMUNITY_VENV = os.path.join(ROOT, ".cache", "bench-ansible")
WORK = os.path.join(ROOT, ".cache", "bench-site")
GUEST_ISO = os.path.join(ROOT, "build", "guest", "cocos-guest.iso")
DOMAIN = "QEmu-alpine-standard-x86_64"
CONSOLE_LOG = f"/var/lib/cocos/log/{DOMAIN}.console.log"
INSTALLED_ISO = "/var/lib/cocos/iso/cocos-guest.iso"
MARKER = b"COCOS-GUEST-READY"


def community_collections() -> str:
    """Path holding ansible_collections/ from the pinned `ansible` package (installed on first use)."""
    found = glob.glob(os.path.join(COMMUNITY_VENV, "lib", "python3*", "site-packages"))
    stamp = os.path.join(COMMUNITY_VENV, ".pin")
    if found and os.path.exists(stamp) and open(stamp, encoding="utf-8").read() == ANSIBLE_PIN:
        return found[0]
    subprocess.run([sys.executable, "-m", "venv", "--clear", COMMUNITY_VENV], check=True)
    subprocess.run([os.path.join(COMMUNITY_VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                    "--no-deps", ANSIBLE_PIN], check=True)
    with open(stamp, "w", encoding="utf-8") as out:
        out.write(ANSIBLE_PIN)
    return glob.glob(os.path.join(COMMUNITY_VENV, "lib", "python3*", "site-packages"))[0]


def write_vars() -> str:
    """site.yml variables for the local guest; the ISO is snapshotted so a concurrent build cannot move it."""
    os.makedirs(WORK, exist_ok=True)
    iso = os.path.join(WORK, "cocos-guest.iso")
    shutil.copyfile(GUEST_ISO, iso)
    with open(iso, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    path = os.path.join(WORK, "site-vars.json")
    with open(path, "w", encoding="utf-8") as out:
        json.dump({
            "alpine_vm_iso_url": f"file://{iso}",
            "alpine_vm_iso_checksum": f"sha256:{digest}",
            "alpine_vm_network_mode": "user",
            "alpine_vm_port_forwards": [{"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002}],
            "alpine_vm_wait_for": "marker",
            "alpine_vm_ready_marker": MARKER.decode(),
            "alpine_vm_wait_timeout": 600,
        }, out)
    return path


class MarkerWatch(threading.Thread):
    """Polls the console log every 20 ms: when virtlogd creates it (QEMU started) and when the marker shows."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.created: float | None = None
        self.marker: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.marker is None:
            try:
                with open(CONSOLE_LOG, "rb") as handle:
                    if self.created is None:
                        self.created = time.monotonic()
                    if MARKER in handle.read():
                        self.marker = time.monotonic()
            except FileNotFoundError:
                pass
            time.sleep(0.02)


def noop_runs(label: str, playbook: str, extra: list[str], runs: int, tmp: str,
              env_extra: dict[str, str] | None = None) -> dict:
    walls: list[float] = []
    changes: list[int] = []
    per_task: dict[str, list[float]] = {}
    for i in range(runs):
        times_file = os.path.join(tmp, f"{label}{i}.jsonl")
        wall, out = run(playbook, extra, times_file, env_extra)
        walls.append(wall)
        changes.append(changed(out))
        for task, secs in task_times(times_file).items():
            per_task.setdefault(task, []).append(secs)
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "changes": changes,
            "tasks": {task: statistics.median(secs) for task, secs in per_task.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    collections = community_collections()
    site = os.path.join(ROOT, "site.yml")
    vars_arg = ["-e", f"@{write_vars()}"]
    fwd = ["-e", json.dumps({"alpine_vm_port_forwards": [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002}]})]

    # Cold: the VM, its disk, its pool, its console log and the installed ISO gone (packages, daemons
    # and the NAT network stay: they are the host's, and other work on this machine uses libvirtd).
    run(site, [*vars_arg, "-e", "alpine_vm_state=absent"])
    if os.path.exists(INSTALLED_ISO):
        os.remove(INSTALLED_ISO)
    with tempfile.TemporaryDirectory() as tmp:
        watch = MarkerWatch()
        watch.start()
        cold_times = os.path.join(tmp, "cold.jsonl")
        cold, out = run(site, vars_arg, cold_times)
        watch.stop.set()
        watch.join()
        cold_changed = changed(out)
        cold_tasks = task_times(cold_times)
        warm = noop_runs("warm", site, vars_arg, args.runs, tmp)
        ours = noop_runs("ours", os.path.join(ROOT, "bench", "site_noop_ours.yml"), fwd, args.runs, tmp)
        community = noop_runs("community", os.path.join(ROOT, "bench", "site_noop_community.yml"), [],
                              args.runs, tmp, {"ANSIBLE_COLLECTIONS_PATH": collections})

    boot = (watch.marker - watch.created) if watch.marker and watch.created else float("nan")
    print(f"cold converge of site.yml: {cold:.1f} s (changed={cold_changed})")
    role_task = {name.split(" : ", 1)[-1]: secs for name, secs in cold_tasks.items()}
    iso = role_task.get("Upload the ISO into its pool (checksum verified before anything is created)", 0)
    print(f"  of which: ISO verify+upload into its pool {iso:.2f} s, "
          f"define+start the domain {role_task.get('Converge and start the domain', 0):.2f} s, "
          f"wait for the marker {role_task.get('Wait for the marker on the serial console', 0):.2f} s "
          f"(wait_for polls once a second)")
    print(f"boot to marker (console log created -> {MARKER.decode()}, 20 ms polling): {boot:.2f} s")
    print(f"warm no-op of site.yml, median of {args.runs}: {warm['median']:.2f} s "
          f"(min {warm['min']:.2f}, max {warm['max']:.2f}); changed per run: {warm['changes']}")
    slowest = sorted(warm["tasks"].items(), key=lambda item: -item[1])[:6]
    print("| warm site.yml task (slowest) | median s |\n|---|---|")
    for task, secs in slowest:
        print(f"| {task} | {secs:.2f} |")
    print(f"\nlibvirt objects only (network, pool, volume, domain), converged no-op, median of {args.runs}:")
    print("| playbook | wall s (median) | min | max | changed per run |\n|---|---|---|---|---|")
    for name, res in (("ours (bench/site_noop_ours.yml)", ours),
                      (f"community.libvirt 2.0.0 from {ANSIBLE_PIN} (bench/site_noop_community.yml)", community)):
        print(f"| {name} | {res['median']:.2f} | {res['min']:.2f} | {res['max']:.2f} | {res['changes']} |")
    for name, res in (("ours", ours), ("community.libvirt", community)):
        print(f"\n| {name} task | median s |\n|---|---|")
        for task, secs in res["tasks"].items():
            print(f"| {task} | {secs:.3f} |")
    if any(warm["changes"]) or any(ours["changes"]):
        sys.exit("a converged run reported changes: not idempotent")


if __name__ == "__main__":
    main()
