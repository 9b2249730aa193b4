"""Corpus: whatever libvirt rewrites in what it stores, a second run of our modules changes nothing.

Issue 8, item 7. The domain definitions are not ours: they are what this host's `virt-install --print-xml`
(Debian's virtinst) prints for the argument lists in DOMAINS, generated when the test runs. Each goes
through libvirt_domain with `xml:` on the real libvirtd: define (changed), rerun and check mode
(unchanged), start, rerun and check mode while it runs (unchanged, restart_required false), remove.
Networks (NETWORKS, libvirt_network with `xml`), volumes (VOLUMES, libvirt_volume) and pools (POOLS,
libvirt_pool) follow their own steps (convergence_support: ACTIVE_STEPS, VOLUME_STEPS). A failing test
names the step that did not settle and quotes the module's diff, or libvirt's live XML against its
persistent definition for an unexpected restart_required.

Fast enough for the suite: the managers run in-process (convergence_support.run_in_process) on four
threads (guests start and stop in parallel; each object's steps stay in order), and only the few
PLAYBOOK_* entries go through one real ansible-playbook run, on a thread of its own beside the rest.
Measured on this 2-core host (TCG), always while other engineers' suites loaded it: the whole module (89
tests) took 116-148 s wall at load 8-12 and 204-242 s at load 8-15 (an earlier version with 94 tests); its own
process and children used 19-25 s of CPU, libvirtd and QEMU the rest: a guest's start took 5-8 s wall at
load 14 for 0.5 s of QEMU CPU. `-k ID` runs one entry in seconds.

Left out: a network `<bandwidth>` (libvirt's tc call needs the sfq qdisc, which this host's kernel lacks,
so such a network cannot start here). virt-install itself refused none of the argument lists tried.

Guests are bootless TCG (`--virt-type qemu`, `--import` with no bootable disk): SeaBIOS or OVMF keeps
them running, which is all these steps need. Everything is named ctest-h2-*, files under
/var/lib/cocos-test/h2/, and removed by exact name afterwards.
"""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import string
from functools import partial
from typing import Any

import libvirt
import pytest
from convergence_support import (
    ACTIVE_STEPS,
    DOMAIN_STEPS,
    URI,
    VOLUME_STEPS,
    Parallel,
    assert_settled,
    playbook_outcomes,
    selected_ids,
    settle,
    virt_install_print_xml,
)

from tests.helpers import drop, drop_domain, drop_network, drop_pool

pytestmark = pytest.mark.system

PREFIX = "ctest-h2-"
AREA = "/var/lib/cocos-test/h2"
IMAGE_POOL = f"{PREFIX}pool"  # the domains' disk images, one set per entry (QEMU locks an image per guest)
VOLUME_POOL = f"{PREFIX}vpool"  # where the VOLUMES entries are created
NIC_NETWORK = f"{PREFIX}dnet"  # isolated network the domains' NICs join; 10.231.0.0/24, no forwarding

# virt-install options every DOMAINS row gets unless it names the option itself.
DEFAULTS = {"--osinfo": "debian11", "--memory": "64", "--vcpus": "1", "--disk": "none", "--network": "none",
            "--graphics": "none"}

