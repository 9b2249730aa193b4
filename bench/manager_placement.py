"""Placement decision time with three hosts: the fleet of scripts/fleet.sh (libvirt over qemu+ssh), the manager's
own host registry and placement service, nothing mocked.

Measured:
  check     one health check of one host: the figures placement uses (node memory statistics, every domain's
            state, memory and forwards) read over the host's qemu+ssh connection; this bounds how old they are
  decide    PlacementService.reserve for a new 256 MiB domain among the three hosts: the lock, the decision from
            the last checks plus the ledger, the port's bind test and the SQLite write (then released again), with
            the hosts empty and with `--placed` placements per host in the ledger
  burst     `--threads` threads placing domains at once until every host is full (`--max-vms` each): wall time
            per placement, and a check that no port or host was overfilled

    .venv/bin/python bench/manager_placement.py [--rounds 500] [--placed 9] [--threads 8] [--max-vms 34]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guest.fleet import fleet_down, fleet_up  # noqa: E402
from manager_api.errors import NoRoom  # noqa: E402
from manager_api.hosts import HostRegistry, read_inventory  # noqa: E402
from manager_api.placement import PlacementService  # noqa: E402

MEMORY = 256 * 1024 * 1024


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"median {statistics.median(ordered) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms, "
            f"max {ordered[-1] * 1000:.2f} ms (n={len(ordered)})")


def time_checks(registry: HostRegistry, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        for host in registry.hosts():
            started = time.perf_counter()
            host.check()
            samples.append(time.perf_counter() - started)
    return samples


def time_decisions(placement: PlacementService, rounds: int) -> tuple[list[float], Counter]:
    samples, hosts = [], Counter()
    for i in range(rounds):
        started = time.perf_counter()
        row, _ = placement.reserve(f"bench-{i}", MEMORY)
        samples.append(time.perf_counter() - started)
        hosts[row.host] += 1
        placement.release(row.domain, row.token)
    return samples, hosts


def burst(placement: PlacementService, threads: int, total: int) -> tuple[float, list]:
    names = iter(range(total + threads * 4))
    lock = threading.Lock()
    placed: list = []

    def worker() -> None:
        while True:
            with lock:
                number = next(names)
            try:
                placed.append(placement.reserve(f"burst-{number}", MEMORY)[0])
            except NoRoom:
                return
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started, placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--placed", type=int, default=9)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-vms", type=int, default=34)
    args = parser.parse_args()
    fleet = fleet_up(3, addr_base=26, subnet="10.219", prefix="ctest-h8-bn")
    try:
        specs = read_inventory(str(fleet.inventory), args.max_vms, (6100, 6200))
        registry = HostRegistry(specs, interval=1.0, timeout=10)
        registry.start()
        registry.wait_checked(30)
        with tempfile.TemporaryDirectory(prefix="cocos-bench-placement-") as tmp:
            print(f"hosts: {', '.join(f'{s.name} ({s.agent_address})' for s in specs)}")
            print(f"check (one host's figures over qemu+ssh): {figures(time_checks(registry, 20))}")
            placement = PlacementService(registry, str(Path(tmp) / "empty.sqlite3"))
            samples, spread = time_decisions(placement, args.rounds)
            print(f"decide, empty hosts: {figures(samples)}; chosen {dict(spread)}")
            placement.close()
            placement = PlacementService(registry, str(Path(tmp) / "placed.sqlite3"))
            for i in range(args.placed * 3):
                placement.reserve(f"placed-{i}", MEMORY)
            samples, spread = time_decisions(placement, args.rounds)
            print(f"decide, {args.placed} placed per host: {figures(samples)}; chosen {dict(spread)}")
            placement.close()
            placement = PlacementService(registry, str(Path(tmp) / "burst.sqlite3"))
            wall, placed = burst(placement, args.threads, args.max_vms * 3)
            per_host = Counter(row.host for row in placed)
            ports = Counter((row.host, row.port) for row in placed)
            assert max(per_host.values()) <= args.max_vms and max(ports.values()) == 1, (per_host, ports)
            print(f"burst: {len(placed)} placements by {args.threads} threads in {wall * 1000:.1f} ms "
                  f"({wall / len(placed) * 1000:.2f} ms each); per host {dict(per_host)}; no port twice")
            placement.close()
        registry.stop()
    finally:
        print(fleet_down(fleet).strip())


if __name__ == "__main__":
    main()
