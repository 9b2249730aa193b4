#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_domain: documentation, argument_spec and main(); the logic is in module_utils."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_domain
short_description: Converge a libvirt domain (definition, run state, autostart)
description:
  - Defines a domain from O(xml) or from structured options and keeps it converged.
  - >-
    O(xml) is a whole definition: what it leaves out is not part of the domain.
  - >-
    Structured options each govern one part of the definition (see each option). For a new domain
    they build the whole definition and O(memory) is required. For an existing domain an omitted
    option (not given, or null) leaves its part as it is in libvirt's current definition: it is
    neither compared nor changed, and a redefinition keeps it. So a task naming only O(memory)
    keeps the disks, interfaces, serial log, boot order, machine and domain type. A given option is
    converged exactly; a given list is the complete list, so O(disks=[]) removes every disk.
  - >-
    Convergence is judged against a record of what was applied, not a prediction of libvirt's rewrites.
    After each definition the module writes one element into the domain's C(<metadata>), in its own
    namespace (C(urn:cocos-ai-manager:libvirt:applied:1)), before the domain is started: a digest of the
    desired definition as the task gave it (the whole O(xml), or what the given options build) and a
    digest of the definition libvirt stored. When neither changed, the domain is converged, whatever
    libvirt rewrote (MAC case, a serial port added for a console, memory rounding). Other applications'
    metadata stays beside it, and it never shows in diffs.
  - >-
    When libvirt's stored definition changed behind the module's back (drift), when the task's options
    changed, or for a domain without the record (not defined by this module), the comparison is semantic:
    the desired definition must be contained in libvirt's inactive XML. Whatever libvirt fills in by
    itself (uuid, MAC and PCI/drive addresses, aliases, default controllers, inputs, console, audio,
    currentMemory, cpu, clock, on_* defaults) never counts as a change; memory units are normalised and
    machine aliases such as C(pc) match the versioned machine libvirt stores. Given disks, interfaces,
    serial ports, boot devices and C(qemu:commandline) arguments are compared as whole lists, so removing
    one is a change too, as is removing C(<metadata>), C(<title>) or C(<description>) from an O(xml).
    An O(xml) that replaces a different O(xml) applied before is always redefined: it is a whole
    definition, so what it no longer says goes, even a part the semantic comparison cannot see missing.
  - >-
    Parts no option governs are written by the module (features ACPI and APIC) or left to libvirt's
    defaults (cpu, clock, controllers) whenever structured options redefine the domain; devices no
    option governs, such as graphics, are not kept and count as a difference. Manage domains that
    need them with O(xml).
  - A changed definition is redefined in place, keeping the UUID and interface MAC addresses.
  - The difference is computed once and used for check mode, diff mode and the real run.
version_added: "0.1.0"
author: Cocos AI Manager developers (!UNKNOWN)
extends_documentation_fragment:
  - cocos_libvirt
attributes:
  check_mode:
    support: full
    description: Reports exactly the changes a real run would make, without making them.
  diff_mode:
    support: full
    description: Shows the domain before and after the run.
    details: before/after show run state, autostart and the compared part of the definition.
  idempotent:
    support: full
    description: A second run with the same options reports no change.