# One row per variant: id, then virt-install arguments beyond `--virt-type qemu --name ctest-h2-dom-<id>
# --import` and DEFAULTS. Placeholders: {qcow2}, {raw}, {iso}: paths of this entry's own images in
# IMAGE_POOL ({qcow2_volume}, {iso_volume}: the same as volume names, {pool}: IMAGE_POOL); {network}:
# NIC_NETWORK; {log}: a file under AREA; {port}: a free loopback port.
DOMAINS = [
    # operating systems (osinfo picks devices, clock and features) and machine types
    ("q35-debian11", ""),
    ("pc-debian11", "--machine pc"),
    ("q35-fedora37", "--osinfo fedora37 --machine q35"),
    ("pc-alpine317", "--osinfo alpinelinux3.17 --machine pc"),
    ("freebsd131", "--osinfo freebsd13.1"),
    ("generic-os", "--osinfo generic"),
    ("win10", "--osinfo win10 --memory 128"),
    ("win2k19-pc", "--osinfo win2k19 --machine pc --memory 128"),
    # firmware
    ("bios-menu-serial", "--machine pc --boot hd,menu=on,useserial=on"),
    ("uefi", "--boot uefi --memory 128"),
    ("uefi-secure-boot", "--boot firmware=efi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes"
                         " --memory 128"),
    ("uefi-loader-path", "--boot loader=/usr/share/OVMF/OVMF_CODE_4M.fd,loader.readonly=yes,loader.type=pflash,"
                         "nvram.template=/usr/share/OVMF/OVMF_VARS_4M.fd --memory 128"),
    ("win11-uefi-tpm", "--osinfo win11 --memory 128"),
    # disks
    ("disk-file-qcow2", "--disk path={qcow2},format=qcow2,bus=virtio"),
    ("disk-file-raw-sata", "--disk path={raw},format=raw,bus=sata,cache=none,discard=unmap"),
    ("disk-scsi-serial", "--disk path={raw},format=raw,bus=scsi,serial=CTEST01 --controller scsi,model=virtio-scsi"),
    ("disk-pool-volume", "--disk type=volume,source.pool={pool},source.volume={qcow2_volume}"),
    ("disk-new-in-pool", "--disk pool={pool},size=0.02,bus=sata"),  # virt-install creates <name>.qcow2 there
    ("disk-two-boot-order", "--disk path={qcow2},format=qcow2,boot.order=1"
                            " --disk path={raw},format=raw,readonly=on,boot.order=2"),
    ("cdrom-media", "--disk path={iso},device=cdrom"),
    ("cdrom-empty-sata", "--disk device=cdrom"),
    ("cdrom-empty-ide-pc", "--machine pc --disk device=cdrom,bus=ide"),
    # interfaces
    ("nic-network", "--network network={network}"),
    ("nic-network-no-mac", "--network network={network} --xml xpath.delete=./devices/interface/mac"),
    ("nic-network-upper-mac", "--network network={network},mac=52:54:00:AB:CD:EF,model=e1000e"),
    ("nic-user", "--network user"),
    ("nic-user-upper-mac-pc", "--machine pc --network user,mac=52:54:00:0A:BB:1C,model=rtl8139"),
    ("qemu-commandline-hostfwd", "--memballoon none --qemu-commandline='-netdev user,id=n0,"
                                 "hostfwd=tcp:127.0.0.1:{port}-:7002 -device virtio-net-pci,netdev=n0,addr=0x10'"),
    # consoles and serial ports
    ("console-virtio", "--console pty,target.type=virtio"),
    ("serial-pty-console", "--serial pty --console pty,target.type=serial"),
    ("serial-file-log", "--serial file,path={log}"),
    # graphics and video: listeners on 127.0.0.1 only
    ("vnc", "--graphics vnc,listen=127.0.0.1"),
    ("vnc-password-vga", "--graphics vnc,listen=127.0.0.1,password=ctest --video vga"),
    ("spice-usbredir-smartcard", "--graphics spice,listen=127.0.0.1 --redirdev usb,type=spicevmc"
                                 " --smartcard passthrough,type=spicevmc"),
    # sound, USB, channels, RNG, watchdog, TPM, balloon, panic
    ("sound-ich9", "--sound ich9"),
    ("usb2-pc", "--machine pc --controller usb2"),
    ("usb-none", "--controller usb,model=none"),
    ("channel-pty", "--channel pty,target.type=virtio,name=org.ctest.h2.0"),
    ("rng-random", "--rng /dev/random"),
    ("watchdog-i6300esb", "--watchdog i6300esb,action=reset"),
    ("tpm-crb", "--tpm emulator,model=tpm-crb,version=2.0"),
    ("memballoon-none-panic", "--memballoon none --panic isa"),
    # CPU, memory, clock, identity, life cycle
    ("cpu-qemu64", "--cpu qemu64"),
    ("vcpu-topology", "--vcpus 1,maxvcpus=2,sockets=1,cores=2,threads=1"),
    ("memory-odd", "--memory 97"),
    ("memory-current-below", "--memory memory=128,currentMemory=96"),
    ("clock-localtime", "--clock offset=localtime"),
    ("title-description", "--metadata title=ctest-h2,description='made by virt-install'"),
    ("uuid-upper", "--uuid 6B29FC40-CA47-1067-B31D-00DD010662DA"),
    ("sysinfo-smbios", "--sysinfo smbios,system.manufacturer=Cocos,system.serial=CTEST-H2"),
    ("events-iothreads", "--events on_poweroff=destroy,on_reboot=destroy,on_crash=restart --iothreads 2"),
]

