"""tests.helpers.run_module (main() in-process) reports what run_module_via_ansible (ansible ad hoc) reports.

Most module tests run in-process to save ansible's start per run; this is the check that doing so tests the
same thing: same keys, values, diff and failure message, for a change predicted in check mode and for
arguments AnsibleModule and the manager reject. Check mode and failures create nothing, so fixed names
are safe here.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import run_module, run_module_via_ansible, run_steps_via_ansible

pytestmark = pytest.mark.system

CONTROLLER_ONLY = ("_rc", "_stderr", "exception")  # added by the ansible process and its controller
IDS = ["pool-check", "network-check", "pool-exclusive", "domain-bad-unit", "volume-no-pool"]

CASES = [
    ("libvirt_pool", {"name": "ctest-runners-pool", "path": "/var/lib/cocos-test/runners/p", "autostart": True},
     True),
    ("libvirt_network", {"name": "ctest-runners-net", "bridge": "ctst-runners0", "ip_address": "10.213.91.1"},
     True),
    ("libvirt_pool", {"name": "ctest-runners-pool", "path": "/x", "xml": "<pool/>"}, False),  # mutually exclusive
    ("libvirt_domain", {"name": "ctest-runners-dom", "memory": "128 XiB", "domain_type": "qemu"}, False),
    ("libvirt_volume", {"pool": "ctest-runners-nopool", "name": "v.qcow2", "capacity": "1MiB"}, True),
]


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in CONTROLLER_ONLY}


@pytest.fixture(scope="module", name="played")
def played_fixture() -> list[dict[str, Any]]:
    """Every case through one ansible-playbook run (one controller start for all)."""
    return run_steps_via_ansible(CASES)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_in_process_result_equals_a_playbooks(played, index):
    module, args, check = CASES[index]
    assert comparable(run_module(module, args, check=check, diff=True)) == comparable(played[index])


def test_in_process_result_equals_ansible_ad_hoc():
    module, args, check = CASES[0]
    real = run_module_via_ansible(module, args, check=check, diff=True)
    assert real["_rc"] == 0, real["_stderr"]
    assert comparable(run_module(module, args, check=check, diff=True)) == comparable(real)
