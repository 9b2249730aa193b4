#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_domain_info: read-only facts of libvirt domains."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_domain_info
short_description: Read facts of libvirt domains
description:
  - Returns state, autostart, memory, vCPUs, inactive XML, disks, interfaces and the port forwards
    of QEMU user-mode networking of one domain or of all domains. Never changes anything.
  - Port forwards are read from C(<qemu:commandline>) C(-netdev user,...,hostfwd=...) arguments,
    whether the domain was defined by M(libvirt_domain)'s options or from raw XML.
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
  name:
    description: Domain name; all domains when unset. A missing domain gives an empty list.
    type: str
"""

EXAMPLES = r"""
- name: Where does the agent of cocos-vm-1 listen?
  libvirt_domain_info:
    name: cocos-vm-1
  register: vm

- name: Show it
  ansible.builtin.debug:
    msg: "{{ vm.domains[0].forwarded_ports }}"
"""

RETURN = r"""
domains:
  description: One entry per domain, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Domain name., type: str}
    uuid: {description: Domain UUID., type: str}
    state: {description: "running, paused, shutoff, crashed or pmsuspended.", type: str}
    autostart: {description: Whether libvirtd starts it., type: bool}
    memory: {description: Memory in bytes., type: int}
    vcpus: {description: Virtual CPUs., type: int}
    xml: {description: libvirt's inactive XML., type: str}
    disks:
      description: "Disks: target, device, bus, type, format, path (resolved for pool volumes), pool, volume."
      type: list
    interfaces:
      description: "Interfaces: type, network, bridge, mac, model; user-mode ones with id and port_forwards."
      type: list
    forwarded_ports:
      description: Port forwards of user-mode networking.
      type: list
      sample: [{host_address: 127.0.0.1, host_port: 7020, guest_port: 7002, protocol: tcp}]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.domain import DomainInfo  # noqa: E402


def argument_spec() -> dict:
    return dict(COMMON_ARGS, name={"type": "str"})


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, DomainInfo)


if __name__ == "__main__":
    main()