# One row per variant: id, then the <network> body after its <name>. Bridges ctest-h2-nNN, subnets
# 10.231.N.0/24, 172.30.23N.0/24 and fd00:c0c0:231:N::/64: used by nothing else on this host (eth0 has
# fd00::/64); a network only makes a bridge on this host, no traffic is sent there.
NETWORKS = [
    ("isolated", "<bridge name='ctest-h2-n01'/><ip address='10.231.1.1' netmask='255.255.255.0'/>"),
    ("nat-dhcp", "<forward mode='nat'/><bridge name='ctest-h2-n02'/><ip address='10.231.2.1' netmask='255.255.255.0'>"
                 "<dhcp><range start='10.231.2.10' end='10.231.2.100'/></dhcp></ip>"),
    ("nat-dhcp-hosts-upper-mac", "<forward mode='nat'/><bridge name='ctest-h2-n03'/>"
                                 "<ip address='10.231.3.1' netmask='255.255.255.0'><dhcp>"
                                 "<range start='10.231.3.10' end='10.231.3.100'/>"
                                 "<host mac='52:54:00:AB:CD:01' name='ctest-a' ip='10.231.3.201'/>"
                                 "<host mac='52:54:00:Ab:cD:02' ip='10.231.3.202'/></dhcp></ip>"),
    ("nat-port-range-prefix", "<forward mode='nat'><nat><port start='20000' end='29999'/></nat></forward>"
                              "<bridge name='ctest-h2-n04'/><ip address='10.231.4.1' prefix='24'/>"),
    ("route", "<forward mode='route'/><bridge name='ctest-h2-n05'/>"
              "<ip address='172.30.231.1' netmask='255.255.255.0'/>"),
    ("open", "<forward mode='open'/><bridge name='ctest-h2-n06'/><ip address='172.30.232.1' netmask='255.255.255.0'/>"),
    ("ipv6-uncompressed-dhcp", "<bridge name='ctest-h2-n07'/>"
                               "<ip family='ipv6' address='fd00:c0c0:0231:0007:0000:0000:0000:0001' prefix='64'><dhcp>"
                               "<range start='fd00:c0c0:0231:0007:0000:0000:0000:0100'"
                               " end='fd00:c0c0:0231:0007:0000:0000:0000:01ff'/></dhcp></ip>"),
    ("ipv6-upper-case-host", "<bridge name='ctest-h2-n14'/><ip family='ipv6' address='FD00:C0C0:231:14::1' prefix='64'>"
                             "<dhcp><range start='FD00:C0C0:231:14::10' end='FD00:C0C0:231:14::20'/>"
                             "<host name='ctest-b' ip='FD00:C0C0:231:14::99'/></dhcp></ip>"),
    ("dual-stack-dns-entries", "<forward mode='nat'/><bridge name='ctest-h2-n08'/><dns><txt name='ctest' value='h2'/>"
                               "<host ip='10.231.8.5'><hostname>svc</hostname><hostname>svc2</hostname></host>"
                               "<srv service='agent' protocol='tcp' domain='ctest.lan' target='svc' port='7002'"
                               " priority='10' weight='5'/></dns>"
                               "<ip address='10.231.8.1' netmask='255.255.255.0'/>"
                               "<ip family='ipv6' address='fd00:c0c0:231:8::1' prefix='64'/>"),
    ("domain-name-mtu", "<forward mode='nat'/><bridge name='ctest-h2-n09'/><mtu size='9000'/>"
                        "<domain name='ctest-h2.lan' localOnly='yes'/>"
                        "<ip address='10.231.9.1' netmask='255.255.255.0'/>"),
    ("bridge-stp-upper-mac", "<bridge name='ctest-h2-n10' stp='off' delay='0'/><mac address='52:54:00:AB:CD:10'/>"
                             "<ip address='10.231.10.1' netmask='255.255.255.0'/>"),
    ("nat-ipv6", "<forward mode='nat'><nat ipv6='yes'/></forward><bridge name='ctest-h2-n11'/>"
                 "<ip address='10.231.11.1' netmask='255.255.255.0'/>"
                 "<ip family='ipv6' address='fd00:c0c0:231:11::1' prefix='64'/>"),
    ("dhcp-lease-bootp", "<bridge name='ctest-h2-n12'/><ip address='10.231.12.1' netmask='255.255.255.0'><dhcp>"
                         "<range start='10.231.12.10' end='10.231.12.20'><lease expiry='1' unit='hours'/></range>"
                         "<bootp file='pxelinux.0'/></dhcp></ip>"),
    ("portgroup", "<bridge name='ctest-h2-n13'/><portgroup name='pg' default='yes'/>"
                  "<ip address='10.231.13.1' netmask='255.255.255.0'/>"),
    ("dns-off", "<bridge name='ctest-h2-n15'/><dns enable='no'/><ip address='10.231.15.1' netmask='255.255.255.0'/>"),
    ("dns-local-only", "<bridge name='ctest-h2-n16'/><dns forwardPlainNames='no'/>"
                       "<ip address='10.231.16.1' netmask='255.255.255.0'/>"),
]

