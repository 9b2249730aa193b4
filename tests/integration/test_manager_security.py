"""The manager as a trust boundary, probed as an attacker would (issue 9; the cases of shared/cases/manager).

Request data and XML content are data: every templating spelling, through every field, over HTTP and gRPC, runs
nothing and creates nothing; text that is accepted reaches libvirt literally. XML that reaches outside managed
storage is refused before any playbook runs (400 / INVALID_ARGUMENT naming the element and the rule).
Objects are named ctest-h3-<tag>-...; files live under /var/lib/cocos-test/h3/.
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
from manager_support import agent_server, make_config, manager_server, request

from cocos_pb import manager_pb2, manager_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc
from manager_api.config import ROOT
from manager_api.runner import unsafe
from module_utils.cocos_libvirt.domain_compare import QEMU_NS
from tests.helpers import drop, drop_domain, drop_pool

pytestmark = pytest.mark.system
URI = "qemu:///system"
TEST_ROOT = Path("/var/lib/cocos-test/h3")
CASES = Path(__file__).parent / "data" / "manager_cases"


def spellings(payload: str) -> dict[str, str]:
    """One Jinja payload written every way XML can carry it; each decodes (or would decode) to template syntax."""
    return {
        "plain": "{{ " + payload + " }}",
        "decimal": "&#123;&#123; " + payload.replace("'", "&#39;") + " &#125;&#125;",
        "hex": "&#x7b;&#x7B; " + payload + " &#x7d;&#x7D;",
        "cdata": "<![CDATA[{{ " + payload + " }}]]>",
        "statement": "{% set _ = " + payload + " %}",
        "comment": "{# " + payload + " #}",
        "mixed": "&#123;{ " + payload + " }&#125;",
    }


@pytest.fixture(scope="module")
def env():
    tag = uuid.uuid4().hex[:8]
    work = TEST_ROOT / f"sec-{tag}"
    for sub in ("xml", "storage", "iso", "log", "host"):
        (work / sub).mkdir(parents=True)
    libvirt.registerErrorHandler(lambda *_: None, None)
    names = {"pool": f"ctest-h3-{tag}-pool", "volume": f"ctest-h3-{tag}.qcow2", "domain": f"ctest-h3-{tag}-dom"}
    write_valid(work, names)
    config = make_config(xml_dir=str(work / "xml"), libvirt_uri=URI, domain_timeout=300,
                         storage_roots=(str(work / "storage"),), iso_roots=(str(work / "iso"),),
                         log_dir=str(work / "log"))
    try:
        with agent_server() as (recorder, port, _server):
            config = config.__class__(**{**config.__dict__, "agent_grpc_url": f"127.0.0.1:{port}"})
            with manager_server(config) as mgr:
                yield mgr, work, names, tag, recorder
    finally:
        remove_tagged(tag)
        shutil.rmtree(work, ignore_errors=True)


def write_valid(work: Path, names: dict, description: str = "") -> None:
    xml = work / "xml"
    (xml / "pool.xml").write_text(f"<pool type='dir'><name>{names['pool']}</name>"
                                  f"<target><path>{work / 'storage' / 'img'}</path></target></pool>")
    (xml / "vol.xml").write_text(f"<volume><name>{names['volume']}</name><capacity unit='MiB'>8</capacity>"
                                 "<target><format type='qcow2'/></target></volume>")
    (xml / "dom.xml").write_text(domain_text(names, description=description))


def domain_text(names: dict, description: str = "", devices: str = "", name: str | None = None) -> str:
    return f"""<domain type='qemu' xmlns:qemu='{QEMU_NS}'>
  <name>{name or names['domain']}</name>
  <description>{description}</description>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
      <source pool='{names['pool']}' volume='{names['volume']}'/><target dev='vda' bus='virtio'/></disk>
    {devices}
    <memballoon model='none'/>
  </devices>
</domain>"""


def tagged_objects(tag: str) -> list[str]:
    conn = libvirt.openReadOnly(URI)
    try:
        found = [d.name() for d in conn.listAllDomains()] + [p.name() for p in conn.listAllStoragePools()]
        return [name for name in found if tag in name]
    finally:
        conn.close()


def remove_tagged(tag: str) -> None:
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains():
            if tag in dom.name():
                drop(conn.lookupByName, dom.name(), drop_domain)
        for pool in conn.listAllStoragePools():
            if tag in pool.name():
                drop_pool(pool)
    finally:
        conn.close()


def case_file(name: str, work: Path, tag: str) -> str:
    """A shared case, moved into this test's directory and names (same kind, no clash with others running it)."""
    text = (CASES / name).read_text().replace("/var/tmp/", f"{work / 'host'}/").replace("case-", f"ctest-h3-{tag}-")
    (work / "xml" / name).write_text(text)
    return name


