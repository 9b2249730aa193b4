"""Shared bits of the storage/network unit tests: a fresh test:///default and running main() in-process."""
from __future__ import annotations

import json
from typing import Any

import libvirt
import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

TEST_URI = "test:///default"
PREFIX = "ctest-stor-"


class ModuleExit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result)
        self.result = result
        self.failed = failed


def run_main(main, monkeypatch, args: dict[str, Any], check: bool = False) -> ModuleExit:
    """Run a module's main() with exit_json/fail_json patched to raise, and return how it ended."""
    def exit_json(_self, **kwargs):
        raise ModuleExit(kwargs, False)

    def fail_json(_self, msg, **kwargs):
        raise ModuleExit({"msg": msg, **kwargs}, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    full = {"uri": TEST_URI, **args, "_ansible_check_mode": check}
    with patch_module_args(full), pytest.raises(ModuleExit) as caught:
        main()
    json.dumps(caught.value.result)  # the result must be serialisable as Ansible will send it
    return caught.value


def remove_ours(connection: Any) -> None:
    """test:///default keeps its state for the whole process, so each test removes what it made."""
    for pool in connection.listAllStoragePools():
        if pool.isActive():
            for vol in pool.listAllVolumes():
                if vol.name().startswith(PREFIX):
                    vol.delete(0)
        if pool.name().startswith(PREFIX):
            if pool.isActive():
                pool.destroy()
            pool.undefine()
    for net in connection.listAllNetworks():
        if net.name().startswith(PREFIX):
            if net.isActive():
                net.destroy()
            net.undefine()


@pytest.fixture(name="conn")
def conn_fixture():
    """test:///default with none of our objects left over from an earlier test."""
    connection = libvirt.open(TEST_URI)
    remove_ours(connection)
    yield connection
    remove_ours(connection)
    connection.close()