# One row per variant: id, then libvirt_volume arguments ({name}: the volume's name). Created in VOLUME_POOL.
VOLUMES = [
    ("qcow2-1GiB", {"capacity": "1GiB", "format": "qcow2"}),
    ("raw-64MiB", {"capacity": "64MiB", "format": "raw"}),
    ("qcow2-odd-bytes", {"capacity": "100000000", "format": "qcow2"}),
    ("default-format-1000-bytes", {"capacity": "1000"}),
    ("raw-odd-bytes", {"capacity": "100000001", "format": "raw"}),
    ("qcow2-decimal-MB", {"capacity": "123MB", "format": "qcow2"}),
    ("raw-KiB", {"capacity": "7KiB", "format": "raw"}),
    ("qcow2-G-suffix", {"capacity": "2G", "format": "qcow2"}),
    ("qcow2-1TiB", {"capacity": "1TiB", "format": "qcow2"}),
    ("xml-no-format", {"xml": "<volume><name>{name}</name><capacity unit='MiB'>16</capacity></volume>"}),
    ("xml-allocation", {"xml": "<volume><name>{name}</name><capacity unit='MiB'>16</capacity>"
                               "<allocation unit='MiB'>4</allocation><target><format type='raw'/></target></volume>"}),
    ("xml-qcow2-compat-lazy-refcounts", {"xml": "<volume><name>{name}</name><capacity unit='G'>1</capacity><target>"
                                                "<format type='qcow2'/><compat>1.1</compat>"
                                                "<features><lazy_refcounts/></features></target></volume>"}),
    ("xml-unit-KB-odd", {"xml": "<volume><name>{name}</name><capacity unit='KB'>100001</capacity>"
                                "<target><format type='qcow2'/></target></volume>"}),
    ("xml-no-unit-odd", {"xml": "<volume><name>{name}</name><capacity>5000000</capacity>"
                                "<target><format type='qcow2'/></target></volume>"}),
    ("xml-permissions", {"xml": "<volume><name>{name}</name><capacity unit='M'>1</capacity><target>"
                                "<format type='raw'/><permissions><mode>640</mode></permissions></target></volume>"}),
]

# One row per variant: id, then libvirt_pool arguments ({name}: the pool's name, {path}: its own directory).
POOLS = [
    ("dir-options", {"type": "dir", "path": "{path}"}),
    ("dir-xml", {"xml": "<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"}),
    ("dir-short-mode", {"xml": "<pool type='dir'><name>{name}</name><target><path>{path}</path><permissions>"
                               "<mode>755</mode><owner>0</owner><group>0</group></permissions></target></pool>"}),
    ("dir-trailing-slash", {"xml": "<pool type='dir'><name>{name}</name><target><path>{path}/</path></target></pool>"}),
    ("dir-empty-source", {"xml": "<pool type='dir'><name>{name}</name><source/><target><path>{path}</path></target>"
                                 "</pool>"}),
]

# The same promise end to end through ONE ansible-playbook run (AnsiballZ, argument parsing, check mode per
# task) for a few entries of DOMAINS and VOLUMES, under their own names (ctest-h2-pb-<id>). Few, because each
# step of each entry is one module process (about 1 s of CPU); the in-process runs above cover the rest.
PLAYBOOK_DOMAINS = ("win11-uefi-tpm",)
PLAYBOOK_VOLUMES = ("qcow2-odd-bytes",)
PLAYBOOK_IDS = [f"domain-{i}" for i in PLAYBOOK_DOMAINS] + [f"volume-{i}" for i in PLAYBOOK_VOLUMES]

IMAGES = {"qcow2": ("qcow2", 16 << 20), "raw": ("raw", 16 << 20), "iso": ("raw", 1 << 20)}  # format, bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def domain_name(entry: str, prefix: str = "dom") -> str:
    return f"{PREFIX}{prefix}-{entry}"


