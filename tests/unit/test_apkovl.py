"""The alpine_vm role's apkovl overlay: run the role's real tasks (templates rendered on the controller, the
alpine_apkovl module, xorriso) and read the archive and ISO they produce.

Three ansible-playbook runs into one directory, each a module-scoped fixture that snapshots what it left: a build
with key and agent, a rerun, and a rebuild without key and agent. The module's own behaviour (reproducibility,
check and diff mode, bad input) is tested in-process in test_alpine_apkovl.py. Pure local work, no libvirt.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
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
KEY_AND_AGENT = ("root/.ssh/authorized_keys", "etc/local.d/cocos-agent.start", "etc/runlevels/default/local")


@dataclass(frozen=True)
class Run:
    """What one playbook run left: the play recap's counts, the archive's bytes, the ISO's bytes and stat."""

    recap: dict[str, int]
    archive: bytes
    iso: bytes
    iso_stat: os.stat_result

    def members(self) -> dict[str, tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(self.archive), mode="r:gz") as tar:
            return {m.name: m for m in tar.getmembers()}

    def text(self, name: str) -> str:
        with tarfile.open(fileobj=io.BytesIO(self.archive), mode="r:gz") as tar:
            handle = tar.extractfile(name)
            assert handle is not None, name
            return handle.read().decode()


def play(tmp_path: Path, tasks: str, *options: str, **overrides: object) -> dict[str, int]:
    """Run the role's `tasks` file with the overlay written to tmp_path/out and `overrides`; the play recap's counts."""
    playbook = tmp_path / "apkovl.yml"
    playbook.write_text(PLAYBOOK.replace("apkovl.yml", tasks), encoding="utf-8")
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
         "-e", f"@{vars_file}", *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", proc.stdout)
    assert recap, proc.stdout
    return {"ok": int(recap.group(1)), "changed": int(recap.group(2))}


def build(tmp_path: Path, **overrides: object) -> Run:
    """Run the overlay tasks into tmp_path/out with `overrides`; return what they left."""
    recap = play(tmp_path, "apkovl.yml", **overrides)
    out = tmp_path / "out"
    iso = out / "cocos-apkovl.iso"
    return Run(recap, (out / "cocos.apkovl.tar.gz").read_bytes(), iso.read_bytes(), iso.stat())


def archive_on_iso(iso: bytes, scratch: Path) -> bytes:
    """The cocos.apkovl.tar.gz at the top of the ISO image, read back with xorriso."""
    image, out = scratch / "read.iso", scratch / "read.apkovl.tar.gz"
    image.write_bytes(iso)
    listing = subprocess.run(["xorriso", "-indev", str(image), "-ls", "/"], capture_output=True, text=True,
                             check=True).stdout
    assert "'cocos.apkovl.tar.gz'" in listing, listing
    out.unlink(missing_ok=True)
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/cocos.apkovl.tar.gz", str(out)],
                   capture_output=True, check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("apkovl")


@pytest.fixture(scope="module")
def first(workdir: Path) -> Run:
    return build(workdir)


@pytest.fixture(scope="module")
def rerun(workdir: Path, first: Run) -> Run:
    return build(workdir)


@pytest.fixture(scope="module")
def predicted(workdir: Path, rerun: Run) -> dict[str, int]:
    """The recap of a check-mode run without key and agent, before the real one; "untouched" is 1 when the archive and
    the ISO are the same files with the same bytes afterwards."""
    out = workdir / "out"

    def state() -> tuple:
        iso = (out / "cocos-apkovl.iso").stat()
        return (out / "cocos.apkovl.tar.gz").read_bytes(), (out / "cocos-apkovl.iso").read_bytes(), iso.st_ino, \
            iso.st_mtime_ns

    before = state()
    recap = play(workdir, "apkovl.yml", "--check", alpine_vm_apkovl_authorized_key="",
                 alpine_vm_apkovl_agent_command="")
    return {**recap, "untouched": int(state() == before)}


@pytest.fixture(scope="module")
def without_key_and_agent(workdir: Path, predicted: dict[str, int]) -> Run:
    return build(workdir, alpine_vm_apkovl_authorized_key="", alpine_vm_apkovl_agent_command="")


