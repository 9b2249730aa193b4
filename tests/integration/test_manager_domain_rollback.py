"""POST /domain when the domain step fails: what the run created is rolled back, and the error says so.

playbooks/domain.yml creates pool, volume and domain in that order; a failing domain step must not leave the new
pool and volume behind, must never remove ones that existed before, and must report the failing step, libvirt's
error and what was rolled back and what remains. Objects are named ctest-mgr-rb-<tag>; no guest ever boots (the
definitions fail before QEMU would start).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import libvirt
import pytest
from manager_support import make_config, manager_server, request

from cocos_pb import manager_pb2, manager_pb2_grpc
from manager_api.config import ROOT
from tests.helpers import drop, drop_domain, drop_pool

pytestmark = pytest.mark.system
URI = "qemu:///system"
TEST_ROOT = Path("/var/lib/cocos-test/mgr-rb")
STEP = "Step 'Domain is defined and running' failed:"
CHECK_MODE_NOTE = "Check mode: nothing was changed, so nothing was rolled back."


def domain_xml(names: dict, disk_bus: str, cdrom: str = "") -> str:
    cdrom_disk = (f"<disk type='file' device='cdrom'><source file='{cdrom}'/><target dev='hdc' bus='ide'/>"
                  "<readonly/></disk>") if cdrom else ""
    return f"""<domain type='qemu'>
  <name>{names['domain']}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
      <source pool='{names['pool']}' volume='{names['volume']}'/><target dev='vda' bus='{disk_bus}'/></disk>
    {cdrom_disk}
    <memballoon model='none'/>
  </devices>
</domain>"""


def write_definitions(xml_dir: Path, tag: str, work: Path) -> dict:
    names = {"pool": f"ctest-mgr-rb-pool-{tag}", "volume": f"ctest-mgr-rb-{tag}.qcow2",
             "domain": f"ctest-mgr-rb-dom-{tag}", "pool_path": str(work / "img")}
    (xml_dir / "pool.xml").write_text(
        f"<pool type='dir'><name>{names['pool']}</name><target><path>{names['pool_path']}</path></target></pool>")
    (xml_dir / "vol.xml").write_text(
        f"<volume><name>{names['volume']}</name><capacity unit='MiB'>8</capacity>"
        "<target><format type='qcow2'/></target></volume>")
    # libvirt refuses the definition itself: no such disk bus.
    (xml_dir / "rejected.xml").write_text(domain_xml(names, "bogus"))
    # libvirt accepts the definition, but starting fails: the ISO is missing (the module undefines it again).
    (xml_dir / "no-iso.xml").write_text(domain_xml(names, "virtio", cdrom=str(work / "iso" / "missing.iso")))
    return names


def state(names: dict) -> dict:
    """Pool, volume and domain as a fresh libvirt connection sees them."""
    conn = libvirt.openReadOnly(URI)
    try:
        out = {"domain": names["domain"] in [d.name() for d in conn.listAllDomains()],
               "pool": names["pool"] in [p.name() for p in conn.listAllStoragePools()], "volumes": []}
        if out["pool"]:
            pool = conn.storagePoolLookupByName(names["pool"])
            out["volumes"] = sorted(pool.listVolumes()) if pool.isActive() else []
        return out
    finally:
        conn.close()


def make_pool_and_volume(names: dict, xml_dir: Path, volume: bool = True) -> None:
    """Create the pool (and volume) behind the manager's back, as another user would have before the request."""
    conn = libvirt.open(URI)
    try:
        pool = conn.storagePoolDefineXML((xml_dir / "pool.xml").read_text(), 0)
        pool.build(0)
        pool.create(0)
        if volume:
            pool.createXML((xml_dir / "vol.xml").read_text(), 0)
    finally:
        conn.close()


def remove_ours(names: dict) -> None:
    conn = libvirt.open(URI)
    try:
        drop(conn.lookupByName, names["domain"], drop_domain)
        try:
            pool = conn.storagePoolLookupByName(names["pool"])
        except libvirt.libvirtError:
            return
        drop_pool(pool)  # outside the try: a pool that will not go fails the teardown
    finally:
        conn.close()


@pytest.fixture(scope="module")
def env():
    tag = uuid.uuid4().hex[:8]
    work = TEST_ROOT / f"run-{tag}"
    xml_dir = work / "xml"
    xml_dir.mkdir(parents=True)
    names = write_definitions(xml_dir, tag, work)
    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        config = make_config(xml_dir=str(xml_dir), libvirt_uri=URI, domain_timeout=300, storage_roots=(str(work),),
                             iso_roots=(str(work / "iso"),), log_dir=str(work / "log"))
        with manager_server(config) as mgr:
            yield mgr, names, xml_dir
    finally:
        remove_ours(names)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def clean(env):
    """Every test starts and ends without our pool, volume and domain."""
    _, names, _ = env
    remove_ours(names)
    yield env
    remove_ours(names)


