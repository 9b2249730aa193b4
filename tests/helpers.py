"""Run one of our Ansible modules the way a user does, and hand back its result dict.

Integration tests use this instead of importing modules, so they exercise the real path:
ansible ad-hoc from .venv, ansible.cfg (library, module_utils, inventory), argument parsing,
check mode and diff mode.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSIBLE = os.path.join(ROOT, ".venv", "bin", "ansible")


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that makes ansible use this repository's config wherever the test runs from."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": os.path.join(ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", ""),
        # Our result_file callback keeps diff, warnings and failed, which the tree callback drops.
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "result_file",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    })
    env.update(extra or {})
    return env


def run_module(name: str, args: dict[str, Any], check: bool = False, diff: bool = False,
               timeout: int = 600, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run module `name` with `args` on localhost; return its result dict (failed runs included).

    result["failed"] is always set; "_rc" and "_stderr" carry ansible's exit status and stderr.

    The result_file callback writes the exact result JSON to a file, which is sturdier than scraping
    stdout. Raises RuntimeError only when ansible produced no result at all.
    """
    with tempfile.TemporaryDirectory(prefix="cocos-run-module-") as out:
        cmd = [ANSIBLE, "localhost", "-m", name, "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env({"COCOS_RESULT_DIR": out, **(env or {})}),
                              capture_output=True, text=True, timeout=timeout, check=False)
        path = os.path.join(out, "localhost.json")
        if not os.path.exists(path):
            raise RuntimeError(f"ansible gave no result for {name} (rc={proc.returncode}):\n"
                               f"{proc.stdout}\n{proc.stderr}")
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    result["_rc"] = proc.returncode
    result["_stderr"] = proc.stderr
    return result