@pytest.fixture(scope="module")
def removed(workdir: Path, without_key_and_agent: Run) -> Path:
    """The role's absent tasks after the builds, with a stage directory an older role version left beside them; its
    libvirt tasks go to libvirt's test driver, which has none of the role's objects."""
    (workdir / "out" / "cocos.apkovl.d" / "etc").mkdir(parents=True)
    (workdir / "out" / "cocos.apkovl.d" / "etc" / "hostname").write_text("cocos\n")
    (workdir / "console.log").write_text("COCOS-GUEST-READY\n")
    play(workdir, "absent.yml", alpine_vm_uri="test:///default", alpine_vm_console_log=str(workdir / "console.log"))
    return workdir


def test_network_comes_up_with_dhcp(first):
    interfaces = first.text("etc/network/interfaces")
    assert "auto lo" in interfaces and "iface lo inet loopback" in interfaces
    assert "auto eth0" in interfaces and "iface eth0 inet dhcp" in interfaces
    assert first.text("etc/hostname") == "cocos\n"
    assert first.text("etc/hosts").startswith("127.0.0.1\tcocos localhost")
    link = first.members()["etc/runlevels/boot/networking"]
    assert link.issym() and link.linkname == "/etc/init.d/networking"


def test_sshd_enabled_with_the_authorized_key_only_for_root(first):
    found = first.members()
    assert first.text("root/.ssh/authorized_keys").strip() == KEY
    assert found["root/.ssh/authorized_keys"].mode & 0o777 == 0o600
    assert found["root/.ssh"].mode & 0o777 == 0o700 and found["root"].mode & 0o777 == 0o700
    assert {(m.uid, m.gid) for m in found.values()} == {(0, 0)}
    sshd = found["etc/runlevels/default/sshd"]
    assert sshd.issym() and sshd.linkname == "/etc/init.d/sshd"
    world = first.text("etc/apk/world").split()
    assert world == ["alpine-base", "openssh", "python3"]
    assert first.text("etc/apk/repositories").strip() == "/media/cdrom/apks"


def test_agent_starts_at_boot(first):
    found = first.members()
    start = found["etc/local.d/cocos-agent.start"]
    assert start.mode & 0o777 == 0o755, "the local.d script must be executable"
    script = first.text("etc/local.d/cocos-agent.start")
    assert script.startswith("#!/bin/sh\n")
    assert "python3 -m agent" in script and script.rstrip().endswith("&")
    local = found["etc/runlevels/default/local"]
    assert local.issym() and local.linkname == "/etc/init.d/local"
    # Alpine's init only adds its default boot services beside an overlay when this file exists.
    assert "etc/.default_boot_services" in found


def test_overlay_iso_carries_the_archive_for_alpines_boot_media_scan(first, workdir):
    assert archive_on_iso(first.iso, workdir) == first.archive


def test_nothing_but_the_archive_and_its_iso_is_written(first, workdir):
    assert first.recap["changed"] == 2  # the archive and the ISO
    assert sorted(os.listdir(workdir / "out")) == ["cocos-apkovl.iso", "cocos.apkovl.tar.gz"]


def test_rerun_changes_nothing(first, rerun):
    assert rerun.recap["changed"] == 0
    assert rerun.archive == first.archive
    assert (rerun.iso_stat.st_ino, rerun.iso_stat.st_mtime_ns) == (first.iso_stat.st_ino, first.iso_stat.st_mtime_ns)


def test_removing_the_key_rebuilds_the_archive_and_the_iso(rerun, without_key_and_agent, workdir):
    assert without_key_and_agent.recap["changed"] == 2
    assert without_key_and_agent.archive != rerun.archive
    assert "root/.ssh/authorized_keys" not in without_key_and_agent.members()
    assert without_key_and_agent.iso != rerun.iso
    assert archive_on_iso(without_key_and_agent.iso, workdir) == without_key_and_agent.archive


def test_check_mode_predicts_the_rebuild_and_writes_nothing(predicted, without_key_and_agent):
    assert predicted["changed"] == without_key_and_agent.recap["changed"] == 2  # the archive and the ISO
    assert predicted["untouched"] == 1


def test_without_key_or_agent_the_overlay_leaves_them_out(first, without_key_and_agent):
    found, before = without_key_and_agent.members(), first.members()
    assert sorted(set(before) - set(found)) == sorted(KEY_AND_AGENT)
    assert set(found) <= set(before)
    assert "etc/runlevels/default/sshd" in found and "root/.ssh" in found and "etc/local.d" in found


def test_absent_removes_the_archive_its_iso_the_console_log_and_an_older_roles_stage_directory(removed):
    assert os.listdir(removed / "out") == []
    assert not (removed / "console.log").exists()