def no_job_ran(mgr) -> bool:
    return mgr.services.store.list() == []


# ---- the shared cases --------------------------------------------------------------------------


def test_case_1_template_in_a_pool_name_runs_nothing_http_and_grpc(env):
    mgr, work, _, tag, _ = env
    name = case_file("pool-template.xml", work, tag)
    ran = work / "host" / f"ctest-h3-{tag}-template-ran"  # the case's own marker, moved into our directory
    status, _, body = request("POST", mgr.base + "/domain", {"pool": name})
    assert status == 400 and body["field"] == "pool" and "names are letters" in body["error"], body
    assert "uid=" not in json.dumps(body)  # the expression's output (`id`) is nowhere
    with grpc.insecure_channel(mgr.grpc_target) as chan, pytest.raises(grpc.RpcError) as err:
        manager_pb2_grpc.ManagerServiceStub(chan).CreateDomain(manager_pb2.CreateDomainRequest(pool=name), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "pool" in err.value.details()
    assert not ran.exists() and tagged_objects(tag) == [] and no_job_ran(mgr)


def test_case_2_host_file_as_disk_is_refused(env):
    mgr, work, _, tag, _ = env
    secret = work / "host" / f"ctest-h3-{tag}-root-only-file"
    secret.write_bytes(b"secret")
    os.chmod(secret, 0o600)
    before = secret.stat()
    name = case_file("dom-host-disk.xml", work, tag)
    status, _, body = request("POST", mgr.base + "/domain", {"domain": name})
    assert status == 400 and body["field"] == "domain", body
    assert "<disk> vdb" in body["error"] and "storage root" in body["error"] and "ISO root" in body["error"]
    assert str(secret) not in body["error"]
    after = secret.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert tagged_objects(tag) == [] and no_job_ran(mgr)


def test_case_3_console_log_outside_the_log_directory_is_refused(env):
    mgr, work, _, tag, _ = env
    private = work / "host" / f"ctest-h3-{tag}-private-dir"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    name = case_file("dom-log-dir.xml", work, tag)
    status, _, body = request("POST", mgr.base + "/domain", {"domain": name})
    assert status == 400 and body["field"] == "domain" and "<serial><log>" in body["error"], body
    assert "CC_MANAGER_LOG_DIR" in body["error"] and str(private) not in body["error"]
    assert (private.stat().st_mode & 0o777) == 0o700 and not (private / "case.log").exists()
    assert tagged_objects(tag) == [] and no_job_ran(mgr)


def test_case_4_pool_over_a_host_directory_is_refused(env):
    mgr, work, _, tag, _ = env
    private = work / "host" / f"ctest-h3-{tag}-private-dir"
    private.mkdir(mode=0o700, exist_ok=True)
    notes = private / "notes.txt"
    notes.write_text("keep me")
    before = notes.stat()
    pool, volume = case_file("pool-host-dir.xml", work, tag), case_file("vol-host-file.xml", work, tag)
    status, _, body = request("POST", mgr.base + "/domain", {"pool": pool, "volume": volume})
    assert status == 400 and body["field"] == "pool" and "storage root" in body["error"], body
    assert str(private) not in body["error"]
    assert notes.read_text() == "keep me" and notes.stat().st_mtime == before.st_mtime
    assert tagged_objects(tag) == [] and no_job_ran(mgr)


# ---- every spelling, every field -------------------------------------------------------------


def test_every_template_spelling_through_every_field_runs_nothing_and_creates_nothing(env):
    mgr, work, names, tag, recorder = env
    markers = []
    for spelling, text in spellings("lookup('pipe', 'touch MARKER')").items():
        marker = work / f"marker-{spelling}"
        markers.append(marker)
        text = text.replace("MARKER", str(marker))
        raw = text.replace("&#123;", "{").replace("&#125;", "}").replace("&#x7b;", "{").replace("&#x7B;", "{") \
            .replace("&#x7d;", "}").replace("&#x7D;", "}").replace("&#39;", "'").replace("<![CDATA[", "") \
            .replace("]]>", "")
        # XML names: pool, volume and domain.
        xml = work / "xml"
        (xml / f"p-{spelling}.xml").write_text(f"<pool type='dir'><name>ctest-h3-{tag}-{text}</name><target><path>"
                                               f"{work / 'storage' / 'img'}</path></target></pool>")
        (xml / f"v-{spelling}.xml").write_text(f"<volume><name>ctest-h3-{tag}-{text}</name>"
                                               "<capacity unit='MiB'>1</capacity></volume>")
        (xml / f"d-{spelling}.xml").write_text(domain_text(names, name=f"ctest-h3-{tag}-{text}"))
        for field, body in (("pool", {"pool": f"p-{spelling}.xml"}), ("volume", {"volume": f"v-{spelling}.xml"}),
                            ("domain", {"domain": f"d-{spelling}.xml"}),
                            ("pool", {"pool": raw}), ("volume", {"volume": raw}), ("domain", {"domain": raw})):
            status, _, reply = request("POST", mgr.base + "/domain?async=true", body)
            assert status in (400, 404) and reply["field"] == field, (spelling, body, reply)
            with grpc.insecure_channel(mgr.grpc_target) as chan:
                for call in (manager_pb2_grpc.ManagerServiceStub(chan).CreateDomain,
                             manager_v1_pb2_grpc.ManagerServiceStub(chan).CreateDomainAsync):
                    with pytest.raises(grpc.RpcError) as err:
                        call(manager_pb2.CreateDomainRequest(**body), timeout=30)
                    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        # Domain names in paths and messages.
        assert request("DELETE", f"{mgr.base}/domains/{_quote(raw)}")[0] == 400
        assert request("GET", f"{mgr.base}/domains/{_quote(raw)}")[0] == 404
        with grpc.insecure_channel(mgr.grpc_target) as chan:
            v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
            with pytest.raises(grpc.RpcError) as err:
                v1.DeleteDomain(manager_v1_pb2.DeleteDomainRequest(name=raw), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                v1.GetDomain(manager_v1_pb2.GetDomainRequest(name=raw), timeout=30)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # Run fields go to the agent as JSON: they arrive as the very text sent.
        run = {"name": raw, "description": raw, "owner": raw, "datasets": [raw], "algorithms": [raw],
               "dataset_providers": [raw], "algorithm_providers": [raw], "result_consumers": [raw], "ttl": 5}
        status, _, reply = request("POST", mgr.base + "/run", run)
        assert status == 200 and recorder.received[-1]["name"] == raw and recorder.received[-1]["datasets"] == [raw]
        status, _, reply = request("POST", mgr.base + "/run", {**run, "domain": raw})
        assert status == 400 and reply["field"] == "domain"
    assert [m for m in markers if m.exists()] == [] and tagged_objects(tag) == [] and no_job_ran(mgr)


def _quote(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


def test_template_text_the_policy_accepts_reaches_libvirt_as_data(env):
    """The mechanism itself: `{{ lookup(...) }}` in a domain's description goes through extra vars, the playbook and
    the module to libvirt, and stays text (ansible-core's unsafe marker, not a spelling check, closes the kind)."""
    mgr, work, names, tag, _ = env
    marker = work / "marker-description"
    texts = spellings(f"lookup('pipe', 'touch {marker}')")
    write_valid(work, names, description=" | ".join(texts.values()))
    try:
        status, _, body = request("POST", mgr.base + "/domain", {}, timeout=300)
        assert status == 200, body
        conn = libvirt.openReadOnly(URI)
        try:
            stored = conn.lookupByName(names["domain"]).metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None)
        finally:
            conn.close()
        assert "{{ lookup('pipe'" in stored and "{% set _ = lookup" in stored and "{# lookup" in stored
        assert not marker.exists()
        status, _, body = request("DELETE", f"{mgr.base}/domains/{names['domain']}", timeout=300)
        assert status == 200, body
    finally:
        write_valid(work, names)
        remove_tagged(tag)


def test_unsafe_marker_is_what_stops_the_template(tmp_path):
    """ansible-core 2.19 runs the same extra vars when they are not marked (the control), and not when they are."""
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    marker = Path(tempfile_dir()) / "marker"
    # Malformed XML: whatever the module makes of the URI, it can define nothing.
    payload = {"libvirt_uri": "{{ lookup('pipe', 'touch " + str(marker) + "') }}", "pool_xml": "<not-xml",
               "volume_xml": "<not-xml", "domain_xml": "<not-xml", "pool_name": "ctest-h3-control",
               "volume_name": "v", "domain_name": "ctest-h3-control"}
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    playbook = Path(sys.executable).parent / "ansible-playbook"
    for marked, expected in ((False, True), (True, False)):
        extravars = tmp_path / f"vars-{marked}.json"
        extravars.write_text(json.dumps(unsafe(payload) if marked else payload))
        subprocess.run([str(playbook), "playbooks/domain.yml", "-e", f"@{extravars}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
        assert marker.exists() is expected, ("marked" if marked else "control")
        marker.unlink(missing_ok=True)
    shutil.rmtree(marker.parent, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile
    return tempfile.mkdtemp(prefix="marker-", dir=TEST_ROOT)
