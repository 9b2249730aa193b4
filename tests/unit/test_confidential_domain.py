"""firmware, secure_boot, tpm and launch_security: the XML built, what omitted options keep, and the
check against recorded domain capabilities (this host's, and written SEV-SNP and TDX hosts')."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from module_utils.cocos_libvirt import domain, domain_carry, domain_compare, domain_xml, domcaps
from module_utils.cocos_libvirt.common import LibvirtModuleError

CAPS = Path(__file__).parent / "domcaps"
SCHEMA_DIR = Path("/usr/share/libvirt/schemas")
BASE: dict[str, Any] = {"memory": "128MiB", "machine": "q35"}

# libvirt 9.0's inactive and live XML (qemu:///system, measured) of a domain defined from
# build(firmware=efi, secure_boot=true, tpm=tpm-crb): the inactive keeps <os firmware='efi'>, the live one
# has the selected <loader>/<nvram> instead, and SMM on.
INACTIVE_EFI_SB = """<domain type='qemu'>
  <name>ctest-h6a-x</name>
  <uuid>434d8045-fab2-48be-9f76-c81f0dbb346f</uuid>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <firmware>
      <feature enabled='yes' name='enrolled-keys'/>
      <feature enabled='yes' name='secure-boot'/>
    </firmware>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><smm state='on'/></features>
  <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
  <clock offset='utc'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='sata' index='0'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <input type='mouse' bus='ps2'/>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <audio id='1' type='none'/>
    <memballoon model='virtio'/>
  </devices>
