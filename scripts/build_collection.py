"""Build the Ansible collection cocos.libvirt from this repository's own layout (`make collection`).

    .venv/bin/python scripts/build_collection.py [--output build/collection]

The repository keeps library/, module_utils/, roles/ and playbooks/ where ansible.cfg finds them. This script lays
out a copy the way a collection is organised and lets ansible-galaxy pack it:

    collection/ (galaxy.yml, meta/, README.md, tests/)  -> the collection root
    library/*.py                 -> plugins/modules/            imports, doc fragments, M() and examples by FQCN
    module_utils/<package>/      -> plugins/module_utils/<package>/   unchanged (each imports itself relatively):
                                    cocos_libvirt (the libvirt library), cocos_alpine (the Alpine overlay)
    plugins/doc_fragments/       -> plugins/doc_fragments/
    roles/, playbooks/, site.yml -> roles/, playbooks/         modules and roles called by FQCN
    docs/*.md                    -> docs/
    changelogs/                  -> changelogs/ and CHANGELOG.md, released by antsibull-changelog
    tests/unit: the tests of the library (those importing nothing first-party but module_utils' packages,
                library and their helpers) -> tests/unit/plugins/module_utils/cocos_libvirt/, imports rewritten

Output: <output>/ansible_collections/cocos/libvirt/ (the tree ansible-test runs in) and
<output>/cocos-libvirt-<version>.tar.gz. Any rewrite that leaves a repository-only reference behind stops the
build with BuildError naming the file, rather than shipping content that fails at run time.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # ansible-galaxy and antsibull-changelog live beside this interpreter

UNIT_DEST = "tests/unit/plugins/module_utils/cocos_libvirt"
# Repository tests' own helpers a shipped test may import, and where they come from.
TEST_SUPPORT = {"libvirt_test_driver": "tests/unit/libvirt_test_driver.py", "tests.helpers": "tests/helpers.py"}
# Data the shipped tests read beside themselves (Path(__file__).parent / NAME): recorded domain capabilities and the
# launch security schema. Copied as they are.
TEST_DATA = ("tests/unit/domcaps",)


def util_packages(root: str) -> list[str]:
    """The packages under module_utils/ (directories with an __init__.py), sorted: each ships unchanged."""
    base = os.path.join(root, "module_utils")
    return sorted(name for name in os.listdir(base) if os.path.isfile(os.path.join(base, name, "__init__.py")))


class BuildError(Exception):
    """The repository holds something the collection cannot take as it is; the message names the file."""


class Collection:
    """Names of one collection: namespace.name, version, and where its Python content is imported from.

    packages: the module_utils packages it ships (util_packages()).
    """

    def __init__(self, galaxy: dict[str, Any], packages: Iterable[str]) -> None:
        self.packages = tuple(packages)
        self.namespace = galaxy["namespace"]
        self.name = galaxy["name"]
        self.version = str(galaxy["version"])
        self.fqcn = f"{self.namespace}.{self.name}"
        self.package = f"ansible_collections.{self.namespace}.{self.name}"

    def python_imports(self) -> dict[str, str]:
        """Repository module path -> collection module path, for the modules and the shipped tests."""
        unit = f"{self.package}.{UNIT_DEST.replace('/', '.')}"
        mapping = {"library": f"{self.package}.plugins.modules"}
        for name in self.packages:
            utils = f"{self.package}.plugins.module_utils.{name}"
            mapping.update({f"ansible.module_utils.{name}": utils, f"module_utils.{name}": utils})
        mapping.update({name: f"{unit}.{os.path.basename(path)[:-3]}" for name, path in TEST_SUPPORT.items()})
        return mapping

    def tarball(self) -> str:
        return f"{self.namespace}-{self.name}-{self.version}.tar.gz"


# ---- rewrites (pure functions of text) ---------------------------------------------------------------------------

def _mapped(module: str, mapping: dict[str, str]) -> str:
    for old in sorted(mapping, key=len, reverse=True):
        if module == old or module.startswith(old + "."):
            return mapping[old] + module[len(old):]
    return module


def rewrite_imports(source: str, mapping: dict[str, str]) -> str:
    """Absolute imports of mapping's modules (and their submodules) renamed; relative imports and text untouched.

    Only lines where the parser finds an import statement are edited, so strings and comments never are.
    """
    starts = {node.lineno for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0)}
    lines = source.splitlines(keepends=True)
    for number in sorted(starts):
        line = lines[number - 1]
        match = re.match(r"(\s*from\s+)([\w.]+)", line)
        if match:
            lines[number - 1] = match[1] + _mapped(match[2], mapping) + line[match.end():]
            continue
        code, hash_, comment = line.partition("#")
        head, keyword, names = code.partition("import")
        names = re.sub(r"(?<![\w.])[\w.]+", lambda m: _mapped(m[0], mapping) if m[0] != "as" else m[0], names)
        lines[number - 1] = head + keyword + names + hash_ + comment
    return "".join(lines)


def qualify_doc_fragments(source: str, fragments: Iterable[str], fqcn: str) -> str:
    """`extends_documentation_fragment:` items naming one of our fragments (or a variant, fragment.attributes)
    get the collection prefix: `- cocos_libvirt.attributes` -> `- cocos.libvirt.cocos_libvirt.attributes`."""
    ours = set(fragments)
    lines, inside = source.splitlines(keepends=True), False
    for index, line in enumerate(lines):
        if line.strip().startswith("extends_documentation_fragment:"):
            inside = True
            continue
        item = re.match(r"(\s*-\s+)([\w.]+)(\s*)$", line)
        if inside and item:
            if item[2].split(".")[0] in ours:
                lines[index] = f"{item[1]}{fqcn}.{item[2]}{item[3]}"
        elif line.strip():
            inside = False
    return "".join(lines)


def qualify_module_markup(source: str, modules: Iterable[str], fqcn: str) -> str:
    """Documentation links M(libvirt_domain) -> M(cocos.libvirt.libvirt_domain)."""
    names = "|".join(sorted(modules, key=len, reverse=True))
    return re.sub(rf"\bM\(({names})\)", rf"M({fqcn}.\1)", source)


def qualify_task_modules(text: str, modules: Iterable[str], fqcn: str) -> str:
    """YAML task keys naming our modules (`libvirt_pool:`) become FQCNs (`cocos.libvirt.libvirt_pool:`)."""
    names = "|".join(sorted(modules, key=len, reverse=True))
    return re.sub(rf"^(\s*(?:-\s+)?)({names}):(?=\s|$)", rf"\1{fqcn}.\2:", text, flags=re.M)


def qualify_role_references(text: str, roles: Iterable[str], fqcn: str) -> str:
    """`role: alpine_vm`, include/import_role `name: alpine_vm` and `- alpine_vm` in a roles list get the prefix."""
    names = "|".join(sorted(roles, key=len, reverse=True))
    pattern = rf"^(\s*-\s+(?:role:\s+)?|\s*(?:role|name):\s+)({names})(\s*(?:#.*)?)$"
    return re.sub(pattern, rf"\1{fqcn}.\2\3", text, flags=re.M)


# ---- checks on the result -----------------------------------------------------------------------------------------

def leftover_references(source: str, collection: Collection) -> list[str]:
    """Lines that still import or name the library by its repository path."""
    packages = "|".join(map(re.escape, collection.packages))
    pattern = re.compile(rf"(?<![\w.])((?:ansible\.)?module_utils\.(?:{packages})\b|library\.\w+)")
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        for match in pattern.finditer(line):
            if not line[:match.start()].endswith(collection.package + ".plugins."):
                found.append(f"line {number}: {line.strip()}")
    return found


def unqualified_tasks(data: Any, modules: set[str]) -> list[str]:
    """Keys anywhere in a loaded YAML document that call one of our modules without its FQCN."""
    if isinstance(data, dict):
        return [key for key in data if key in modules] + [
            found for value in data.values() for found in unqualified_tasks(value, modules)]
    if isinstance(data, list):
        return [found for value in data for found in unqualified_tasks(value, modules)]
    return []


# ---- selection of unit tests --------------------------------------------------------------------------------------

def imported_modules(source: str) -> set[str]:
    """Absolute module names a Python file imports (`from a.b import c` gives a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _first_party(name: str, root: str) -> bool:
    """Whether an imported name is this repository's Python (a package or module at the root, or a module beside
    the unit tests, in library/ or in scripts/, which tests put on sys.path); the root's xml/ directory holds no
    Python and does not shadow xml.etree."""
    top = name.split(".")[0]
    if any(os.path.isfile(os.path.join(root, where, top + ".py"))
           for where in ("", "tests/unit", "library", "scripts")):
        return True
    return any(name.endswith(".py") for _dir, _subdirs, files in os.walk(os.path.join(root, top)) for name in files)


def _is_library(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def library_unit_tests(root: str) -> list[str]:
    """tests/unit/test_*.py files that test the library alone, sorted: those importing library or a module_utils
    package, and nothing else of the repository but TEST_SUPPORT."""
    prefixes = ["library", *(f"module_utils.{name}" for name in util_packages(root))]
    selected = []
    unit = os.path.join(root, "tests", "unit")
    for name in sorted(os.listdir(unit)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        with open(os.path.join(unit, name), encoding="utf-8") as handle:
            ours = {module for module in imported_modules(handle.read()) if _first_party(module, root)}
        if any(_is_library(m, prefixes) for m in ours) and all(_is_library(m, prefixes) or m in TEST_SUPPORT
                                                                  for m in ours):
            selected.append(name)
    return selected


# ---- staging ------------------------------------------------------------------------------------------------------

def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _python_files(directory: str) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".py"))


def _checked_python(text: str, collection: Collection, where: str) -> str:
    left = leftover_references(text, collection)
    if left:
        raise BuildError(f"{where} still refers to the repository layout: " + "; ".join(left))
    return text


def _checked_yaml(text: str, modules: set[str], where: str) -> str:
    bare = unqualified_tasks(yaml.safe_load(text), modules)
    if bare:
        raise BuildError(f"{where} calls {', '.join(sorted(set(bare)))} without the collection's FQCN")
    return text


def stage_modules(root: str, dest: str, collection: Collection, modules: set[str]) -> None:
    fragments = [name[:-3] for name in _python_files(os.path.join(root, "plugins", "doc_fragments"))]
    for name in _python_files(os.path.join(root, "library")):
        text = rewrite_imports(_read(os.path.join(root, "library", name)), collection.python_imports())
        text = qualify_module_markup(qualify_doc_fragments(text, fragments, collection.fqcn), modules, collection.fqcn)
        text = qualify_task_modules(text, modules, collection.fqcn)  # EXAMPLES
        where = f"library/{name}"
        _checked_yaml(_assigned(text, "EXAMPLES", where), modules, f"{where} EXAMPLES")
        _write(os.path.join(dest, "plugins", "modules", name), _checked_python(text, collection, where))
    for name in fragments:
        _write(os.path.join(dest, "plugins", "doc_fragments", name + ".py"),
               _read(os.path.join(root, "plugins", "doc_fragments", name + ".py")))
    for package in collection.packages:
        utils = os.path.join(root, "module_utils", package)
        for name in _python_files(utils):
            text = _read(os.path.join(utils, name))
            _write(os.path.join(dest, "plugins", "module_utils", package, name),
                   _checked_python(text, collection, f"module_utils/{package}/{name}"))


def _assigned(source: str, variable: str, where: str) -> str:
    """The string a module assigns to a top-level variable (DOCUMENTATION, EXAMPLES, RETURN)."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == variable for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise BuildError(f"{where} has no {variable} string")


def stage_yaml(root: str, dest: str, collection: Collection, modules: set[str], roles: list[str]) -> None:
    """Both roles and the playbooks (site.yml becomes playbooks/site.yml), modules and roles called by FQCN."""
    sources = [(os.path.join("roles", role), os.path.join("roles", role)) for role in roles]
    sources += [("playbooks", "playbooks")]
    for source, target in sources:
        shutil.copytree(os.path.join(root, source), os.path.join(dest, target),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    playbooks = [os.path.join("playbooks", name) for name in sorted(os.listdir(os.path.join(dest, "playbooks")))]
    shutil.copyfile(os.path.join(root, "site.yml"), os.path.join(dest, "playbooks", "site.yml"))
    playbooks.append(os.path.join("playbooks", "site.yml"))
    for directory, _subdirs, files in os.walk(os.path.join(dest, "roles")):
        for name in files:
            if name.endswith((".yml", ".yaml")):
                path = os.path.join(directory, name)
                text = qualify_task_modules(_read(path), modules, collection.fqcn)
                _write(path, _checked_yaml(text, modules, os.path.relpath(path, dest)))
    for relative in playbooks:
        path = os.path.join(dest, relative)
        text = qualify_role_references(qualify_task_modules(_read(path), modules, collection.fqcn), roles,
                                       collection.fqcn)
        _write(path, _checked_yaml(text, modules, relative))


def stage_unit_tests(root: str, dest: str, collection: Collection) -> list[str]:
    """Copy the library's unit tests and the helpers they use; returns the test file names."""
    tests = library_unit_tests(root)
    support: set[str] = set()
    for name in tests:
        support |= imported_modules(_read(os.path.join(root, "tests", "unit", name))) & set(TEST_SUPPORT)
    files = [(os.path.join("tests", "unit", name), name) for name in tests]
    files += [(TEST_SUPPORT[module], os.path.basename(TEST_SUPPORT[module])) for module in sorted(support)]
    for source, name in files:
        text = rewrite_imports(_read(os.path.join(root, source)), collection.python_imports())
        _write(os.path.join(dest, UNIT_DEST, name), _checked_python(text, collection, source))
    for data in TEST_DATA:
        shutil.copytree(os.path.join(root, data), os.path.join(dest, UNIT_DEST, os.path.basename(data)),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tests


def tool_env() -> dict[str, str]:
    """Environment for the Ansible tools run on the staged tree: this interpreter's bin first (antsibull-changelog
    runs ansible-doc), and no ANSIBLE_CONFIG, whose library paths would mix the repository's modules in."""
    env = {key: value for key, value in os.environ.items() if key != "ANSIBLE_CONFIG"}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return env


def release_changelog(dest: str, version: str, date: str) -> None:
    """Lint the fragments, then release them into changelogs/changelog.yaml and CHANGELOG.md."""
    tool = os.path.join(BIN, "antsibull-changelog")
    lint = subprocess.run([tool, "lint"], cwd=dest, env=tool_env(), capture_output=True, text=True, check=False)
    if lint.returncode != 0 or lint.stdout.strip():
        raise BuildError(f"changelog fragments: {lint.stdout.strip() or lint.stderr.strip()}")
    release = subprocess.run([tool, "release", "--version", version, "--date", date], cwd=dest, env=tool_env(),
                             capture_output=True, text=True, check=False)
    if release.returncode != 0:
        raise BuildError(f"antsibull-changelog release failed: {release.stderr.strip() or release.stdout.strip()}")


def source_date(root: str) -> str:
    """The last commit's date (YYYY-MM-DD), so one commit always builds the same changelog; today outside git."""
    proc = subprocess.run(["git", "log", "-1", "--format=%cs"], cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode == 0 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", proc.stdout.strip()):
        return proc.stdout.strip()
    return datetime.date.today().isoformat()


def load_collection(root: str) -> Collection:
    return Collection(yaml.safe_load(_read(os.path.join(root, "collection", "galaxy.yml"))), util_packages(root))


def stage(root: str, dest: str, collection: Collection) -> None:
    """Lay out the collection in dest (emptied first)."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(os.path.join(root, "collection"), dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    modules = {name[:-3] for name in _python_files(os.path.join(root, "library"))}
    roles = sorted(os.listdir(os.path.join(root, "roles")))
    stage_modules(root, dest, collection, modules)
    stage_yaml(root, dest, collection, modules, roles)
    stage_unit_tests(root, dest, collection)
    os.makedirs(os.path.join(dest, "docs"))
    for name in sorted(os.listdir(os.path.join(root, "docs"))):
        if name.endswith(".md"):
            shutil.copyfile(os.path.join(root, "docs", name), os.path.join(dest, "docs", name))
    shutil.copytree(os.path.join(root, "changelogs"), os.path.join(dest, "changelogs"))
    release_changelog(dest, collection.version, source_date(root))


def build(root: str, output: str) -> str:
    """Stage the collection under output/ansible_collections/<namespace>/<name> and pack it; returns the tarball."""
    collection = load_collection(root)
    dest = os.path.join(output, "ansible_collections", collection.namespace, collection.name)
    stage(root, dest, collection)
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force",
                           "--output-path", output, dest], env=tool_env(), capture_output=True, text=True,
                          check=False)
    tarball = os.path.join(output, collection.tarball())
    if proc.returncode != 0 or not os.path.exists(tarball):
        raise BuildError(f"ansible-galaxy collection build failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Ansible collection cocos.libvirt from this repository.")
    parser.add_argument("--output", default=os.path.join(ROOT, "build", "collection"),
                        help="directory for the tarball and the staged tree (default: build/collection)")
    args = parser.parse_args(argv)
    try:
        print(build(ROOT, os.path.abspath(args.output)))
    except BuildError as exc:
        print(f"build_collection: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
