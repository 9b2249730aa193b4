"""No skip hides a missing dependency that setup installs: every test source is read (ast) and `importorskip` is
refused everywhere (the pinned packages are in requirements.txt: a missing one must fail), and every `pytest.skip`,
`skipif` or `mark.skip` must be one of the few listed below, each a condition of the machine that no setup step
changes (a real TEE, a KVM host of another kind, not being root). A missing tool, package or guest ISO fails
instead, naming what to run (`make setup`, `make guest`)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# (file, words of the reason): why skipping there is not hiding a dependency.
ALLOWED = {
    ("tests/unit/test_agent_attestation.py", "a real TEE guest"),  # the test needs the absence of TEE devices
    ("tests/unit/test_role_preflight.py", "only meaningful on a kvm_pvm host"),  # the host's kind of hypervisor
    ("tests/unit/test_agent_runner.py", "switching users needs root"),  # who runs the suite, not what is installed
    ("tests/unit/test_agent_runner.py", "the leak needs a root agent"),
    ("tests/unit/test_setup_script.py", "needs root to drop to nobody"),
}


def _reason(call: ast.Call) -> str:
    for node in [*call.args, *(k.value for k in call.keywords if k.arg in ("reason", "msg"))]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return ast.unparse(node)
    return ""


def skips(path: Path) -> list[tuple[int, str, str]]:
    """(line, kind, reason) of every importorskip, skip, skipif and mark.skip call in `path`."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            kind = name.rsplit(".", 1)[-1]
            if kind in ("importorskip", "skip", "skipif") and ("pytest" in name or name == kind):
                found.append((node.lineno, kind, _reason(node)))
        elif isinstance(node, ast.Attribute) and id(node) not in called and ast.unparse(node) == "pytest.mark.skip":
            found.append((node.lineno, "skip", ""))  # a bare @pytest.mark.skip: no reason at all
    return sorted(found)


def sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts and p.name != Path(__file__).name)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_skip_hides_a_dependency(path: Path):
    rel = str(path.relative_to(ROOT))
    bad = [f"{line}: {kind}({reason!r})" for line, kind, reason in skips(path)
           if kind == "importorskip" or not any(rel == f and words in reason for f, words in ALLOWED)]
    assert not bad, f"{rel} skips where it must fail (naming what to run: make setup, make guest):\n" + "\n".join(bad)


def test_the_check_finds_each_kind(tmp_path: Path):
    source = tmp_path / "test_x.py"
    source.write_text(
        "import pytest\nlibvirt = pytest.importorskip('libvirt')\n"
        "@pytest.mark.skipif(True, reason='busybox missing')\ndef test_a():\n"
        "    pytest.skip('build the guest first: make guest')\n@pytest.mark.skip\ndef test_b():\n    pass\n")
    assert [(line, kind) for line, kind, _ in skips(source)] == [(2, "importorskip"), (3, "skipif"), (5, "skip"),
                                                                  (6, "skip")]
    assert skips(source)[2][2] == "build the guest first: make guest"
