"""The alpine_vm role on the real libvirtd with a TCG guest, under ctest- names (not the demo's objects).

One guest boot for the whole module: converge and wait for the marker, a rerun that changes nothing,
a wait that must time out and quote the console log, then state=absent, checked with virsh.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.vm]

ROOT = Path(__file__).resolve().parents[2]
GUEST_ISO = ROOT / "build" / "guest" / "cocos-guest.iso"
AREA = Path("/var/lib/cocos-test/roles")
NAME = "ctest-roles-dom"  # not ctest-dom-*: test_domain_module removes those
POOL = "ctest-pool-roles"
ISO_POOL = "ctest-pool-roles-iso"
PLAYBOOK = """\
- name: alpine_vm alone
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: alpine_vm
"""


def virsh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def role(tmp_path_factory):
    if not GUEST_ISO.exists():
        pytest.fail(f"{GUEST_ISO} is missing: build the guest first with `make guest`")
    tmp = tmp_path_factory.mktemp("alpine_vm")
    AREA.mkdir(parents=True, exist_ok=True)
    iso = tmp / "cocos-guest.iso"  # a snapshot: a concurrent `make guest` cannot change it mid-test
    shutil.copyfile(GUEST_ISO, iso)
    digest = hashlib.sha256(iso.read_bytes()).hexdigest()
    playbook = tmp / "role.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    base = {
        "alpine_vm_name": NAME,
        "alpine_vm_pool_name": POOL,
        "alpine_vm_pool_path": str(AREA / "img"),
        "alpine_vm_iso_pool_name": ISO_POOL,
        "alpine_vm_iso_dir": str(AREA / "iso"),
        "alpine_vm_iso_url": f"file://{iso}",
        "alpine_vm_iso_checksum": f"sha256:{digest}",
        "alpine_vm_console_log": str(AREA / "log" / f"{NAME}.console.log"),
        "alpine_vm_domain_type": "qemu",
        "alpine_vm_memory": "512MiB",
        "alpine_vm_disk_size": "64MiB",
        "alpine_vm_network_mode": "user",
        "alpine_vm_port_forwards": [{"host_address": "127.0.0.1", "host_port": free_port(), "guest_port": 7002}],
        "alpine_vm_ready_marker": "COCOS-GUEST-READY",
        "alpine_vm_wait_timeout": 300,
        # The overlay CD-ROM rides along (Alpine would read it; this guest ignores it).
        "alpine_vm_apkovl_enabled": True,
        "alpine_vm_apkovl_path": str(AREA / "iso" / "ctest.apkovl.tar.gz"),
        "alpine_vm_apkovl_hostname": "ctest",
        "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python"),
    }
    (AREA / "iso").mkdir(exist_ok=True)

    def run(**overrides: object) -> tuple[int, str, dict[str, int]]:
        vars_file = tmp / "vars.json"
        vars_file.write_text(json.dumps({**base, **overrides}), encoding="utf-8")
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(playbook),
                               "-e", f"@{vars_file}"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        out = proc.stdout + proc.stderr
        recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", out)
        assert recap, out
        return proc.returncode, out, {"ok": int(recap[1]), "changed": int(recap[2]), "failed": int(recap[3])}

    yield run, base
    run(alpine_vm_state="absent")
    shutil.rmtree(AREA, ignore_errors=True)


def test_converge_boots_and_rerun_changes_nothing(role):
    run, base = role
    rc, out, recap = run()
    assert rc == 0, out[-4000:]
    assert recap["changed"] >= 3  # pools, ISO upload, volume, domain (the ISO may remain from an earlier run)
    assert virsh("domstate", NAME).stdout.strip() == "running"
    xml = virsh("dumpxml", NAME).stdout
    assert "<domain type='qemu'" in xml
    port = base["alpine_vm_port_forwards"][0]["host_port"]
    assert f"hostfwd=tcp:127.0.0.1:{port}-:7002" in xml
    assert re.search(r"<boot dev='cdrom'/>\s*<boot dev='hd'/>", xml)
    assert str(AREA / "iso" / "ctest-apkovl.iso") in xml
    assert not (AREA / "iso" / "ctest.apkovl.d").exists()  # the overlay is written without a stage directory
    # The ISO reached its pool through libvirt's stream API, byte for byte.
    iso_volume = AREA / "iso" / "cocos-guest.iso"
    assert virsh("vol-path", "--pool", ISO_POOL, "cocos-guest.iso").stdout.strip() == str(iso_volume)
    assert base["alpine_vm_iso_checksum"] == "sha256:" + hashlib.sha256(iso_volume.read_bytes()).hexdigest()
    assert "COCOS-GUEST-READY" in Path(base["alpine_vm_console_log"]).read_text(errors="replace")
    rc, out, recap = run()
    assert rc == 0 and recap["changed"] == 0, out[-4000:]


def test_timeout_fails_quoting_the_console_log(role):
    run, base = role
    rc, out, recap = run(alpine_vm_ready_marker="NEVER-PRINTED-MARKER", alpine_vm_wait_timeout=3,
                         alpine_vm_log_tail_lines=200)
    assert rc != 0 and recap["changed"] == 0
    flat = out.replace("\\r", "").replace("\\n", "\n")
    assert f"Guest {NAME} did not come up within 3 s" in flat
    assert 'no "NEVER-PRINTED-MARKER" on the serial console' in flat
    assert f"lines of {base['alpine_vm_console_log']}" in flat
    assert "COCOS-GUEST-READY" in flat  # the quoted end of the log is the real console output


def test_absent_removes_domain_volume_and_pool(role):
    run, base = role
    old_stage = AREA / "iso" / "ctest.apkovl.d"  # where role versions before alpine_apkovl rendered the overlay
    (old_stage / "etc" / "network").mkdir(parents=True, exist_ok=True)
    (old_stage / "etc" / "hostname").write_text("ctest\n")
    rc, out, recap = run(alpine_vm_state="absent")
    assert rc == 0 and recap["changed"] >= 3, out[-4000:]
    assert virsh("dominfo", NAME).returncode != 0
    assert virsh("pool-info", POOL).returncode != 0
    assert virsh("pool-info", ISO_POOL).returncode != 0
    assert (AREA / "iso" / "cocos-guest.iso").exists()  # the ISO stays, only its pool's definition goes
    assert not (AREA / "img" / "boot.img").exists()
    assert not Path(base["alpine_vm_console_log"]).exists()
    assert not (AREA / "iso" / "ctest.apkovl.tar.gz").exists()
    assert not (AREA / "iso" / "ctest-apkovl.iso").exists()
    assert not old_stage.exists()
    rc, out, recap = run(alpine_vm_state="absent")
    assert rc == 0 and recap["changed"] == 0, out[-4000:]
