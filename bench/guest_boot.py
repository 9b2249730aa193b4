"""Guest image benchmark: build cold, after an input change and cached; image sizes; boot to marker and agent.

Cold means empty caches in a temporary directory (kernel .deb, packages and wheels fetched through apt's
and pip's configured sources); the repository's own .cache/ and build/ are left alone. Boots run one at a
time (TCG shares the 2 cores) as `ctest-guest-bench-*` domains, removed afterwards.

    .venv/bin/python bench/guest_boot.py [--boots 3] [--no-cold]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guest import vm  # noqa: E402
from guest.build import Guest, ensure_built  # noqa: E402

WORK = Path("/var/lib/cocos-test/guest")
TIMEOUT = 180


def build_times(cold: bool) -> dict[str, float]:
    """Seconds for a cold build, a rebuild with downloads cached, and a cached no-op, in a scratch cache."""
    scratch = Path(tempfile.mkdtemp(prefix="guest-bench-", dir=ROOT / ".cache"))
    try:
        cache, out = (scratch, scratch / "out") if cold else (ROOT / ".cache", scratch / "out")
        times = {}
        if cold:
            times["cold (empty caches)"] = ensure_built(cache=cache, out=out).seconds
        times["input changed (downloads cached)"] = ensure_built(cache=cache, out=out, force=True).seconds
        times["unchanged inputs (cache hit)"] = ensure_built(cache=cache, out=out).seconds
        return times
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def one_boot(conn, built: Guest, direct: bool) -> dict[str, float]:
    """Start, marker, agent health SERVING, virsh shutdown to shut off; seconds for each, from its start."""
    name = f"ctest-guest-bench-{uuid.uuid4().hex[:6]}"
    try:
        running = vm.start(conn, name, built, WORK / name, direct=direct)
        marker = vm.wait_for_marker(running, TIMEOUT)
        agent = marker + vm.wait_for_agent(running.port, TIMEOUT) if built.manifest["agent"] else float("nan")
        asked = time.monotonic()
        subprocess.run(["virsh", "-c", vm.URI, "shutdown", name], check=True, capture_output=True)
        vm.wait_for_shutoff(running, TIMEOUT)
        return {"marker": marker, "agent": agent, "shutdown": time.monotonic() - asked}
    finally:
        vm.remove(conn, name, WORK / name)


def boot_times(built: Guest, boots: int) -> dict[str, dict[str, float]]:
    import libvirt

    conn = libvirt.open(vm.URI)
    try:
        results = {}
        for label, direct in (("ISO (SeaBIOS, isolinux)", False), ("direct kernel boot", True)):
            runs = [one_boot(conn, built, direct) for _ in range(boots)]
            results[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        return results
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3, help="boots per boot mode (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold build (it downloads ~50 MB)")
    args = parser.parse_args()
    builds = build_times(cold=not args.no_cold)
    built = ensure_built()
    sizes = built.manifest["sizes"]
    agent = "included" if built.manifest["agent"] else "MISSING"
    print(f"guest {built.key}: kernel {built.manifest['kernel']}, agent {agent}")
    print("\n| build | seconds |\n|---|---|")
    for label, seconds in builds.items():
        print(f"| {label} | {seconds:.2f} |")
    print("\n| artifact | MiB |\n|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size / 2**20:.1f} |")
    print(f"\n| boot (median of {args.boots}) | start → marker | start → agent SERVING | virsh shutdown → off |")
    print("|---|---|---|---|")
    for label, t in boot_times(built, args.boots).items():
        print(f"| {label} | {t['marker']:.1f} s | {t['agent']:.1f} s | {t['shutdown']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
