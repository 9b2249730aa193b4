"""Turn the prepared root into the guest's initramfs and place /init and its helpers in it."""

import os
import shutil
import subprocess
from pathlib import Path

from guest.proc import BuildError, run

FILES = Path(__file__).parent / "files"

# Files of our own, by destination in the guest -> (source in guest/files, mode).
OWN_FILES = {
    "init": ("init", 0o755),
    "etc/cocos/udhcpc.script": ("udhcpc.script", 0o755),
    "etc/acpi/PWRF/00000080": ("power-button", 0o755),
}

# The extract variant has no base-passwd: the minimum for root, an unprivileged user for algorithms
# (nobody) and name resolution of localhost.
ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 cocos-guest\n::1 localhost\n",
    "etc/hostname": "cocos-guest\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "etc/resolv.conf": "",
}

# zstd decompresses several times faster than gzip/xz, which counts when the guest CPU is emulated (TCG).
COMPRESSOR = ["zstd", "-q", "-T0", "-9", "-c"]  # -9: within 5 % of -19 in size, 10x faster to pack


def add_own_files(root: Path, kernel_dir: Path) -> None:
    """/init, its scripts, the minimal /etc, the kernel modules and busybox applet links."""
    for dest, (source, mode) in OWN_FILES.items():
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FILES / source, target)
        target.chmod(mode)
    for dest, text in ETC.items():
        (root / dest).write_text(text)
    for directory in ("proc", "sys", "dev", "run", "tmp", "root", "lib/modules/cocos"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for module in (kernel_dir / "modules").iterdir():
        shutil.copyfile(module, root / "lib/modules/cocos" / module.name)
    # Links for every busybox applet (where no real binary exists): /init calls them by name.
    run(["chroot", str(root), "/bin/busybox", "--install", "-s"])
    _console_node(root)


def _console_node(root: Path) -> None:
    """/dev/console must exist before /init runs, or the kernel starts it without stdout."""
    console = root / "dev" / "console"
    if not console.exists():
        os.mknod(console, 0o600 | 0o020000, os.makedev(5, 1))


def pack(root: Path, out: Path) -> None:
    """newc cpio of the root, owned by root:root, compressed; entries sorted for stable output."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = ("\n".join(names) + "\n").encode()
    with open(out, "wb") as sink:
        cpio = subprocess.Popen(
            ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        compress = subprocess.Popen(COMPRESSOR, stdin=cpio.stdout, stdout=sink)
        assert cpio.stdout is not None and cpio.stdin is not None
        cpio.stdout.close()  # compress owns the pipe now, so cpio sees SIGPIPE if compress dies
        cpio.stdin.write(listing)
        cpio.stdin.close()
        if cpio.wait() != 0 or compress.wait() != 0:
            codes = f"cpio {cpio.returncode}, {COMPRESSOR[0]} {compress.returncode}"
            raise BuildError(f"packing {out.name} failed ({codes})")
