"""Check that every program a watched run executed comes from a Debian package a fresh machine gets.

    python3 scripts/exec_watch.py build/trace/exec.list &    # as root; wait for its "exec_watch: watching" line
    make test; kill -TERM %1; wait
    python3 scripts/install_closure.py build/trace/exec.list [--fresh FILE] [--packages FILE] [--verbose]

A fresh machine has exactly the packages of the fresh-machine list (`../shared/env/fresh-machine-apt.txt` beside the
clone, lines "name<TAB>version"); `scripts/setup.sh` adds those of `scripts/packages.txt` with
`--no-install-recommends`. So a program may come from a package that is

- on the fresh-machine list, or
- in scripts/packages.txt, or
- pulled in by one of those through Depends/Pre-Depends, recursively (read from this machine's dpkg database with
  dpkg-query; Recommends and Suggests do not count, as setup does not install them).

Everything else was present by accident (a hand install on a developer's machine) and fails on a fresh one, the way
xmllint once did. The input is scripts/exec_watch.py's list: every file the kernel opened to execute (programs,
scripts and their #! interpreters, the ELF loader), one absolute path a line with symbolic links already resolved
(/usr/bin/dash for /bin/sh), " (deleted)" after a file removed meanwhile, and the watcher's "# exec_watch:" lines;
a list that records lost events or lacks the watcher's final "stopped" line is incomplete and refused. The check
maps each path to its package with one batched `dpkg -S`, asking for its /usr-merged twin too (dpkg's database
records /bin/dash, not /usr/bin/dash, and libc6's loader as /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2), and exits 1
naming every package outside the allowed set with a program it provided, and every program no package owns.

Programs under these roots are not Debian's and are skipped (IGNORED_WHY says why each is safe to skip): the
repository (our own scripts, build/, .cache/), its .venv and any other Python virtual environment (a pyvenv.cfg above
the program: pip fills them; the watch is system-wide, so another checkout's tools may run beside), the interpreter the
.venv was made from when it is not Debian's (pyenv's Python on these machines, part of a fresh machine), pyenv's own
root (its shims are bash scripts), the machine's Rust toolchain (pip asks rustc for its version), ~/.ansible
(ansible-test's virtual environments, made by pip) and the temporary directories (tests write fake tools there).

Exit status: 0 all allowed, 1 findings (printed on stdout), 2 unusable input (a missing or incomplete list).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES_FILE = os.path.join(REPO, "scripts", "packages.txt")
# CI lays shared/ beside the clone; developers' worktrees reach the machine's copy; a clone anywhere else uses the
# copy kept in the repository (scripts/fresh-machine-apt.txt, the same list as measured on a fresh machine).
FRESH_CANDIDATES = (os.path.join(os.path.dirname(REPO), "shared", "env", "fresh-machine-apt.txt"),
                    "/work/shared/env/fresh-machine-apt.txt",
                    os.path.join(REPO, "scripts", "fresh-machine-apt.txt"))
# Top-level directories Debian 12 merged into /usr: dpkg's database still records the old paths (/bin/bash).
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
DPKG_BATCH = 500  # paths per dpkg -S call: one call reads the whole database, so fewer is faster

TEST_AREA = "/var/lib/cocos-test"
IGNORED_WHY = {
    "repository": "our own code and what we build (build/, .cache/)",
    "venv": "a Python virtual environment (a pyvenv.cfg above the program): pip fills it, this clone's from"
            " requirements.txt (the Python import check covers it); the watch is system-wide, so another checkout's"
            " tools run beside the suite on a developer's machine land here too",
    "python": "the interpreter .venv was made from, the machine's own (pyenv) Python, not a Debian package",
    "pyenv": "pyenv's shims and libexec scripts, part of a fresh machine, not a Debian package",
    "rust": "the machine's own Rust toolchain (~/.cargo, ~/.rustup), part of a fresh machine: pip runs"
            " `rustc --version` for its user agent",
    "ansible": "~/.ansible: ansible-test's virtual environments, which pip fills",
    "temp": "files tests and tools create while they run (fake tools, scratch virtual environments)",
    "test-area": "/var/lib/cocos-test: the tests' and the fleet's working directories, where they write wrappers"
                 " of their own (the fleet's ssh wrapper, which then runs Debian's ssh: that run is checked)",
}


class InputError(Exception):
    """A list that cannot be read or is incomplete; main() reports it and exits 2."""


# --- the watcher's list ---------------------------------------------------------------------------------------------

WATCH_STOPPED = "# exec_watch: stopped"
WATCH_LOST = "# exec_watch: lost"
DELETED = " (deleted)"  # what the kernel appends to the path of a file removed while open (proc(5), /proc/pid/fd)


def executed_programs(lines: Iterable[str]) -> list[str]:
    """Program paths of an exec_watch.py list, unique, in order of first execution.

    A path the kernel marked " (deleted)" loses the mark. InputError when the watcher recorded lost events or its
    final "# exec_watch: stopped" line is missing (it died or is still running): the list is then incomplete.
    """
    seen: dict[str, None] = {}
    stopped = False
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith(WATCH_LOST):
            raise InputError(f"the exec watch lost events ({line[len(WATCH_LOST):].strip(' :')}): the list is "
                             "incomplete")
        if line.startswith(WATCH_STOPPED):
            stopped = True
        if not line or line.startswith("#"):
            continue
        seen.setdefault(line.removesuffix(DELETED), None)
    if not stopped:
        raise InputError("the list does not end with exec_watch's \"stopped\" line: the watcher died or still runs, "
                         "so the list may be incomplete")
    return list(seen)


# --- package lists --------------------------------------------------------------------------------------------------

def read_setup_packages(path: str = PACKAGES_FILE) -> list[str]:
    """Package names of scripts/packages.txt: whitespace-separated words, '#' to the end of a line is a comment.

    setup.sh reads the same file the same way (`read -ra` on each line up to '#').
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return [word for line in handle for word in line.split("#", 1)[0].split()]
    except OSError as exc:
        raise InputError(f"cannot read the setup package list {path}: {exc.strerror}") from exc


