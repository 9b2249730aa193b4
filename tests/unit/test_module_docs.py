"""Every module's documentation renders with ansible-doc and names exactly the options its code accepts.

ansible-doc is run the way a user runs it (from the repository root, ansible.cfg picking up the shared
doc fragment), so a broken DOCUMENTATION block or an option documented but not accepted fails here.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import library_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "library")) if name.endswith(".py"))


def rendered_doc(name: str) -> dict:
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-doc"), "-M", "library", "--json", name],
                          cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[name]["doc"]


def code_options(name: str) -> set[str]:
    return set(library_module(name).argument_spec())


def test_every_module_is_covered() -> None:
    assert MODULES == ["alpine_apkovl", "libvirt_domain", "libvirt_domain_info", "libvirt_host_info",
                       "libvirt_network", "libvirt_pool", "libvirt_volume"]


@pytest.mark.parametrize("name", MODULES)
def test_doc_renders_and_matches_argument_spec(name: str) -> None:
    doc = rendered_doc(name)
    assert set(doc["options"]) == code_options(name)
    if name.startswith("libvirt_"):
        assert doc["options"]["uri"]["default"] == "qemu:///system"
        assert "libvirt-python" in doc["requirements"]
    else:  # alpine_apkovl writes a local file with the standard library: no connection, nothing to install
        assert "uri" not in doc["options"] and not doc.get("requirements")
    support = {attribute: doc["attributes"][attribute]["support"] for attribute in ("check_mode", "diff_mode")}
    # Read-only info modules change nothing, so they have nothing to diff.
    assert support == {"check_mode": "full", "diff_mode": "none" if name.endswith("_info") else "full"}
    assert doc["attributes"]["idempotent"]["support"] == "full"
