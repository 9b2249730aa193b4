"""scripts/install_closure.py: the strace log reader, the dependency closure and the verdict on real dpkg data.

The verdict tests ask this machine's dpkg database, on packages scripts/setup.sh installs (libxml2-utils,
libvirt-clients) and their dependencies, so they check the real `dpkg -S` and dpkg-query parsing, not a stand-in.
"""
from __future__ import annotations

import os
import shutil

import pytest

from scripts import install_closure as ic

LOG = """\
100 execve("/usr/bin/make", ["make", "test"], 0x7ffd /* 30 vars */) = 0
101 execve("/root/.cargo/bin/xmllint", ["xmllint"], 0x55 /* 35 vars */) = -1 ENOENT (No such file or directory)
101 execve("/usr/bin/xmllint", ["xmllint", "--noout", "-"], 0x55 /* 35 vars */ <unfinished ...>
102 execve("/usr/bin/curl", ["curl", "-s"], 0x55 /* 35 vars */ <unfinished ...>
103 execve("/usr/bin/gone", ["gone"], 0x55 /* 35 vars */ <unfinished ...>
101 <... execve resumed>) = 0
103 <... execve resumed>) = -1 EACCES (Permission denied)
[pid   104] execve("/usr/bin/with\\040space", ["x"], 0x55 /* 1 var */) = 0
105 execveat(AT_FDCWD, "/usr/bin/env", ["env"], 0x55 /* 1 var */, 0) = 0
106 execveat(3, "", ["fd"], 0x55 /* 1 var */, AT_EMPTY_PATH) = 0
107 execve("/usr/bin/killed", ["killed"], 0x55 /* 1 var */) = ?
100 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=101} ---
"""


def test_log_reader_keeps_successful_calls_only() -> None:
    programs = ic.executed_programs(LOG.splitlines(keepends=True))
    # 102 never resumed under its pid (a thread's execve the leader finished): counted, after the completed ones.
    assert programs == ["/usr/bin/make", "/usr/bin/xmllint", "/usr/bin/with space", "/usr/bin/env", "/usr/bin/curl"]


def test_dependency_fields_lose_versions_and_architectures() -> None:
    installed = ic.parse_installed(
        "a\tii \tpre (>= 1)\tb:any (>= 2) | c, d [amd64]\tv1 (= 1), v2\n"
        "ghost\trc \t\tx\t\n")
    assert installed.depends == {"a": [["pre"], ["b", "c"], ["d"]]}  # a removed package ("rc") does not count
    assert installed.provides == {"v1": ["a"], "v2": ["a"]}


def test_closure_keeps_an_alternative_already_present_and_resolves_virtual_packages() -> None:
    installed = ic.Installed(
        depends={"root": [["alt1", "alt2"], ["virtual"], ["hard"]], "hard": [["alt2"]], "alt1": [], "alt2": [],
                 "provider": [["deep"]], "deep": [], "unused": []},
        provides={"virtual": ["provider"]})
    allowed = ic.dependency_closure({"root"}, installed)
    # alt2 comes outright through hard, so apt keeps it for "alt1 | alt2"; the virtual package brings its provider.
    assert allowed == {"root", "hard", "alt2", "provider", "deep"}


def test_usr_merge_twins() -> None:
    assert ic.dpkg_candidates("/usr/bin/bash") == ["/usr/bin/bash", "/bin/bash"]
    assert ic.dpkg_candidates("/sbin/ldconfig") == ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
    assert ic.dpkg_candidates("/usr/share/x") == ["/usr/share/x"]


def test_dpkg_names_the_real_owners() -> None:
    owners = ic.dpkg_owners(["/usr/bin/xmllint", "/bin/bash", "/usr/bin/no-such-program-h10a"])
    assert owners == {"/usr/bin/xmllint": ["libxml2-utils"], "/bin/bash": ["bash"]}


def _run(tmp_path, programs: list[str], setup: list[str], fresh: list[str], capsys) -> tuple[int, str]:
    log = tmp_path / "execve.log"
    log.write_text("".join(f'1 execve("{p}", ["x"], 0x1 /* 1 var */) = 0\n' for p in programs))
    (tmp_path / "packages.txt").write_text(" ".join(setup) + "  # comment words are not packages\n")
    (tmp_path / "fresh.txt").write_text("".join(f"{p}\t1.0\n" for p in fresh))
    status = ic.main([str(log), "--fresh", str(tmp_path / "fresh.txt"), "--packages", str(tmp_path / "packages.txt")])
    return status, capsys.readouterr().out


def test_a_program_from_a_package_nobody_installs_fails_naming_it(tmp_path, capsys) -> None:
    status, out = _run(tmp_path, ["/usr/bin/xmllint", "/usr/bin/sh"], setup=["qemu-utils"], fresh=["dash"],
                       capsys=capsys)
    assert status == 1
    findings = out.splitlines()[1:]  # the first line is the summary
    # /usr/bin/sh passes: realpath /usr/bin/dash, which dpkg records as /bin/dash (the /usr-merge), dash's.
    assert len(findings) == 1
    assert findings[0].startswith("install_closure: package libxml2-utils (ran /usr/bin/xmllint)")


def test_a_program_of_a_setup_package_dependency_passes(tmp_path, capsys) -> None:
    # sensible-editor is sensible-utils', which libvirt-clients Depends on.
    program = shutil.which("sensible-editor") or "/usr/bin/sensible-editor"
    status, out = _run(tmp_path, [program, "/usr/bin/xmllint"], setup=["libvirt-clients", "libxml2-utils"], fresh=[],
                       capsys=capsys)
    assert status == 0, out
    status, out = _run(tmp_path, [program], setup=["qemu-utils"], fresh=[], capsys=capsys)
    assert status == 1 and "package sensible-utils" in out


def test_unowned_programs_fail_unless_under_an_ignored_root(tmp_path, capsys) -> None:
    temp_tool = tmp_path / "fake-tool"  # tmp_path lies in the temporary directory, an ignored root
    fleet_wrapper = "/var/lib/cocos-test/h8/fleet-x/ssh/ssh"  # the fleet's ssh wrapper (CI's first closure failure)
    status, out = _run(tmp_path, ["/opt/h10a-nowhere/tool", str(temp_tool), os.path.join(ic.REPO, ".venv/bin/ruff"),
                                  fleet_wrapper], setup=[], fresh=[], capsys=capsys)
    assert status == 1
    assert "/opt/h10a-nowhere/tool belongs to no Debian package" in out
    assert "fake-tool" not in out and "ruff" not in out and fleet_wrapper not in out


def test_unreadable_input_is_a_clear_error(tmp_path, capsys) -> None:
    assert ic.main([str(tmp_path / "missing.log"), "--fresh", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read the fresh-machine package list" in capsys.readouterr().err


def test_setup_reads_the_same_package_list() -> None:
    packages = ic.read_setup_packages()
    assert {"libxml2-utils", "libvirt-daemon-system", "openssh-server", "python3-libvirt"} <= set(packages)
    assert not any("#" in p or p.startswith("guest/") for p in packages)


@pytest.mark.parametrize("package", ["libxml2-utils", "strace"])
def test_setup_installs(package) -> None:
    assert package in ic.read_setup_packages()
