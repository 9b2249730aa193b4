"""xml/dom.xml is the library builder's output for the VM `make demo` defines (roles/alpine_vm + scripts/demo.sh)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_dom_xml  # noqa: E402

from module_utils.cocos_libvirt import domain_xml  # noqa: E402


def test_shipped_dom_xml_has_not_drifted():
    assert gen_dom_xml.main(["--check"]) == 0, "xml/dom.xml differs from the builder's output: run `make xml`"
    assert (ROOT / "xml" / "dom.xml").read_text() == gen_dom_xml.render()


def test_options_come_from_the_role_and_the_demo():
    options = gen_dom_xml.role_domain_options(gen_dom_xml.demo_vars())
    assert options["name"] == "QEmu-alpine-standard-x86_64" and options["memory"] == "1GiB"
    assert options["interfaces"] == [{"type": "user", "port_forwards": [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002}]}]  # demo.sh: user networking
    assert options["disks"][0]["path"] == "/var/lib/cocos/iso/cocos-guest.iso"  # the role's ISO dir + demo's ISO
    assert options["domain_type"] == "qemu" and options["boot"] == ["cdrom", "hd"]


def test_a_role_change_would_show_as_drift(monkeypatch):
    monkeypatch.setitem(gen_dom_xml.HOST_FACTS, "alpine_vm_memory", "2GiB")
    assert "<memory unit=\"KiB\">2097152</memory>" in gen_dom_xml.render()
    assert gen_dom_xml.main(["--check"]) == 1


def test_shipped_dom_xml_is_valid_and_forwards_the_agent():
    validator = shutil.which("virt-xml-validate")
    assert validator, "virt-xml-validate missing (libvirt-clients; make setup installs it)"
    subprocess.run([validator, str(ROOT / "xml" / "dom.xml"), "domain"], check=True, capture_output=True)
    root = ET.parse(ROOT / "xml" / "dom.xml").getroot()
    assert domain_xml.forwarded_ports(root) == [
        {"host_address": "127.0.0.1", "host_port": 7020, "guest_port": 7002, "protocol": "tcp"}]


@pytest.mark.parametrize("old, new", [("DEMO_AGENT_PORT=", "AGENT_PORT="), ("DEMO_MARKER=", "MARKER="),
                                      ("<<JSON", "<<EOF")])
def test_demo_vars_fail_loudly_when_demo_sh_changes_shape(monkeypatch, tmp_path, old, new):
    demo = tmp_path / "demo.sh"
    demo.write_text(gen_dom_xml.DEMO.read_text().replace(old, new))
    monkeypatch.setattr(gen_dom_xml, "DEMO", demo)
    with pytest.raises(SystemExit, match="demo.sh changed shape"):
        gen_dom_xml.demo_vars()
