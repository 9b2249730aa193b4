"""The collection as a user gets it: built from this checkout into a temporary directory by
scripts/build_collection.py, then installed from its tarball with `ansible-galaxy collection install` into a
scratch collections path outside the repository (ansible-test also needs a path ending in
ansible_collections/cocos/libvirt that no git checkout encloses, or it would see only tracked files).

Commands run with a configuration of their own: no library, module_utils or roles path of the repository, so
only the installed collection can answer a `cocos.libvirt.*` name.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import build_collection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class InstalledCollection:
    tarball: Path
    collections_path: Path  # the directory holding ansible_collections/
    env: dict[str, str]  # for ansible commands: only this collections path, nothing of the repository
    home: Path  # scratch working directory with the ansible.cfg behind env

    @property
    def root(self) -> Path:
        return self.collections_path / "ansible_collections" / "cocos" / "libvirt"

    def run(self, *args: str | Path, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
        """A command from the venv's bin (ansible-playbook, ansible-doc, ansible-test ...) with env."""
        command = [str(BIN / str(args[0])), *map(str, args[1:])]
        return subprocess.run(command, cwd=cwd or self.home, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory: pytest.TempPathFactory) -> InstalledCollection:
    tarball = Path(build_collection.build(str(ROOT), str(tmp_path_factory.mktemp("collection-build"))))
    collections_path = tmp_path_factory.mktemp("collections")
    home = tmp_path_factory.mktemp("collection-home")
    empty = home / "empty"
    empty.mkdir()
    (home / "ansible.cfg").write_text(
        "[defaults]\n"
        f"collections_path = {collections_path}\n"
        f"roles_path = {empty}\n"
        f"library = {empty}\n"
        f"module_utils = {empty}\n"
        "retry_files_enabled = false\n"
        "nocows = true\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update({"ANSIBLE_CONFIG": str(home / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"})
    installed = InstalledCollection(tarball, collections_path, env, home)
    proc = installed.run("ansible-galaxy", "collection", "install", "--offline", "-p", collections_path, tarball)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (installed.root / "MANIFEST.json").is_file(), proc.stdout
    return installed
