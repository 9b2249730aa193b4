"""The libvirt domain XML for the test guest under TCG, shared by tests, benchmarks and the demo.

Built by the library's one domain XML builder (module_utils.cocos_libvirt.domain_xml), the same code
libvirt_domain defines domains with, so names and paths are escaped and the result is what the module
would converge to. User networking goes through <qemu:commandline> because libvirt 9.0 here has no
passt backend; the agent port is forwarded from 127.0.0.1 only, so nothing but the host's loopback can
reach the guest.

Firmware: `bios` boots the ISO with SeaBIOS and isolinux from an IDE CD-ROM on the pc machine (as fast
as TCG gets); `efi` boots it with OVMF (libvirt's firmware auto-selection) and GRUB from a SATA CD-ROM
on q35, with or without Secure Boot. `tpm` adds an emulated TPM 2.0 (swtpm): `tpm-crb` or `tpm-tis`.
"""

from pathlib import Path

from guest.contract import AGENT_PORT
from guest.iso import KERNEL_CMDLINE
from module_utils.cocos_libvirt import domain_xml as builder

FIRMWARES = ("bios", "efi")


def _disks(iso: Path | None, disk: Path | None, disk_format: str | None, efi: bool) -> list[dict]:
    """The ISO first (boot order 1; IDE for SeaBIOS on pc, SATA on q35, which has no IDE), the optional
    disk second on virtio: it never takes the boot."""
    disks = []
    if iso:
        disks.append({"device": "cdrom", "path": str(iso), "bus": "sata" if efi else "ide", "format": "raw",
                      "boot_order": 1})
    if disk:
        fmt = disk_format or ("qcow2" if str(disk).endswith(".qcow2") else "raw")
        disks.append({"device": "disk", "path": str(disk), "bus": "virtio", "format": fmt, "boot_order": 2})
    return disks


def domain_xml(
    name: str,
    iso: str | Path | None,
    host_port: int,
    console_log: str | Path,
    disk: str | Path | None = None,
    memory_mib: int = 512,
    vcpus: int = 1,
    guest_port: int = AGENT_PORT,
    disk_format: str | None = None,
    kernel: str | Path | None = None,
    initrd: str | Path | None = None,
    cmdline: str | None = None,
    firmware: str = "bios",
    secure_boot: bool = False,
    tpm: str | None = None,
) -> str:
    """A `type='qemu'` domain booting the guest ISO (or kernel+initrd directly), serial console logged to
    console_log, and 127.0.0.1:host_port forwarded to guest_port (the agent, 7002).

    firmware: bios or efi (q35, OVMF); secure_boot: with efi; tpm: None, tpm-crb or tpm-tis (TPM 2.0).
    Raises LibvirtModuleError for options the builder refuses (e.g. secure_boot with bios).
    """
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware must be one of {', '.join(FIRMWARES)}, not {firmware!r}")
    efi = firmware == "efi"
    opts: dict = {
        "memory": f"{int(memory_mib)}MiB",
        "vcpus": int(vcpus),
        "machine": "q35" if efi else "pc",
        "firmware": firmware,
        "secure_boot": secure_boot,
        "tpm": {"model": tpm, "version": "2.0"} if tpm else None,
        "disks": _disks(Path(iso) if iso else None, Path(disk) if disk else None, disk_format, efi),
        "interfaces": [{"type": "user", "port_forwards": [
            {"host_address": "127.0.0.1", "host_port": int(host_port), "guest_port": int(guest_port)}]}],
        "serial_log": str(console_log),
    }
    if kernel:
        opts.update(kernel=str(kernel), initrd=str(initrd) if initrd else None, cmdline=cmdline or KERNEL_CMDLINE)
    return builder.to_text(builder.build(name, opts, "qemu", {})) + "\n"