def image_volume(name: str, kind: str) -> str:
    return f"{name}.{kind}"


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def virt_install_args(name: str, extra: str, conn: Any) -> list[str]:
    """The row's arguments with its placeholders filled (creating the images it names), plus the defaults."""
    values: dict[str, Any] = {"pool": IMAGE_POOL, "network": NIC_NETWORK, "log": f"{AREA}/log/{name}.log"}
    wanted = placeholders(extra)
    pool = conn.storagePoolLookupByName(IMAGE_POOL)
    for kind, (fmt, size) in IMAGES.items():
        if {kind, f"{kind}_volume"} & wanted:
            vol_name = image_volume(name, kind)
            vol = pool.createXML(f"<volume><name>{vol_name}</name><capacity>{size}</capacity>"
                                 f"<target><format type='{fmt}'/></target></volume>", 0)
            values.update({kind: vol.path(), f"{kind}_volume": vol_name})
    if "port" in wanted:
        values["port"] = free_port()
    args = shlex.split(extra.format(**values))
    out = ["--virt-type", "qemu", "--name", name, "--import"]
    for option, value in DEFAULTS.items():
        if option not in args:
            out += [option, value]
    return out + args


def domain_args(name: str, printed: dict[str, str]) -> dict[str, Any]:
    if "xml" not in printed:
        raise AssertionError(f"virt-install --print-xml refused the row for {name}: {printed['error']}")
    return {"name": name, "uri": URI, "xml": printed["xml"], "wait_timeout": 60}


def network_args(name: str, body: str) -> dict[str, Any]:
    return {"name": name, "uri": URI, "xml": f"<network><name>{name}</name>{body}</network>"}


def volume_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"pool": VOLUME_POOL, "name": name, "uri": URI,
            **{key: value.format(name=name) if isinstance(value, str) else value for key, value in args.items()}}


def pool_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    path = f"{AREA}/pools/{name}"
    return {"name": name, "uri": URI, **{key: value.format(name=name, path=path) for key, value in args.items()}}


# kind: (its table, its steps, module arguments of a row: (row id, row) -> args)
KINDS = {
    "network": (NETWORKS, ACTIVE_STEPS, lambda entry, row: network_args(f"{PREFIX}net-{entry}", row)),
    "volume": (VOLUMES, VOLUME_STEPS, lambda entry, row: volume_args(f"{PREFIX}vol-{entry}", row)),
    "pool": (POOLS, ACTIVE_STEPS, lambda entry, row: pool_args(f"{PREFIX}pool-{entry}", row)),
}


# ---- fixtures: what the entries need, and all entries at once ------------------------------------------


@pytest.fixture(scope="module")
def conn():
    connection = libvirt.open(URI)
    yield connection
    connection.close()


def our_objects(conn: Any) -> list[tuple[Any, str, Any]]:
    """drop()'s arguments for every libvirt object this module can create, by exact name; domains first
    (they use the rest)."""
    domains = [domain_name(entry) for entry, _ in DOMAINS] + [domain_name(entry, "pb") for entry in PLAYBOOK_DOMAINS]
    networks = [f"{PREFIX}net-{entry}" for entry, _ in NETWORKS] + [NIC_NETWORK]
    pools = [f"{PREFIX}pool-{entry}" for entry, _ in POOLS] + [IMAGE_POOL, VOLUME_POOL]
    return ([(conn.lookupByName, name, drop_domain) for name in domains]
            + [(conn.networkLookupByName, name, drop_network) for name in networks]
            + [(conn.storagePoolLookupByName, name, drop_pool) for name in pools])


def remove_ours(conn: Any) -> None:
    for lookup, name, finish in our_objects(conn):
        drop(lookup, name, finish)
    shutil.rmtree(AREA, ignore_errors=True)


def make_pool(conn: Any, name: str, path: str) -> None:
    os.makedirs(path)
    conn.storagePoolDefineXML(f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>",
                              0).create(0)


@pytest.fixture(scope="module")
def prerequisites(conn):
    """AREA, the NIC network and image pool the domain entries use, and the pool volume entries go in; before
    and after: everything of ours removed by exact name (virt-install refuses a domain name in use)."""
    remove_ours(conn)
    for sub in ("log", "pools"):
        os.makedirs(f"{AREA}/{sub}")
    os.chmod(AREA, 0o755)  # QEMU (libvirt-qemu) opens images and logs below it
    make_pool(conn, IMAGE_POOL, f"{AREA}/images")
    make_pool(conn, VOLUME_POOL, f"{AREA}/volumes")
    conn.networkDefineXML(f"<network><name>{NIC_NETWORK}</name><bridge name='{PREFIX}dbr'/>"
                          "<ip address='10.231.0.1' netmask='255.255.255.0'/></network>").create()
    yield
    remove_ours(conn)


