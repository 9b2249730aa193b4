"""scripts/ansible_test_pip.py: the get-pip stand-in ansible-test finds in its cache, written idempotently."""
from __future__ import annotations

import re
import subprocess
import sys

from scripts import ansible_test_pip


def test_pip_version_is_read_from_the_installed_ansible_test():
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", ansible_test_pip.ansible_test_pip_version())


def test_cache_path_is_where_ansible_test_looks(tmp_path):
    expected = tmp_path / ".ansible" / "test" / "cache" / "get_pip_24_2.py"
    assert ansible_test_pip.cache_path("24.2", home=str(tmp_path)) == str(expected)


def test_written_once_then_left_alone(tmp_path):
    path = str(tmp_path / "cache" / "get_pip_24_2.py")
    assert ansible_test_pip.ensure_stand_in(path)
    assert not ansible_test_pip.ensure_stand_in(path)
    with open(path, encoding="utf-8") as handle:
        assert handle.read() == ansible_test_pip.STAND_IN


def test_an_outdated_stand_in_is_replaced_and_a_real_get_pip_kept(tmp_path):
    ours = tmp_path / "ours.py"
    ours.write_text(ansible_test_pip.MARKER + "\nprint('older version')\n", encoding="utf-8")
    assert ansible_test_pip.ensure_stand_in(str(ours))
    assert ours.read_text(encoding="utf-8") == ansible_test_pip.STAND_IN
    real = tmp_path / "real.py"
    real.write_text("#!/usr/bin/env python\n# get-pip.py, downloaded\n", encoding="utf-8")
    assert not ansible_test_pip.ensure_stand_in(str(real))
    assert real.read_text(encoding="utf-8").startswith("#!/usr/bin/env python")


def test_stand_in_installs_pip_into_a_venv_without_one(tmp_path):
    """As ansible-test runs it: a venv made without pip, get-pip's own options among the arguments. The
    requirement is the bundled pip itself, so no package index is needed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    stand_in = tmp_path / "get_pip.py"
    stand_in.write_text(ansible_test_pip.STAND_IN, encoding="utf-8")
    proc = subprocess.run([python, str(stand_in), "--disable-pip-version-check", "pip", "--no-setuptools",
                           "--no-wheel"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    assert check.returncode == 0 and str(tmp_path / "venv") in check.stdout, check.stdout + check.stderr
