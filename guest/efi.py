"""UEFI boot for the guest ISO: Debian's signed shim and GRUB on a FAT image, an El Torito EFI boot entry.

OVMF boots EFI/BOOT/BOOTX64.EFI from the FAT image: shim (signed by Microsoft's UEFI CA), which loads
grubx64.efi beside it: Debian's signed monolithic GRUB for CDs (gcdx64.efi), which finds the ISO by
/.disk/info, reads /boot/grub/grub.cfg there and boots the same /boot/vmlinuz and /boot/initrd.img as
isolinux does under BIOS. The Debian kernel is signed by Debian, so the chain also boots with Secure Boot
on and Microsoft's keys enrolled (libvirt's default Secure Boot firmware): shim checks GRUB and GRUB (through
shim) checks the kernel. Neither checks the initramfs or the kernel command line; GRUB measures both into
the TPM (PCRs 8 and 9) when there is one.
"""

import shutil
from pathlib import Path

from guest.kernel import apt_download
from guest.proc import BuildError, run

# Debian packages and the file each contributes, as (package, path in the package, name on the FAT image).
BOOT_FILES = (
    ("shim-signed", "usr/lib/shim/shimx64.efi.signed", "BOOTX64.EFI"),
    ("grub-efi-amd64-signed", "usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed", "grubx64.efi"),
)
PACKAGES = tuple(package for package, _, _ in BOOT_FILES)
FAT_SIZE = 6 * 2**20  # shim (1 MiB) and GRUB (3.7 MiB) with room to spare
FAT_SERIAL = "C0C05EF1"  # fixed, so the image does not change from build to build
# The file gcdx64.efi's built-in configuration searches for to find the boot medium.
DISK_INFO = ".disk/info"


def grub_cfg(cmdline: str) -> str:
    """No menu, no wait: the first entry boots the kernel with the ISO's command line."""
    return (
        "set timeout=0\n"
        "set default=0\n"
        'menuentry "Cocos guest" {\n'
        f"    linux /boot/vmlinuz {cmdline}\n"
        "    initrd /boot/initrd.img\n"
        "}\n"
    )


def fetch(parts: Path, refresh: bool = False) -> Path:
    """parts/efi/ with BOOTX64.EFI and grubx64.efi, unpacked from the Debian packages once."""
    target = parts / "efi"
    if not refresh and all((target / name).exists() for _, _, name in BOOT_FILES):
        return target
    staging = target.with_name("efi.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for package, inner, name in BOOT_FILES:
        deb = apt_download(package, parts / "debs")
        unpacked = staging / package
        run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        if not (unpacked / inner).exists():
            raise BuildError(f"{deb.name} has no {inner}")
        shutil.copyfile(unpacked / inner, staging / name)
        shutil.rmtree(unpacked)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def fat_image(boot_dir: Path, out: Path) -> None:
    """A FAT image holding EFI/BOOT/{BOOTX64.EFI,grubx64.efi}, made with mtools (no mount, no root)."""
    with open(out, "wb") as image:
        image.truncate(FAT_SIZE)
    run(["mformat", "-i", str(out), "-N", FAT_SERIAL, "-v", "COCOS_EFI", "::"])
    run(["mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT"])
    for _, _, name in BOOT_FILES:
        run(["mcopy", "-i", str(out), str(boot_dir / name), f"::/EFI/BOOT/{name}"])
