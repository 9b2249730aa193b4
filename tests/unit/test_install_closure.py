"""scripts/exec_watch.py on the real kernel, and scripts/install_closure.py: its list reader, the dependency closure
and the verdict on real dpkg data.

The watcher tests start the real watcher (fanotify needs root, as the suite runs) and execute real programs. The
verdict tests ask this machine's dpkg database, on packages scripts/setup.sh installs (libxml2-utils,
libvirt-clients) and their dependencies, so they check the real `dpkg -S` and dpkg-query parsing, not a stand-in.
"""
from __future__ import annotations

import glob
import os
import select
import shutil
import signal
import subprocess
import sys

import pytest

from scripts import install_closure as ic

WATCHER = os.path.join(ic.REPO, "scripts", "exec_watch.py")
STOPPED = "# exec_watch: stopped, 3 exec events\n"
# The ELF loader as the kernel names it when it opens it for an exec (/lib64/ld-linux-x86-64.so.2 on amd64, which
# dpkg records as /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, libc6's).
LOADER = os.path.realpath(sorted(glob.glob("/lib*/ld-linux*.so.*"))[0])


# --- the watcher ----------------------------------------------------------------------------------------------------

def start_watcher(output, python: str = sys.executable) -> subprocess.Popen:
    """The watcher writing to output, once it has printed its ready line (its marks are in place)."""
    proc = subprocess.Popen([python, WATCHER, str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if readable else ""
    if not line.startswith("exec_watch: watching"):
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the watcher did not get ready: {line!r} {err!r}")
    return proc


def stop_watcher(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> str:
    """Signal the watcher and wait for it; its stderr."""
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    return err


def watcher_processes(output) -> list[int]:
    """Pids of processes whose command line names output (the watcher and anything it might have left running)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if os.fsencode(str(output)) in handle.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def executable_script(tmp_path, name: str, body: str) -> str:
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return os.path.realpath(script)


@pytest.mark.parametrize("python", ["/usr/bin/python3", sys.executable], ids=["debian-python", "venv-python"])
def test_watcher_records_programs_scripts_and_interpreters_and_leaves_nothing_running(tmp_path, python) -> None:
    output = tmp_path / "exec.list"
    script = executable_script(tmp_path, "probe.sh", "exit 0\n")
    proc = start_watcher(output, python)
    try:
        subprocess.run(["/usr/bin/env", "true"], check=True)
        subprocess.run([script], check=True)
    finally:
        err = stop_watcher(proc)
    assert proc.returncode == 0, err
    assert watcher_processes(output) == []
    lines = output.read_text().splitlines()
    programs = ic.executed_programs(lines)  # also refuses a list without the "stopped" line
    assert len(programs) == len(set(programs)) == len([line for line in lines if not line.startswith("#")])
    true = os.path.realpath(shutil.which("true") or "/usr/bin/true")
    # env, what env ran, the script, its #! interpreter as the kernel resolved /bin/sh (/usr/bin/dash), the loader.
    for path in ("/usr/bin/env", true, script, os.path.realpath("/bin/sh"), LOADER):
        assert path in programs, (path, programs)
    assert programs.index("/usr/bin/env") < programs.index(true) < programs.index(script)


def test_stopping_drains_events_queued_before_the_signal(tmp_path) -> None:
    output = tmp_path / "exec.list"
    script = executable_script(tmp_path, "queued.sh", "exit 0\n")
    proc = start_watcher(output)
    try:
        os.kill(proc.pid, signal.SIGSTOP)  # the watcher reads nothing: the events wait in the kernel's queue
        subprocess.run([script], check=True)
        os.kill(proc.pid, signal.SIGINT)  # pending until it runs again, so the signal arrives with the queue full
        os.kill(proc.pid, signal.SIGCONT)
    finally:
        err = stop_watcher(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    assert script in ic.executed_programs(output.read_text().splitlines())


def test_watcher_without_privileges_exits_2_with_one_line(tmp_path) -> None:
    tmp_path.chmod(0o755)  # nobody may write there, so only fanotify_init can refuse
    output = tmp_path / "exec.list"
    proc = subprocess.run([shutil.which("setpriv") or "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, WATCHER, str(output)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""  # no ready line
    assert proc.stderr.splitlines() == ["exec_watch: fanotify_init failed: Operation not permitted"
                                        " (needs root: CAP_SYS_ADMIN)"]
    assert not output.exists()


# --- the list -------------------------------------------------------------------------------------------------------

def test_list_reader_keeps_each_program_once_without_the_deleted_mark() -> None:
    lines = ["/usr/bin/make\n", "/tmp/pytest-1/fake-tool (deleted)\n", "/usr/bin/xmllint\n", "/usr/bin/make\n",
             "/tmp/pytest-1/fake-tool\n", STOPPED]
    assert ic.executed_programs(lines) == ["/usr/bin/make", "/tmp/pytest-1/fake-tool", "/usr/bin/xmllint"]


@pytest.mark.parametrize("lines", [["/usr/bin/make\n"], ["# exec_watch: lost events: queue overflow\n", STOPPED]],
                         ids=["watcher-died", "events-lost"])
def test_an_incomplete_list_is_refused(tmp_path, capsys, lines) -> None:
    status, out, err = _run(tmp_path, lines, setup=[], fresh=["make"], capsys=capsys)
    assert status == 2 and out == ""
    assert err.startswith("install_closure: ") and "incomplete" in err


# --- dependencies ---------------------------------------------------------------------------------------------------

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


# --- programs to packages -------------------------------------------------------------------------------------------

def test_usr_merge_twins() -> None:
    assert ic.dpkg_candidates("/usr/bin/bash") == ["/usr/bin/bash", "/bin/bash"]
    assert ic.dpkg_candidates("/sbin/ldconfig") == ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
    assert ic.dpkg_candidates("/usr/share/x") == ["/usr/share/x"]


def test_dpkg_names_the_real_owners() -> None:
    owners = ic.dpkg_owners(["/usr/bin/xmllint", "/bin/bash", "/usr/bin/no-such-program-h10a"])
    assert owners == {"/usr/bin/xmllint": ["libxml2-utils"], "/bin/bash": ["bash"]}


def _run(tmp_path, lines: list[str], setup: list[str], fresh: list[str], capsys) -> tuple[int, str, str]:
    """main() on a list of these lines, with these setup and fresh-machine packages: (exit status, stdout, stderr)."""
    listing = tmp_path / "exec.list"
    listing.write_text("".join(lines))
    (tmp_path / "packages.txt").write_text(" ".join(setup) + "  # comment words are not packages\n")
    (tmp_path / "fresh.txt").write_text("".join(f"{p}\t1.0\n" for p in fresh))
    status = ic.main([str(listing), "--fresh", str(tmp_path / "fresh.txt"),
                      "--packages", str(tmp_path / "packages.txt")])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _listed(programs: list[str]) -> list[str]:
    return [p + "\n" for p in programs] + [STOPPED]


def test_a_program_from_a_package_nobody_installs_fails_naming_it(tmp_path, capsys) -> None:
    # /bin/sh as the kernel reports it (/usr/bin/dash: dpkg records /bin/dash) and the ELF loader (libc6's under its
    # /usr-merged twin) pass through the /usr-merge; xmllint's package is allowed nowhere.
    status, out, _ = _run(tmp_path, _listed(["/usr/bin/xmllint", os.path.realpath("/bin/sh"), LOADER]),
                       setup=["qemu-utils"], fresh=["dash", "libc6"], capsys=capsys)
    assert status == 1
    findings = out.splitlines()[1:]  # the first line is the summary
    assert findings == ["install_closure: package libxml2-utils (ran /usr/bin/xmllint) is neither on a fresh machine"
                        " nor installed by scripts/setup.sh: add it to scripts/packages.txt"]
    status, out, _ = _run(tmp_path, _listed([LOADER]), setup=[], fresh=[], capsys=capsys)
    assert status == 1 and f"package libc6 (ran {LOADER})" in out


def test_a_program_of_a_setup_package_dependency_passes(tmp_path, capsys) -> None:
    # sensible-editor is sensible-utils', which libvirt-clients Depends on.
    program = os.path.realpath(shutil.which("sensible-editor") or "/usr/bin/sensible-editor")
    status, out, _ = _run(tmp_path, _listed([program, "/usr/bin/xmllint"]), setup=["libvirt-clients", "libxml2-utils"],
                       fresh=[], capsys=capsys)
    assert status == 0, out
    status, out, _ = _run(tmp_path, _listed([program]), setup=["qemu-utils"], fresh=[], capsys=capsys)
    assert status == 1 and "package sensible-utils" in out


def test_unowned_programs_fail_unless_under_an_ignored_root(tmp_path, capsys) -> None:
    temp_tool = os.path.realpath(tmp_path / "fake-tool")  # tmp_path lies in the temporary directory, an ignored root
    ruff = os.path.realpath(os.path.join(ic.REPO, ".venv", "bin", "ruff"))  # the kernel resolves the .venv link
    fleet_wrapper = "/var/lib/cocos-test/h8/fleet-x/ssh/ssh"  # the fleet's ssh wrapper (CI's first closure failure)
    status, out, _ = _run(tmp_path, _listed(["/opt/h10a-nowhere/tool", temp_tool, ruff, fleet_wrapper]),
                       setup=[], fresh=[], capsys=capsys)
    assert status == 1
    assert out.splitlines()[1:] == ["install_closure: /opt/h10a-nowhere/tool belongs to no Debian package and lies"
                                    f" outside the ignored roots ({', '.join(ic.IGNORED_WHY)})"]


def test_a_program_in_any_virtual_environment_is_pips_not_debians(tmp_path) -> None:
    """The watch is system-wide: another checkout's .venv tools ran beside CI on a developer's machine and failed it."""
    venv = tmp_path / "other-checkout" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    tool, outside = str(venv / "bin" / "ruff"), str(tmp_path / "other-checkout" / "tool")
    report = ic.check([tool, outside], allowed=set(), roots={})  # no ignored roots: only the venv rule applies
    assert report.skipped == {tool: "venv"}
    assert report.unowned == [outside]


def test_unreadable_input_is_a_clear_error(tmp_path, capsys) -> None:
    assert ic.main([str(tmp_path / "missing.list"), "--fresh", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read the fresh-machine package list" in capsys.readouterr().err
    (tmp_path / "fresh.txt").write_text("dash\t1\n")
    assert ic.main([str(tmp_path / "missing.list"), "--fresh", str(tmp_path / "fresh.txt")]) == 2
    assert "cannot read the list of executed programs" in capsys.readouterr().err


def test_setup_reads_the_same_package_list() -> None:
    packages = ic.read_setup_packages()
    assert {"libxml2-utils", "libvirt-daemon-system", "openssh-server", "python3-libvirt"} <= set(packages)
    assert not any("#" in p or p.startswith("guest/") for p in packages)