def read_fresh_packages(path: str) -> list[str]:
    """Package names of the fresh-machine list: the first column of "name[:arch]<TAB>version" lines."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.split()[0].split(":", 1)[0] for line in handle if line.strip() and not line.startswith("#")]
    except OSError as exc:
        raise InputError(f"cannot read the fresh-machine package list {path}: {exc.strerror}") from exc


def default_fresh_list() -> str:
    """The first fresh-machine list that exists among FRESH_CANDIDATES; InputError when none does."""
    for candidate in FRESH_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    raise InputError("no fresh-machine package list at " + " or ".join(FRESH_CANDIDATES) + ": pass --fresh FILE")


# --- dependencies ---------------------------------------------------------------------------------------------------

@dataclass
class Installed:
    """This machine's installed packages: each one's dependency groups, and who provides each virtual package.

    depends[name] is a list of OR groups ("a | b" -> ["a", "b"]) from Pre-Depends and Depends, names without
    version constraints or architecture qualifiers; provides[virtual] lists installed packages that Provide it.
    """

    depends: dict[str, list[list[str]]] = field(default_factory=dict)
    provides: dict[str, list[str]] = field(default_factory=dict)


def _names(field_text: str) -> list[list[str]]:
    """A Depends-style field ("a (>= 1) | b:any, c") as OR groups of bare names ([["a", "b"], ["c"]])."""
    groups = []
    for clause in field_text.split(","):
        names = [re.split(r"[\s(:\[]", alt.strip(), maxsplit=1)[0] for alt in clause.split("|")]
        names = [name for name in names if name]
        if names:
            groups.append(names)
    return groups


def parse_installed(dpkg_query_output: str) -> Installed:
    """Installed from dpkg-query's lines "Package<TAB>db:Status-Abbrev<TAB>Pre-Depends<TAB>Depends<TAB>Provides".

    Only packages in state "ii" (installed) count; a package installed for two architectures merges both.
    """
    installed = Installed()
    for line in dpkg_query_output.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or not parts[1].startswith("ii"):
            continue
        name, _, pre_depends, depends, provides = parts
        groups = installed.depends.setdefault(name, [])
        groups.extend(g for g in _names(pre_depends) + _names(depends) if g not in groups)
        for group in _names(provides):
            installed.provides.setdefault(group[0], [])
            if name not in installed.provides[group[0]]:
                installed.provides[group[0]].append(name)
    return installed


def installed_packages() -> Installed:
    """Installed read from this machine's dpkg database (dpkg-query, seconds, offline)."""
    fmt = "${Package}\\t${db:Status-Abbrev}\\t${Pre-Depends}\\t${Depends}\\t${Provides}\\n"
    proc = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InputError(f"dpkg-query failed: {proc.stderr.strip()}")
    return parse_installed(proc.stdout)


