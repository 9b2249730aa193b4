#!/usr/bin/python
# Copyright: Cocos AI Manager contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible module alpine_apkovl: a thin front for module_utils/cocos_alpine/apkovl.py."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: alpine_apkovl
short_description: Write an Alpine local backup overlay (apkovl) from files, directories and links
version_added: "0.1.0"
description:
  - Writes the gzip'd tar that Alpine's initramfs unpacks over the root file system at boot (Alpine's "local
    backup", C(<hostname>.apkovl.tar.gz) at the top of a boot medium), in one module run instead of a
    staging directory of separate file, template and link tasks.
  - The archive is reproducible, members in tree order, owner 0:0 (numeric), mtime 0, a gzip header with mtime 0
    and no file name, so the same members always give the same bytes.
  - The desired members (names, types, permission bits, owner, file contents, link targets) are compared once with
    the existing archive's; that one comparison decides check mode, diff mode and the real run. The file is
    replaced (a temporary file in the same directory, renamed over it) only when they differ, so an archive that
    GNU tar made from the same members is kept as it is.
  - Parent directories of every member are in the archive with mode C(0755) unless O(directories) gives them.
  - Bad input (an absolute path, C(..), a path given twice, a path under a file or link, a mode that is not an
    octal string) fails before anything is touched.
options:
  path:
    description:
      - The archive on the managed host. Alpine looks for C(<hostname>.apkovl.tar.gz).
      - Missing parent directories are created (mode C(0755)); an existing file keeps its permission bits, a new
        one gets C(0644).
    type: path
    required: true
  state:
    description: C(present) writes the archive, C(absent) removes the file.
    type: str
    choices: [present, absent]
    default: present
  files:
    description: Regular files in the overlay.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the guest's C(/), for example C(etc/hostname).
        type: str
        required: true
      content:
        description: The file's text, written as UTF-8 byte for byte (a trailing newline is kept as given).
        type: str
        default: ""
      mode:
        description: Permission bits as an octal string, quoted in YAML (V('0600')).
        type: raw
        default: "0644"
  directories:
    description: Directories in the overlay, for modes other than the implied C(0755) or for empty directories.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to the guest's C(/), for example C(root/.ssh).
        type: str
        required: true
      mode:
        description: Permission bits as an octal string, quoted in YAML (V('0700')).
        type: raw
        default: "0755"
  links:
    description: Symbolic links in the overlay, for example OpenRC's runlevel entries.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path of the link relative to the guest's C(/), for example C(etc/runlevels/default/sshd).
        type: str
        required: true
      target:
        description: What the link points to, as it will read in the guest (V(/etc/init.d/sshd)).
        type: str
        required: true
attributes:
  check_mode:
    support: full
    description: Reports exactly the change a real run would make, without making it.
  diff_mode:
    support: full
    description: Lists the members before and after (path, type, mode, link target, and the text of small files).
  idempotent:
    support: full
    description: A second run with the same options reports no change and leaves the file untouched.
notes:
  - Only the Python standard library is needed on the managed host.
seealso:
  - name: Alpine local backup
    description: How Alpine saves and restores an overlay (lbu), and where its initramfs looks for it.
    link: https://wiki.alpinelinux.org/wiki/Alpine_local_backup
author:
  - Cocos AI Manager developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Headless overlay with network, sshd and a root key
  alpine_apkovl:
    path: /var/lib/cocos/iso/cocos.apkovl.tar.gz
    directories:
      - {path: root, mode: "0700"}
      - {path: root/.ssh, mode: "0700"}
    files:
      - {path: etc/hostname, content: "cocos\n"}
      - path: etc/network/interfaces
        content: "{{ lookup('ansible.builtin.template', 'interfaces.j2') }}"
      - {path: root/.ssh/authorized_keys, content: "{{ key }}\n", mode: "0600"}
    links:
      - {path: etc/runlevels/default/sshd, target: /etc/init.d/sshd}

- name: Remove the overlay
  alpine_apkovl:
    path: /var/lib/cocos/iso/cocos.apkovl.tar.gz
    state: absent
"""

RETURN = r"""
path:
  description: The archive's path.
  returned: always
  type: str
  sample: /var/lib/cocos/iso/cocos.apkovl.tar.gz
members:
  description: The archive's member paths after the run (before it, in check mode the ones it would hold), sorted.
  returned: always
  type: list
  elements: str
  sample: [etc, etc/hostname, etc/runlevels, etc/runlevels/default, etc/runlevels/default/sshd]
added:
  description: Members the run adds (all of them when there was no readable archive).
  returned: always
  type: list
  elements: str
  sample: [root/.ssh/authorized_keys]
removed:
  description: Members the run drops.
  returned: always
  type: list
  elements: str
  sample: [etc/local.d/cocos-agent.start]
modified:
  description: Members in both whose type, mode, owner, content or link target changes.
  returned: always
  type: list
  elements: str
  sample: [etc/hostname]
"""

# Ansible's module convention puts the documentation blocks before the imports.
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.cocos_alpine.apkovl import ApkovlError, OverlayManager  # noqa: E402


def argument_spec() -> dict:
    path = {"type": "str", "required": True}
    return {
        "path": {"type": "path", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "files": {"type": "list", "elements": "dict", "default": [], "options": {
            "path": path, "content": {"type": "str", "default": ""}, "mode": {"type": "raw", "default": "0644"}}},
        "directories": {"type": "list", "elements": "dict", "default": [], "options": {
            "path": path, "mode": {"type": "raw", "default": "0755"}}},
        "links": {"type": "list", "elements": "dict", "default": [], "options": {
            "path": path, "target": {"type": "str", "required": True}}},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = OverlayManager(module.params, check_mode=module.check_mode, diff=module._diff).run()
    except ApkovlError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
