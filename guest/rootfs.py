"""The guest's root file system: Debian packages unpacked, trimmed, plus pinned wheels and our code."""

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

from guest.proc import BuildError, run

SUITE = "bookworm"
# Unpacked only (mmdebstrap's extract variant): no Essential set, no dpkg run, ~3 s. busybox-static
# supplies the shell, udhcpc, acpid and every other tool /init uses; grpcio's wheel links libstdc++; the agent
# measures and quotes through tpm2-tools (agent/tpm.py), which brings the TSS libraries.
PACKAGES = ("python3", "busybox-static", "libstdc++6", "tpm2-tools")
PYTHON_TARGET = "usr/lib/python3/dist-packages"  # on Debian python3's sys.path without PYTHONPATH
APP_DIR = "opt/cocos"
GUEST_PYTHON = "3.11"  # bookworm's python3: cp311 wheels
GUEST_WHEEL_PLATFORM = "manylinux2014_x86_64"

# What a guest that runs one Python service never reads. Paths relative to the root.
STRIP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
    "usr/share/pixmaps",
    "usr/share/applications",
    "usr/share/polkit-1",
    "usr/share/python3/debian_defaults",
    "usr/share/dpkg",
    "var/lib/dpkg",
    "var/cache",
    "var/log",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/valgrind",
    "usr/lib/mime",
    "etc/dpkg",
    "etc/alternatives",
    "bin/tar",
    f"usr/lib/python{GUEST_PYTHON}/ensurepip",
    f"usr/lib/python{GUEST_PYTHON}/idlelib",
    f"usr/lib/python{GUEST_PYTHON}/lib2to3",
    f"usr/lib/python{GUEST_PYTHON}/pydoc_data",
    f"usr/lib/python{GUEST_PYTHON}/turtledemo",
    f"usr/lib/python{GUEST_PYTHON}/tkinter",
    f"usr/lib/python{GUEST_PYTHON}/distutils",
    f"usr/lib/python{GUEST_PYTHON}/config-{GUEST_PYTHON}-x86_64-linux-gnu",
)
STRIP_GLOBS = (
    "usr/bin/dpkg*",
    "usr/bin/py3*",
    "usr/bin/pdb3*",
    "usr/bin/pydoc3*",
    "usr/bin/pygettext3*",
    "usr/bin/update-alternatives",
    "sbin/start-stop-daemon",
    # Databases nobody in the guest opens: sqlite3 and Berkeley DB, their libraries and extension modules.
    f"usr/lib/python{GUEST_PYTHON}/sqlite3",
    f"usr/lib/python{GUEST_PYTHON}/lib-dynload/_sqlite3*",
    f"usr/lib/python{GUEST_PYTHON}/lib-dynload/_dbm*",
    "usr/lib/x86_64-linux-gnu/libsqlite3*",
    "usr/lib/x86_64-linux-gnu/libdb-*",
    # What tpm2-tools' dependencies bring and the agent never runs: udev (through tpm-udev), the FAPI tools and
    # libraries (only tpm2_* are used; they link ESAPI), account and PAM tools, debconf.
    "lib/udev",
    "lib/systemd",
    "bin/udevadm",
    "usr/bin/tss2*",
    "usr/lib/x86_64-linux-gnu/libtss2-fapi*",
    "usr/lib/x86_64-linux-gnu/libcurl.so*",
    "usr/lib/x86_64-linux-gnu/libjson-c*",
    "sbin/*",
    "usr/sbin/*",
    "lib/x86_64-linux-gnu/security",
    "usr/bin/debconf*",
    "usr/share/perl5",
    "usr/share/bash-completion",
    *(f"usr/bin/{tool}" for tool in ("chage", "chfn", "chsh", "expiry", "gpasswd", "passwd")),
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def base_tar(parts: Path, refresh: bool = False) -> Path:
    """The unpacked Debian packages as a tar, made once per package list (mmdebstrap, apt's sources)."""
    tar = parts / "rootfs" / f"{SUITE}-{_digest(SUITE, *PACKAGES)}.tar"
    if tar.exists() and not refresh:
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    partial = tar.with_suffix(".partial")
    include = f"--include={','.join(PACKAGES)}"
    run(["mmdebstrap", "--quiet", "--format=tar", "--variant=extract", include, SUITE, str(partial)])
    partial.rename(tar)
    return tar


def wheels(parts: Path, pins: dict[str, str]) -> Path:
    """Binary cp311 manylinux wheels of the pinned versions (and their dependencies), downloaded once."""
    specs = sorted(f"{name}=={version}" for name, version in pins.items())
    target = parts / "wheels" / _digest(*specs)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    _pip("download", "--dest", str(staging), *specs)
    staging.rename(target)
    return target


def _pip(command: str, *args: str) -> None:
    """pip download/install for the guest's platform, so the wheels fetched are the wheels installable."""
    guest_platform = ("--python-version", GUEST_PYTHON, "--implementation", "cp", "--platform", GUEST_WHEEL_PLATFORM)
    quiet = ("--quiet", "--disable-pip-version-check")
    run([sys.executable, "-m", "pip", command, *quiet, "--only-binary", ":all:", *guest_platform, *args])


def unpack(tar: Path, root: Path) -> None:
    root.mkdir(parents=True)
    run(["tar", "-C", str(root), "-xf", str(tar)])


def strip(root: Path) -> None:
    """Remove what the guest never reads, then test suites and packaging metadata inside Python trees."""
    for rel in STRIP:
        _remove(root / rel)
    for pattern in STRIP_GLOBS:
        for path in root.glob(pattern):
            _remove(path)
    for tests in root.glob(f"usr/lib/python{GUEST_PYTHON}/**/test*"):
        if tests.is_dir() and tests.name in ("test", "tests"):
            _remove(tests)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def install_wheels(root: Path, wheel_dir: Path) -> None:
    """Install every cached wheel, offline, into the guest's dist-packages (no dependency resolution left)."""
    wheel_files = sorted(str(w) for w in wheel_dir.glob("*.whl"))
    _pip("install", "--no-index", "--no-deps", "--no-compile", "--target", str(root / PYTHON_TARGET), *wheel_files)
    for junk in (root / PYTHON_TARGET).glob("*.dist-info/RECORD"):
        junk.unlink()


def copy_app(repo: Path, root: Path) -> bool:
    """Copy cocos_pb/ and, where it exists, agent/ to /opt/cocos. Returns whether the agent is in."""
    app = root / APP_DIR
    app.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi")
    shutil.copytree(repo / "cocos_pb", app / "cocos_pb", ignore=ignore)
    has_agent = (repo / "agent" / "__main__.py").exists()
    if has_agent:
        shutil.copytree(repo / "agent", app / "agent", ignore=ignore)
    return has_agent


def compile_bytecode(root: Path) -> None:
    """Precompile with the guest's own python3 (chroot): under TCG, compiling at boot costs seconds.

    unchecked-hash .pyc files are used without comparing source mtimes, which cpio may not keep exact.
    """
    trees = [f"/usr/lib/python{GUEST_PYTHON}", f"/{PYTHON_TARGET}", f"/{APP_DIR}"]
    try:
        run(
            [
                "chroot",
                str(root),
                "/usr/bin/python3",
                "-m",
                "compileall",
                "-q",
                "-q",
                "--invalidation-mode",
                "unchecked-hash",
                *trees,
            ]
        )
    except BuildError as exc:
        raise BuildError(f"byte-compiling in the guest root failed (needs root for chroot): {exc}") from exc


def smoke_test(root: Path) -> None:
    """Import gRPC and our stubs with the guest's python, and start tpm2-tools: a library missing (or stripped)
    fails the build, not the boot."""
    code = "import grpc, google.protobuf, grpc_health.v1.health, cocos_pb.agent_pb2_grpc, cocos_pb.agent_v1_pb2_grpc"
    run(["chroot", str(root), "/bin/sh", "-c", f"cd /{APP_DIR} && /usr/bin/python3 -c '{code}'"])
    for tool in ("tpm2_pcrreset", "tpm2_pcrextend", "tpm2_createprimary", "tpm2_readpublic", "tpm2_quote",
                 "tpm2_flushcontext"):
        run(["chroot", str(root), f"/usr/bin/{tool}", "--version"])
