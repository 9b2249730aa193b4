"""Helpers that tests in several areas share: running our Ansible modules as a user does, removing libvirt objects
whatever state they are in. It ships with the collection's unit tests, so it imports nothing of the repository."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSIBLE = os.path.join(ROOT, ".venv", "bin", "ansible")
# The system interpreter is reachable by nobody (the agent runs algorithms as nobody when we are root);
# pyenv's and the venv's live under /root.
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@functools.cache
def library_module(name: str) -> Any:
    """library/<name>.py imported as a Python module (its DOCUMENTATION, argument_spec(), main()).

    Needs tests/conftest.py's path setup: the modules import the library through Ansible's module_utils.
    """
    spec = importlib.util.spec_from_file_location(f"cocos_library_{name}", os.path.join(ROOT, "library", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


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


def run_module(name: str, args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run library/<name>.py's main() in this process with `args`; return its result dict as Ansible reports it.

    The module's own main(), AnsibleModule (argument_spec, aliases, choices, mutually exclusive options, check and
    diff mode from `_ansible_check_mode`/`_ansible_diff`), exit_json/fail_json and its JSON encoding all run as
    under Ansible; only AnsiballZ packing, the ssh-less local connection and the controller's process starts are
    left out (about 2 s a run). Tests of module logic use this; run_module_via_ansible() keeps the real path for
    each module's check/apply/apply/check contract, and a test checks both give the same result.

    result["failed"] is always set; "warnings" is a list of text, as the controller's result has it. An exception
    the module does not handle propagates (under Ansible it would be a traceback in module_stderr).
    """
    from ansible.module_utils import _internal
    from ansible.module_utils.common import warnings
    from ansible.module_utils.testing import patch_module_args

    module = library_module(name)
    out = io.StringIO()
    warnings._global_warnings.clear()  # one process stands for many module runs: start each with none
    warnings._global_deprecations.clear()
    # A module never runs in the controller: once anything in this process has imported the controller's `ansible`
    # package (another test did), warn() would go to the controller's display instead of the result.
    was_controller, _internal.is_controller = _internal.is_controller, False
    try:
        with patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": diff}), \
                contextlib.redirect_stdout(out):
            module.main()
    except SystemExit:
        pass
    else:
        raise AssertionError(f"{name}: main() returned without exit_json or fail_json")
    finally:
        _internal.is_controller = was_controller
        warnings._global_warnings.clear()
        warnings._global_deprecations.clear()
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    result.setdefault("failed", False)
    result.setdefault("changed", False)  # as the controller fills it in
    if "warnings" in result:
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    return result


def run_module_via_ansible(name: str, args: dict[str, Any], check: bool = False, diff: bool = False,
                           timeout: int = 600, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run module `name` with `args` on localhost through `ansible` ad hoc; return its result dict (failed runs
    included).

    The real path: ansible from .venv, ansible.cfg (library, module_utils, inventory), AnsiballZ, argument parsing,
    check mode and diff mode. About 2 s a run (the controller's start), so tests keep it for each module's
    check/apply/apply/check contract and use run_module() for the rest.

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


def run_steps_via_ansible(steps: list[tuple[str, dict[str, Any], bool]], timeout: int = 600) -> list[dict[str, Any]]:
    """Run each (module, args, check mode) step, in order, as the tasks of ONE ansible-playbook run on localhost
    with diff mode on; return each task's result dict (failed ones included: tasks ignore errors).

    The contract tests' real path (AnsiballZ, argument parsing, check mode per task) for one controller start
    instead of one per run. Raises RuntimeError when the play produced fewer results than steps.
    """
    tasks = [{"name": f"step {index}", module: args, "check_mode": check, "diff": True, "ignore_errors": True}
             for index, (module, args, check) in enumerate(steps)]
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]  # ansible.cfg's inventory, as ad hoc
    with tempfile.TemporaryDirectory(prefix="cocos-run-steps-") as out:
        playbook = os.path.join(out, "steps.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            json.dump(play, handle)  # JSON is YAML, and none of our test arguments holds "{{"
        proc = subprocess.run([ANSIBLE + "-playbook", playbook], cwd=ROOT,
                              env=ansible_env({"COCOS_RESULT_DIR": out}), capture_output=True, text=True,
                              timeout=timeout, check=False)
        path = os.path.join(out, "localhost.jsonl")
        lines = open(path, encoding="utf-8").read().splitlines() if os.path.exists(path) else []
    if len(lines) != len(steps):
        raise RuntimeError(f"ansible-playbook gave {len(lines)} results for {len(steps)} module runs "
                           f"(rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return [json.loads(line) for line in lines]


def drop_domain(dom: Any) -> None:
    """Stop a libvirt domain if it runs, then undefine it with its NVRAM and TPM state (a UEFI or TPM
    guest refuses a plain undefine), through the product's own undefine."""
    from module_utils.cocos_libvirt.domain import undefine  # here: the agent tests need no libvirt-python

    if dom.isActive():
        dom.destroy()
    undefine(dom)


def drop_network(net: Any) -> None:
    """Stop a libvirt network if it runs, then undefine it."""
    if net.isActive():
        net.destroy()
    net.undefine()


def drop_pool(pool: Any) -> None:
    """Delete a libvirt pool's volumes (an inactive pool lists none), stop it if it runs, then undefine it."""
    for vol in pool.listAllVolumes() if pool.isActive() else []:
        vol.delete()
    if pool.isActive():
        pool.destroy()
    pool.undefine()


def drop(lookup: Callable[[str], Any], name: str, finish: Callable[[Any], None]) -> None:
    """finish(lookup(name)), quietly doing nothing when libvirt says no (never created, or already gone)."""
    import libvirt  # here, not at the top: the agent tests import this module and need no libvirt-python

    try:
        finish(lookup(name))
    except libvirt.libvirtError:
        pass


def drop_domains(conn: Any, prefix: str) -> None:
    """Drop every domain on `conn` whose name starts with `prefix` (others share the connection)."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            drop_domain(dom)


def check_apply_apply_check(module: str, args: dict[str, Any], via_ansible: bool = False) -> list[dict[str, Any]]:
    """The module contract: check (changed), apply (changed), apply (unchanged), check (unchanged), with check mode
    predicting the real change exactly (same actions, same diff). In-process (run_module), or with via_ansible as
    one ansible-playbook run of four tasks (each module's contract test). Returns the four results."""
    checks = (True, False, False, True)
    if via_ansible:
        results = run_steps_via_ansible([(module, args, check) for check in checks])
    else:
        results = [run_module(module, args, check=check, diff=True) for check in checks]
    for result in results:
        assert not result["failed"], result.get("msg")
    assert [r["changed"] for r in results] == [True, True, False, False], [r.get("actions") for r in results]
    assert results[0].get("actions") == results[1].get("actions") and results[0]["diff"] == results[1]["diff"]
    return results
