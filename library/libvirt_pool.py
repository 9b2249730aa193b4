#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_pool: a thin front for module_utils/cocos_libvirt/pool.py."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_pool
short_description: Converge a libvirt storage pool (definition, target directory, active, autostart)
version_added: "0.1.0"
description:
  - Defines, builds, starts, stops, autostarts or removes a libvirt storage pool.
  - The desired definition is rendered by libvirt's own parser (a private instance of libvirt's test driver),
    so every rewrite libvirt makes (a target path's trailing slash, defaults it writes) is on both sides, and
    compared once with libvirt's definition, leaving out the uuid and what an active pool reports beyond its
    definition (sizes, the owner and group found on its directory, free extents). That one comparison decides
    check mode, diff mode and the real run, so C(changed) is the same in all three.
  - A changed definition (for example a new target path) is redefined in place, keeping the UUID. An active
    pool whose definition changed is restarted so the change takes effect; guests keep their open disk files.
  - Only C(dir), C(fs) and C(netfs) pools are built, which for them only makes the target directory (when the
    pool is defined, and again before it starts). Other types' build would initialise devices (a volume group,
    a partition table), so they are never built; prepare their storage first.
  - A new pool whose build or start fails is stopped, the directories its build made are removed and its
    definition is undefined; the error names the failed step and what was rolled back.
options:
  name:
    description: Name of the pool.
    type: str
    required: true
  state:
    description: C(present) defines the pool, C(absent) stops and undefines it.
    type: str
    choices: [present, absent]
    default: present
  active:
    description: Whether the pool should be running.
    type: bool
    default: true
  autostart:
    description: Whether the pool starts with libvirtd. Unset leaves the current setting as it is.
    type: bool
  type:
    description: Pool type when the definition is built from options.
    type: str
    choices: [dir]
    default: dir
  path:
    description: Target directory of the pool. Required with O(state=present) unless O(xml) is given.
    type: path
  xml:
    description:
      - A whole C(<pool>) definition instead of O(type) and O(path). Its C(<name>) must equal O(name)
        (or be left out). Directory-based pools get their target built as with the options.
    type: str
  delete_target:
    description:
      - With O(state=absent), also delete the pool's target (for dir pools, remove the empty directory).
      - Off by default so removing a pool never removes data; a non-empty directory is an error.
    type: bool
    default: false
    aliases: [delete]
extends_documentation_fragment:
  - cocos_libvirt
  - cocos_libvirt.attributes
author:
  - Cocos AI Manager developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Image pool in a directory, running and autostarted
  libvirt_pool:
    name: virtimages
    path: /var/lib/cocos/img
    autostart: true

- name: Pool from a whole definition
  libvirt_pool:
    name: iso
    xml: "{{ lookup('ansible.builtin.file', 'xml/pool.xml') }}"

- name: Remove the pool and its (empty) directory
  libvirt_pool:
    name: virtimages
    state: absent
    delete_target: true
"""

RETURN = r"""
pool:
  description: The pool after the run (before it, in check mode); empty when absent.
  returned: always
  type: dict
  sample: {name: virtimages, uuid: 3e9f..., type: dir, path: /var/lib/cocos/img, active: true,
           autostart: true, capacity: 270553174016, allocation: 24598794240, available: 245954379776,
           volumes: [alpine.qcow2]}
  contains:
    volumes:
      description:
        - Names of the volumes in the pool, sorted, as libvirt lists them after the run's actions.
        - Empty when the pool is not active, since only a running pool lists its volumes.
      returned: when the pool exists
      type: list
      elements: str
actions:
  description: The steps the run made (or, in check mode, would make), in order.
  returned: always
  type: list
  elements: str
  sample: [define, build, start, autostart]
restart_required:
  description: Always false for pools, which are restarted to apply a changed definition.
  returned: when state is present
  type: bool
"""

# Ansible's module convention puts the documentation blocks before the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.pool import build_manager  # noqa: E402


def argument_spec() -> dict:
    spec = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "active": {"type": "bool", "default": True},
        "autostart": {"type": "bool"},
        "type": {"type": "str", "choices": ["dir"], "default": "dir"},
        "path": {"type": "path"},
        "xml": {"type": "str"},
        "delete_target": {"type": "bool", "default": False, "aliases": ["delete"]},
    }
    spec.update(COMMON_ARGS)
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), mutually_exclusive=[("xml", "path")],
                           supports_check_mode=True)
    run_module(module, build_manager)


if __name__ == "__main__":
    main()
