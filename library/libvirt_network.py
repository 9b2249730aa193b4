#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_network: a thin front for module_utils/cocos_libvirt/network.py."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_network
short_description: Converge a libvirt virtual network (definition, active, autostart)
version_added: "0.1.0"
description:
  - Defines, starts, stops, autostarts or removes a libvirt virtual network, from a whole O(xml) definition
    or from the usual NAT options.
  - The desired definition is rendered by libvirt's own parser (a private instance of libvirt's test driver), so
    every rewrite libvirt makes (lower-case MACs, shortened IPv6 addresses, STP defaults) is on both sides, with
    the MAC and bridge name libvirt generated kept where the definition leaves them out, and compared once with
    libvirt's persistent definition; that one comparison decides check mode, diff mode and the real run, so
    C(changed) is the same in all three.
  - A changed definition is redefined in place at once, keeping the UUID. An active network runs on with its
    old definition until it restarts, and a restart detaches running guests from the bridge, so it is
    restarted only with O(allow_restart=true); otherwise the result has C(restart_required=true) and a
    warning, on this run and every later one until the network restarts.
options:
  name:
    description: Name of the network.
    type: str
    required: true
  state:
    description: C(present) defines the network, C(absent) stops and undefines it.
    type: str
    choices: [present, absent]
    default: present
  active:
    description: Whether the network should be running.
    type: bool
    default: true
  autostart:
    description: Whether the network starts with libvirtd. Unset leaves the current setting as it is.
    type: bool
  allow_restart:
    description: Restart an active network whose definition changed, so the change takes effect now.
    type: bool
    default: false
  xml:
    description: A whole C(<network>) definition instead of the options below. Its C(<name>) must equal O(name).
    type: str
  forward_mode:
    description: How the network reaches the outside; C(isolated) writes no C(<forward>) element.
    type: str
    choices: [nat, route, open, isolated]
    default: nat
  bridge:
    description: Host bridge name (at most 15 characters). Unset lets libvirt pick C(virbrN).
    type: str
  ip_address:
    description: The host's address on the network. Required unless O(xml) is given.
    type: str
  netmask:
    description: Netmask of O(ip_address).
    type: str
    default: 255.255.255.0
  dhcp_start:
    description: First address handed out by DHCP; give together with O(dhcp_end).
    type: str
  dhcp_end:
    description: Last address handed out by DHCP.
    type: str
extends_documentation_fragment:
  - cocos_libvirt
  - cocos_libvirt.attributes
author:
  - Cocos AI Manager developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: NAT network for the guests
  libvirt_network:
    name: cocos
    bridge: virbr-cocos
    ip_address: 10.77.0.1
    dhcp_start: 10.77.0.10
    dhcp_end: 10.77.0.100
    autostart: true

- name: Apply a changed definition to the running network now
  libvirt_network:
    name: cocos
    xml: "{{ lookup('ansible.builtin.template', 'cocos-net.xml.j2') }}"
    allow_restart: true

- name: Remove it
  libvirt_network:
    name: cocos
    state: absent
"""

RETURN = r"""
network:
  description: The network after the run (before it, in check mode); empty when absent.
  returned: always
  type: dict
  sample: {name: cocos, uuid: 7030..., bridge: virbr-cocos, forward_mode: nat, ip_address: 10.77.0.1,
           netmask: 255.255.255.0, active: true, autostart: true, persistent: true}
actions:
  description: The steps the run made (or, in check mode, would make), in order.
  returned: always
  type: list
  elements: str
  sample: [redefine, restart]
restart_required:
  description: The running network still uses an older definition (set O(allow_restart=true) to apply it).
  returned: when state is present
  type: bool
"""

# Ansible's module convention puts the documentation blocks before the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.network import build_manager  # noqa: E402

_NAT_OPTIONS = ("bridge", "ip_address", "dhcp_start", "dhcp_end")


def argument_spec() -> dict:
    spec = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "active": {"type": "bool", "default": True},
        "autostart": {"type": "bool"},
        "allow_restart": {"type": "bool", "default": False},
        "xml": {"type": "str"},
        "forward_mode": {"type": "str", "choices": ["nat", "route", "open", "isolated"], "default": "nat"},
        "bridge": {"type": "str"},
        "ip_address": {"type": "str"},
        "netmask": {"type": "str", "default": "255.255.255.0"},
        "dhcp_start": {"type": "str"},
        "dhcp_end": {"type": "str"},
    }
    spec.update(COMMON_ARGS)
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("xml", option) for option in _NAT_OPTIONS])
    run_module(module, build_manager)


if __name__ == "__main__":
    main()