options:
  name:
    description: Domain name.
    type: str
    required: true
  state:
    description:
      - V(present) defined, run state left alone; V(running); V(paused);
        V(shutdown) graceful ACPI power-off, waiting O(wait_timeout) seconds;
        V(destroyed) forced power-off; V(absent) powered off and undefined.
      - V(absent) removes managed save, snapshot and checkpoint metadata, NVRAM and TPM state with
        the definition. V(absent) on a missing domain is not a change.
    type: str
    choices: [present, running, shutdown, destroyed, paused, absent]
    default: present
  xml:
    description:
      - A whole domain definition. Its C(<name>) must equal O(name) (it is added when missing).
      - Mutually exclusive with the structured options.
    type: str
  domain_type:
    description:
      - Hypervisor type. V(auto) picks V(kvm) only when /dev/kvm is usable, the loaded KVM is not
        the paravirtual C(kvm_pvm) (which hangs standard guest kernels) and libvirt offers kvm;
        otherwise V(qemu) (TCG). For a remote O(uri) only libvirt's capabilities decide.
      - The domain's C(type) attribute. V(auto) for a new domain when omitted. Omitted for an
        existing domain, its current type is kept (an existing kvm domain is not switched to qemu
        because V(auto) would resolve differently today).
    type: str
    choices: [kvm, qemu, auto]
  memory:
    description:
      - Guest memory with libvirt's units (V(512MiB), V(1 GiB), V(2G)); a bare number is KiB, as in
        libvirt's C(<memory>) element.
      - Governs C(<memory>), C(<currentMemory>) and C(<maxMemory>); when given, current memory equals it.
      - Required to define a new domain from options; omitted for an existing domain, left as it is.
    type: str
  vcpus:
    description:
      - Number of virtual CPUs (C(<vcpu>), C(<vcpus>)). 1 for a new domain when omitted; omitted for
        an existing domain, left as it is.
    type: int
  machine:
    description:
      - Machine type, e.g. V(q35) or V(pc) (the C(machine) of C(<os><type>)). libvirt's default for a
        new domain when omitted; omitted (or empty) for an existing domain, left as it is.
    type: str
  disks:
    description:
      - All C(<disk>) devices, disks and cdroms, in order. Targets are assigned per bus (vda, vdb,
        sda, ...) unless given.
      - A given list is the complete list (a disk left out is removed, V([]) removes all); omitted
        for an existing domain, the disks are left as they are.
    type: list
    elements: dict
    suboptions:
      pool:
        description: Storage pool of the volume; must exist (with the volume) before the domain is defined.
        type: str
      volume:
        description: Volume name in O(disks[].pool).
        type: str
      path:
        description: Image file path, instead of a pool volume.
        type: str
      format:
        description: Image format; defaults to the volume's own format, else V(raw) for cdroms and V(qcow2).
        type: str
      bus:
        description: Disk bus; V(virtio) for disks and V(sata) for cdroms by default.
        type: str
        choices: [virtio, sata, scsi, ide, usb]
      device:
        description: Device kind. An empty cdrom needs neither pool nor path.
        type: str
        choices: [disk, cdrom]
        default: disk
      readonly:
        description: Read-only disk (cdroms always are).
        type: bool
        default: false
      boot_order:
        description: Per-device boot order; cannot be combined with O(boot).
        type: int
      target:
        description: Target device name, e.g. V(vdb).
        type: str
  boot:
    description:
      - BIOS boot devices in order (C(<os><boot>)). Cannot be combined with per-device boot orders,
        given in O(disks[].boot_order) or kept on the current disks.
      - For a new domain V([hd]) when neither this nor a disk's boot_order is given. For an existing
        domain, when neither is given, the boot devices are left as they are.
    type: list
    elements: str
  interfaces:
    description:
      - Network interfaces. V(network) attaches to a libvirt network.
      - V(user) is QEMU user-mode networking written as C(<qemu:commandline>)
        (C(-netdev user,id=nN,hostfwd=...) and C(-device virtio-net-pci,netdev=nN,addr=0x1N)) with
        C(<memballoon model='none'/>), because libvirt 9.0 has no passt backend.
      - Governs C(<interface>) devices, the whole C(<qemu:commandline>) and C(<memballoon>) (V(virtio)
        without user-mode interfaces). A given list is the complete list (V([]) removes all);
        omitted for an existing domain, all of these are left as they are.
    type: list
    elements: dict
    suboptions:
      type:
        description: Interface kind.
        type: str
        choices: [network, user]
        default: network
      network:
        description: libvirt network name (type network).
        type: str
      model:
        description: NIC model for type network.
        type: str
        default: virtio
      mac:
        description: Fixed MAC address; otherwise libvirt's generated one is kept across redefinitions.
        type: str
      port_forwards:
        description: Host-to-guest forwards for type user. Host ports must be unique.
        type: list
        elements: dict
        suboptions:
          host_address:
            description: Host address to bind; loopback by default so the guest is not exposed.
            type: str
            default: 127.0.0.1
          host_port:
            description: Host port, 1-65535.
            type: int
            required: true
          guest_port:
            description: Guest port, 1-65535.
            type: int
            required: true
          protocol:
            description: Transport protocol.
            type: str
            choices: [tcp, udp]
            default: tcp
  serial_log:
    description:
      - Copy the serial console into this file (a pty serial port with C(<log file=...>)), so
        C(virsh console) keeps working. The file's directory is created when O(uri) is local.
      - Governs the C(<serial>) and C(<console>) devices. An empty string means no serial port;
        omitted for an existing domain, they are left as they are.
    type: path
  firmware:
    description:
      - V(bios) or V(efi) (UEFI), by libvirt's firmware auto-selection (C(<os firmware='efi'>)); libvirt
        picks an installed firmware (OVMF) whose descriptor matches the machine and the Secure Boot choice.
      - Governs the firmware part of the definition together with O(secure_boot), namely C(<os firmware>),
        C(<os><firmware>), C(<loader>), C(<nvram>) and C(<features><smm>).
      - V(bios) for a new domain when omitted (unless O(secure_boot=true), which means V(efi)); omitted
        for an existing domain, left as it is.
      - The host's domain capabilities must list V(efi) in C(<os><enum name='firmware'>), or nothing is
        defined. V(efi) needs C(<features><acpi/>), which the module always writes.
      - O(state=absent) removes the domain's NVRAM (UEFI variable store) with it.
    type: str
    choices: [bios, efi]
  secure_boot:
    description:
      - UEFI Secure Boot, as the firmware features C(secure-boot) and C(enrolled-keys) (both on or both
        off) plus C(<smm state='on'/>), which Secure Boot firmware needs. Always written explicitly;
        left open, libvirt would pick the Secure Boot firmware with Microsoft's keys enrolled.
      - V(true) implies O(firmware=efi); on this project's hosts Secure Boot firmware exists for q35
        machines only (O(machine=q35)); the host's C(<os><loader><enum name='secure'>) must offer V(yes).
      - V(false) for a new UEFI domain when omitted; omitted for an existing domain, left as it is.
        V(false) on an existing BIOS domain keeps it BIOS.
      - When the Secure Boot choice of an existing UEFI domain changes, the module starts it (state
        V(running), or a restart) with a fresh NVRAM from the new firmware's template; started by
        other means (C(virsh start)) it would keep the old variables until C(virsh start --reset-nvram).
    type: bool
  tpm:
    description:
      - An emulated TPM (C(swtpm)), C(<tpm model=...><backend type='emulator' version=.../></tpm>).
        The host's C(<devices><tpm>) capabilities must list the model, the C(emulator) backend and
        the version (libvirt lists the versions swtpm supports, so none without swtpm).
      - O(tpm.model=none) removes the TPM; omitted for an existing domain, left as it is.
      - O(state=absent) removes the TPM's state (C(/var/lib/libvirt/swtpm/<uuid>)) with the domain.
    type: dict
    suboptions:
      model:
        description: TPM interface; V(none) means no TPM.
        type: str
        choices: [tpm-crb, tpm-tis, none]
        default: tpm-crb
      version:
        description: TPM version emulated.
        type: str
        choices: ["2.0"]
        default: "2.0"
  launch_security:
    description:
      - C(<launchSecurity>) (U(https://libvirt.org/formatdomain.html#launch-security)) for AMD SEV, AMD
        SEV-SNP or Intel TDX guests. Each type takes only the fields libvirt defines for it; another
        type's field is refused. V(none) removes launch security; omitted for an existing domain, left as it is.
      - Before defining, the host's domain capabilities must offer the type (C(<sev supported='yes'>) for
        V(sev); C(<launchSecurity>) with the C(sectype) value for V(sev-snp) and V(tdx), reported by
        libvirt 10.5 and later). Otherwise the task fails naming that element and defines nothing.
      - The guest needs UEFI firmware built for the technology (O(firmware=efi); libvirt selects it).
    type: dict
    suboptions:
      type:
        description: Technology.
        type: str
        required: true
        choices: [sev, sev-snp, tdx, none]
      policy:
        description:
          - Guest policy, a number or a hex string (V(0x0003)); required for V(sev) (32 bits), 64 bits
            for V(sev-snp) (e.g. V(0x30000)) and V(tdx) (e.g. V(0x10000000)).
        type: str
      cbitpos:
        description: V(sev), V(sev-snp) C(<cbitpos>), the C-bit position (libvirt takes the host's when omitted).
        type: int
      reduced_phys_bits:
        description: V(sev), V(sev-snp) C(<reducedPhysBits>) (libvirt takes the host's when omitted).
        type: int
      kernel_hashes:
        description: V(sev), V(sev-snp) attribute C(kernelHashes) (measure direct-boot kernel, initrd, cmdline).
        type: bool
      dh_cert:
        description: V(sev) C(<dhCert>), the guest owner's base64 Diffie-Hellman key.
        type: str
      session:
        description: V(sev) C(<session>), the base64 session blob.
        type: str
      author_key:
        description: V(sev-snp) attribute C(authorKey) (O(launch_security.id_auth) holds an author key).
        type: bool
      vcek:
        description: V(sev-snp) attribute C(vcek) (whether the guest may use the VCEK for reports).
        type: bool
      guest_visible_workarounds:
        description: V(sev-snp) C(<guestVisibleWorkarounds>), base64 of 16 bytes.
        type: str
      id_block:
        description: V(sev-snp) C(<idBlock>), base64 of the 96-byte ID block.
        type: str
      id_auth:
        description: V(sev-snp) C(<idAuth>), base64 of the 4096-byte ID authentication structure.
        type: str
      host_data:
        description: V(sev-snp) C(<hostData>), base64 of 32 bytes the guest sees in its reports.
        type: str
      mr_config_id:
        description: V(tdx) C(<mrConfigId>), base64 of 48 bytes.
        type: str
      mr_owner:
        description: V(tdx) C(<mrOwner>), base64 of 48 bytes.
        type: str
      mr_owner_config:
        description: V(tdx) C(<mrOwnerConfig>), base64 of 48 bytes.
        type: str
      quote_generation_service:
        description: V(tdx) C(<quoteGenerationService>); O(launch_security.quote_generation_service.path)
          is the QGS socket (libvirt's default when omitted).
        type: dict
        suboptions:
          path:
            description: Unix socket of the Quote Generation Service.
            type: path
  autostart:
    description: Start the domain with libvirtd. Unset leaves it as it is.
    type: bool
  allow_restart:
    description:
      - When the running guest runs an older definition, restart it (graceful shutdown, destroy
        after O(wait_timeout), start). Without it the result says RV(restart_required=true).
    type: bool
    default: false
  force_shutdown:
    description:
      - With O(state=shutdown), destroy the domain when the guest has not powered off after
        O(wait_timeout) seconds. Without it the task fails and the guest keeps running.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for a requested state (graceful shutdown in particular).
    type: int
    default: 60
  remove_storage:
    description:
      - With O(state=absent), also delete the pool volumes behind the domain's C(device=disk)
        disks (by pool/volume or by a path that is a pool volume). cdroms are never removed (ISO
        images are usually shared). Paths that are no pool volume are kept and listed in RV(kept_storage).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: A TCG guest booting the Cocos ISO, agent reachable on 127.0.0.1:7020
  libvirt_domain:
    name: cocos-vm-1
    state: running
    domain_type: auto
    memory: 1GiB
    vcpus: 2
    disks:
      - {pool: virtimages, volume: cocos-vm-1.qcow2}
      - {device: cdrom, path: /var/lib/cocos/iso/cocos-guest.iso, boot_order: 1}
    interfaces:
      - type: user
        port_forwards:
          - {host_port: 7020, guest_port: 7002}
    serial_log: /var/log/cocos/cocos-vm-1.log
    autostart: true

# Omitted options leave their part as it is: disks, forward, serial log, boot order and type stay.
- name: Grow memory; restart the guest only because we say so
  libvirt_domain:
    name: cocos-vm-1
    state: running
    memory: 2GiB
    allow_restart: true

# A given list is the whole list: the cdrom goes, everything else stays. The running guest keeps
# its old definition until restarted (the result says restart_required).
- name: Eject the installer ISO for good
  libvirt_domain:
    name: cocos-vm-1
    disks:
      - {pool: virtimages, volume: cocos-vm-1.qcow2}

# The document's <name> must be cocos-vm-2 (or absent); it is the whole definition.
- name: Define from a whole XML document
  libvirt_domain:
    name: cocos-vm-2
    xml: "{{ lookup('ansible.builtin.file', 'cocos-vm-2.xml') }}"

# UEFI without Secure Boot and a TPM 2.0 (swtpm): checked against the host's domain capabilities.
- name: A UEFI guest with an emulated TPM
  libvirt_domain:
    name: cocos-vm-3
    state: running
    memory: 1GiB
    machine: q35
    firmware: efi
    secure_boot: false
    tpm: {model: tpm-crb, version: "2.0"}
    disks:
      - {device: cdrom, path: /var/lib/cocos/iso/cocos-guest.iso, boot_order: 1}

# On a host without SEV-SNP this fails, naming the capability element, and defines nothing.
- name: An SEV-SNP guest
  libvirt_domain:
    name: cocos-snp-1
    memory: 2GiB
    machine: q35
    firmware: efi
    launch_security: {type: sev-snp, policy: "0x30000"}

- name: Gone, with its disk volumes
  libvirt_domain:
    name: cocos-vm-1
    state: absent
    remove_storage: true
"""

RETURN = r"""
domain:
  description: The domain after the run (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    name: {description: Domain name., type: str}
    uuid: {description: UUID (null in check mode for a domain not yet defined)., type: str}
    state: {description: "running, blocked, paused, shutting_down, shutoff, crashed, pmsuspended or absent.", type: str}
    autostart: {description: Whether libvirtd starts it., type: bool}
    memory: {description: Memory in bytes., type: int}
    vcpus: {description: Virtual CPUs., type: int}
    xml: {description: libvirt's inactive XML., type: str}
    disks: {description: "Disks: target, device, bus, format, path, pool, volume.", type: list}
    interfaces: {description: Network interfaces including user-mode ones from qemu:commandline., type: list}
    forwarded_ports:
      description: Port forwards of user-mode networking.
      type: list
      sample: [{host_address: 127.0.0.1, host_port: 7020, guest_port: 7002, protocol: tcp}]
    restart_required: {description: Same as the top-level value., type: bool}
restart_required:
  description:
    - The guest is active and was started from another definition than the one it has after this run;
      restart it (or pass O(allow_restart)).
    - Judged from the records (see the description) in the running guest's live XML and in its persistent
      definition, never from libvirt's live rendering, which differs from the definition (memory aligned
      by QEMU, an empty cdrom without driver type). Only a guest started without a record, or one whose
      persistent definition drifted, is compared semantically with its live XML.
  returned: always
  type: bool
actions:
  description: What the run did (or, in check mode, would do), e.g. [redefine, start].
  returned: always
  type: list
  elements: str
removed_volumes:
  description: Paths of the volumes deleted with O(remove_storage=true).
  returned: state=absent
  type: list
  elements: str
kept_storage:
  description: Disk sources that are no pool volume and were kept.
  returned: state=absent and the domain existed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.domain import DomainManager  # noqa: E402

STRUCTURED = ["domain_type", "memory", "vcpus", "machine", "disks", "boot", "interfaces", "serial_log", "firmware",
              "secure_boot", "tpm", "launch_security"]

PORT_FORWARD = {
    "host_address": {"type": "str", "default": "127.0.0.1"},
    "host_port": {"type": "int", "required": True},
    "guest_port": {"type": "int", "required": True},
    "protocol": {"type": "str", "choices": ["tcp", "udp"], "default": "tcp"},
}

DISK = {
    "pool": {"type": "str"},
    "volume": {"type": "str"},
    "path": {"type": "str"},
    "format": {"type": "str"},
    "bus": {"type": "str", "choices": ["virtio", "sata", "scsi", "ide", "usb"]},
    "device": {"type": "str", "choices": ["disk", "cdrom"], "default": "disk"},
    "readonly": {"type": "bool", "default": False},
    "boot_order": {"type": "int"},
    "target": {"type": "str"},
}

INTERFACE = {
    "type": {"type": "str", "choices": ["network", "user"], "default": "network"},
    "network": {"type": "str"},
    "model": {"type": "str", "default": "virtio"},
    "mac": {"type": "str"},
    "port_forwards": {"type": "list", "elements": "dict", "options": PORT_FORWARD},
}

TPM = {
    "model": {"type": "str", "choices": ["tpm-crb", "tpm-tis", "none"], "default": "tpm-crb"},
    "version": {"type": "str", "choices": ["2.0"], "default": "2.0"},
}

LAUNCH_SECURITY = {
    "type": {"type": "str", "required": True, "choices": ["sev", "sev-snp", "tdx", "none"]},
    "policy": {"type": "str"},
    "cbitpos": {"type": "int"},
    "reduced_phys_bits": {"type": "int"},
    "kernel_hashes": {"type": "bool"},
    "dh_cert": {"type": "str"},
    "session": {"type": "str", "no_log": True},
    "author_key": {"type": "bool"},
    "vcek": {"type": "bool"},
    "guest_visible_workarounds": {"type": "str"},
    "id_block": {"type": "str"},
    "id_auth": {"type": "str"},
    "host_data": {"type": "str"},
    "mr_config_id": {"type": "str"},
    "mr_owner": {"type": "str"},
    "mr_owner_config": {"type": "str"},
    "quote_generation_service": {"type": "dict", "options": {"path": {"type": "path"}}},
}


def argument_spec() -> dict:
    return dict(
        COMMON_ARGS,
        name={"type": "str", "required": True},
        state={"type": "str", "default": "present",
               "choices": ["present", "running", "shutdown", "destroyed", "paused", "absent"]},
        xml={"type": "str"},
        domain_type={"type": "str", "choices": ["kvm", "qemu", "auto"]},
        memory={"type": "str"},
        vcpus={"type": "int"},
        machine={"type": "str"},
        disks={"type": "list", "elements": "dict", "options": DISK},
        boot={"type": "list", "elements": "str"},
        interfaces={"type": "list", "elements": "dict", "options": INTERFACE},
        serial_log={"type": "path"},
        firmware={"type": "str", "choices": ["bios", "efi"]},
        secure_boot={"type": "bool"},
        tpm={"type": "dict", "options": TPM},
        launch_security={"type": "dict", "options": LAUNCH_SECURITY},
        autostart={"type": "bool"},
        allow_restart={"type": "bool", "default": False},
        force_shutdown={"type": "bool", "default": False},
        wait_timeout={"type": "int", "default": 60},
        remove_storage={"type": "bool", "default": False},
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("xml", option) for option in STRUCTURED])
    run_module(module, DomainManager)


if __name__ == "__main__":
    main()
