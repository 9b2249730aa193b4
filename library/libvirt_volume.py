#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module libvirt_volume: a thin front for module_utils/cocos_libvirt/volume.py."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_volume
short_description: Converge a libvirt storage volume (create, seed from an image, grow, delete)
version_added: "0.1.0"
description:
  - Creates, grows or deletes a volume in a libvirt storage pool. Sizes use libvirt's unit grammar.
  - Resizing only grows a volume; shrinking is an error unless O(allow_shrink=true), because it loses data.
  - With O(source), the image is read (or downloaded), verified against O(checksum) and uploaded through
    libvirt's stream API, so it works against remote hypervisors too. If the checksum does not match,
    nothing is created; if the upload fails, the volume created for it is deleted again.
  - "Idempotence rule: content is uploaded only when the volume is created. An existing volume's content is
    never compared or overwritten (guests write to their disks); remove the volume to seed it again."
  - The difference is computed once and decides check mode, diff mode and the real run alike. With O(source) the
    steps are C(create), C(upload) and, when the image is smaller than O(capacity), C(resize); when a later step
    fails, the volume this run created is deleted again and the error says so.
options:
  pool:
    description: Name of the storage pool; it must exist and be active (a missing pool is an error, except
      with O(state=absent), where it means the volume is already gone).
    type: str
    required: true
  name:
    description: Name of the volume (for dir pools, its file name).
    type: str
    required: true
  state:
    description: C(present) creates or grows the volume, C(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - Size, a number of bytes or a number with a unit (b, KB, K, KiB, MB, M, MiB, GB, G, GiB, TB, T, TiB,
        PB, P, PiB, EB, E, EiB; KB, MB... are powers of 1000, K, KiB... powers of 1024).
      - Required to create a volume without O(source); with O(source), the volume is grown to it after upload.
      - Compared after the rounding libvirt and the image format apply, so a rerun with the same value is no
        change. In directory pools raw volumes are exactly this size; other formats are created in whole KiB
        and resized in whole 512-byte sectors (100000000 bytes of qcow2 become 100000768), vpc in whole
        disk cylinders; other pool types allocate whole units of their own (logical volumes whole extents,
        4 MiB by default).
      - A O(source) image larger than this (after that rounding) is an error before anything is created,
        unless O(grow_to_source=true).
    type: str
  format:
    description:
      - Volume format. When creating without O(source) it defaults to C(qcow2); with O(source) it defaults to
        the image's own format, and a different image format is an error. For an existing volume it is only
        checked (libvirt cannot convert in place).
    type: str
    choices: [qcow2, raw]
  allow_shrink:
    description: Allow O(capacity) below the current size.
    type: bool
    default: false
  grow_to_source:
    description:
      - With O(source), make O(capacity) a minimum. A source image larger than O(capacity) then creates the
        volume at the image's size instead of failing, and on later runs a volume larger than O(capacity) is
        left as it is. Cannot be combined with O(allow_shrink=true).
    type: bool
    default: false
  xml:
    description:
      - A whole C(<volume>) definition instead of O(capacity) and O(format); its name must equal O(name).
      - Without a C(<format>), check mode and diff report the format libvirt gives such a volume in this pool
        (V(raw) in directory pools), as libvirt's own parser renders it.
    type: str
  source:
    description: Local path or C(file://), C(http://), C(https://) URL of an image to seed a new volume with.
    type: str
  checksum:
    description: C(sha256:<hex>) the source must match before anything is created. Required for http(s) URLs.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports exactly the changes a real run would make; local sources are verified, URLs are not fetched.
  diff_mode:
    support: full
    description: Shows format and capacity before and after.
  idempotent:
    support: full
    description: A second run with the same options reports no change.
extends_documentation_fragment:
  - cocos_libvirt
author:
  - Cocos AI Manager developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Empty 10 GiB qcow2 disk
  libvirt_volume:
    pool: virtimages
    name: data.qcow2
    capacity: 10GiB

- name: Disk seeded from a verified image, grown to 8 GiB
  libvirt_volume:
    pool: virtimages
    name: alpine.qcow2
    source: /var/lib/cocos/iso/alpine.qcow2
    checksum: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    capacity: 8GiB

- name: Remove it
  libvirt_volume:
    pool: virtimages
    name: alpine.qcow2
    state: absent
"""

RETURN = r"""
volume:
  description: The volume after the run (before it, in check mode); empty when absent.
  returned: always
  type: dict
  sample: {name: data.qcow2, pool: virtimages, path: /var/lib/cocos/img/data.qcow2,
           key: /var/lib/cocos/img/data.qcow2, format: qcow2, capacity: 10737418240, allocation: 200704}
actions:
  description: The steps the run made (or, in check mode, would make), in order.
  returned: always
  type: list
  elements: str
  sample: [resize]
"""

# Ansible's module convention puts the documentation blocks before the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_libvirt.common import COMMON_ARGS, run_module  # noqa: E402
from ansible.module_utils.cocos_libvirt.volume import build_manager  # noqa: E402


def argument_spec() -> dict:
    spec = {
        "pool": {"type": "str", "required": True},
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "capacity": {"type": "str"},
        "format": {"type": "str", "choices": ["qcow2", "raw"]},
        "allow_shrink": {"type": "bool", "default": False},
        "grow_to_source": {"type": "bool", "default": False},
        "xml": {"type": "str"},
        "source": {"type": "str"},
        "checksum": {"type": "str", "no_log": False},
    }
    spec.update(COMMON_ARGS)
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[("xml", "capacity"), ("xml", "format"), ("xml", "source")],
                           required_by={"checksum": "source"})
    run_module(module, build_manager)


if __name__ == "__main__":
    main()
