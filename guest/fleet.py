"""A fleet of test hypervisors for the manager's fleet test and bench/manager_placement.py: `scripts/fleet.sh up N`
in a directory of its own, on its own loopback addresses, bridge names and subnets (so it never meets the Molecule
`fleet` scenario's 127.0.0.11.. or test_fleet.py's), with what site.yml would have put on each host for our domains
staged into the host's private /var/lib/cocos: the guest's kernel and initrd (direct boot: no firmware, no ISO boot
loader), a tiny dummy cdrom for guests that need not boot, and the console log directory.

Domain definitions use the host-side paths (/var/lib/cocos/...), which inside each host's mount namespace are that
host's own directories; the manager reaches them only through libvirt.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

import guest

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "scripts" / "fleet.sh"
GUEST_BUILD = ROOT / "build" / "guest"
WORK_ROOT = Path("/var/lib/cocos-test/h8")
HOST_ROOT = Path("/var/lib/cocos")  # as each host sees its private directory
POOL_DIR = HOST_ROOT / "ctest-h8-img"
ISO_DIR = HOST_ROOT / "iso"
LOG_DIR = HOST_ROOT / "log"
STAGED = ("vmlinuz", "initrd.img")
DUMMY = "ctest-h8-dummy.iso"


@dataclass
class Fleet:
    dir: Path
    env: dict[str, str]
    hosts: dict[str, dict]  # inventory host vars by name

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    def address(self, host: str) -> str:
        return self.hosts[host]["cocos_agent_address"]

    def socket_uri(self, host: str) -> str:
        """The host's libvirt through its socket (no SSH): for checks from outside, unaffected by its sshd."""
        return self.hosts[host]["cocos_libvirt_socket_uri"]

    def private(self, host: str) -> Path:
        """The directory the host sees as /var/lib/cocos."""
        return self.dir / host / "cocos"

    def pid(self, host: str, daemon: str) -> int:
        return int((self.dir / host / f"{daemon}.pid").read_text().strip())


def fleet_up(count: int, addr_base: int = 20, subnet: str = "10.218", prefix: str = "ctest-h8") -> Fleet:
    """`fleet.sh up count` on 127.0.0.(addr_base+1).., then the guest staged into every host."""
    tag = uuid.uuid4().hex[:8]
    fleet_dir = WORK_ROOT / f"fleet-{tag}"
    env = dict(os.environ, FLEET_DIR=str(fleet_dir), FLEET_ADDR_BASE=str(addr_base), FLEET_SUBNET_PREFIX=subnet,
               FLEET_BRIDGE_PREFIX=f"{prefix}-hv")
    proc = subprocess.run([str(FLEET), "up", str(count)], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    fleet = Fleet(fleet_dir, env, {})
    if proc.returncode != 0:
        fleet_down(fleet)
        raise RuntimeError(f"fleet.sh up {count} failed:\n{proc.stdout}{proc.stderr}")
    inventory = yaml.safe_load(fleet.inventory.read_text())
    fleet.hosts = inventory["all"]["children"]["hypervisors"]["hosts"]
    staged = fleet_dir / "h8-guest"
    staged.mkdir()
    for name in STAGED:
        shutil.copyfile(GUEST_BUILD / name, staged / name)  # libvirt relabels what it boots: the build stays ours
    (staged / DUMMY).write_bytes(b"\0" * 4096)
    for host in fleet.hosts:
        for sub in ("iso", "log"):
            (fleet.private(host) / sub).mkdir(parents=True, exist_ok=True)
        for name in (*STAGED, DUMMY):
            os.link(staged / name, fleet.private(host) / "iso" / name)  # one copy, seen by every host
    return fleet


def fleet_down(fleet: Fleet) -> str:
    """`fleet.sh down`: every guest, process, mount and file of the fleet goes; returns its output."""
    proc = subprocess.run([str(FLEET), "down"], env=fleet.env, capture_output=True, text=True, timeout=600,
                          check=False)
    return proc.stdout + proc.stderr


def write_definitions(xml_dir: Path, domains: dict[str, bool], memory_mib: int = 256) -> None:
    """pool.xml (one dir pool per host), vol-NAME.xml and dom-NAME.xml for each domain; NAME -> whether it boots the
    guest (direct kernel boot, memory_mib) or only a dummy cdrom (64 MiB, it never starts an OS). The agent forward
    says 127.0.0.1:7020: the manager rewrites it to the host's address and the port it allocates."""
    xml_dir.mkdir(parents=True, exist_ok=True)
    (xml_dir / "pool.xml").write_text(
        f"<pool type='dir'><name>ctest-h8-img</name><target><path>{POOL_DIR}</path></target></pool>\n")
    for name, boots in domains.items():
        (xml_dir / f"vol-{name}.xml").write_text(
            f"<volume><name>{name}.qcow2</name><capacity unit='MiB'>16</capacity>"
            "<target><format type='qcow2'/></target></volume>\n")
        console, disk = LOG_DIR / f"{name}.console.log", POOL_DIR / f"{name}.qcow2"
        if boots:
            text = guest.domain_xml(name, None, 7020, console, disk=disk, disk_format="qcow2",
                                    kernel=ISO_DIR / "vmlinuz", initrd=ISO_DIR / "initrd.img", memory_mib=memory_mib)
        else:
            text = guest.domain_xml(name, ISO_DIR / DUMMY, 7020, console, disk=disk, disk_format="qcow2", memory_mib=64)
        (xml_dir / f"dom-{name}.xml").write_text(text)