</domain>"""
LIVE_EFI_SB = (INACTIVE_EFI_SB.replace("<os firmware='efi'>", "<os>")
               .replace("<boot dev='hd'/>", "<loader readonly='yes' secure='yes' type='pflash'>"
                        "/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader><nvram template='/usr/share/OVMF/"
                        "OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/ctest-h6a-x_VARS.fd</nvram><boot dev='hd'/>")
               .replace("version='2.0'/>", "version='2.0'/><alias name='tpm0'/>"))


def q35(alias: str) -> str | None:
    return {"q35": "pc-q35-7.2"}.get(alias)


def build(**over: Any) -> ET.Element:
    return domain_xml.build("ctest-h6a-x", {**BASE, **over}, "qemu", {})


def caps(name: str) -> ET.Element:
    return ET.parse(CAPS / f"{name}.xml").getroot()


def b64(size: int) -> str:
    return base64.b64encode(bytes(range(256)) * (size // 256) + bytes(range(size % 256))).decode()


def features(root: ET.Element) -> list[tuple[str, str]]:
    return [(f.get("name", ""), f.get("enabled", "")) for f in root.findall("os/firmware/feature")]


# ---- builder: firmware -------------------------------------------------------------------------


def test_bios_is_the_default_and_writes_no_firmware_part():
    root = build()
    assert root.find("os").get("firmware") is None and root.find("os/firmware") is None
    assert root.find("features/smm") is None and domain_xml.firmware(root) == {"type": "bios", "secure_boot": False}


def test_efi_without_secure_boot_says_so_explicitly():
    root = build(firmware="efi")
    assert root.find("os").get("firmware") == "efi"
    # libvirt's own order, and explicit: left open, libvirt 9.0 picks the enrolled Secure Boot firmware
    assert features(root) == [("enrolled-keys", "no"), ("secure-boot", "no")]
    assert root.find("features/smm") is None and root.find("features/acpi") is not None
    assert [c.tag for c in root.find("os")] == ["type", "firmware", "boot"]


def test_secure_boot_enrolls_keys_and_turns_smm_on():
    for root in (build(firmware="efi", secure_boot=True), build(secure_boot=True)):  # true alone means efi
        assert root.find("os").get("firmware") == "efi"
        assert features(root) == [("enrolled-keys", "yes"), ("secure-boot", "yes")]
        assert root.find("features/smm").get("state") == "on"


def test_secure_boot_false_alone_stays_bios_and_bios_with_secure_boot_is_refused():
    assert build(secure_boot=False).find("os").get("firmware") is None
    with pytest.raises(LibvirtModuleError, match="secure_boot needs firmware: efi"):
        build(firmware="bios", secure_boot=True)
    with pytest.raises(LibvirtModuleError, match="firmware must be bios or efi"):
        build(firmware="uefi")


# ---- builder: TPM ------------------------------------------------------------------------------


def test_tpm_is_an_emulated_tpm2_crb_by_default():
    elem = build(tpm={}).find("devices/tpm")
    assert elem.get("model") == "tpm-crb"
    assert elem.find("backend").attrib == {"type": "emulator", "version": "2.0"}
    assert build(tpm={"model": "tpm-tis", "version": "2.0"}).find("devices/tpm").get("model") == "tpm-tis"
    assert build(tpm={"model": "none"}).find("devices/tpm") is None
    devices = [c.tag for c in build(tpm={}, serial_log="/x.log").find("devices")]
    assert devices.index("serial") < devices.index("tpm") < devices.index("memballoon")


@pytest.mark.parametrize("tpm, match", [({"version": "1.2"}, "tpm version must be 2.0"),
                                        ({"model": "tpm-spapr"}, "tpm model must be one of")])
def test_bad_tpm_is_refused(tpm, match):
    with pytest.raises(LibvirtModuleError, match=match):
        build(tpm=tpm)


# ---- builder: launch security ------------------------------------------------------------------


def test_sev_fields():
    ls = build(launch_security={"type": "sev", "policy": "0x0033", "cbitpos": 47, "reduced_phys_bits": 1,
                                "kernel_hashes": True, "dh_cert": b64(8), "session": b64(8)}).find("launchSecurity")
    assert ls.attrib == {"type": "sev", "kernelHashes": "yes"}
    assert [(c.tag, c.text) for c in ls] == [("cbitpos", "47"), ("reducedPhysBits", "1"), ("policy", "0x0033"),
                                             ("dhCert", b64(8)), ("session", b64(8))]


def test_sev_snp_fields():
    ls = build(launch_security={
        "type": "sev-snp", "policy": 196608, "author_key": True, "vcek": False, "guest_visible_workarounds": b64(16),
        "id_block": b64(96), "id_auth": b64(4096), "host_data": b64(32)}).find("launchSecurity")
    assert ls.attrib == {"type": "sev-snp", "authorKey": "yes", "vcek": "no"}
    assert [c.tag for c in ls] == ["policy", "guestVisibleWorkarounds", "idBlock", "idAuth", "hostData"]
    assert ls.findtext("policy") == "0x30000"


def test_tdx_fields():
    ls = build(launch_security={"type": "tdx", "policy": "0x10000000", "mr_config_id": b64(48),
                                "mr_owner": b64(48), "mr_owner_config": b64(48),
                                "quote_generation_service": {"path": "/run/tdx-qgs/qgs.socket"}}).find("launchSecurity")
    assert [c.tag for c in ls] == ["policy", "mrConfigId", "mrOwner", "mrOwnerConfig", "quoteGenerationService"]
    assert ls.find("quoteGenerationService").attrib == {"path": "/run/tdx-qgs/qgs.socket"}
    assert build(launch_security={"type": "tdx", "quote_generation_service": {"path": None}}).find(
        "launchSecurity/quoteGenerationService").attrib == {}
    assert build(launch_security={"type": "none"}).find("launchSecurity") is None


@pytest.mark.parametrize("spec, match", [
    ({"type": "tdx", "cbitpos": 51}, "type tdx has no field cbitpos"),
    ({"type": "sev", "policy": "0x1", "host_data": b64(32)}, "type sev has no field host_data"),
    ({"type": "sev"}, "type sev needs policy"),
    ({"type": "sev", "policy": "0x100000000"}, "unsigned 32-bit"),
    ({"type": "sev-snp", "policy": "-1"}, "unsigned 64-bit"),
    ({"type": "sev-snp", "policy": "lots"}, "unsigned 64-bit"),
    ({"type": "sev-snp", "host_data": b64(31)}, "host_data must encode 32 bytes, not 31"),
    ({"type": "sev-snp", "id_block": "not base64!"}, "id_block must be base64"),
    ({"type": "tdx", "mr_owner": b64(32)}, "mr_owner must encode 48 bytes"),
    ({"type": "sev-snp", "vcek": "yes"}, "vcek must be true or false"),
    ({"type": "s390-pv"}, "type must be one of sev, sev-snp, tdx or none"),
])
def test_bad_launch_security_is_refused(spec, match):
    with pytest.raises(LibvirtModuleError, match=match):
        build(launch_security=spec)


# ---- comparison and omitted options ------------------------------------------------------------


def test_libvirt_inactive_and_live_xml_match_the_built_definition():
    desired = build(firmware="efi", secure_boot=True, tpm={}, memory="128MiB")
    assert not domain_compare.compare(ET.fromstring(INACTIVE_EFI_SB), desired, "x", q35)[0]
    # the running guest is not stale: firmware auto-selection resolved, SMM on, the TPM has an alias
    assert not domain_compare.compare(ET.fromstring(LIVE_EFI_SB), domain_xml.live_form(desired), "x", q35)[0]
    assert domain_compare.compare(ET.fromstring(LIVE_EFI_SB), desired, "x", q35)[0]  # why live_form exists


def carried(current: str = INACTIVE_EFI_SB, **opts: Any) -> ET.Element:
    built = domain_xml.build("ctest-h6a-x", opts, "qemu", {})
    return domain_carry.carry_over(built, ET.fromstring(current), opts, "x")


def test_omitted_options_keep_firmware_tpm_and_launch_security():
    current = INACTIVE_EFI_SB.replace("</devices>", "</devices><launchSecurity type='sev'><policy>0x0003</policy>"
                                                    "</launchSecurity>")
    out = carried(current, memory="256MiB")
    assert out.find("os").get("firmware") == "efi" and features(out)[1] == ("secure-boot", "yes")
    assert out.find("features/smm") is not None and out.find("devices/tpm").get("model") == "tpm-crb"
    assert out.findtext("launchSecurity/policy") == "0x0003"
    assert [c.tag for c in out][-2:] == ["devices", "launchSecurity"]
    assert not domain_compare.compare(ET.fromstring(current), carried(current, vcpus=1), "x")[0]


def test_secure_boot_false_alone_turns_it_off_on_uefi_and_keeps_bios_bios():
    off = carried(secure_boot=False)
    assert features(off) == [("enrolled-keys", "no"), ("secure-boot", "no")] and off.find("features/smm") is None
    bios = INACTIVE_EFI_SB.replace(" firmware='efi'", "").replace("<smm state='on'/>", "")
    bios = re.sub(r"<firmware>.*?</firmware>", "", bios, flags=re.S)
    assert carried(bios, secure_boot=False).find("os").get("firmware") is None


def test_firmware_efi_alone_keeps_the_secure_boot_choice_and_bios_drops_it():
    kept = carried(firmware="efi")
    assert features(kept)[1] == ("secure-boot", "yes") and kept.find("features/smm") is not None
    gone = carried(firmware="bios")
    assert gone.find("os").get("firmware") is None and gone.find("os/firmware") is None
    assert gone.find("features/smm") is None


def test_tpm_none_removes_it_and_a_given_tpm_replaces_it():
    assert carried(tpm={"model": "none"}).find("devices/tpm") is None
    assert carried(tpm={"model": "tpm-tis"}).find("devices/tpm").get("model") == "tpm-tis"


def test_policy_libvirt_spells_differently_is_not_a_change():
    current = INACTIVE_EFI_SB.replace("</devices>", "</devices><launchSecurity type='sev-snp'><policy>0x00030000"
                                                    "</policy></launchSecurity>")
    out = carried(current, launch_security={"type": "sev-snp", "policy": "0x30000"})
    assert out.findtext("launchSecurity/policy") == "0x00030000"
    assert not domain_compare.compare(ET.fromstring(current), out, "x")[0]
    other = carried(current, launch_security={"type": "sev-snp", "policy": "0x30001"})
    assert domain_compare.compare(ET.fromstring(current), other, "x")[0]


def test_nvram_is_stale_when_a_domain_comes_to_uefi_with_another_secure_boot_choice():
    sb_on, sb_off = build(firmware="efi", secure_boot=True), build(firmware="efi")
    assert domain_xml.nvram_stale(sb_on, sb_off) and domain_xml.nvram_stale(sb_off, sb_on)
    assert not domain_xml.nvram_stale(sb_on, build(firmware="efi", secure_boot=True, memory="1GiB"))
    assert domain_xml.nvram_stale(build(), sb_on)  # a varstore left from an earlier UEFI definition would be stale
    assert not domain_xml.nvram_stale(sb_on, build())  # BIOS reads no varstore
    assert not domain_xml.nvram_stale(ET.fromstring(LIVE_EFI_SB), sb_on)  # live form reads the same


# ---- domain capabilities -----------------------------------------------------------------------


def test_query_for_names_the_definitions_combination():
    assert domcaps.query_for(ET.fromstring(INACTIVE_EFI_SB)) == {
        "emulatorbin": "/usr/bin/qemu-system-x86_64", "arch": "x86_64", "machine": "pc-q35-7.2", "virttype": "qemu"}
    assert domcaps.query_for(build()) == {"emulatorbin": None, "arch": None, "machine": "q35", "virttype": "qemu"}


def test_this_host_runs_uefi_secure_boot_and_tpm_on_q35():
    here = caps("debian12-libvirt9-qemu-q35")
    for desired in (build(firmware="efi", secure_boot=True, tpm={}), build(firmware="efi", tpm={"model": "tpm-tis"})):
        assert domcaps.shortfalls(here, desired) == []


def test_this_host_has_no_secure_boot_firmware_for_i440fx():
    missing = domcaps.shortfalls(caps("debian12-libvirt9-qemu-pc"), build(machine="pc", secure_boot=True))
    assert missing == ["Secure Boot: <os><loader><enum name='secure'> offers 'no' (no Secure Boot firmware for "
                       "this machine; OVMF's Secure Boot builds need SMM and are described for q35)"]
    assert domcaps.shortfalls(caps("debian12-libvirt9-qemu-pc"), build(machine="pc", firmware="efi")) == []


@pytest.mark.parametrize("kind, says", [
    ("sev", "launch security sev: <sev supported='no'/>"),
    ("sev-snp", "launch security sev-snp: <sev supported='no'/> and no <launchSecurity> element"),
    ("tdx", "launch security tdx: no <launchSecurity> element"),
])
def test_this_host_has_no_launch_security(kind, says):
    missing = domcaps.shortfalls(caps("debian12-libvirt9-qemu-q35"), build(launch_security=_spec(kind)))
    assert len(missing) == 1 and missing[0].startswith(says)


def _spec(kind: str) -> dict[str, Any]:
    return {"type": kind, "policy": {"sev": "0x0003", "sev-snp": "0x30000", "tdx": "0x10000000"}[kind]}


@pytest.mark.parametrize("host, offered, denied", [
    ("amd-sev-snp-host", ["sev", "sev-snp"], {"tdx": "<launchSecurity><enum name='sectype'> lists 'sev', 'sev-snp'"}),
    ("intel-tdx-host", ["tdx"], {kind: "<sev supported='no'/> and <launchSecurity><enum name='sectype'> lists 'tdx'"
                                 for kind in ("sev", "sev-snp")}),
])
def test_recorded_confidential_hosts(host, offered, denied):
    document = caps(host)
    for kind in offered:
        desired = build(firmware="efi", secure_boot=False, tpm={}, launch_security=_spec(kind))
        assert domcaps.shortfalls(document, desired) == [], kind
    for kind, says in denied.items():
        assert domcaps.shortfalls(document, build(launch_security=_spec(kind))) == [f"launch security {kind}: {says}"]


def test_tpm_version_the_host_lacks_names_backend_version():
    desired = build()
    ET.SubElement(ET.SubElement(desired.find("devices"), "tpm", model="tpm-tis"), "backend",
                  type="emulator", version="1.2")
    assert domcaps.shortfalls(caps("amd-sev-snp-host"), desired) == [
        "TPM backendVersion 1.2: <devices><tpm><enum name='backendVersion'> lists '2.0' (libvirt lists what swtpm "
        "supports: is swtpm installed?)"]


def test_facts_of_each_host():
    here = domcaps.facts(caps("debian12-libvirt9-qemu-q35"))
    assert here["uefi"] == {"supported": True, "secure_boot": True, "firmware": [
        "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        "/usr/share/OVMF/OVMF_CODE_4M.fd"]}
    assert here["tpm"]["emulated_tpm2"] and here["launch_security_types"] == []
    assert here["sev"] == {"supported": False, "reason": "<sev supported='no'/>"}
    assert not here["sev_snp"]["supported"] and "no <launchSecurity> element" in here["tdx"]["reason"]
    snp = domcaps.facts(caps("amd-sev-snp-host"))
    assert snp["sev"]["supported"] and snp["sev_snp"]["supported"] and not snp["tdx"]["supported"]
    tdx = domcaps.facts(caps("intel-tdx-host"))
    assert tdx["tdx"] == {"supported": True, "reason": None} and not tdx["sev"]["supported"]
    assert tdx["domain_type"] == "kvm" and tdx["machine"] == "pc-q35-10.1"


def test_check_reads_nothing_for_a_plain_domain_and_fails_clearly_without_capabilities():
    conn = libvirt.open("test:///default")
    try:
        domcaps.check(conn, build(), "domain x")  # asks for nothing: no capabilities read
        with pytest.raises(LibvirtModuleError, match="does not report domain capabilities"):
            domcaps.check(conn, build(tpm={}), "domain x")
    finally:
        conn.close()


def test_manager_defines_nothing_it_cannot_check():
    conn = libvirt.open("test:///default")
    try:
        params = {"uri": "test:///default", "name": "ctest-h6a-u", "state": "present", "memory": "128MiB",
                  "domain_type": "qemu", "firmware": "efi", "wait_timeout": 5}
        for check in (True, False):
            manager = domain.DomainManager(conn, SimpleNamespace(params=params, check_mode=check, _diff=False))
            with pytest.raises(LibvirtModuleError, match="ctest-h6a-u: this libvirt driver does not report"):
                manager.run()
        assert "ctest-h6a-u" not in [d.name() for d in conn.listAllDomains(0)]
    finally:
        conn.close()


# ---- the produced XML is valid libvirt XML -----------------------------------------------------


def _validate(tmp_path: Path, root: ET.Element) -> None:
    """virt-xml-validate the whole definition; a <launchSecurity> type the installed schema predates
    (libvirt 9.0 knows only sev) is validated against launchsecurity.rng, written from libvirt's docs."""
    validator = shutil.which("virt-xml-validate")
    assert validator, "virt-xml-validate missing (libvirt-clients; make setup installs it)"
    assert shutil.which("xmllint"), "xmllint missing (libxml2-utils; make setup installs it)"
    ls = root.find("launchSecurity")
    known = (SCHEMA_DIR / "domaincommon.rng").read_text()
    if ls is not None and f"<value>{ls.get('type')}</value>" not in known:
        (tmp_path / "ls.xml").write_text(ET.tostring(ls, encoding="unicode"))
        subprocess.run(["xmllint", "--noout", "--relaxng", str(CAPS / "launchsecurity.rng"), str(tmp_path / "ls.xml")],
                       check=True, capture_output=True)
        root = ET.fromstring(ET.tostring(root))
        root.remove(root.find("launchSecurity"))
    (tmp_path / "dom.xml").write_text(domain_xml.to_text(root))
    proc = subprocess.run([validator, str(tmp_path / "dom.xml"), "domain"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("over", [
    {"firmware": "efi", "secure_boot": True, "tpm": {"model": "tpm-crb"}},
    {"firmware": "efi", "secure_boot": False, "tpm": {"model": "tpm-tis"}},
    {"firmware": "efi", "launch_security": {"type": "sev", "policy": "0x0033", "cbitpos": 47, "reduced_phys_bits": 1,
                                            "kernel_hashes": True, "dh_cert": b64(8), "session": b64(8)}},
    {"firmware": "efi", "tpm": {}, "launch_security": {
        "type": "sev-snp", "policy": "0x30000", "kernel_hashes": True, "author_key": False, "vcek": True,
        "cbitpos": 51, "reduced_phys_bits": 1, "guest_visible_workarounds": b64(16), "id_block": b64(96),
        "id_auth": b64(4096), "host_data": b64(32)}},
    {"firmware": "efi", "tpm": {}, "launch_security": {
        "type": "tdx", "policy": "0x10000000", "mr_config_id": b64(48), "mr_owner": b64(48),
        "mr_owner_config": b64(48), "quote_generation_service": {"path": "/run/tdx-qgs/qgs.socket"}}},
], ids=["efi-sb-crb", "efi-tis", "sev", "sev-snp", "tdx"])
def test_built_xml_validates(tmp_path, over):
    _validate(tmp_path, domain_xml.build("ctest-h6a-x", {**BASE, "disks": [{"path": "/x.qcow2"}],
                                                         "serial_log": "/x.log", **over}, "kvm", {}))


def test_validation_would_catch_a_foreign_field(tmp_path):
    root = build(launch_security={"type": "tdx", "policy": "0x1"})
    ET.SubElement(root.find("launchSecurity"), "cbitpos").text = "51"
    with pytest.raises(subprocess.CalledProcessError):
        _validate(tmp_path, root)


def test_going_back_to_bios_is_a_change_for_inactive_and_live_xml():
    bios = build(tpm={}, memory="128MiB")
    differs, before = domain_compare.compare(ET.fromstring(INACTIVE_EFI_SB), bios, "x", q35)[:2]
    assert differs and '<os firmware="efi">' in before
    assert domain_compare.compare(ET.fromstring(LIVE_EFI_SB), domain_xml.live_form(bios), "x", q35)[0]  # <loader>
    uefi = build(firmware="efi", secure_boot=True, tpm={}, memory="128MiB")
    newer = LIVE_EFI_SB.replace("<os>", "<os firmware='efi'>")  # a libvirt that records the selection in the definition
    assert not domain_compare.compare(ET.fromstring(newer), uefi, "x", q35)[0]
