"""The libvirt domain XML for the test guest under TCG, shared by tests, benchmarks and the demo.

User networking through <qemu:commandline> because libvirt 9.0 here has no passt backend; the
agent port is forwarded from 127.0.0.1 only, so nothing but the host's loopback can reach the guest.
"""

from pathlib import Path
from xml.sax.saxutils import quoteattr

from guest.contract import AGENT_PORT
from guest.iso import KERNEL_CMDLINE

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


_TPM = """
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'/>
    </tpm>"""


def _attr(value: object) -> str:
    return quoteattr(str(value))


def _os_block(kernel: Path | None, initrd: Path | None, cmdline: str | None) -> str:
    """Direct kernel boot when a kernel is given (faster: no BIOS, no isolinux, same cmdline), else firmware boot."""
    lines = ["<type arch='x86_64' machine='pc'>hvm</type>"]
    if kernel:
        lines.append(f"<kernel>{kernel}</kernel>")
        if initrd:
            lines.append(f"<initrd>{initrd}</initrd>")
        lines.append(f"<cmdline>{cmdline or KERNEL_CMDLINE}</cmdline>")
    return "\n    ".join(lines)


def _disks(iso: Path | None, disk: Path | None, disk_format: str | None) -> str:
    """The ISO on IDE first (SeaBIOS boots it), the optional disk second on virtio: it never takes the boot."""
    parts = []
    if iso:
        parts.append(f"""<disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file={_attr(iso)}/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
      <boot order='1'/>
    </disk>""")
    if disk:
        fmt = disk_format or ("qcow2" if str(disk).endswith(".qcow2") else "raw")
        parts.append(f"""<disk type='file' device='disk'>
      <driver name='qemu' type={_attr(fmt)}/>
      <source file={_attr(disk)}/>
      <target dev='vda' bus='virtio'/>
      <boot order='2'/>
    </disk>""")
    return "\n    ".join(parts)


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
    tpm: bool = False,
) -> str:
    """A `type='qemu'` domain booting the guest ISO (or kernel+initrd directly), serial console to
    console_log, and 127.0.0.1:host_port forwarded to guest_port (the agent, 7002).

    tpm=True adds an emulated TPM 2.0 (CRB interface, libvirt runs swtpm for it; formatdomain.html#tpm-device):
    the agent measures computations into it."""
    hostfwd = f"user,id=n0,hostfwd=tcp:127.0.0.1:{int(host_port)}-:{int(guest_port)}"
    os_block = _os_block(Path(kernel) if kernel else None, Path(initrd) if initrd else None, cmdline)
    disks = _disks(Path(iso) if iso else None, Path(disk) if disk else None, disk_format)
    return f"""<domain type='qemu' xmlns:qemu='{QEMU_NS}'>
  <name>{name}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    {os_block}
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {disks}
    <serial type='file'>
      <source path={_attr(console_log)}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={_attr(console_log)}/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>{_TPM if tpm else ""}
  </devices>
  <qemu:commandline>
    <qemu:arg value={_attr("-netdev")}/>
    <qemu:arg value={_attr(hostfwd)}/>
    <qemu:arg value={_attr("-device")}/>
    <qemu:arg value={_attr("virtio-net-pci,netdev=n0,addr=0x10")}/>
  </qemu:commandline>
</domain>
"""
