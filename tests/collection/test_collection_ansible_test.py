"""ansible-test on the installed collection: every sanity test passes with no ignore file, and the library's unit
tests (shipped under tests/unit/plugins/, run against test:///default) pass.

Both use this venv's Python (libvirt-python is there) as the controller, with no container runtime. Sanity builds
one virtual environment per test under ~/.ansible/test/venv on its first run (pinned tools from the package
index; scripts/ansible_test_pip.py supplies the pip bootstrap it would otherwise download) and reuses them after.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import ansible_test_pip, build_collection

ROOT = Path(__file__).resolve().parents[2]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def ansible_test(installed_collection):
    ansible_test_pip.ensure_stand_in(ansible_test_pip.cache_path(ansible_test_pip.ansible_test_pip_version()))

    def run(*args: str, timeout: int = 1800):
        return installed_collection.run("ansible-test", *args, "--python", PYTHON, "--python-interpreter",
                                        sys.executable, "--color", "no", cwd=installed_collection.root,
                                        timeout=timeout)

    return run


def test_no_ignore_file(installed_collection):
    assert not (installed_collection.root / "tests" / "sanity").exists()


# A first run on a fresh machine builds the sanity venvs: measured 3 min idle, 8 min with this host's 2 cores
# under a load of 13; later runs reuse them (pylint, the longest, about 80 s under that load).
@pytest.mark.timeout(1800)
def test_sanity_passes(ansible_test):
    proc = ansible_test("sanity")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "\n".join(line for line in output.splitlines() if "ERROR" in line) or output[-6000:]
    for test in ("validate-modules", "pylint", "pep8", "import", "ansible-doc", "changelog", "yamllint"):
        assert f'Running sanity test "{test}"' in output, output[-6000:]
    assert "Skipping" not in output, output[-6000:]


def repository_count() -> int:
    """How many tests the shipped files hold in the repository, leaving out those marked `repository`."""
    files = [f"tests/unit/{name}" for name in build_collection.library_unit_tests(str(ROOT))]
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "not repository", *files], cwd=ROOT, capture_output=True, text=True, check=False)
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", proc.stdout)
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    return int(found[1])


def test_units_pass(ansible_test):
    proc = ansible_test("units")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    summary = re.search(r"=+ (.*) in [\d.]+s", output)
    assert summary, output[-6000:]
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", summary[1])}
    assert set(counts) <= {"passed", "deselected"}, summary[0]
    assert counts["passed"] == repository_count(), summary[0]
