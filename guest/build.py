"""Build the guest image once per content hash: `python -m guest.build` (make guest).

Layout: .cache/guest/<key>/ holds finished artifacts, .cache/guest-parts/ the downloads (kernel .debs,
the unpacked-packages tar, wheels) that survive input changes; build/guest/ gets hard links to the
artifacts of the current key, so publishing is free and a domain booting an older ISO keeps its file.
"""

import argparse
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from guest import efi, initramfs, iso, kernel, rootfs
from guest.cachekey import cache_key, guest_pins

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = ("cocos-guest.iso", "vmlinuz", "initrd.img", "manifest.json")
KEEP_BUILDS = 3  # older keyed builds are pruned; each is ~2 x the ISO size


@dataclass(frozen=True)
class Guest:
    """A finished build as published in build/guest/."""

    key: str
    iso: Path
    vmlinuz: Path
    initrd: Path
    manifest: dict
    cached: bool
    seconds: float


def _key_extras() -> dict[str, str]:
    """Inputs that live in code constants but are named explicitly, so the key documents them."""
    return {
        "suite": rootfs.SUITE,
        "packages": ",".join(rootfs.PACKAGES),
        "kernel": kernel.KERNEL_METAPACKAGE,
        "modules": ",".join(kernel.MODULES),
        "cmdline": iso.KERNEL_CMDLINE,
        "efi": ",".join(efi.PACKAGES),
    }


def ensure_built(
    repo: Path = REPO, cache: Path | None = None, out: Path | None = None, force: bool = False, refresh: bool = False
) -> Guest:
    """Return the published build for the current inputs, building it only if no cached one matches."""
    started = time.monotonic()
    cache = cache or repo / ".cache"
    out = out or repo / "build" / "guest"
    key = cache_key(repo, _key_extras())
    final = cache / "guest" / key
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(cache / "guest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; a waiter then finds the cache filled
        cached = (final / "manifest.json").exists() and not (force or refresh)
        if not cached:
            _build(repo, cache / "guest-parts", final, key, refresh)
            _prune(cache / "guest", keep=final)
        _publish(final, out)
    manifest = json.loads((out / "manifest.json").read_text())
    return Guest(
        key,
        out / "cocos-guest.iso",
        out / "vmlinuz",
        out / "initrd.img",
        manifest,
        cached,
        round(time.monotonic() - started, 3),
    )


class _Steps:
    """Wall time per build step, kept in the manifest so a slow build says where the time went."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now


def _build(repo: Path, parts: Path, final: Path, key: str, refresh: bool) -> None:
    steps = _Steps()
    parts.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=parts, prefix=".build-"))
    try:
        kernel_dir = kernel.fetch(parts, refresh)
        efi_dir = efi.fetch(parts, refresh)
        steps.done("kernel")
        pins = guest_pins(repo / "requirements.txt")
        root = work / "root"
        rootfs.unpack(rootfs.base_tar(parts, refresh), root)
        rootfs.strip(root)
        steps.done("packages")
        rootfs.install_wheels(root, rootfs.wheels(parts, pins))
        has_agent = rootfs.copy_app(repo, root)
        initramfs.add_own_files(root, kernel_dir)
        steps.done("wheels_and_app")
        rootfs.compile_bytecode(root)
        rootfs.smoke_test(root)
        steps.done("bytecode_and_smoke_test")
        result = work / "result"
        result.mkdir()
        shutil.copyfile(kernel_dir / "vmlinuz", result / "vmlinuz")
        initramfs.pack(root, result / "initrd.img")
        steps.done("initramfs")
        iso.make_iso(result / "vmlinuz", result / "initrd.img", result / "cocos-guest.iso", work, efi_dir)
        steps.done("iso")
        manifest = {
            "key": key,
            "kernel": (kernel_dir / "release").read_text().strip(),
            "agent": has_agent,
            "cmdline": iso.KERNEL_CMDLINE,
            "boot": ["bios", "efi"],
            "packages": list(rootfs.PACKAGES),
            "python_packages": pins,
            "sizes": {name: (result / name).stat().st_size for name in ("cocos-guest.iso", "vmlinuz", "initrd.img")},
            "build_seconds": round(sum(steps.seconds.values()), 1),
            "steps": steps.seconds,
        }
        (result / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        result.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(final: Path, out: Path) -> None:
    """Hard-link (copy across file systems) each artifact into out/, replacing old ones atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACTS:
        staged = out / f".{name}.new"
        staged.unlink(missing_ok=True)
        try:
            os.link(final / name, staged)
        except OSError:
            shutil.copyfile(final / name, staged)
        staged.replace(out / name)


def _prune(builds: Path, keep: Path) -> None:
    """Keep the newest KEEP_BUILDS keyed builds (always the current one) so .cache/ does not grow forever."""
    done = sorted((d for d in builds.iterdir() if (d / "manifest.json").exists()), key=os.path.getmtime, reverse=True)
    for old in [d for d in done if d != keep][KEEP_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guest.build", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if a build with this key is cached")
    parser.add_argument("--refresh", action="store_true", help="also fetch the kernel and packages again")
    args = parser.parse_args(argv)
    guest = ensure_built(force=args.force, refresh=args.refresh)
    sizes = guest.manifest["sizes"]
    how = "cached" if guest.cached else "built"
    print(
        f"guest {guest.key} ({how} in {guest.seconds:.2f} s): {guest.iso.relative_to(REPO)} "
        f"{sizes['cocos-guest.iso'] / 2**20:.1f} MiB, kernel {guest.manifest['kernel']}, "
        f"agent {'included' if guest.manifest['agent'] else 'MISSING'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
