"""The installed collection converges a pool, a volume and a domain on the real libvirtd, called only by FQCN, plus
the role cocos.libvirt.alpine_vm (its own volume and a second domain in the same pool); a rerun and a check-mode
rerun change nothing. The repository's library and roles are not on any path (see conftest.py), so a short name
would fail to resolve.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from tests.helpers import drop, drop_domain, drop_pool

pytestmark = pytest.mark.system

URI = "qemu:///system"
AREA = Path("/var/lib/cocos-test/h7/collection")
POOL = "ctest-h7-pool"
ISO_POOL = "ctest-h7-iso"  # not the role's default (cocos-iso): make demo and Molecule own that one
VOLUME = "ctest-h7-disk.qcow2"
DOMAIN = "ctest-h7-dom"
ROLE_DOMAIN = "ctest-h7-vm"

PLAYBOOK = """\
- name: cocos.libvirt by FQCN on the real libvirtd
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Scratch pool
      cocos.libvirt.libvirt_pool:
        uri: "{{ h7_uri }}"
        name: "{{ h7_pool }}"
        path: "{{ h7_area }}/pool"

    - name: Disk volume
      cocos.libvirt.libvirt_volume:
        uri: "{{ h7_uri }}"
        pool: "{{ h7_pool }}"
        name: "{{ h7_volume }}"
        capacity: 16MiB

    - name: A small TCG domain on that disk, running
      cocos.libvirt.libvirt_domain:
        uri: "{{ h7_uri }}"
        name: "{{ h7_domain }}"
        state: running
        domain_type: qemu
        memory: 64MiB
        disks:
          - {pool: "{{ h7_pool }}", volume: "{{ h7_volume }}"}
        boot: [hd]

    - name: The alpine_vm role by FQCN, in the same pool
      ansible.builtin.include_role:
        name: cocos.libvirt.alpine_vm
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remove_ours() -> None:
    """Only the objects this module names, and any pool left pointing into its own directory (an earlier version
    of this test put the ISO in the role's default pool, whose stale definition then refused ours the path):
    others share the daemon."""
    conn = libvirt.open(URI)
    try:
        for name in (DOMAIN, ROLE_DOMAIN):
            drop(conn.lookupByName, name, drop_domain)
        for pool in (POOL, ISO_POOL):
            drop(conn.storagePoolLookupByName, pool, drop_pool)
        for pool in conn.listAllStoragePools(0):
            path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""
            if path == str(AREA) or path.startswith(f"{AREA}/"):
                drop(lambda _name, found=pool: found, pool.name(), drop_pool)
    finally:
        conn.close()
    shutil.rmtree(AREA, ignore_errors=True)


def recap(output: str) -> dict[str, int]:
    found = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert found, output[-4000:]
    return {"ok": int(found[1]), "changed": int(found[2]), "unreachable": int(found[3]), "failed": int(found[4])}


@pytest.fixture(scope="module")
def converge(installed_collection):
    remove_ours()
    (AREA / "src").mkdir(parents=True)
    iso = AREA / "src" / "blank.iso"  # the role only copies and attaches it: wait_for none boots nothing from it
    iso.write_bytes(bytes(1024 * 1024))
    playbook = installed_collection.home / "fqcn.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    variables = installed_collection.home / "fqcn-vars.json"
    variables.write_text(json.dumps({
        "h7_uri": URI, "h7_area": str(AREA), "h7_pool": POOL, "h7_volume": VOLUME, "h7_domain": DOMAIN,
        "alpine_vm_uri": URI,
        "alpine_vm_name": ROLE_DOMAIN,
        "alpine_vm_pool_name": POOL,
        "alpine_vm_pool_path": str(AREA / "pool"),
        "alpine_vm_volume_name": f"{ROLE_DOMAIN}.qcow2",
        "alpine_vm_disk_size": "16MiB",
        "alpine_vm_iso_dir": str(AREA / "iso"),
        "alpine_vm_iso_pool_name": ISO_POOL,
        "alpine_vm_iso_url": f"file://{iso}",
        "alpine_vm_iso_checksum": "sha256:" + hashlib.sha256(iso.read_bytes()).hexdigest(),
        "alpine_vm_console_log": str(AREA / "log" / f"{ROLE_DOMAIN}.console.log"),
        "alpine_vm_domain_type": "qemu",
        "alpine_vm_memory": "64MiB",
        "alpine_vm_network_mode": "user",
        "alpine_vm_port_forwards": [{"host_address": "127.0.0.1", "host_port": free_port(), "guest_port": 7002}],
        "alpine_vm_wait_for": "none",
        # The headless overlay rides along on its own CD-ROM: its one-module build converges and settles too.
        "alpine_vm_apkovl_enabled": True,
        "alpine_vm_apkovl_path": str(AREA / "iso" / "ctest-h7.apkovl.tar.gz"),
        "ansible_python_interpreter": sys.executable,  # libvirt-python is in the venv
    }), encoding="utf-8")
    (AREA / "iso").mkdir()

    def run(*extra: str) -> tuple[subprocess.CompletedProcess, dict[str, int]]:
        proc = installed_collection.run("ansible-playbook", "-i", "localhost,", playbook, "-e", f"@{variables}",
                                        *extra)
        return proc, recap(proc.stdout + proc.stderr)

    yield run
    remove_ours()


def verify_real_state() -> None:
    """A fresh libvirt connection sees the pool running with both volumes and both TCG domains running."""
    conn = libvirt.open(URI)
    try:
        pool = conn.storagePoolLookupByName(POOL)
        assert pool.isActive()
        assert sorted(pool.listVolumes()) == sorted([VOLUME, f"{ROLE_DOMAIN}.qcow2"])
        for name in (DOMAIN, ROLE_DOMAIN):
            dom = conn.lookupByName(name)
            assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, name
            assert "<domain type='qemu'" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert f"<source file='{AREA}/iso/ctest-h7-apkovl.iso'" in conn.lookupByName(ROLE_DOMAIN).XMLDesc(0)
    finally:
        conn.close()


def test_converges_by_fqcn_then_changes_nothing(converge):
    proc, first = converge()
    assert proc.returncode == 0 and first["failed"] == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # pool, volume, domain; the role's ISO copy, log directory, volume and domain (its pool is the same one)
    assert first["changed"] >= 7, proc.stdout[-4000:]
    verify_real_state()

    proc, again = converge()
    assert proc.returncode == 0 and again["changed"] == 0 and again["failed"] == 0, proc.stdout[-4000:]
    proc, checked = converge("--check", "--diff")
    assert proc.returncode == 0 and checked["changed"] == 0 and checked["failed"] == 0, proc.stdout[-4000:]


def test_short_names_do_not_resolve(installed_collection):
    """The run above used the installed collection: without the FQCN the module is unknown here."""
    proc = installed_collection.run("ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "libvirt_pool",
                                    "-a", "name=ctest-h7-none state=absent")
    assert proc.returncode != 0
    assert "Cannot resolve 'libvirt_pool' to an action or module" in proc.stdout + proc.stderr
