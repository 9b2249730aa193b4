"""Bad role variables fail with a clear message before anything changes, and the domain type decision.

Runs the real site.yml (and libvirt_host's facts tasks) with ansible-playbook on localhost. Every bad
input here fails in preflight, before the first task that could change the host or libvirt.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")


def play(playbook: str, extra: dict, tmp_path: Path) -> tuple[int, str, dict[str, int]]:
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([PLAYBOOK, playbook, "-e", f"@{vars_file}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", out)
    assert recap, out
    return proc.returncode, out, {"ok": int(recap[1]), "changed": int(recap[2]), "failed": int(recap[3])}


BAD_INPUT: list[tuple[dict[str, object], str]] = [
    ({"alpine_vm_memory": "lots"}, "alpine_vm_memory='lots' is not a libvirt size"),
    ({"alpine_vm_disk_size": "5 parsecs"}, "alpine_vm_disk_size='5 parsecs' is not a libvirt size"),
    ({"alpine_vm_network_mode": "bridge"}, "alpine_vm_network_mode must be one of: network, user"),
    ({"alpine_vm_network_mode": "user",
      "alpine_vm_port_forwards": [{"host_address": "0.0.0.0", "host_port": 7020, "guest_port": 7002}]},
     "Only loopback host addresses are allowed"),
    ({"alpine_vm_network_mode": "user",
      "alpine_vm_port_forwards": [{"host_address": "127.0.0.1", "host_port": 70200, "guest_port": 7002}]},
     "host_port: 1-65535"),
    ({"alpine_vm_port_forwards": [{"host_port": 7020}]}, "missing required arguments: guest_port, host_address"),
    ({"alpine_vm_wait_for": "port"}, "alpine_vm_wait_for 'port' needs alpine_vm_network_mode 'user'"),
    ({"alpine_vm_iso_url": "/srv/alpine.iso"}, "alpine_vm_iso_url must be an http(s) or file:// URL"),
    ({"alpine_vm_iso_url": "ftp://example.org/alpine.iso"}, "alpine_vm_iso_url must be an http(s) or file:// URL"),
    ({"alpine_vm_iso_checksum": "deadbeef"}, "alpine_vm_iso_checksum 'sha256:<hex digest or checksum file URL>'"),
    ({"alpine_vm_iso_checksum": "md5:d41d8cd98f00b204"}, "(got 'md5:d41d8cd98f00b204')"),
    ({"alpine_vm_iso_upload_uri": "root@host"}, "alpine_vm_iso_upload_uri must be empty or a libvirt URI"),
    # Every problem in one run: both sizes are reported by the one check task.
    ({"alpine_vm_memory": "lots", "alpine_vm_disk_size": "big"},
     "alpine_vm_memory='lots' is not a libvirt size: use bytes or a number with one of b, KB, K, KiB, MB, M, MiB, "
     "GB, G, GiB, TB, T, TiB (e.g. 1GiB). alpine_vm_disk_size='big' is not a libvirt size"),
    ({"alpine_vm_apkovl_enabled": True, "alpine_vm_apkovl_hostname": "bad_host!"},
     "alpine_vm_apkovl_hostname must be a hostname label"),
    ({"libvirt_host_users": ["ctest-no-such-user"]}, "users that do not exist on this host: ctest-no-such-user"),
    ({"libvirt_host_network_address": "10.0.0"}, "must be IPv4 dotted quads (got 10.0.0, 255.255.255.0"),
    ({"libvirt_host_daemon_mode": "init"}, "libvirt_host_daemon_mode must be one of: auto, service, direct"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUT, ids=[next(iter(e)) for e, _ in BAD_INPUT])
def test_bad_variables_fail_clearly_and_change_nothing(extra, message, tmp_path):
    rc, out, recap = play(str(ROOT / "site.yml"), extra, tmp_path)
    assert rc != 0
    assert recap["failed"] == 1 and recap["changed"] == 0
    assert message in re.sub(r"\s+", " ", out), out[-3000:]


FACTS = """\
- name: Decide the domain type from a given probe
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run libvirt_host's facts tasks
      ansible.builtin.include_role:
        name: libvirt_host
        tasks_from: facts.yml
    - name: Show it
      ansible.builtin.debug:
        msg: "DOMAIN_TYPE={{ libvirt_host_domain_type }}"
"""
# The same tasks once per case in one ansible-playbook run (one start instead of seven): the case's probe and
# override are the include's vars, above the role's own _libvirt_host_kvm.
FACTS_CASE = """\
- name: Run libvirt_host's facts tasks for case {{ case.id }}
  ansible.builtin.include_role:
    name: libvirt_host
    tasks_from: facts.yml
  vars:
    _libvirt_host_kvm: "{{ case.probe }}"
    libvirt_host_domain_type_override: "{{ case.override }}"
