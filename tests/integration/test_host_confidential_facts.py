"""libvirt_host_info and libvirt_host's confidential-computing facts on the real libvirtd.

The module's facts are checked against virsh's own domain capabilities and the files on disk; the role's
assertion fails naming what the host lacks (here: SEV, SEV-SNP, TDX) and passes for what it has.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import ROOT, ansible_env, run_module, run_steps_via_ansible
from tests.host_kvm import expected_auto_domain_type

pytestmark = pytest.mark.system

PLAYBOOK = """\
- name: Confidential-computing facts
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    libvirt_host_domain_type: qemu
  tasks:
    - name: Run libvirt_host's confidential tasks
      ansible.builtin.include_role:
        name: libvirt_host
        tasks_from: confidential.yml
    - name: Show them
      ansible.builtin.debug:
        msg: "FACTS={{ libvirt_host_confidential | to_json }}"
"""


def virsh_domcaps() -> ET.Element:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "domcapabilities", "--virttype", "qemu", "--machine", "q35"],
                         check=True, capture_output=True, text=True).stdout
    return ET.fromstring(out)


def test_module_reports_what_libvirt_and_the_disk_say():
    results = run_steps_via_ansible([("libvirt_host_info", {"machine": "q35", "domain_type": "qemu"}, check)
                                     for check in (True, False)])
    assert all(not r["failed"] and not r["changed"] for r in results), results[0].get("msg")
    host = results[1]["host"]
    assert results[0]["host"] == host
    caps = virsh_domcaps()
    firmware = [v.text for v in caps.findall("os/loader/value")]
    assert host["uefi"]["firmware"] == firmware and all(os.path.exists(path) for path in firmware)
    assert host["ovmf"] and host["uefi"]["secure_boot"] and host["tpm"]["emulated_tpm2"]
    assert host["machine"] == caps.findtext("machine") and host["domain_type"] == "qemu"
    assert host["swtpm"] == {"swtpm": shutil.which("swtpm"), "swtpm_setup": shutil.which("swtpm_setup"),
                             "checked": True}
    assert host["swtpm"]["swtpm"] and host["swtpm"]["swtpm_setup"], "make setup installs swtpm and swtpm-tools"
    assert caps.find("features/sev").get("supported") == "no" and caps.find("features/launchSecurity") is None
    assert host["sev"] == {"supported": False, "reason": "<sev supported='no'/>"}
    assert not host["sev_snp"]["supported"] and not host["tdx"]["supported"]


def test_module_resolves_auto_like_libvirt_domain():
    result = run_module("libvirt_host_info", {"machine": "q35", "domain_type": "auto"})
    assert not result["failed"], result.get("msg")
    assert result["host"]["domain_type"] == expected_auto_domain_type()  # kvm where KVM boots guests, else qemu


def play(tmp_path: Path, required: list[str], playbook: str = PLAYBOOK) -> tuple[int, str]:
    (tmp_path / "play.yml").write_text(playbook, encoding="utf-8")
    (tmp_path / "vars.json").write_text(json.dumps({"libvirt_host_confidential_required": required}))
    env = ansible_env()
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path / 'vars.json'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    return proc.returncode, re.sub(r"\s+", " ", proc.stdout + proc.stderr)


def test_role_publishes_facts_and_passes_for_what_the_host_has(tmp_path):
    rc, out = play(tmp_path, ["uefi", "secure_boot", "tpm"])
    assert rc == 0, out[-3000:]
    facts = json.loads(re.search(r'"FACTS=(\{.*?\})"', out).group(1).replace('\\"', '"'))
    assert facts["ovmf"] and facts["tpm"]["emulated_tpm2"] and facts["sev"]["supported"] is False


def test_role_fails_naming_each_missing_technology(tmp_path):
    rc, out = play(tmp_path, ["tpm", "sev_snp", "tdx"])
    assert rc != 0
    assert ("cannot give qemu guests on machine pc-q35-7.2: sev_snp: <sev supported='no'/> and no "
            "<launchSecurity> element") in out, out[-3000:]
    assert "; tdx: no <launchSecurity> element" in out and "tpm:" not in out.split("cannot give", 1)[1]


def test_role_refuses_an_unknown_technology_before_changing_anything(tmp_path):
    """The role's argument spec (validated before its first task) knows the technologies."""
    rc, out = play(tmp_path, ["sgx"], PLAYBOOK.replace("        tasks_from: confidential.yml\n", ""))
    assert rc != 0 and "changed=0" in out, out[-3000:]
    assert "libvirt_host_confidential_required" in out and "sgx" in out and "sev_snp" in out, out[-3000:]
