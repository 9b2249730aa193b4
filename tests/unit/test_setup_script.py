"""scripts/setup.sh refuses clearly, and touches nothing, when it has neither root nor sudo; it reads its package
list the way scripts/install_closure.py does."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from scripts.install_closure import read_setup_packages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_unprivileged_run_fails_with_a_clear_message(tmp_path) -> None:
    # A PATH without sudo: the script must not find a way to escalate.
    tmp_path.chmod(0o755)  # the unprivileged user must be able to reach the tools below
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat", "sha256sum", "cut", "dpkg-query", "grep"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    proc = subprocess.run([shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "bash", os.path.join(ROOT, "scripts", "setup.sh")],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr
    assert proc.stdout == ""  # nothing installed, created or started


def test_setup_and_the_closure_check_read_one_package_list() -> None:
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "setup.sh"), "--packages"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout.split("\n")[:-1] == read_setup_packages()
    assert {"libxml2-utils", "curl", "procps"} <= set(read_setup_packages())
