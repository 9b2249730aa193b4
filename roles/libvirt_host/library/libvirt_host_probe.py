"""Ansible module libvirt_host_probe: everything the libvirt_host role checks on a host, read in one call.

It lives in the role (not in library/) because only this role asks these questions; it needs nothing but
the standard library, so it runs under any Python the host has, before libvirt-python is installed.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: libvirt_host_probe
short_description: Read which packages, daemons, users, directories and KVM devices a libvirt host has
description:
  - Read-only. One call answers what the libvirt_host role would otherwise ask with one task each (a package
    manager transaction, pgrep, getent, a stat per directory, a find for the KVM modules), so a converged
    host costs one module run and the role's changing tasks run only for what is missing.
  - Installed packages are read with C(dpkg-query) (Debian family) or C(rpm) (RedHat family), which is what
    C(ansible.builtin.package) would find installed, without opening the package manager's cache.
  - It also names the OS family (from C(/etc/os-release)) and the service manager (PID 1), the two facts the
    role needs, so a play need not gather facts, whose module imports every fact collector.
options:
  packages:
    description: Package names to look up; those not installed are returned in RV(missing_packages).
    type: list
    elements: str
    default: []
  processes:
    description: Process names (as in C(/proc/PID/comm), like C(pgrep --exact)); those running are returned.
    type: list
    elements: str
    default: []
  paths:
    description: Paths to stat (symlinks followed).
    type: list
    elements: path
    default: []
  users:
    description: User names whose existence and groups to read.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
author:
  - Cocos AI Manager developers
"""

EXAMPLES = r"""
- name: Probe the host
  libvirt_host_probe:
    packages: [libvirt-daemon-system, qemu-system-x86]
    processes: [virtlogd, libvirtd]
    paths: [/var/lib/cocos/img, /dev/kvm]
    users: [libvirt-qemu]
  register: probe
"""

RETURN = r"""
missing_packages:
  description: The requested packages that are not installed, in request order.
  returned: always
  type: list
  elements: str
running:
  description: The requested process names that have at least one running process.
  returned: always
  type: list
  elements: str
paths:
  description: Per requested path, C(exists), and when it exists C(isdir), C(mode) (octal string), C(owner), C(group).
  returned: always
  type: dict
  sample: {/var/lib/cocos/img: {exists: true, isdir: true, mode: "0755", owner: root, group: root}}
users:
  description: Per requested user, C(exists) and C(groups) (supplementary and primary group names).
  returned: always
  type: dict
os_family:
  description: C(Debian) or C(RedHat) when C(/etc/os-release)'s ID or ID_LIKE name one of them (as Ansible's
    os_family fact does for these families), else that ID.
  returned: always
  type: str
  sample: Debian
service_mgr:
  description: C(systemd) when PID 1 is systemd, C(sysvinit) when it is init, else PID 1's name.
  returned: always
  type: str
  sample: systemd
kvm:
  description: C(kvm) (/dev/kvm exists) and which of the kvm_intel, kvm_amd, kvm_pvm kernel modules are loaded.
  returned: always
  type: dict
  sample: {kvm: true, kvm_intel: false, kvm_amd: false, kvm_pvm: true}
"""


def missing_packages(module: AnsibleModule, names: list[str]) -> list[str]:
    if not names:
        return []
    if shutil.which("dpkg-query"):
        out = module.run_command(["dpkg-query", "-W", "-f=${Package}\t${db:Status-Abbrev}\n", *names])[1]
        installed = {line.split("\t")[0].split(":")[0] for line in out.splitlines()
                     if line.split("\t")[-1].startswith("ii")}
    elif shutil.which("rpm"):
        out = module.run_command(["rpm", "-q", "--qf", "%{NAME}\n", *names])[1]
        installed = {line.strip() for line in out.splitlines() if " " not in line.strip()}
    else:
        module.fail_json(msg="neither dpkg-query nor rpm found: cannot tell which packages are installed")
    return [name for name in names if name not in installed]


def running(names: list[str]) -> list[str]:
    found = set()
    wanted = set(names)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
                comm = handle.read().strip()
        except OSError:
            continue  # the process ended while we looked
        if comm in wanted:
            found.add(comm)
    return [name for name in names if name in found]


def path_info(path: str) -> dict:
    try:
        st = os.stat(path)
    except OSError:
        return {"exists": False}
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"exists": True, "isdir": stat.S_ISDIR(st.st_mode), "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "owner": owner, "group": group}


def user_info(name: str) -> dict:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return {"exists": False, "groups": []}
    groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem}
    try:
        groups.add(grp.getgrgid(entry.pw_gid).gr_name)
    except KeyError:
        pass
    return {"exists": True, "groups": sorted(groups)}


def os_family(path: str = "/etc/os-release") -> str:
    fields = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    fields[key] = value.strip().strip('"').lower()
    except OSError:
        return "unknown"
    ids = {fields.get("ID", ""), *fields.get("ID_LIKE", "").split()}
    if ids & {"debian", "ubuntu"}:
        return "Debian"
    if ids & {"rhel", "fedora", "centos"}:
        return "RedHat"
    return fields.get("ID") or "unknown"


def service_mgr() -> str:
    try:
        with open("/proc/1/comm", encoding="utf-8") as handle:
            comm = handle.read().strip()
    except OSError:
        return "unknown"
    return {"init": "sysvinit"}.get(comm, comm) or "unknown"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "processes": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "path", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    module.exit_json(
        changed=False,
        missing_packages=missing_packages(module, params["packages"]),
        running=running(params["processes"]),
        paths={path: path_info(path) for path in params["paths"]},
        users={name: user_info(name) for name in params["users"]},
        os_family=os_family(),
        service_mgr=service_mgr(),
        kvm={"kvm": os.path.exists("/dev/kvm"),
             **{mod: os.path.isdir(f"/sys/module/{mod}") for mod in ("kvm_intel", "kvm_amd", "kvm_pvm")}},
    )


if __name__ == "__main__":
    main()
