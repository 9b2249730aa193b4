"""Guest image benchmark: build cold, after an input change and cached; image sizes; boot to marker and agent.

Cold means empty caches in a temporary directory (kernel .deb, packages and wheels fetched through apt's
and pip's configured sources); the repository's own .cache/ and build/ are left alone. Boots run one at a
time (TCG shares the 2 cores) as `ctest-guest-bench-*` domains, removed afterwards, in rounds that take each
boot mode in turn, so a change in the machine's load hits every mode alike. Besides wall time, the guest's
own CPU time at the marker (libvirt's cpu_time of the domain: QEMU's vCPU and I/O threads) says how much
emulation each mode costs whatever else runs on the machine.

    .venv/bin/python bench/guest_boot.py [--boots 3] [--no-cold] [--modes bios,uefi-tpm]
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
TIMEOUT = 600  # a loaded machine stretches TCG boots many times over


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


# mode -> (label, vm.start options)
MODES: dict[str, tuple[str, dict]] = {
    "bios": ("ISO, BIOS (SeaBIOS, isolinux), pc", {}),
    "uefi": ("ISO, UEFI (OVMF, shim, GRUB), q35", {"firmware": "efi"}),
    "uefi-tpm": ("ISO, UEFI + TPM 2.0 (swtpm, CRB), q35", {"firmware": "efi", "tpm": "tpm-crb"}),
    "uefi-sb-tpm": ("ISO, UEFI Secure Boot + TPM 2.0, q35", {"firmware": "efi", "secure_boot": True, "tpm": "tpm-crb"}),
    "direct": ("direct kernel boot (no firmware boot), pc", {"direct": True}),
}


def one_boot(conn, built: Guest, options: dict) -> dict[str, float]:
    """Start, marker (wall and guest CPU seconds), agent health SERVING, virsh shutdown to shut off."""
    name = f"ctest-guest-bench-{uuid.uuid4().hex[:6]}"
    try:
        running = vm.start(conn, name, built, WORK / name, **options)
        marker = vm.wait_for_marker(running, TIMEOUT)
        cpu = running.dom.getCPUStats(True)[0]["cpu_time"] / 1e9  # type: ignore[attr-defined]
        agent = marker + vm.wait_for_agent(running.port, TIMEOUT) if built.manifest["agent"] else float("nan")
        asked = time.monotonic()
        subprocess.run(["virsh", "-c", vm.URI, "shutdown", name], check=True, capture_output=True)
        vm.wait_for_shutoff(running, TIMEOUT)
        return {"marker": marker, "cpu": cpu, "agent": agent, "shutdown": time.monotonic() - asked}
    finally:
        vm.remove(conn, name, WORK / name)


def boot_times(built: Guest, boots: int, modes: list[str]) -> dict[str, dict[str, float]]:
    import libvirt

    conn = libvirt.open(vm.URI)
    try:
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(boots):
            for mode in modes:
                runs[mode].append(one_boot(conn, built, MODES[mode][1]))
        return {MODES[mode][0]: {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]}
                for mode in modes}
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=3, help="boots per boot mode (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold build (it downloads ~50 MB)")
    parser.add_argument("--no-build", action="store_true", help="skip the build timings")
    parser.add_argument("--modes", default=",".join(MODES), help=f"boot modes, of {', '.join(MODES)}")
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown boot modes: {', '.join(sorted(unknown))}")
    builds = {} if args.no_build else build_times(cold=not args.no_cold)
    built = ensure_built()
    sizes = built.manifest["sizes"]
    agent = "included" if built.manifest["agent"] else "MISSING"
    print(f"guest {built.key}: kernel {built.manifest['kernel']}, agent {agent}")
    if builds:
        print("\n| build | seconds |\n|---|---|")
        for label, seconds in builds.items():
            print(f"| {label} | {seconds:.2f} |")
    print("\n| artifact | MiB |\n|---|---|")
    for name, size in sizes.items():
        print(f"| {name} | {size / 2**20:.1f} |")
    print(f"\n| boot (median of {args.boots}) | start → marker | guest CPU at marker | start → agent SERVING "
          "| virsh shutdown → off |")
    print("|---|---|---|---|---|")
    for label, t in boot_times(built, args.boots, modes).items():
        print(f"| {label} | {t['marker']:.1f} s | {t['cpu']:.1f} s | {t['agent']:.1f} s | {t['shutdown']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
