"""tests.helpers.run_module (main() in-process) reports what run_module_via_ansible (ansible ad hoc) reports.

Most module tests run in-process to save ansible's start per run; this is the check that doing so tests the
same thing: same keys, values, diff and failure message, for a change predicted in check mode and for
arguments AnsibleModule and the manager reject. Check mode and failures create nothing, so fixed names
are safe here.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import run_module, run_module_via_ansible

pytestmark = pytest.mark.system

CONTROLLER_ONLY = ("_rc", "_stderr", "exception")  # added by the ansible process and its controller

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


@pytest.mark.parametrize("module, args, check", CASES, ids=["pool-check", "network-check", "pool-exclusive",
                                                             "domain-bad-unit", "volume-no-pool"])
def test_in_process_result_equals_ansibles(module, args, check):
    real = run_module_via_ansible(module, args, check=check, diff=True)
    assert real["_rc"] in (0, 2), real["_stderr"]  # 2: the task failed, as some cases must
    assert comparable(run_module(module, args, check=check, diff=True)) == comparable(real)
