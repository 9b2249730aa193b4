#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_host_info: documentation, argument_spec and main(); the logic is in module_utils."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_host_info
short_description: The host's confidential-computing facts from libvirt's domain capabilities
description:
  - Reads libvirt's domain capabilities (C(virConnectGetDomainCapabilities)) for one emulator, arch,
    machine and domain type, and reports what guests can get there. UEFI firmware (OVMF) found and
    Secure Boot, from C(<os>); an emulated TPM, from C(<devices><tpm>); AMD SEV from C(<features><sev>);
    SEV-SNP and Intel TDX from the C(sectype) enum of C(<features><launchSecurity>) (libvirt 10.5 and
    later; older libvirt has no such element and so cannot launch them).
  - Each unsupported technology comes with the reason, quoting the capability element that says so.
  - Format of the capabilities, U(https://libvirt.org/formatdomaincaps.html).
version_added: "0.1.0"
author: Cocos AI Manager developers (!UNKNOWN)
extends_documentation_fragment:
  - cocos_libvirt
attributes:
  check_mode:
    support: full
    description: Only reads, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
options:
  domain_type:
    description:
      - Domain type the facts are for. V(auto) is libvirt_domain's rule (kvm only where KVM boots standard
        guests, else qemu). Hardware TEEs (SEV, SEV-SNP, TDX) need V(kvm); under V(qemu) (TCG) libvirt
        reports them unsupported.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  machine:
    description: Machine type, e.g. V(q35) (where Secure Boot firmware and the TEEs' firmware live) or V(pc).
    type: str
    default: q35
  arch:
    description: Guest architecture; the host's when omitted.
    type: str
  emulator:
    description: Emulator binary; libvirt's default for the arch when omitted.
    type: path
"""

EXAMPLES = r"""
- name: What confidential guests can get on this host
  libvirt_host_info:
  register: host_info

- name: Require UEFI Secure Boot and a TPM 2.0 emulator
  ansible.builtin.assert:
    that:
      - host_info.host.uefi.secure_boot
      - host_info.host.tpm.emulated_tpm2
"""

RETURN = r"""
host:
  description: Facts of the capabilities read.
  returned: always
  type: dict
  contains:
    emulator: {description: Emulator binary the capabilities describe., type: str}
    domain_type: {description: Domain type (kvm or qemu)., type: str}
    machine: {description: "Versioned machine, for example pc-q35-7.2.", type: str}
    arch: {description: Guest architecture., type: str}
    uefi:
      description: "supported (firmware auto-selection offers efi), firmware (OVMF binaries found),
        secure_boot (a Secure Boot firmware exists for the machine)."
      type: dict
      sample: {supported: true, secure_boot: true, firmware: [/usr/share/OVMF/OVMF_CODE_4M.fd]}
    ovmf: {description: UEFI supported and at least one OVMF binary found., type: bool}
    tpm:
      description: "supported, models, backends, versions, and emulated_tpm2 (the emulator backend offers 2.0,
        which libvirt reports only when swtpm is usable)."
      type: dict
    sev:
      description: "AMD SEV: supported, and reason (the capability element that says no) when not."
      type: dict
      sample: {supported: false, reason: "<sev supported='no'/>"}
    sev_snp: {description: "AMD SEV-SNP, as sev.", type: dict}
    tdx: {description: "Intel TDX, as sev.", type: dict}
    launch_security_types: {description: "Launch security types offered, e.g. [sev, sev-snp].", type: list}
    swtpm:
      description: "Paths of swtpm and swtpm_setup (null when missing); checked is false for a remote uri."
      type: dict
      sample: {swtpm: /usr/bin/swtpm, swtpm_setup: /usr/bin/swtpm_setup, checked: true}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.host import HostInfo  # noqa: E402


def argument_spec() -> dict:
    return dict(
        COMMON_ARGS,
        domain_type={"type": "str", "choices": ["auto", "kvm", "qemu"], "default": "auto"},
        machine={"type": "str", "default": "q35"},
        arch={"type": "str"},
        emulator={"type": "path"},
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, HostInfo)


if __name__ == "__main__":
    main()
