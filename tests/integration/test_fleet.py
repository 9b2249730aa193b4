"""scripts/fleet.sh on this machine: one test hypervisor reached three ways, then a `down` after its libvirtd
was killed with its NAT network running, which must still leave nothing behind.

The fleet here is its own (FLEET_DIR under pytest's tmp, 127.0.0.18, bridge ctest-h5-tx1, 10.214.1.0/24), so it
never meets the Molecule `fleet` scenario's (build/fleet, 127.0.0.11-13, ctest-h5-hv*). The normal `down` after a
converge with running guests is checked by that scenario's destroy step.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.system]

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "scripts" / "fleet.sh"
ADDRESS = "127.0.0.18"
BRIDGE = "ctest-h5-tx1"
NETWORK_XML = f"""<network>
  <name>ctest-h5-tx</name>
  <forward mode='nat'/>
  <bridge name='{BRIDGE}'/>
  <ip address='10.214.1.1' netmask='255.255.255.0'><dhcp><range start='10.214.1.2' end='10.214.1.9'/></dhcp></ip>
</network>
"""


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    if check:
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc


def leftovers(fleet_dir: Path) -> dict[str, str]:
    """What a fleet host could leave behind; every value is empty when nothing is left."""
    procs = [pid for pid in os.listdir("/proc") if pid.isdigit() and _sees_fleet(pid, fleet_dir)]
    links = run("ip", "-o", "link", "show").stdout
    rules = run("iptables-save").stdout
    listeners = run("ss", "-Hltn").stdout
    return {
        "processes": " ".join(procs),
        "interfaces": BRIDGE if BRIDGE in links else "",
        "firewall": "\n".join(line for line in rules.splitlines() if BRIDGE in line),
        "listeners": "\n".join(line for line in listeners.splitlines() if f" {ADDRESS}:" in line),
        "files": str(fleet_dir) if fleet_dir.exists() else "",
    }


def _sees_fleet(pid: str, fleet_dir: Path) -> bool:
    try:
        return f"{fleet_dir}/hv" in Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False  # the process ended while we looked


@pytest.fixture()
def fleet(tmp_path):
    fleet_dir = tmp_path / "fleet"
    env = dict(os.environ, FLEET_DIR=str(fleet_dir), FLEET_ADDR_BASE="17", FLEET_BRIDGE_PREFIX="ctest-h5-tx",
               FLEET_SUBNET_PREFIX="10.214")
    try:
        run(str(FLEET), "up", "1", env=env)
        yield fleet_dir, env
    finally:
        run(str(FLEET), "down", env=env, check=False)


def test_one_host_answers_over_its_socket_ssh_and_qemu_ssh_then_down_cleans_up_after_a_crash(fleet):
    fleet_dir, env = fleet
    host = yaml.safe_load((fleet_dir / "inventory.yml").read_text())["all"]["children"]["hypervisors"]["hosts"]["hv1"]
    assert host["ansible_host"] == ADDRESS and host["libvirt_host_network_bridge"] == BRIDGE

    # Inside its namespace (over SSH) libvirt's default socket and /var/lib/cocos are the host's private ones.
    mounts = run("ssh", "-F", str(fleet_dir / "ssh" / "config"), "hv1", "cat /proc/self/mountinfo").stdout
    for mount_point, private in (("/run/libvirt", "run"), ("/var/lib/cocos", "cocos"), ("/etc/libvirt", "etc")):
        assert f"{fleet_dir}/hv1/{private} {mount_point} " in mounts, mounts
    # A host is a fresh hypervisor: the machine's own ~/.bashrc (pyenv's init here) is empty in its namespace, so it
    # does not run for every command sent over ssh.
    assert run("ssh", "-F", str(fleet_dir / "ssh" / "config"), "hv1", "cat ~/.bashrc 2>/dev/null; true").stdout == ""
    for uri in (host["cocos_libvirt_socket_uri"], host["cocos_libvirt_uri"]):
        assert run("virsh", "-c", uri, "net-list", "--all", "--name").stdout.strip() == "", uri
    socket_uri = host["cocos_libvirt_socket_uri"]
    define = fleet_dir / "net.xml"
    define.write_text(NETWORK_XML)
    run("virsh", "-c", socket_uri, "net-define", str(define))
    run("virsh", "-c", socket_uri, "net-start", "ctest-h5-tx")
    assert leftovers(fleet_dir)["interfaces"] == BRIDGE
    assert leftovers(fleet_dir)["firewall"]

    # libvirtd dies without tearing its network down: its bridge, firewall rules and dnsmasq stay behind.
    os.kill(int((fleet_dir / "hv1" / "libvirtd.pid").read_text()), signal.SIGKILL)
    run(str(FLEET), "down", env=env)
    assert leftovers(fleet_dir) == {"processes": "", "interfaces": "", "firewall": "", "listeners": "", "files": ""}
