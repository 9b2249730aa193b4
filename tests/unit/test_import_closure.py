"""scripts/import_closure.py: requirements.txt pins what the code imports, and only that (or tools the build runs).

Runs with the .venv's interpreter, whose installed distributions say which one provides each module.
"""
from __future__ import annotations

import os

from scripts import import_closure
from scripts.install_closure import read_setup_packages

REQUIREMENTS = os.path.join(import_closure.REPO, "requirements.txt")


def test_the_repository_imports_only_what_it_pins_and_pins_only_what_it_uses() -> None:
    assert import_closure.main([]) == 0


def _problems(tmp_path, source: str, pins: list[str]) -> list[str]:
    module = tmp_path / "product.py"
    module.write_text(source)
    files = [*import_closure.python_files(import_closure.REPO), str(module)]
    return import_closure.check(files, pins, read_setup_packages())


def test_a_module_present_only_as_a_dependency_fails(tmp_path) -> None:
    # jinja2 is in the venv because ansible-core needs it, but nothing pins it.
    problems = _problems(tmp_path, "import jinja2\n", import_closure.read_pins(REQUIREMENTS))
    assert len(problems) == 1, problems
    assert problems[0].endswith("product.py imports jinja2 (from jinja2), which requirements.txt does not pin: it is "
                                "only there as another package's dependency")


def test_dropping_the_cryptography_pin_fails_naming_its_importer(tmp_path) -> None:
    pins = [p for p in import_closure.read_pins(REQUIREMENTS) if p != "cryptography"]
    problems = _problems(tmp_path, "", pins)
    assert any("manager_api/attestation.py imports cryptography" in p for p in problems), problems


def test_an_unused_pin_fails(tmp_path) -> None:
    problems = _problems(tmp_path, "", [*import_closure.read_pins(REQUIREMENTS), "lxml"])
    assert problems == ["requirements.txt pins lxml, which nothing imports and no TOOLS entry runs: remove it"]


def test_a_tool_pin_whose_use_disappeared_fails(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(import_closure.TOOLS, "ruff", ("Makefile", r"/bin/ruff --no-such-use"))
    problems = _problems(tmp_path, "", import_closure.read_pins(REQUIREMENTS))
    assert len(problems) == 1 and problems[0].startswith("requirements.txt pins ruff as a tool, but Makefile")


def test_pin_names_are_normalized() -> None:
    assert import_closure.normalize("PyYAML") == "pyyaml"
    assert "libvirt-python" in import_closure.read_pins(REQUIREMENTS)
    assert "pyyaml" in import_closure.read_pins(REQUIREMENTS)
