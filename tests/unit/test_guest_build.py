"""The guest builder's pure parts: cache key, /init and its helpers, isolinux and GRUB config, the EFI image,
domain XML, cache hits."""
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import guest
from guest import build, cachekey, efi, initramfs, iso, kernel
from module_utils.cocos_libvirt import domain_compare, domain_xml

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "guest" / "files"
PINS = "ansible-core==2.19.14\ngrpcio==1.85.3\nprotobuf==7.36.2\ngrpcio-health-checking==1.85.1\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A miniature repository with every kind of key input."""
    for rel, text in {"guest/build.py": "x = 1\n", "guest/files/init": "#!/bin/sh\n", "agent/__main__.py": "a\n",
                      "cocos_pb/agent_pb2.py": "pb\n", "requirements.txt": PINS, "README.md": "readme\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def key(root: Path) -> str:
    return cachekey.cache_key(root, {"packages": "python3"})


def test_key_is_stable_for_unchanged_inputs(tree):
    assert key(tree) == key(tree)


@pytest.mark.parametrize("rel", ["guest/build.py", "guest/files/init", "agent/__main__.py", "cocos_pb/agent_pb2.py"])
def test_key_changes_when_a_source_changes(tree, rel):
    before = key(tree)
    (tree / rel).write_text((tree / rel).read_text() + "# changed\n")
    assert key(tree) != before


def test_key_changes_when_a_file_is_added_or_renamed(tree):
    before = key(tree)
    (tree / "agent" / "extra.py").write_text("")
    added = key(tree)
    (tree / "agent" / "extra.py").rename(tree / "agent" / "other.py")
    assert len({before, added, key(tree)}) == 3


def test_key_ignores_bytecode_caches_and_unrelated_files(tree):
    before = key(tree)
    (tree / "agent" / "__pycache__").mkdir()
    (tree / "agent" / "__pycache__" / "__main__.cpython-311.pyc").write_bytes(b"\0")
    (tree / "README.md").write_text("other\n")
    (tree / "tests").mkdir()
    (tree / "tests" / "test_x.py").write_text("")
    assert key(tree) == before


def test_key_follows_guest_pins_only(tree):
    before = key(tree)
    req = tree / "requirements.txt"
    req.write_text(PINS.replace("ansible-core==2.19.14", "ansible-core==2.20.0"))
    assert key(tree) == before
    req.write_text(PINS.replace("grpcio==1.85.3", "grpcio==1.86.0"))
    assert key(tree) != before


def test_key_follows_extra_inputs(tree):
    assert cachekey.cache_key(tree, {"packages": "python3"}) != cachekey.cache_key(tree, {"packages": "python3,x"})


def test_unpinned_guest_package_is_an_error(tree):
    (tree / "requirements.txt").write_text("grpcio>=1.85\nprotobuf==7.36.2\ngrpcio-health-checking==1.85.1\n")
    with pytest.raises(ValueError, match="grpcio"):
        cachekey.guest_pins(tree / "requirements.txt")


def test_repository_pins_are_read():
    assert set(cachekey.guest_pins(REPO / "requirements.txt")) == set(cachekey.GUEST_PYTHON_PACKAGES)


def _init() -> str:
    return (FILES / "init").read_text()


def test_init_loads_modules_in_dependency_order():
    match = re.search(r"for m in ([^;]+); do", _init())
    assert match, "module loop not found in /init"
    listed = match.group(1).replace("\\\n", " ").split()
    assert tuple(listed) == kernel.MODULES
    virtio_order = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                    "failover", "net_failover", "virtio_net"]
    assert [m for m in listed if m in virtio_order] == virtio_order


def test_init_prints_marker_after_network_and_starts_agent_before_it_in_the_background():
    body = _init().split("\nmount_filesystems\n", 1)[1]  # the main sequence, after the functions
    steps = [line.strip() for line in body.splitlines() if line.strip()]
    # The marker still means "network up"; the agent starts earlier, in parallel, once its environment is read.
    assert steps.index("load_agent_env") < steps.index("supervise_agent &") < steps.index("bring_up_network")
    assert steps.index("bring_up_network") < steps.index(f'echo "{guest.MARKER}"')
    assert steps[-1] == "while :; do sleep 3600; done"  # PID 1 never exits
    assert guest.AGENT_MISSING_MARKER in _init()


def test_init_reports_how_it_was_booted_before_anything_else():
    body = _init().split("\nmount_filesystems\n", 1)[1]
    steps = [line.strip() for line in body.splitlines() if line.strip()]
    assert steps.index("report_platform") < steps.index("load_modules")
    assert 'say "platform firmware=$firmware lockdown=${lockdown:-none} tpm=$tpm"' in _init()


def test_init_restarts_agent_and_passes_kernel_env():
    text = _init()
    assert "python3 -m agent" in text and "while [ ! -e /run/cocos-stopping ]" in text
    assert "cocos.env.*=*" in text and "AGENT_GRPC_PORT=7002" in text


def test_power_button_handler_stops_agent_and_powers_off():
    assert initramfs.OWN_FILES["etc/acpi/PWRF/00000080"][0] == "power-button"
    text = (FILES / "power-button").read_text()
    assert text.index("touch /run/cocos-stopping") < text.index("kill -TERM") < text.index("poweroff -f")


