"""A BIOS- and UEFI-bootable ISO holding the kernel and the initramfs.

Two El Torito boot entries: isolinux for BIOS (no-emulation), and a FAT image with shim and GRUB for
UEFI (guest/efi.py). Both boot /boot/vmlinuz and /boot/initrd.img with KERNEL_CMDLINE.
"""

import shutil
from pathlib import Path

from guest import efi
from guest.proc import run

ISOLINUX = Path("/usr/lib/ISOLINUX")  # Debian package isolinux
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")  # Debian package syslinux-common
VOLUME_ID = "COCOS_GUEST"

# console=ttyS0: the serial console is the guest's only output; quiet keeps kernel chatter (slow to
# emulate) off it; panic=5 reboots rather than hanging if /init ever exits; no_timer_check skips the IO-APIC timer
# test, which an emulated CPU on a loaded host fails ("IO-APIC + timer doesn't work!": panic, reboot, 5 s lost).
KERNEL_CMDLINE = "console=ttyS0,115200 quiet panic=5 no_timer_check"


def isolinux_cfg(cmdline: str = KERNEL_CMDLINE) -> str:
    """Boot straight into the guest: no prompt, no menu, isolinux itself talking on the serial port."""
    return (
        "SERIAL 0 115200\n"
        "DEFAULT cocos\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL cocos\n"
        "  KERNEL /boot/vmlinuz\n"
        "  INITRD /boot/initrd.img\n"
        f"  APPEND {cmdline}\n"
    )


EFI_IMAGE = "boot/grub/efi.img"  # the UEFI El Torito entry's FAT image, inside the ISO


def make_iso(vmlinuz: Path, initrd: Path, out: Path, workdir: Path, efi_dir: Path) -> None:
    """out: the ISO; efi_dir: BOOTX64.EFI and grubx64.efi (efi.fetch)."""
    tree = workdir / "iso"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / ".disk").mkdir()
    (tree / efi.DISK_INFO).write_text("Cocos test guest\n")
    (tree / "boot" / "grub" / "grub.cfg").write_text(efi.grub_cfg(KERNEL_CMDLINE))
    efi.fat_image(efi_dir, tree / EFI_IMAGE)
    shutil.copyfile(ISOLINUX / "isolinux.bin", tree / "isolinux" / "isolinux.bin")
    shutil.copyfile(SYSLINUX_BIOS / "ldlinux.c32", tree / "isolinux" / "ldlinux.c32")
    (tree / "isolinux" / "isolinux.cfg").write_text(isolinux_cfg())
    shutil.copyfile(vmlinuz, tree / "boot" / "vmlinuz")
    shutil.copyfile(initrd, tree / "boot" / "initrd.img")
    run(
        [
            "xorriso",
            "-as",
            "mkisofs",
            "-quiet",
            "-o",
            str(out),
            "-V",
            VOLUME_ID,
            "-J",
            "-R",
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-eltorito-alt-boot",
            "-e",
            EFI_IMAGE,
            "-no-emul-boot",
            "-isohybrid-gpt-basdat",
            "-isohybrid-mbr",
            str(ISOLINUX / "isohdpfx.bin"),
            str(tree),
        ]
    )
