"""ansible-doc renders every module and role of the installed collection by FQCN, with the shared doc fragment
resolved and exactly the options each module's argument_spec accepts."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODULES = sorted(path.stem for path in (ROOT / "library").glob("*.py"))


def repository_options(name: str) -> set[str]:
    spec = importlib.util.spec_from_file_location(f"cocos_doc_{name}", ROOT / "library" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return set(module.argument_spec())


def test_libvirt_domain_renders_as_text(installed_collection):
    proc = installed_collection.run("ansible-doc", "cocos.libvirt.libvirt_domain")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "MODULE cocos.libvirt.libvirt_domain" in text and "Defines a domain from" in text
    assert "allow_restart" in text and "libvirt connection URI" in text  # own option, one from the doc fragment
    assert "cocos.libvirt.libvirt_domain:" in text  # the examples call it by FQCN
    assert "[WARNING]" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", MODULES)
def test_module_doc_has_the_argument_spec_options(installed_collection, name):
    proc = installed_collection.run("ansible-doc", "--json", f"cocos.libvirt.{name}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[f"cocos.libvirt.{name}"]["doc"]
    assert set(doc["options"]) == repository_options(name)
    assert doc["collection"] == "cocos.libvirt"


@pytest.mark.parametrize("role", ["alpine_vm", "libvirt_host"])
def test_role_doc_renders(installed_collection, role):
    proc = installed_collection.run("ansible-doc", "-t", "role", "--json", f"cocos.libvirt.{role}")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)[f"cocos.libvirt.{role}"]
    assert entry["entry_points"]["main"]["options"], entry
