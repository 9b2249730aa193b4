"""UEFI (Secure Boot on and off), an emulated TPM and launch security through libvirt_domain on the real libvirtd.

TCG q35 domains without disks: OVMF sits in its boot manager, which is all convergence, run state and
NVRAM/TPM state need. Every behaviour runs four times (check, apply, apply, check) and is verified with
virsh and the files libvirt keeps.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from typing import Any

import libvirt
import pytest

from tests.helpers import run_module

pytestmark = pytest.mark.system

URI = "qemu:///system"
PREFIX = "ctest-h6a-"
NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
SWTPM_DIR = "/var/lib/libvirt/swtpm"
# The DER of Microsoft's UEFI CA certificate, enrolled in OVMF_VARS_4M.ms.fd and absent from OVMF_VARS_4M.fd.
ENROLLED = b"Microsoft Corporation UEFI CA"


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", URI, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def name():
    """A fresh domain name of ours, removed afterwards with its NVRAM and TPM state."""
    dom_name = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    yield dom_name
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(dom_name)
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)
    except libvirt.libvirtError:
        pass  # never defined, or the test removed it
    finally:
        conn.close()


def args(name: str, **over: Any) -> dict[str, Any]:
    out = {"name": name, "uri": URI, "state": "running", "memory": "128MiB", "domain_type": "qemu", "machine": "q35",
           "firmware": "efi", "tpm": {"model": "tpm-crb", "version": "2.0"}, "wait_timeout": 5}
    out.update(over)
    return out


def four_times(module_args: dict[str, Any]) -> list[dict[str, Any]]:
    results = [run_module("libvirt_domain", module_args, check=True, diff=True),
               run_module("libvirt_domain", module_args, diff=True),
               run_module("libvirt_domain", module_args, diff=True),
               run_module("libvirt_domain", module_args, check=True, diff=True)]
    for result in results:
        assert not result["failed"], result.get("msg")
        assert not result["restart_required"], result.get("actions")
    assert [r["changed"] for r in results] == [True, True, False, False], [r.get("actions") for r in results]
    assert results[0]["actions"] == results[1]["actions"] and results[0]["diff"] == results[1]["diff"]
    return results


def state_files(name: str) -> tuple[str, str]:
    """The domain's NVRAM varstore and swtpm state directory (libvirt's default places for them)."""
    return f"{NVRAM_DIR}/{name}_VARS.fd", f"{SWTPM_DIR}/{virsh('domuuid', name).strip()}"


@pytest.mark.parametrize("secure_boot", [True, False], ids=["secure-boot", "no-secure-boot"])
def test_uefi_with_tpm_converges_starts_and_settles(name, secure_boot):
    results = four_times(args(name, secure_boot=secure_boot))
    assert results[1]["actions"] == ["define", "start"]
    live = virsh("dumpxml", name)
    code = "OVMF_CODE_4M.ms.fd" if secure_boot else "OVMF_CODE_4M.fd"
    assert f"{code}</loader>" in live, live
    assert ("<smm state='on'/>" in live) == secure_boot
    assert "<tpm model='tpm-crb'>" in live and "<backend type='emulator' version='2.0'/>" in live
    inactive = virsh("dumpxml", "--inactive", name)
    assert "<os firmware='efi'>" in inactive and f"<feature enabled='{'yes' if secure_boot else 'no'}' " \
                                                 "name='secure-boot'/>" in inactive
    nvram, tpm_state = state_files(name)
    with open(nvram, "rb") as handle:
        assert (ENROLLED in handle.read()) == secure_boot  # the varstore came from the matching template
    assert os.path.isdir(f"{tpm_state}/tpm2")  # swtpm keeps the TPM's state here
    rerun = run_module("libvirt_domain", args(name, secure_boot=secure_boot))
    assert not rerun["changed"] and not rerun["restart_required"] and rerun["domain"]["state"] == "running"


def test_secure_boot_switch_restarts_with_a_fresh_nvram(name):
    run_module("libvirt_domain", args(name, secure_boot=True))
    nvram, _ = state_files(name)
    with open(nvram, "rb") as handle:
        assert ENROLLED in handle.read()
    pending = run_module("libvirt_domain", args(name, secure_boot=False), diff=True)
    assert pending["changed"] and pending["restart_required"] and pending["actions"] == ["redefine"]
    results = four_times(args(name, secure_boot=False, allow_restart=True, force_shutdown=True))
    assert results[1]["actions"] == ["restart"]
    assert "OVMF_CODE_4M.fd</loader>" in virsh("dumpxml", name)
    with open(nvram, "rb") as handle:
        assert ENROLLED not in handle.read()  # started with VIR_DOMAIN_START_RESET_NVRAM: no stale keys


def test_omitted_options_keep_firmware_and_tpm(name):
    run_module("libvirt_domain", args(name, secure_boot=True, state="present"))
    grown = run_module("libvirt_domain", {"name": name, "uri": URI, "memory": "192MiB"}, diff=True)
    assert grown["changed"] and grown["actions"] == ["redefine"]
    inactive = virsh("dumpxml", "--inactive", name)
    assert "<os firmware='efi'>" in inactive and "name='secure-boot'/>" in inactive
    assert "<tpm model='tpm-crb'>" in inactive and "<smm state='on'/>" in inactive
    removed = run_module("libvirt_domain", {"name": name, "uri": URI, "tpm": {"model": "none"}})
    assert removed["changed"] and "<tpm" not in virsh("dumpxml", "--inactive", name)


def test_absent_removes_nvram_and_tpm_state(name):
    run_module("libvirt_domain", args(name, secure_boot=False))
    nvram, tpm_state = state_files(name)
    assert os.path.exists(nvram) and os.path.isdir(tpm_state)
    results = [run_module("libvirt_domain", {"name": name, "uri": URI, "state": "absent"}, check=check)
               for check in (True, False, False, True)]
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert not os.path.exists(nvram) and not os.path.exists(tpm_state)
    assert name not in virsh("list", "--all", "--name").split()


@pytest.mark.parametrize("spec, says", [
    ({"type": "sev", "policy": "0x0003"}, "launch security sev: <sev supported='no'/>"),
    ({"type": "sev-snp", "policy": "0x30000"},
     "launch security sev-snp: <sev supported='no'/> and no <launchSecurity> element"),
    ({"type": "tdx", "policy": "0x10000000"}, "launch security tdx: no <launchSecurity> element"),
], ids=["sev", "sev-snp", "tdx"])
def test_launch_security_fails_clearly_and_defines_nothing(name, spec, says):
    for check in (True, False):
        result = run_module("libvirt_domain", args(name, launch_security=spec), check=check)
        assert result["failed"] and name in result["msg"] and says in result["msg"], result["msg"]
        assert "domain capabilities for qemu-system-x86_64, machine pc-q35" in result["msg"]
    assert name not in virsh("list", "--all", "--name").split()


def test_secure_boot_on_i440fx_fails_naming_the_loader_enum(name):
    result = run_module("libvirt_domain", args(name, machine="pc", secure_boot=True, tpm=None))
    assert result["failed"] and "<os><loader><enum name='secure'> offers 'no'" in result["msg"], result["msg"]
    assert name not in virsh("list", "--all", "--name").split()


def test_back_to_bios_is_converged(name):
    run_module("libvirt_domain", args(name, secure_boot=True))
    results = four_times(args(name, firmware="bios", tpm={"model": "none"}, allow_restart=True, force_shutdown=True))
    assert results[1]["actions"] == ["redefine", "restart"]
    live, inactive = virsh("dumpxml", name), virsh("dumpxml", "--inactive", name)
    assert "<loader" not in live and "firmware=" not in inactive and "<tpm" not in live


def test_shipped_dom_xml_converges_and_settles(name, tmp_path):
    """xml/dom.xml (the builder's output for the demo VM), renamed onto our own pool, volume and ISO path."""
    pool, area = f"{name}-pool", f"/var/lib/cocos-test/h6a/{name}"
    os.makedirs(f"{area}/img", exist_ok=True)
    virsh("pool-create-as", pool, "dir", "--target", f"{area}/img")
    try:
        virsh("vol-create-as", pool, "boot.img", "16M", "--format", "qcow2")
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "xml", "dom.xml"), encoding="utf-8") as handle:
            xml = (handle.read().replace("QEmu-alpine-standard-x86_64", name).replace("virtimages", pool)
                   .replace("/var/lib/cocos/log/", f"{area}/").replace("/var/lib/cocos/iso/", f"{area}/")
                   .replace(":7020-", ":0-"))
        results = [run_module("libvirt_domain", {"name": name, "uri": URI, "xml": xml}, check=check)
                   for check in (True, False, False, True)]
        assert [r["changed"] for r in results] == [True, True, False, False], [r.get("msg") for r in results]
    finally:
        conn = libvirt.open(URI)
        try:
            for dom in [d for d in conn.listAllDomains(0) if d.name() == name]:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            conn.storagePoolLookupByName(pool).storageVolLookupByName("boot.img").delete(0)
            conn.storagePoolLookupByName(pool).destroy()
        finally:
            conn.close()
            shutil.rmtree(area, ignore_errors=True)