- name: Show it
  ansible.builtin.debug:
    msg: "DOMAIN_TYPE[{{ case.id }}]={{ libvirt_host_domain_type }}"
"""
FACTS_CASES = """\
- name: Decide the domain type for every case
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: One case
      ansible.builtin.include_tasks: case.yml
      loop: "{{ facts_cases }}"
      loop_control:
        loop_var: case
"""
DOMAIN_TYPE_CASES = [
    ({"kvm": True, "kvm_intel": True, "kvm_amd": False, "kvm_pvm": False}, "auto", "kvm"),
    ({"kvm": True, "kvm_intel": False, "kvm_amd": True, "kvm_pvm": False}, "auto", "kvm"),
    # this machine: a nested kvm_pvm behind /dev/kvm hangs standard guest kernels
    ({"kvm": True, "kvm_intel": False, "kvm_amd": False, "kvm_pvm": True}, "auto", "qemu"),
    ({"kvm": True, "kvm_intel": True, "kvm_amd": False, "kvm_pvm": True}, "auto", "qemu"),
    ({"kvm": False, "kvm_intel": True, "kvm_amd": False, "kvm_pvm": False}, "auto", "qemu"),
    ({"kvm": True, "kvm_intel": True, "kvm_amd": False, "kvm_pvm": False}, "qemu", "qemu"),
    ({"kvm": True, "kvm_intel": False, "kvm_amd": False, "kvm_pvm": True}, "kvm", "kvm"),
]


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """The domain type facts.yml published for each case of DOMAIN_TYPE_CASES, by index."""
    tmp = tmp_path_factory.mktemp("facts")
    (tmp / "case.yml").write_text(FACTS_CASE, encoding="utf-8")
    (tmp / "facts.yml").write_text(FACTS_CASES, encoding="utf-8")
    cases = [{"id": i, "probe": probe, "override": override}
             for i, (probe, override, _) in enumerate(DOMAIN_TYPE_CASES)]
    rc, out, _ = play(str(tmp / "facts.yml"), {"facts_cases": cases}, tmp)
    assert rc == 0, out[-3000:]
    return {int(i): value for i, value in re.findall(r"DOMAIN_TYPE\[(\d+)\]=(\w+)", out)}


@pytest.mark.parametrize("case", range(len(DOMAIN_TYPE_CASES)),
                         ids=[f"probe{i}-{override}-{expected}" for i, (_, override, expected)
                              in enumerate(DOMAIN_TYPE_CASES)])
def test_domain_type_is_kvm_only_with_hardware_kvm(case, decided):
    assert decided[case] == DOMAIN_TYPE_CASES[case][2], DOMAIN_TYPE_CASES[case]


def test_this_host_publishes_qemu(tmp_path):
    """The real probe here: /dev/kvm exists but is kvm_pvm, so TCG."""
    if not Path("/sys/module/kvm_pvm").exists():
        pytest.skip("only meaningful on a kvm_pvm host")
    playbook = tmp_path / "host.yml"
    playbook.write_text(FACTS.replace("tasks_from: facts.yml", "tasks_from: preflight.yml").replace(
        "    - name: Show it", "    - name: Publish\n      ansible.builtin.include_role:\n        name: libvirt_host\n"
        "        tasks_from: facts.yml\n    - name: Show it").replace("gather_facts: false", "gather_facts: true"),
        encoding="utf-8")
    rc, out, recap = play(str(playbook), {}, tmp_path)
    assert rc == 0, out[-3000:]
    assert "DOMAIN_TYPE=qemu" in out and recap["changed"] == 0


BOOLEANS = """\
- name: The roles' booleans as `-e key=value` gives them (strings)
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Load alpine_vm's variables (its preflight passes)
      ansible.builtin.include_role:
        name: alpine_vm
        tasks_from: preflight
        public: true
    - name: Show the disks the domain would get
      ansible.builtin.debug:
        msg: "DISKS={{ _alpine_vm_all_disks | length }}"
    - name: Run libvirt_host's NAT network task, which libvirt_host_default_network turns off
      ansible.builtin.include_role:
        name: libvirt_host
        tasks_from: configure.yml
"""


def test_booleans_given_as_command_line_strings_mean_what_they_say(tmp_path):
    """`-e alpine_vm_apkovl_enabled=false` is the string "false": it once counted as true (the overlay's CD-ROM was
    attached), and `-e libvirt_host_default_network=false` failed ansible-core's boolean conditional check."""
    playbook = tmp_path / "booleans.yml"
    playbook.write_text(BOOLEANS, encoding="utf-8")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([PLAYBOOK, str(playbook), "-e", "alpine_vm_apkovl_enabled=false",
                           "-e", "libvirt_host_default_network=false"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "DISKS=2" in out, out[-3000:]  # the ISO and the disk: no overlay CD-ROM
    assert re.search(r"skipping: \[localhost\]", out.split("NAT network")[-1]), out[-3000:]
