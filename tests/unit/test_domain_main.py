"""main() of libvirt_domain and libvirt_domain_info, run in-process with exit_json/fail_json patched."""
from __future__ import annotations

import libvirt
import pytest
from libvirt_test_driver import TEST_URI, run_main

from library import libvirt_domain, libvirt_domain_info
from tests.helpers import drop_domains

NAME = "ctest-dom-main"


@pytest.fixture(autouse=True)
def conn():
    """Held open for the whole test: test:///default forgets everything when its last connection closes."""
    conn = libvirt.open(TEST_URI)
    yield conn
    drop_domains(conn, "ctest-dom-")
    conn.close()


def test_check_then_apply(monkeypatch):
    args = {"name": NAME, "memory": "64MiB", "state": "running"}
    checked = run_main(libvirt_domain.main, monkeypatch, args, check=True)
    assert not checked.failed and checked.result["changed"] and checked.result["actions"] == ["define", "start"]
    applied = run_main(libvirt_domain.main, monkeypatch, args)
    assert not applied.failed and applied.result["changed"] and applied.result["domain"]["state"] == "running"
    again = run_main(libvirt_domain.main, monkeypatch, args)
    assert not again.result["changed"]


@pytest.mark.parametrize("args, match", [
    ({"xml": "<domain><name>"}, "malformed XML"),
    ({"memory": "10 parsecs"}, "memory"),
    ({"xml": "<domain/>", "memory": "1GiB"}, "mutually exclusive"),
    ({"memory": "64MiB", "interfaces": [{"type": "user", "port_forwards": [{"host_port": 1}]}]}, "guest_port"),
])
def test_bad_input_fails_cleanly(conn, monkeypatch, args, match):
    ended = run_main(libvirt_domain.main, monkeypatch, {"name": NAME, **args})
    assert ended.failed and match in ended.result["msg"]
    assert "Traceback" not in ended.result["msg"]
    assert NAME not in [d.name() for d in conn.listAllDomains(0)]


def test_libvirt_rejection_carries_code_and_message(monkeypatch):
    ended = run_main(libvirt_domain.main, monkeypatch,
                     {"name": NAME, "xml": f"<domain type='nonsense'><name>{NAME}</name></domain>"})
    assert ended.failed and NAME in ended.result["msg"]
    assert isinstance(ended.result["error_code"], int) and ended.result["libvirt_message"]


def test_absent_missing_is_ok(monkeypatch):
    ended = run_main(libvirt_domain.main, monkeypatch, {"name": NAME, "state": "absent"})
    assert not ended.failed and not ended.result["changed"]


def test_info_main(monkeypatch):
    run_main(libvirt_domain.main, monkeypatch, {"name": NAME, "memory": "64MiB"})
    ended = run_main(libvirt_domain_info.main, monkeypatch, {"name": NAME}, check=True)
    assert not ended.failed and not ended.result["changed"]
    assert [d["name"] for d in ended.result["domains"]] == [NAME]
    everything = run_main(libvirt_domain_info.main, monkeypatch, {})
    assert NAME in [d["name"] for d in everything.result["domains"]]


def test_omitted_options_are_left_and_an_empty_list_is_given(conn, monkeypatch):
    """Through argument parsing: vcpus alone keeps memory and disks; disks: [] arrives as [] and removes them."""
    disk = {"path": "/var/lib/cocos-test/dom/unit/main.img", "format": "raw"}
    run_main(libvirt_domain.main, monkeypatch, {"name": NAME, "memory": "64MiB", "disks": [disk]})
    grown = run_main(libvirt_domain.main, monkeypatch, {"name": NAME, "vcpus": 2})
    assert not grown.failed and grown.result["actions"] == ["redefine"], grown.result.get("msg")
    assert grown.result["domain"]["memory"] == 64 * 1024 * 1024 and len(grown.result["domain"]["disks"]) == 1
    emptied = run_main(libvirt_domain.main, monkeypatch, {"name": NAME, "disks": []})
    assert not emptied.failed and emptied.result["changed"] and emptied.result["domain"]["disks"] == []
    assert "<disk" not in conn.lookupByName(NAME).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
