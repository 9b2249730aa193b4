"""The alpine_vm role's apkovl overlay: run the role's real tasks and read the archive they produce.

Pure local work (templates and tar into a temporary directory), no libvirt.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """\
- name: Build the apkovl overlay only
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the role's overlay tasks
      ansible.builtin.include_role:
        name: alpine_vm
        tasks_from: apkovl.yml
"""
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ0ZXN0a2V5Zm9ydGhlYXBrb3ZsdGVzdDAwMDAw test@cocos"


def build(tmp_path: Path, **overrides: object) -> tuple[Path, dict[str, int]]:
    """Run the overlay tasks with `overrides`; return the archive path and the play recap counts."""
    playbook = tmp_path / "apkovl.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    archive = tmp_path / "out" / "cocos.apkovl.tar.gz"
    archive.parent.mkdir(exist_ok=True)
    extra = {
        "alpine_vm_apkovl_path": str(archive),
        "alpine_vm_apkovl_hostname": "cocos",
        "alpine_vm_apkovl_interface": "eth0",
        "alpine_vm_apkovl_authorized_key": KEY,
        "alpine_vm_apkovl_agent_command": "python3 -m agent",
        "alpine_vm_apkovl_packages": ["alpine-base", "openssh", "python3"],
        "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python"),
        **overrides,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(playbook),
         "-e", f"@{vars_file}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", proc.stdout)
    assert recap, proc.stdout
    return archive, {"ok": int(recap.group(1)), "changed": int(recap.group(2))}


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def text(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None, name
        return handle.read().decode()


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    tmp = tmp_path_factory.mktemp("apkovl")
    archive, recap = build(tmp)
    return tmp, archive, recap


def test_network_comes_up_with_dhcp(overlay):
    _, archive, _ = overlay
    interfaces = text(archive, "etc/network/interfaces")
    assert "auto lo" in interfaces and "iface lo inet loopback" in interfaces
    assert "auto eth0" in interfaces and "iface eth0 inet dhcp" in interfaces
    assert text(archive, "etc/hostname").strip() == "cocos"
    link = members(archive)["etc/runlevels/boot/networking"]
    assert link.issym() and link.linkname == "/etc/init.d/networking"


def test_sshd_enabled_with_the_authorized_key_only_for_root(overlay):
    _, archive, _ = overlay
    found = members(archive)
    assert text(archive, "root/.ssh/authorized_keys").strip() == KEY
    assert found["root/.ssh/authorized_keys"].mode & 0o777 == 0o600
    assert found["root/.ssh"].mode & 0o777 == 0o700
    assert found["root/.ssh/authorized_keys"].uid == 0 and found["root/.ssh/authorized_keys"].gid == 0
    sshd = found["etc/runlevels/default/sshd"]
    assert sshd.issym() and sshd.linkname == "/etc/init.d/sshd"
    world = text(archive, "etc/apk/world").split()
    assert "openssh" in world and "alpine-base" in world and "python3" in world
    assert text(archive, "etc/apk/repositories").strip() == "/media/cdrom/apks"


def test_agent_starts_at_boot(overlay):
    _, archive, _ = overlay
    found = members(archive)
    start = found["etc/local.d/cocos-agent.start"]
    assert start.mode & 0o111, "the local.d script must be executable"
    script = text(archive, "etc/local.d/cocos-agent.start")
    assert script.startswith("#!/bin/sh\n")
    assert "python3 -m agent" in script and script.rstrip().endswith("&")
    local = found["etc/runlevels/default/local"]
    assert local.issym() and local.linkname == "/etc/init.d/local"
    # Alpine's init only adds its default boot services beside an overlay when this file exists.
    assert "etc/.default_boot_services" in found


def test_rerun_changes_nothing(overlay):
    tmp, archive, first = overlay
    assert first["changed"] > 0
    before = archive.read_bytes()
    _, again = build(tmp)
    assert again["changed"] == 0
    assert archive.read_bytes() == before


def test_without_key_or_agent_the_overlay_leaves_them_out(tmp_path):
    archive, _ = build(tmp_path, alpine_vm_apkovl_authorized_key="", alpine_vm_apkovl_agent_command="")
    found = members(archive)
    assert "root/.ssh/authorized_keys" not in found
    assert "etc/local.d/cocos-agent.start" not in found
    assert "etc/runlevels/default/local" not in found
    assert "etc/runlevels/default/sshd" in found


def test_overlay_iso_carries_the_archive_for_alpines_boot_media_scan(overlay):
    tmp, archive, _ = overlay
    iso = archive.parent / "cocos-apkovl.iso"
    assert iso.exists()
    listing = subprocess.run(["xorriso", "-indev", str(iso), "-ls", "/"], capture_output=True, text=True,
                             check=True).stdout
    assert "'cocos.apkovl.tar.gz'" in listing, listing
    out = tmp / "extracted.apkovl.tar.gz"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/cocos.apkovl.tar.gz", str(out)],
                   capture_output=True, check=True)
    assert out.read_bytes() == archive.read_bytes()


def test_removing_the_key_rebuilds_the_archive(tmp_path):
    archive, _ = build(tmp_path)
    assert "root/.ssh/authorized_keys" in members(archive)
    iso_before = (archive.parent / "cocos-apkovl.iso").read_bytes()
    _, recap = build(tmp_path, alpine_vm_apkovl_authorized_key="")
    assert recap["changed"] > 0
    assert "root/.ssh/authorized_keys" not in members(archive)
    assert (archive.parent / "cocos-apkovl.iso").read_bytes() != iso_before
