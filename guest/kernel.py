"""The guest kernel: Debian's cloud flavour (small, virtio-ready), unpacked from its .deb."""

import os
import shutil
from pathlib import Path

from guest.proc import BuildError, run

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"

# Load order matters: insmod does not resolve dependencies, so each module follows the ones it uses.
# virtio_blk is there for an optional data disk; button + evdev turn the ACPI power button into an
# input event that acpid sees, which is what makes `virsh shutdown` work.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
    "button",
    "evdev",
)


def apt_download(package: str, dest: Path) -> Path:
    """apt-get download into dest (from apt's configured sources); returns the .deb."""
    dest.mkdir(parents=True, exist_ok=True)
    # Sandbox user root: _apt cannot write into a root-owned cache directory.
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package], cwd=dest)
    debs = sorted(dest.glob(f"{package}_*.deb"), key=os.path.getmtime)
    if not debs:
        raise BuildError(f"apt-get download {package} left no .deb in {dest}")
    return debs[-1]


def _image_package(metapackage_deb: Path) -> str:
    """The versioned image package (linux-image-6.1.0-NN-cloud-amd64) the metapackage depends on."""
    depends = run(["dpkg-deb", "-f", str(metapackage_deb), "Depends"])
    for alternative in depends.replace("|", ",").split(","):
        name = alternative.strip().split(" ")[0]
        if name.startswith("linux-image-"):
            return name
    raise BuildError(f"no linux-image dependency in {metapackage_deb}: {depends!r}")


def fetch(parts: Path, refresh: bool = False) -> Path:
    """Unpacked kernel under parts/kernel/<package>/ with vmlinuz and modules/*.ko; downloaded once."""
    debs = parts / "debs"
    pointer = parts / "kernel" / "current"
    if pointer.exists() and not refresh:
        return (parts / "kernel" / pointer.read_text().strip()).resolve()
    image = _image_package(apt_download(KERNEL_METAPACKAGE, debs))
    target = parts / "kernel" / image
    if not (target / "vmlinuz").exists():
        _unpack(apt_download(image, debs), target)
    pointer.write_text(image + "\n")
    return target


def _unpack(deb: Path, target: Path) -> None:
    """Keep only vmlinuz and the modules the guest loads; the other 100 MB of modules stay out."""
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    run(["dpkg-deb", "-x", str(deb), str(staging / "deb")])
    (staging / "modules").mkdir()
    shutil.copy2(next((staging / "deb" / "boot").glob("vmlinuz-*")), staging / "vmlinuz")
    found = {p.name.split(".ko")[0]: p for p in (staging / "deb" / "lib" / "modules").rglob("*.ko*")}
    for name in MODULES:
        if name not in found:
            raise BuildError(f"kernel module {name} is not in {deb.name}")
        shutil.copy2(found[name], staging / "modules" / found[name].name)
    (staging / "release").write_text(next((staging / "deb" / "lib" / "modules").iterdir()).name + "\n")
    shutil.rmtree(staging / "deb")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