@pytest.mark.parametrize("script", ["init", "udhcpc.script", "power-button"])
def test_scripts_parse_with_busybox_sh(script):
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: `make setup` installs it (busybox-static)"
    subprocess.run([busybox, "sh", "-n", str(FILES / script)], check=True)


def test_isolinux_boots_without_prompt_on_serial_console():
    cfg = iso.isolinux_cfg()
    assert "PROMPT 0" in cfg and "SERIAL 0 115200" in cfg and "console=ttyS0" in cfg
    assert "INITRD /boot/initrd.img" in cfg


def _parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def test_domain_xml_boots_iso_under_tcg_with_loopback_forward(tmp_path):
    root = _parse(guest.domain_xml("ctest-guest-x", tmp_path / "g.iso", 47001, tmp_path / "c.log"))
    assert root.get("type") == "qemu" and root.find("os/type").get("machine") == "pc"
    disks = root.findall("devices/disk")
    assert [(d.get("device"), d.find("target").get("bus")) for d in disks] == [("cdrom", "ide")]  # SeaBIOS's fast path
    assert disks[0].find("boot").get("order") == "1"
    assert root.find("devices/serial/log").get("file") == str(tmp_path / "c.log")
    assert root.find("devices/memballoon").get("model") == "none"
    args = [a.get("value") for a in root.iter(f"{{{domain_compare.QEMU_NS}}}arg")]
    assert "user,id=n0,hostfwd=tcp:127.0.0.1:47001-:7002" in args
    assert "virtio-net-pci,netdev=n0,addr=0x10" in args
    assert root.find("devices/interface") is None  # no libvirt network: nothing but loopback reaches it
    assert root.find("os").get("firmware") is None and root.find("devices/tpm") is None


def test_domain_xml_comes_from_the_librarys_builder(tmp_path):
    """guest/ has no XML of its own: the same options through domain_xml.build give the same document."""
    text = guest.domain_xml("ctest-guest-x", "/g.iso", 47001, "/c.log", firmware="efi", tpm="tpm-crb")
    opts = {"memory": "512MiB", "vcpus": 1, "machine": "q35", "firmware": "efi", "secure_boot": False,
            "tpm": {"model": "tpm-crb", "version": "2.0"}, "serial_log": "/c.log",
            "disks": [{"device": "cdrom", "path": "/g.iso", "bus": "sata", "format": "raw", "boot_order": 1}],
            "interfaces": [{"type": "user", "port_forwards": [
                {"host_address": "127.0.0.1", "host_port": 47001, "guest_port": 7002}]}]}
    assert text == domain_xml.to_text(domain_xml.build("ctest-guest-x", opts, "qemu", {})) + "\n"
    assert "QEMU_NS" not in vars(guest.domain)  # one namespace constant, in the library


def test_domain_xml_escapes_names_and_paths(tmp_path):
    odd = tmp_path / "a'b&<c>.iso"
    root = _parse(guest.domain_xml("ctest-guest-<x>&'y'", odd, 1, tmp_path / "c&d.log"))
    assert root.findtext("name") == "ctest-guest-<x>&'y'"
    assert root.find("devices/disk/source").get("file") == str(odd)


def test_domain_xml_uefi_with_tpm_on_q35(tmp_path):
    root = _parse(guest.domain_xml("ctest-guest-x", tmp_path / "g.iso", 1, tmp_path / "c.log", firmware="efi",
                                   secure_boot=True, tpm="tpm-tis"))
    assert root.find("os/type").get("machine") == "q35" and root.find("os").get("firmware") == "efi"
    assert root.find("devices/disk/target").get("bus") == "sata"  # q35 has no IDE
    assert {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")} == {
        "enrolled-keys": "yes", "secure-boot": "yes"}
    assert root.find("devices/tpm").get("model") == "tpm-tis"
    with pytest.raises(ValueError, match="firmware must be one of bios, efi"):
        guest.domain_xml("ctest-guest-x", tmp_path / "g.iso", 1, tmp_path / "c.log", firmware="coreboot")


def test_domain_xml_puts_disk_second(tmp_path):
    root = _parse(guest.domain_xml("ctest-guest-x", tmp_path / "g.iso", 1, tmp_path / "c.log",
                                   disk=tmp_path / "d.qcow2", memory_mib=768))
    disks = root.findall("devices/disk")
    assert [(d.get("device"), d.find("boot").get("order")) for d in disks] == [("cdrom", "1"), ("disk", "2")]
    assert disks[1].find("driver").get("type") == "qcow2"
    assert root.find("memory").text == str(768 * 1024)


def test_domain_xml_direct_kernel_boot(tmp_path):
    root = _parse(guest.domain_xml("ctest-guest-x", None, 1, tmp_path / "c.log", kernel="/k", initrd="/i",
                                   cmdline="console=ttyS0 cocos.env.X=1"))
    assert root.find("os/kernel").text == "/k" and root.find("os/initrd").text == "/i"
    assert "cocos.env.X=1" in root.find("os/cmdline").text
    assert root.findall("devices/disk") == [] and root.find("os/boot") is None