# libvirt's words, then the module's own account of its steps, then the playbook's error code.
@pytest.mark.parametrize("definition, libvirt_words", [
    ("rejected.xml", f"libvirt rejected the definition: XML error: Invalid value for attribute 'bus' in element "
                     f"'target': 'bogus' (step 'define' failed; nothing was applied) "
                     f"(libvirt error code {libvirt.VIR_ERR_XML_ERROR})"),
    ("no-iso.xml", "missing.iso': No such file or directory (step 'start' failed after define; rolled back: define "
                   "(the new definition was removed again); nothing of this run remains) (libvirt error code"),
], ids=["definition-rejected", "start-fails"])
def test_failed_domain_rolls_back_the_new_pool_and_volume(clean, definition, libvirt_words):
    mgr, names, _ = clean
    status, headers, body = request("POST", mgr.base + "/domain", {"domain": definition}, timeout=300)
    assert status == 500 and headers["Content-Type"] == "application/json", body
    error = body["error"]
    assert error.startswith(f"create_domain failed: {STEP}") and libvirt_words in error, error
    assert (f"Rolled back: volume '{names['volume']}' in pool '{names['pool']}' deleted, pool '{names['pool']}' "
            "removed (its directory is kept). Remains: nothing.") in error
    assert "Traceback" not in error and body["job_id"]
    _, _, job = request("GET", f"{mgr.base}/jobs/{body['job_id']}")
    assert job["state"] == "failed" and job["error"] == error.removeprefix("create_domain failed: ")
    # The module undefined the domain it defined but could not start; the playbook removed volume and pool.
    assert state(names) == {"domain": False, "pool": False, "volumes": []}


def test_failed_domain_keeps_the_pool_and_volume_that_existed(clean):
    mgr, names, xml_dir = clean
    make_pool_and_volume(names, xml_dir)
    before = state(names)
    assert before == {"domain": False, "pool": True, "volumes": [names["volume"]]}
    status, _, body = request("POST", mgr.base + "/domain", {"domain": "rejected.xml"}, timeout=300)
    assert status == 500 and body["error"].startswith(f"create_domain failed: {STEP}"), body
    assert ("Rolled back: nothing (this run created no pool or volume). Remains: volume "
            f"'{names['volume']}' in pool '{names['pool']}' (existed before this run), pool '{names['pool']}' "
            "(existed before this run).") in body["error"]
    assert state(names) == before
    # gRPC reports the same message in its status.
    with grpc.insecure_channel(mgr.grpc_target) as chan, pytest.raises(grpc.RpcError) as err:
        manager_pb2_grpc.ManagerServiceStub(chan).CreateDomain(
            manager_pb2.CreateDomainRequest(domain="rejected.xml"), timeout=300)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert STEP in err.value.details() and "(existed before this run)" in err.value.details()
    assert state(names) == before


def test_new_pool_holding_other_volumes_is_kept(clean):
    mgr, names, _ = clean
    # A file already in the directory becomes a volume of the new pool: the run did not make it, so the pool stays.
    stray = Path(names["pool_path"]) / "ctest-mgr-rb-stray.img"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"\0" * 4096)
    status, _, body = request("POST", mgr.base + "/domain", {"domain": "rejected.xml"}, timeout=300)
    assert status == 500 and body["error"].startswith(f"create_domain failed: {STEP}"), body
    assert (f"Rolled back: volume '{names['volume']}' in pool '{names['pool']}' deleted. Remains: pool "
            f"'{names['pool']}' (created by this run, kept: it holds other volumes: {stray.name}).") in body["error"]
    assert state(names) == {"domain": False, "pool": True, "volumes": [stray.name]} and stray.exists()


@pytest.mark.parametrize("pool_before", [False, True], ids=["nothing-before", "pool-before"])
def test_check_mode_rolls_back_nothing(clean, pool_before):
    _, names, xml_dir = clean
    if pool_before:  # then check mode gets as far as the domain step, with a volume it would have created
        make_pool_and_volume(names, xml_dir, volume=False)
    before = state(names)
    extravars = xml_dir / "check-vars.json"
    extravars.write_text(json.dumps({"libvirt_uri": URI, "pool_xml": (xml_dir / "pool.xml").read_text(),
                                     "volume_xml": (xml_dir / "vol.xml").read_text(),
                                     "domain_xml": (xml_dir / "rejected.xml").read_text()}))
    playbook = Path(sys.executable).parent / "ansible-playbook"
    out = subprocess.run([str(playbook), "playbooks/domain.yml", "--check", "-e", f"@{extravars}"], cwd=ROOT,
                         env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0, out.stdout
    step = "Domain is defined and running" if pool_before else "Boot volume exists"
    assert f"Step '{step}' failed:" in out.stdout and CHECK_MODE_NOTE in out.stdout, out.stdout
    assert state(names) == before