def dependency_closure(roots: Iterable[str], installed: Installed) -> set[str]:
    """roots plus every package apt pulls in for them through Depends/Pre-Depends, recursively.

    A group with one real package adds it. A group of alternatives or a virtual package is satisfied by any member
    (or provider) already in the set, as apt keeps an installed alternative; otherwise the first alternative
    installed on this machine is added (apt's choice when setup ran here). Groups of alternatives are decided after
    the plain dependencies have all been added, so an alternative that another package requires outright wins.
    Roots not installed here are kept but contribute no dependencies.
    """
    allowed = set(roots)
    queue = list(allowed)
    deferred: list[list[str]] = []

    def satisfied(group: list[str]) -> bool:
        return any(name in allowed or any(p in allowed for p in installed.provides.get(name, ())) for name in group)

    def choice(group: list[str]) -> str | None:
        for name in group:
            if name in installed.depends:
                return name
            providers = installed.provides.get(name, [])
            if providers:
                return providers[0]
        return None

    while queue or deferred:
        while queue:
            for group in installed.depends.get(queue.pop(), ()):
                if len(group) == 1 and group[0] in installed.depends:
                    if group[0] not in allowed:
                        allowed.add(group[0])
                        queue.append(group[0])
                else:
                    deferred.append(group)
        if not deferred:
            break
        group = deferred.pop(0)
        if not satisfied(group):
            picked = choice(group)
            if picked is not None:
                allowed.add(picked)
                queue.append(picked)
    return allowed


# --- programs to packages -------------------------------------------------------------------------------------------

def dpkg_candidates(path: str) -> list[str]:
    """Where dpkg's database may record path: itself and its /usr-merged twin (/usr/bin/x <-> /bin/x)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "usr" and parts[2] in MERGED_DIRS:
        return [path, "/" + "/".join(parts[2:])]
    if len(parts) > 2 and parts[1] in MERGED_DIRS:
        return [path, "/usr" + path]
    return [path]


def dpkg_owners(paths: Iterable[str]) -> dict[str, list[str]]:
    """{path: [package, ...]} for the paths dpkg's database records, by batched `dpkg -S` calls.

    Paths no package owns are absent. Architecture qualifiers are dropped (libc6:amd64 -> libc6); diversion lines
    are skipped. Paths with shell wildcard characters would be patterns to dpkg and are not asked about.
    """
    wanted = sorted({p for p in paths if p.startswith("/") and not re.search(r"[*?\[\]\\]", p)})
    owners: dict[str, list[str]] = {}
    for start in range(0, len(wanted), DPKG_BATCH):
        proc = subprocess.run(["dpkg", "-S", *wanted[start:start + DPKG_BATCH]], capture_output=True, text=True,
                              check=False)  # 1 when any path is unowned; the others are still printed
        for line in proc.stdout.splitlines():
            match = re.match(r"^(?!diver)(.+?): (/.*)$", line)
            if match and match.group(2) in wanted:
                owners[match.group(2)] = [p.strip().split(":", 1)[0] for p in match.group(1).split(",")]
    return owners


def ignored_roots(repo: str = REPO) -> dict[str, str]:
    """{absolute real directory: IGNORED_WHY key} of the roots whose programs are not Debian's (module docstring)."""
    roots = {repo: "repository"}  # .venv, even a link to another checkout's, is a virtual environment: _in_venv
    venv = os.path.join(repo, ".venv")
    if os.path.isdir(venv):
        home = _venv_home(venv)
        if home and not os.path.realpath(home).startswith("/usr/"):  # a Debian python3 is checked like any program
            roots[os.path.dirname(os.path.realpath(home))] = "python"
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if os.path.isdir(pyenv):
        roots[pyenv] = "pyenv"
    for home_dir, why in (("~/.cargo", "rust"), ("~/.rustup", "rust"), ("~/.ansible", "ansible")):
        if os.path.isdir(os.path.expanduser(home_dir)):
            roots[os.path.expanduser(home_dir)] = why
    for temp in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        roots[temp] = "temp"
    roots[TEST_AREA] = "test-area"
    return {os.path.realpath(root): why for root, why in roots.items()}