@pytest.mark.parametrize("options", [{}, {"firmware": "efi", "tpm": "tpm-crb"},
                                     {"firmware": "efi", "secure_boot": True}, {"kernel": "/k", "initrd": "/i"}])
def test_domain_xml_is_valid_for_libvirt(tmp_path, options):
    validator = shutil.which("virt-xml-validate")
    assert validator, "virt-xml-validate missing (libvirt-clients; make setup installs it)"
    path = tmp_path / "dom.xml"
    path.write_text(guest.domain_xml("ctest-guest-x", None if "kernel" in options else "/x.iso", 47001, "/c.log",
                                     disk="/d.raw", **options))
    subprocess.run([validator, str(path), "domain"], check=True, capture_output=True)


def test_domain_xml_has_an_emulated_tpm_only_when_asked(tmp_path):
    assert _parse(guest.domain_xml("ctest-guest-x", "/x.iso", 1, "/c.log")).find("devices/tpm") is None
    tpm = _parse(guest.domain_xml("ctest-guest-x", "/x.iso", 1, "/c.log", tpm="tpm-crb")).find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert tpm.find("backend").attrib == {"type": "emulator", "version": "2.0"}


def test_grub_boots_the_same_kernel_and_command_line_without_a_menu():
    cfg = efi.grub_cfg(iso.KERNEL_CMDLINE)
    assert "set timeout=0" in cfg and f"linux /boot/vmlinuz {iso.KERNEL_CMDLINE}\n" in cfg
    assert "initrd /boot/initrd.img" in cfg
    assert iso.isolinux_cfg().count(iso.KERNEL_CMDLINE) == 1  # isolinux boots the same command line


def test_efi_boot_files_come_from_debians_signed_packages():
    assert efi.PACKAGES == ("shim-signed", "grub-efi-amd64-signed")
    assert [name for _, _, name in efi.BOOT_FILES] == ["BOOTX64.EFI", "grubx64.efi"]  # shim loads grubx64.efi beside it
    assert "efi" in build._key_extras() and "shim-signed" in build._key_extras()["efi"]


def test_efi_fat_image_holds_shim_and_grub(tmp_path):
    for tool in ("mformat", "mmd", "mcopy", "mdir"):
        assert shutil.which(tool), f"{tool} missing (mtools; make setup installs it)"
    boot = tmp_path / "boot"
    boot.mkdir()
    for _, _, name in efi.BOOT_FILES:
        (boot / name).write_bytes(name.encode() * 1000)
    efi.fat_image(boot, tmp_path / "efi.img")
    listing = subprocess.run(["mdir", "-b", "-i", str(tmp_path / "efi.img"), "::/EFI/BOOT"], check=True,
                             capture_output=True, text=True).stdout
    assert {line.rsplit("/", 1)[-1] for line in listing.split()} >= {"BOOTX64.EFI", "grubx64.efi"}
    assert (tmp_path / "efi.img").stat().st_size == efi.FAT_SIZE


def test_cached_build_is_returned_without_building(tree, monkeypatch):
    """A keyed build in the cache is published as is: nothing is rebuilt and it takes well under a second."""
    cache, out = tree / ".cache", tree / "out"
    final = cache / "guest" / cachekey.cache_key(tree, build._key_extras())
    final.mkdir(parents=True)
    for name in build.ARTIFACTS:
        (final / name).write_text(json.dumps({"agent": True}) if name == "manifest.json" else name)
    monkeypatch.setattr(build, "_build", lambda *a: pytest.fail("rebuilt although the key was cached"))
    started = time.monotonic()
    result = build.ensure_built(repo=tree, cache=cache, out=out)
    assert result.cached and time.monotonic() - started < 1
    assert (out / "cocos-guest.iso").read_text() == "cocos-guest.iso"
    assert (out / "vmlinuz").stat().st_ino == (final / "vmlinuz").stat().st_ino  # linked, not copied


def test_changed_input_misses_the_cache(tree, monkeypatch):
    cache = tree / ".cache"
    (cache / "guest" / cachekey.cache_key(tree, build._key_extras())).mkdir(parents=True)
    (tree / "agent" / "__main__.py").write_text("changed\n")
    built = []
    monkeypatch.setattr(build, "_build", lambda repo, parts, final, key, refresh: built.append(key) or _fake(final))
    build.ensure_built(repo=tree, cache=cache, out=tree / "out")
    assert built == [cachekey.cache_key(tree, build._key_extras())]


def _fake(final: Path) -> None:
    final.mkdir(parents=True)
    for name in build.ARTIFACTS:
        (final / name).write_text("{}" if name == "manifest.json" else name)


def test_prune_keeps_the_newest_builds(tmp_path):
    for i in range(5):
        _fake(tmp_path / f"k{i}")
        (tmp_path / f"k{i}" / "manifest.json").touch()
        os.utime(tmp_path / f"k{i}", (1_700_000_000 + i, 1_700_000_000 + i))  # k4 newest, whatever the clock does
    build._prune(tmp_path, keep=tmp_path / "k0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0", "k3", "k4"]
