"""Product code never imports test code: no file under the product's folders imports `tests`, imports a module that
only exists under tests/ (e2e_support, run_support, agent_testlib, ...), or puts a tests/ folder on sys.path or
PYTHONPATH. Read from the sources (ast), so a branch not executed by any test is checked too."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("library", "module_utils", "manager_api", "agent", "guest", "scripts", "bench")
TEST_MODULES = {path.stem for path in (ROOT / "tests").rglob("*.py")} - {"__init__", "conftest"}
PRODUCT_MODULES = {path.stem for folder in PRODUCT for path in (ROOT / folder).rglob("*.py")}
PATH_SETTING = re.compile(r"PYTHONPATH=\S*tests")


def violations(path: Path) -> list[str]:
    """Each place in `path` (a Python source) that imports test code or puts tests/ on sys.path, as "line: what"."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "tests" or (top in TEST_MODULES and top not in PRODUCT_MODULES):
                found.append(f"{node.lineno}: imports {name}")
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # prose may name both
        if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)) and not docstring:  # sys.path.insert(...), [:0] =
            segment = ast.unparse(node)
            if "sys.path" in segment and "tests" in segment:
                found.append(f"{node.lineno}: puts tests/ on sys.path: {segment.splitlines()[0]}")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def product_sources() -> list[Path]:
    return sorted(path for folder in PRODUCT for path in (ROOT / folder).rglob("*") if path.is_file()
                  and path.suffix in (".py", ".sh") and "__pycache__" not in path.parts)


def test_the_product_folders_hold_python_to_check():
    assert len([p for p in product_sources() if p.suffix == ".py"]) > 50  # a wrong ROOT would check nothing


@pytest.mark.parametrize("path", product_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_file_does_not_import_tests(path: Path):
    if path.suffix == ".sh":
        found = [f"{number}: {line.strip()}" for number, line in enumerate(path.read_text().splitlines(), 1)
                 if PATH_SETTING.search(line)]
    else:
        found = violations(path)
    assert not found, f"{path.relative_to(ROOT)} uses test code:\n" + "\n".join(found)


def test_the_check_finds_each_kind(tmp_path: Path):
    """The checker itself: every way test code got into the product before (scripts/demo_run.py, bench/e2e.py)."""
    source = tmp_path / "bad.py"
    source.write_text(
        "import sys\nfrom pathlib import Path\nROOT = Path(__file__).parent\n"
        "sys.path[:0] = [str(ROOT), str(ROOT / 'tests' / 'integration')]\n"
        "sys.path.insert(0, 'tests/unit')\n"
        "import manager_support as support\nfrom run_support import run_body\nfrom tests.helpers import drop\n"
        "import tests\nfrom guest.demo import run_body as fine\n"
        "\"\"\"A docstring naming tests and sys.path is prose, not a path change.\"\"\"\n")
    assert [line.split(":")[0] for line in violations(source)] == ["4", "5", "6", "7", "8", "9"]