def _venv_home(venv: str) -> str | None:
    """The `home` directory of venv/pyvenv.cfg: where the interpreter the venv was made from lives."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg"), encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition("=")
                if key.strip() == "home":
                    return value.strip()
    except OSError:
        return None
    return None


def _under(path: str, roots: dict[str, str]) -> str | None:
    for root, why in roots.items():
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return why
    return "venv" if _in_venv(path) else None


def _in_venv(path: str) -> bool:
    """Whether a directory above `path` is a Python virtual environment (holds pyvenv.cfg, PEP 405)."""
    parent = os.path.dirname(path)
    while parent not in ("/", ""):
        if os.path.isfile(os.path.join(parent, "pyvenv.cfg")):
            return True
        parent = os.path.dirname(parent)
    return False


@dataclass
class Report:
    """The outcome: packages outside the allowed set, programs no package owns, and what was skipped.

    bad[package] = an executed program it provided; unowned = programs not under ignored roots that no package owns;
    owners[program] = its packages; skipped[program] = the IGNORED_WHY key of its root (paths as recorded).
    """

    bad: dict[str, str] = field(default_factory=dict)
    unowned: list[str] = field(default_factory=list)
    owners: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.unowned


def check(programs: Iterable[str], allowed: set[str], roots: dict[str, str]) -> Report:
    """Map each executed program (an absolute path, links resolved, as exec_watch.py records it) to its package."""
    report = Report()
    asked: dict[str, list[str]] = {}
    for program in programs:
        why = _under(program, roots)
        if why:
            report.skipped[program] = why
        else:
            asked[program] = dpkg_candidates(program)
    owners = dpkg_owners(p for candidates in asked.values() for p in candidates)
    for program, candidates in asked.items():
        packages = next((owners[c] for c in candidates if c in owners), None)
        if packages is None:
            report.unowned.append(program)
            continue
        report.owners[program] = packages
        if not any(p in allowed for p in packages):
            for package in packages:
                report.bad.setdefault(package, program)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install_closure.py", description=__doc__.splitlines()[0])
    parser.add_argument("list", help="the executed programs, as scripts/exec_watch.py writes them")
    parser.add_argument("--fresh", help="the fresh-machine package list (default: the first of "
                        + ", ".join(FRESH_CANDIDATES) + ")")
    parser.add_argument("--packages", default=PACKAGES_FILE, help="setup's package list (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="also print each package and a program it provided")
    args = parser.parse_args(argv)
    try:
        fresh = read_fresh_packages(args.fresh or default_fresh_list())
        setup = read_setup_packages(args.packages)
        try:
            with open(args.list, encoding="utf-8", errors="surrogateescape") as handle:
                programs = executed_programs(handle)
        except OSError as exc:
            raise InputError(f"cannot read the list of executed programs {args.list}: {exc.strerror}") from exc
        installed = installed_packages()
    except InputError as exc:
        print(f"install_closure: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in setup if p not in installed.depends]
    if missing:
        print("install_closure: not installed here, run `make setup` first: " + " ".join(missing), file=sys.stderr)
    allowed = dependency_closure(set(fresh) | set(setup), installed)
    report = check(programs, allowed, ignored_roots())
    packages = sorted({p for found in report.owners.values() for p in found})
    print(f"install_closure: {len(programs)} programs executed, {len(report.skipped)} under ignored roots, "
          f"{len(packages)} Debian packages; allowed: {len(fresh)} fresh-machine + {len(setup)} setup packages, "
          f"{len(allowed)} with their dependencies")
    if args.verbose:
        first: dict[str, str] = {}
        for program, found in report.owners.items():
            for package in found:
                first.setdefault(package, program)
        for package in packages:
            origin = "setup" if package in setup else "fresh" if package in fresh else "dependency"
            print(f"  {package:32} {origin:10} {first[package]}")
    for package, program in sorted(report.bad.items()):
        print(f"install_closure: package {package} (ran {program}) is neither on a fresh machine nor installed by "
              "scripts/setup.sh: add it to scripts/packages.txt")
    for program in report.unowned:
        print(f"install_closure: {program} belongs to no Debian package and lies outside the ignored roots "
              f"({', '.join(IGNORED_WHY)})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
