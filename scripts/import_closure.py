"""Check that requirements.txt pins every third-party package the code imports, and nothing else.

    .venv/bin/python scripts/import_closure.py      # run by tests/unit/test_import_closure.py

Two directions, both failing with exit status 1 and the names involved:

- Every top-level module a Python file of the repository imports (product code, scripts, bench and tests: all of
  them, read with ast, relative imports left out) is the standard library (sys.stdlib_module_names), our own (a
  module or package somewhere in the repository, however it reaches sys.path), one of DEBIAN_MODULES (imported by
  Debian's /usr/bin/python3 from a package scripts/packages.txt installs), or provided by a distribution that
  requirements.txt pins itself. A module that is installed only as another pin's dependency (cryptography once
  was) works until that pin drops it: it must be pinned where it is used.
- Every pin provides a module something imports, or is a tool the build runs: TOOLS names each with the file and
  the text that shows it is still run, so an entry whose use disappears fails too.

Module -> distribution comes from importlib.metadata.packages_distributions() of the running interpreter, so run it
with the .venv's Python (`libvirt` comes from libvirt-python, `yaml` from PyYAML, `google.protobuf` from protobuf).
"""
from __future__ import annotations

import argparse
import ast
import functools
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", ".venv", "build", ".cache", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}

# Modules the system interpreter imports from Debian packages, with the package in scripts/packages.txt.
DEBIAN_MODULES = {"virtinst": "virtinst"}  # tests/integration/virt_install_print_xml.py runs under /usr/bin/python3

# Pins no Python file imports, and where the build runs them: (file, regular expression that must match in it).
TOOLS = {
    "ruff": ("Makefile", r"/bin/ruff check"),
    "mypy": ("Makefile", r"/bin/mypy "),
    "yamllint": ("Makefile", r"/bin/yamllint "),
    "ansible-lint": ("Makefile", r"/bin/ansible-lint "),
    "molecule": ("Makefile", r"/bin/molecule test"),
    "grpcio-tools": ("scripts/gen_protos.sh", r"-m grpc_tools\.protoc"),
    "antsibull-changelog": ("scripts/build_collection.py", r'"antsibull-changelog"'),
    "pytest-timeout": ("pyproject.toml", r"(?m)^timeout = \d+"),  # the suite-wide per-test limit
    "pytest-xdist": ("tests/collection/test_collection_ansible_test.py", r'ansible_test\("units"\)'),  # runs -n
}


@functools.cache
def installed_distributions() -> dict[str, list[str]]:
    """importlib.metadata.packages_distributions(), read once: it scans every installed distribution (seconds)."""
    return dict(importlib.metadata.packages_distributions())


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: PyYAML, pyyaml and py_yaml are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> list[str]:
    """The normalized distribution names requirements.txt pins ("name==version" lines; comments ignored)."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.split("#", 1)[0].strip() for line in handle]
    return [normalize(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]) for line in lines if line]


def python_files(root: str) -> list[str]:
    """Every .py file under root, outside SKIP_DIRS and hidden directories."""
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        found.extend(os.path.join(directory, name) for name in sorted(files) if name.endswith(".py"))
    return found


def imported_modules(path: str) -> set[str]:
    """Top-level names of the absolute imports in one Python file (`import a.b`, `from a.b import c` -> a)."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def own_modules(files: Iterable[str]) -> set[str]:
    """Names our own files can be imported by: each file's stem and each directory holding Python files."""
    names: set[str] = set()
    for path in files:
        names.add(os.path.splitext(os.path.basename(path))[0])
        names.update(os.path.relpath(path, REPO).split(os.sep)[:-1])
    # The collection's tests import the library as ansible_collections.cocos.libvirt (its installed layout).
    names.add("ansible_collections")
    return names


def check(files: Iterable[str], pins: list[str], debian_packages: Iterable[str], repo: str = REPO,
          distributions: dict[str, list[str]] | None = None) -> list[str]:
    """Problems, one sentence each, of the imports of files against pins (normalized names); [] when all is well.

    distributions maps a top-level module to the distributions providing it (default: packages_distributions()).
    """
    files = list(files)
    provided = distributions if distributions is not None else installed_distributions()
    own = own_modules(files)
    users: dict[str, str] = {}
    for path in files:
        for module in imported_modules(path):
            users.setdefault(module, os.path.relpath(path, repo))
    problems = []
    used_pins = set()
    for module, user in sorted(users.items()):
        if module in sys.stdlib_module_names or module in own or module == "__future__":
            continue
        if module in DEBIAN_MODULES:
            if DEBIAN_MODULES[module] not in debian_packages:
                problems.append(f"{user} imports {module}, from Debian's {DEBIAN_MODULES[module]}, which "
                                "scripts/packages.txt does not install")
            continue
        dists = [normalize(d) for d in provided.get(module, [])]
        pinned = [d for d in dists if d in pins]
        used_pins.update(pinned)
        if not dists:
            problems.append(f"{user} imports {module}, which no installed distribution provides: pin it")
        elif not pinned:
            problems.append(f"{user} imports {module} (from {', '.join(sorted(set(dists)))}), which requirements.txt "
                            "does not pin: it is only there as another package's dependency")
    for pin in pins:
        if pin in used_pins:
            continue
        tool = TOOLS.get(pin)
        if tool is None:
            problems.append(f"requirements.txt pins {pin}, which nothing imports and no TOOLS entry runs: remove it")
            continue
        with open(os.path.join(repo, tool[0]), encoding="utf-8") as handle:
            if not re.search(tool[1], handle.read()):
                problems.append(f"requirements.txt pins {pin} as a tool, but {tool[0]} no longer runs it "
                                f"({tool[1]!r}): remove the pin and its TOOLS entry")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="import_closure.py", description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", default=os.path.join(REPO, "requirements.txt"))
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    from scripts.install_closure import read_setup_packages  # the one reader of scripts/packages.txt

    problems = check(python_files(REPO), read_pins(args.requirements), read_setup_packages())
    for problem in problems:
        print(f"import_closure: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