def domain_names(ids: list[str], playbook_ids: set[str]) -> dict[str, str]:
    """{virt-install row key: domain name} for the selected entries and the playbook's own copies."""
    names = {entry: domain_name(entry) for entry in ids}
    names.update({f"pb-{entry}": domain_name(entry, "pb") for entry in PLAYBOOK_DOMAINS
                  if f"domain-{entry}" in playbook_ids})
    return names


def playbook_plan(printed: dict[str, dict[str, str]], ids: set[str]) -> list[tuple[str, tuple, dict]]:
    domains = {f"domain-{entry}": domain_args(domain_name(entry, "pb"), printed[f"pb-{entry}"])
               for entry in PLAYBOOK_DOMAINS if f"domain-{entry}" in ids}
    volumes = {f"volume-{entry}": volume_args(f"{PREFIX}pb-{entry}", dict(VOLUMES)[entry])
               for entry in PLAYBOOK_VOLUMES if f"volume-{entry}" in ids}
    plan = [("libvirt_domain", DOMAIN_STEPS, domains), ("libvirt_volume", VOLUME_STEPS, volumes)]
    return [(module, steps, entries) for module, steps, entries in plan if entries]


@pytest.fixture(scope="module")
def corpus(request, conn, prerequisites):
    """Every selected entry settled on Parallel's threads, the playbook run among them; keys "<kind>-<id>".

    Started in this order: the cheap kinds (they run while virt-install prints the domains), the playbook run
    (the longest job), the domains. Each entry's steps run in order on one thread.
    """
    runs = Parallel()
    request.addfinalizer(runs.close)  # before prerequisites removes what the jobs use
    playbook_ids = set(selected_ids(request, "test_playbook_settles"))
    domain_ids = selected_ids(request, "test_domain_settles")
    for key in selected_ids(request, "test_object_settles"):
        kind, entry = key.split("-", 1)
        rows, steps, build = KINDS[kind]
        runs.add(key, partial(settle, f"libvirt_{kind}", build(entry, dict(rows)[entry]), steps))

    names = domain_names(domain_ids, playbook_ids)
    rows = {**dict(DOMAINS), **{f"pb-{entry}": dict(DOMAINS)[entry] for entry in PLAYBOOK_DOMAINS}}
    printed = virt_install_print_xml({key: virt_install_args(name, rows[key], conn) for key, name in names.items()})
    plan = playbook_plan(printed, playbook_ids)
    if plan:
        runs.add("playbook", partial(playbook_outcomes, plan))
    for entry in domain_ids:
        runs.add(f"domain-{entry}", partial(settle, "libvirt_domain", domain_args(names[entry], printed[entry]),
                                            DOMAIN_STEPS))
    return runs


# ---- the corpus, one test per entry -----------------------------------------------------------------


@pytest.mark.parametrize("entry", [entry for entry, _ in DOMAINS])
def test_domain_settles(corpus, entry):
    args = dict(DOMAINS)[entry]
    assert_settled(f"domain {domain_name(entry)} from virt-install {args or '(defaults only)'}", DOMAIN_STEPS,
                   corpus.result(f"domain-{entry}"))


@pytest.mark.parametrize("entry", [f"{kind}-{entry}" for kind, (rows, _, _) in KINDS.items() for entry, _ in rows])
def test_object_settles(corpus, entry):
    """Networks, volumes and pools of NETWORKS, VOLUMES and POOLS: id "<kind>-<row id>"."""
    kind, row = entry.split("-", 1)
    rows, steps, build = KINDS[kind]
    assert_settled(f"{kind} {build(row, dict(rows)[row])['name']}: {dict(rows)[row]}", steps, corpus.result(entry))


@pytest.mark.parametrize("entry", PLAYBOOK_IDS)
def test_playbook_settles(corpus, entry):
    """A few entries end to end through one ansible-playbook run (see PLAYBOOK_DOMAINS)."""
    steps = {"domain": DOMAIN_STEPS, "volume": VOLUME_STEPS}[entry.split("-", 1)[0]]
    assert_settled(f"{entry} through ansible-playbook", steps, corpus.result("playbook").get(entry, []))
