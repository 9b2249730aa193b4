"""libvirt_host_probe, the libvirt_host role's one-call probe, run as Ansible runs it, against this machine.

Everything it reports is checked against something set up here or read independently: a package that is and one
that is not installed (dpkg-query), a process started for the test, a directory with a known mode, users.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = str(ROOT / ".venv" / "bin" / "ansible")
LIBRARY = str(ROOT / "roles" / "libvirt_host" / "library")


def probe(args: dict) -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run([ANSIBLE, "localhost", "-M", LIBRARY, "-m", "libvirt_host_probe", "-a", json.dumps(args),
                           "-e", f"ansible_python_interpreter={ROOT / '.venv' / 'bin' / 'python'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split(" => ", 1)[1])  # ad-hoc output: "localhost | SUCCESS => {...}"


def test_probe_reports_packages_processes_paths_and_users(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o750)
    workdir.chmod(0o750)
    sleeper = subprocess.Popen(["sleep", "60"])  # noqa: S607 - a process name the probe must find
    try:
        result = probe({
            "packages": ["dpkg", "ctest-h5-no-such-package", "coreutils"],
            "processes": ["sleep", "ctest-h5-not-running"],
            "paths": [str(workdir), str(tmp_path / "missing")],
            "users": ["root", "ctest-h5-no-such-user"],
        })
    finally:
        sleeper.terminate()
        sleeper.wait()
    assert result["changed"] is False
    assert result["missing_packages"] == ["ctest-h5-no-such-package"]
    assert result["running"] == ["sleep"]
    assert result["paths"][str(workdir)] == {"exists": True, "isdir": True, "mode": "0750", "owner": "root",
                                             "group": "root"}
    assert result["paths"][str(tmp_path / "missing")] == {"exists": False}
    assert result["users"]["root"]["exists"] and "root" in result["users"]["root"]["groups"]
    assert result["users"]["ctest-h5-no-such-user"] == {"exists": False, "groups": []}
    # The two facts the role needs when the play gathers none: this machine is Debian 12; PID 1 is not systemd here.
    assert result["os_family"] == "Debian"
    pid1 = Path("/proc/1/comm").read_text().strip()
    assert result["service_mgr"] == {"init": "sysvinit"}.get(pid1, pid1)
    assert result["kvm"]["kvm"] == os.path.exists("/dev/kvm")
    assert result["kvm"]["kvm_pvm"] == os.path.isdir("/sys/module/kvm_pvm")
