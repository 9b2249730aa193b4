"""Molecule's default scenario runs on this host's real libvirtd, where `make demo` leaves the VM the role's defaults
name: the scenario must use names, paths and a port of its own (ctest-molecule-*), or its destroy step removes the
demo's VM, disk pool and ISO pool. Read from the scenario's files and the role's defaults."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "molecule" / "default"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "alpine_vm" / "defaults" / "main.yml").read_text())
OWN = ("alpine_vm_name", "alpine_vm_pool_name", "alpine_vm_pool_path", "alpine_vm_iso_pool_name", "alpine_vm_iso_dir")


def scenario_vars() -> dict:
    molecule = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    return molecule["provisioner"]["inventory"]["group_vars"]["hypervisors"]


def test_scenario_names_its_own_objects():
    found = scenario_vars()
    for key in OWN:
        assert key in found, f"molecule.yml must set {key}: the role's default {DEFAULTS[key]!r} is make demo's"
        assert found[key] != DEFAULTS[key]
    assert found["alpine_vm_name"].startswith("ctest-molecule")
    assert all(found[k].startswith("ctest-molecule") for k in ("alpine_vm_pool_name", "alpine_vm_iso_pool_name"))
    paths = ("alpine_vm_pool_path", "alpine_vm_iso_dir")
    assert all(found[k].startswith("/var/lib/cocos-test/molecule/") for k in paths)


def test_scenario_forwards_its_own_port():
    ports = [f["host_port"] for f in scenario_vars()["alpine_vm_port_forwards"]]
    assert ports and not set(ports) & {f["host_port"] for f in DEFAULTS["alpine_vm_port_forwards"]}


def test_no_scenario_file_names_the_demo_objects():
    """Only verify.yml's rewrite of the shipped xml/ files may mention the defaults (as what it replaces)."""
    for path in sorted(SCENARIO.glob("*.yml")):
        lines = [line for line in path.read_text().splitlines() if "| replace(" not in line and "7020-" not in line]
        text = "\n".join(lines)
        for key in ("alpine_vm_name", "alpine_vm_pool_name", "alpine_vm_iso_pool_name"):
            assert DEFAULTS[key] not in text, f"{path.name} names {DEFAULTS[key]}, make demo's object"
