"""Does a module settle? Run it step by step on the real libvirtd and say which step did not, and why.

A declarative module's promise, step by step: the first run changes the object, a rerun and a check-mode
rerun change nothing, a started object does not report `restart_required`, and `absent` removes it. A
`Step` says what one run passes and what it must report; `settle()` runs the steps in order and keeps
every result; `assert_settled()` fails with one readable report naming each step that broke the promise,
the module's own diff for an unexpected change, and libvirt's live XML against its persistent definition
for an unexpected `restart_required`.

Two ways to run a module, both ending in the same `Outcome`s:
- `run_in_process()`: the manager in module_utils behind an object carrying what `common.run_module`
  reads from an AnsibleModule (params with the module's argument_spec defaults, check_mode, _diff, warn,
  exit_json, fail_json). Milliseconds per run, so a corpus of dozens of objects fits a short suite.
- `playbook_outcomes()`: one real `ansible-playbook` run in which each step is one task looping over
  many objects, for the end-to-end path (AnsiballZ, argument parsing, check mode per task).

Used by tests/integration/test_convergence_corpus.py; written so a small case (a playbook of
../shared/cases/converge/) becomes `settle(module, args, steps)` plus `assert_settled()`. A step's args
override the object's, so metadata-removed.yml reads:

    steps = (*DOMAIN_STEPS[:3], Step("drop metadata", {"xml": WITHOUT}, changed=True),
             Step("rerun", {"xml": WITHOUT}, changed=False), Step("remove", {"state": "absent"}, changed=True))
    assert_settled("case-meta", steps, settle("libvirt_domain", {"name": NAME, "xml": WITH}, steps))

and a run that must fail names the text its message must hold: `Step("create", {}, fails="build")`;
`exists(module, args)` then says whether it left something behind.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import libvirt
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from module_utils.cocos_libvirt import common, domain, network, pool, volume
from tests.helpers import ROOT, ansible_env, library_module

URI = "qemu:///system"
SYSTEM_PYTHON = "/usr/bin/python3"  # virt-install's interpreter: virtinst imports the system's gi and libvirt
PRINT_XML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "virt_install_print_xml.py")
DIFF_LINES = 30  # longest diff a report quotes per step; the rest is counted

# The factory each library/<module>.py hands to common.run_module.
MANAGERS: dict[str, Callable[[Any, Any], Any]] = {
    "libvirt_domain": domain.DomainManager,
    "libvirt_network": network.build_manager,
    "libvirt_pool": pool.build_manager,
    "libvirt_volume": volume.build_manager,
}


# ---- steps and what they must report -----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One run: the arguments it adds to the object's own, check mode or not, and what it must report
    (None: not asserted). `fails`: the run must fail, with this text in its message ("" for any)."""

    label: str
    args: dict[str, Any]
    check: bool = False
    changed: bool | None = None
    restart_required: bool | None = None
    fails: str | None = None

    def describe(self) -> str:
        given = ", ".join(f"{key}: {_short(value)}" for key, value in self.args.items())
        return f"'{self.label}' ({given}{', check mode' if self.check else ''})"


def _short(value: Any, limit: int = 40) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# Define, rerun, check; start, rerun, check (a running guest must not look stale); remove.
DOMAIN_STEPS = (
    Step("define", {"state": "present"}, changed=True),
    Step("rerun", {"state": "present"}, changed=False, restart_required=False),
    Step("check", {"state": "present"}, check=True, changed=False, restart_required=False),
    Step("start", {"state": "running"}, changed=True),
    Step("rerun running", {"state": "running"}, changed=False, restart_required=False),
    Step("check running", {"state": "running"}, check=True, changed=False, restart_required=False),
    Step("remove", {"state": "absent"}, changed=True),
)
# The same for networks and pools, whose run state is `active`.
ACTIVE_STEPS = (
    Step("define", {"active": False}, changed=True),
    Step("rerun", {"active": False}, changed=False, restart_required=False),
    Step("check", {"active": False}, check=True, changed=False, restart_required=False),
    Step("start", {"active": True}, changed=True),
    Step("rerun active", {"active": True}, changed=False, restart_required=False),
    Step("check active", {"active": True}, check=True, changed=False, restart_required=False),
    Step("remove", {"state": "absent"}, changed=True),
)
VOLUME_STEPS = (
    Step("create", {"state": "present"}, changed=True),
    Step("rerun", {"state": "present"}, changed=False),
    Step("check", {"state": "present"}, check=True, changed=False),
    Step("remove", {"state": "absent"}, changed=True),
)


@dataclass
class Outcome:
    """A step and the module's result; `live` explains an unexpected restart_required."""

    step: Step
    result: dict[str, Any]
    live: str = ""
    verified: str = ""  # what a fresh libvirt lookup found that contradicts the result

    def problems(self) -> list[str]:
        result, step = self.result, self.step
        if step.fails is not None:
            if not result.get("failed"):
                return [f"succeeded (changed: {result.get('changed')}), expected a failure"]
            if step.fails not in str(result.get("msg")):
                return [f"failed with {result.get('msg')!r}, expected a message with {step.fails!r}"]
            return []
        if result.get("failed"):
            return [f"failed: {result.get('msg')}"]
        found = [self.verified] if self.verified else []
        if step.changed is not None and bool(result.get("changed")) != step.changed:
            found.append(f"changed: {result.get('changed')}, expected {step.changed}; actions: {result.get('actions')}")
        if step.restart_required is not None and result.get("restart_required") != step.restart_required:
            found.append(f"restart_required: {result.get('restart_required')}, expected {step.restart_required}")
        return found

    def explanation(self) -> list[str]:
        lines = []
        if self.step.changed is False and self.result.get("changed"):
            diff = self.result.get("diff") or {}
            lines += unified(diff.get("before", ""), diff.get("after", ""), "before (current)", "after (desired)")
        if self.live:
            lines += ["libvirt's live XML against its persistent definition:", *self.live.splitlines()]
        return lines


def unified(before: str, after: str, before_name: str, after_name: str) -> list[str]:
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), before_name, after_name, n=1,
                                      lineterm=""))
    if not lines:
        return ["(the module's diff shows no difference)"]
    if len(lines) > DIFF_LINES:
        lines = lines[:DIFF_LINES] + [f"... {len(lines) - DIFF_LINES} more diff lines"]
    return lines


def report(what: str, steps: Sequence[Step], outcomes: Sequence[Outcome]) -> str:
    """'' when every step reported what it must; otherwise which steps did not, and why."""
    lines = []
    unsettled = 0
    shown: dict[tuple[str, ...], int] = {}  # explanation -> the step that showed it first
    for number, outcome in enumerate(outcomes, 1):
        problems = outcome.problems()
        if problems:
            unsettled += 1
            lines.append(f"  step {number} {outcome.step.describe()}: {'; '.join(problems)}")
            explanation = tuple(outcome.explanation())
            if explanation in shown:
                lines.append(f"      (same diff as step {shown[explanation]})")
            elif explanation:
                shown[explanation] = number
                lines += [f"      {line}" for line in explanation]
    if len(outcomes) < len(steps):
        lines.append(f"  steps {len(outcomes) + 1}-{len(steps)} not run after the failure")
    if not lines:
        return ""
    return f"{what}: {unsettled} of {len(steps)} steps did not settle\n" + "\n".join(lines)


def assert_settled(what: str, steps: Sequence[Step], outcomes: Sequence[Outcome]) -> None:
    text = report(what, steps, outcomes)
    if text:
        pytest.fail(text, pytrace=False)


# ---- running a module in-process ----------------------------------------------------------------


class _Exit(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result


class InProcessModule:
    """What common.run_module and the managers read from an AnsibleModule, and nothing else."""

    def __init__(self, params: dict[str, Any], check_mode: bool, diff: bool = True) -> None:
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings: list[str] = []

    def warn(self, warning: str) -> None:
        self.warnings.append(warning)

    def _finish(self, result: dict[str, Any], failed: bool) -> None:
        warnings = list(result.get("warnings") or []) + self.warnings
        raise _Exit({**result, "failed": failed, **({"warnings": warnings} if warnings else {})})

    def exit_json(self, **result: Any) -> None:
        self._finish(result, False)

    def fail_json(self, **result: Any) -> None:
        self._finish(result, True)


def module_params(module: str, args: dict[str, Any]) -> dict[str, Any]:
    """args validated against library/<module>.py's argument_spec (types, choices, aliases), defaults filled
    in, as Ansible does; raises ValueError. The mutually_exclusive rules of its main() are not applied."""
    validated = ArgumentSpecValidator(library_module(module).argument_spec()).validate(args)
    if validated.error_messages:
        raise ValueError(f"{module}: {'; '.join(validated.error_messages)}")
    return validated.validated_parameters


def run_in_process(module: str, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """One run of `module` through common.run_module, with diff mode on; the result as Ansible would get it
    (`failed` always set). Raises whatever the manager raises that run_module does not turn into fail_json."""
    fake = InProcessModule(module_params(module, args), check)
    try:
        common.run_module(fake, MANAGERS[module])
    except _Exit as finished:
        return finished.result
    raise AssertionError(f"{module}: run_module returned without exit_json or fail_json")


def settle(module: str, args: dict[str, Any], steps: Sequence[Step]) -> list[Outcome]:
    """Run the steps in order in-process; stop after a step that failed unexpectedly (later ones would only
    repeat it)."""
    outcomes = []
    for step in steps:
        try:
            result = run_in_process(module, {**args, **step.args}, check=step.check)
        except Exception:  # noqa: BLE001 - a crash is a result too, reported with its traceback
            result = {"failed": True, "msg": traceback.format_exc()}
        outcome = Outcome(step, result)
        diff = result.get("diff") or {}
        if step.restart_required is False and result.get("restart_required") and \
                diff.get("before") == diff.get("after"):  # the definition is not why: show what runs
            outcome.live = live_difference(module, args["name"])
        outcome.verified = still_there(module, {**args, **step.args}, step, result)
        outcomes.append(outcome)
        if result.get("failed") and step.fails is None:
            break
    return outcomes


def exists(module: str, args: dict[str, Any]) -> bool:
    """Whether libvirt still has the object `args` names (a fresh connection: nothing cached)."""
    conn = libvirt.open(URI)
    try:
        if module == "libvirt_volume":
            find = conn.storagePoolLookupByName(args["pool"]).storageVolLookupByName
        else:
            find = {"libvirt_domain": conn.lookupByName, "libvirt_network": conn.networkLookupByName,
                    "libvirt_pool": conn.storagePoolLookupByName}[module]
        return common.lookup_or_none(find, args["name"], f"look up {args['name']}") is not None
    finally:
        conn.close()


def still_there(module: str, args: dict[str, Any], step: Step, result: dict[str, Any]) -> str:
    """After a remove that reported success: '' when the object is really gone, else the problem."""
    if step.args.get("state") != "absent" or step.check or result.get("failed") or not exists(module, args):
        return ""
    return "a fresh lookup still finds it after the remove"


def live_difference(module: str, name: str) -> str:
    """libvirt's live XML against its persistent one for a running domain or network (aliases left out:
    only live XML has them); '' for other objects."""
    conn = libvirt.open(URI)
    try:
        if module == "libvirt_domain":
            obj, inactive_flag = conn.lookupByName(name), libvirt.VIR_DOMAIN_XML_INACTIVE
        elif module == "libvirt_network":
            obj, inactive_flag = conn.networkLookupByName(name), libvirt.VIR_NETWORK_XML_INACTIVE
        else:
            return ""
        inactive, live = obj.XMLDesc(inactive_flag), obj.XMLDesc(0)
    except libvirt.libvirtError as exc:
        return f"(cannot read it: {exc})"
    finally:
        conn.close()
    strip = [line for line in inactive.splitlines() if "<alias " not in line]
    return "\n".join(unified("\n".join(strip), "\n".join(line for line in live.splitlines() if "<alias " not in line),
                             "persistent (inactive XML)", "running (live XML)"))


# ---- many objects at once ----------------------------------------------------------------------


def selected_ids(request: pytest.FixtureRequest, test_name: str) -> list[str]:
    """Parameter ids of `test_name` this session runs (after -k and friends), so a fixture prepares only those."""
    return [item.callspec.id for item in request.session.items
            if getattr(item, "originalname", None) == test_name and hasattr(item, "callspec")]


class Parallel:
    """Independent jobs on a few threads, started as they are added; each test waits for its own result.

    The time goes to libvirtd and QEMU starting and stopping guests and to ansible-playbook's processes
    (libvirt's calls release the GIL), so four threads cut the corpus's wall time about threefold on this
    2-core host.
    """

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="corpus")
        self._futures: dict[str, Future] = {}

    def add(self, key: str, job: Callable[[], Any]) -> None:
        self._futures[key] = self._pool.submit(job)

    def result(self, key: str) -> Any:
        return self._futures[key].result()

    def close(self) -> None:
        """Wait for the jobs already running; drop those not started."""
        self._pool.shutdown(wait=True, cancel_futures=True)


# ---- definitions from virt-install --------------------------------------------------------------


def virt_install_print_xml(rows: dict[str, list[str]], uri: str = URI) -> dict[str, dict[str, str]]:
    """{row id: {"xml": what `virt-install --print-xml ARGS` prints} or {"error": its refusal}}, all rows
    through one connection (see virt_install_print_xml.py)."""
    if not os.path.exists("/usr/bin/virt-install"):
        raise AssertionError("virt-install is missing: scripts/setup.sh installs it (Debian package virtinst)")
    proc = subprocess.run([SYSTEM_PYTHON, PRINT_XML], input=json.dumps({"uri": uri, "rows": rows}),
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"virt-install --print-xml could not run (rc {proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


# ---- the same steps through ansible-playbook ----------------------------------------------------


class _Unsafe(str):
    """A value Ansible must never template (ansible-core's !unsafe tag)."""


def _unsafe_representer(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", str(value), style="|" if "\n" in value else None)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Unsafe, _unsafe_representer)


def _as_data(value: Any) -> Any:
    """Every string in value marked unsafe: object definitions are data, never templates."""
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, dict):
        return {key: _as_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_data(item) for item in value]
    return value


def playbook_outcomes(plan: Iterable[tuple[str, Sequence[Step], dict[str, dict[str, Any]]]],
                      timeout: int = 900) -> dict[str, list[Outcome]]:
    """Run every (module, steps, {key: args}) of `plan` in ONE ansible-playbook run: per step one task that
    loops over the objects (check mode per task, diff on, errors ignored so every step runs), then one
    task that saves the registered results. Returns {key: outcomes}, cut after a failed step like settle().
    """
    tasks: list[dict[str, Any]] = []
    registers: list[tuple[str, Step, str]] = []  # (module, step, register name)
    objects: dict[str, list[dict[str, Any]]] = {}
    for module, steps, entries in plan:
        items = [{"key": key, "args": args} for key, args in entries.items()]
        objects[module] = items
        options = sorted({option for args in entries.values() for option in args})
        for number, step in enumerate(steps):
            register = f"r_{module}_{number}"
            registers.append((module, step, register))
            given = {option: f"{{{{ item.args[{option!r}] | default(omit) }}}}" for option in options
                     if option not in step.args}
            tasks.append({"name": f"{module} {step.label}", module: {**given, **step.args},
                          "loop": f"{{{{ objects[{module!r}] }}}}", "loop_control": {"label": "{{ item.key }}"},
                          "check_mode": step.check, "diff": True, "ignore_errors": True, "register": register})
    with tempfile.TemporaryDirectory(prefix="cocos-corpus-") as work:
        out = os.path.join(work, "results.json")
        saved = {f"{module}|{step.label}": f"{{{{ {register}.results }}}}" for module, step, register in registers}
        tasks.append({"name": "save the results", "ansible.builtin.copy": {
            "dest": out, "content": "{{ saved | to_json }}", "mode": "0600"}, "vars": {"saved": saved}})
        playbook = os.path.join(work, "corpus.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            yaml.dump([{"hosts": "localhost", "connection": "local", "gather_facts": False,
                        "vars": {"objects": _as_data(objects)}, "tasks": tasks}], handle, Dumper=_Dumper,
                      sort_keys=False)
        proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,",
                               "-e", f"ansible_python_interpreter={os.path.join(ROOT, '.venv', 'bin', 'python')}",
                               playbook], cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if not os.path.exists(out):
            raise AssertionError(f"ansible-playbook saved no results (rc {proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        with open(out, encoding="utf-8") as handle:
            results = json.load(handle)
    outcomes: dict[str, list[Outcome]] = {}
    stopped: set[str] = set()
    for module, step, _register in registers:
        for result in results[f"{module}|{step.label}"]:
            key = result["item"]["key"]
            if key in stopped:
                continue
            result.setdefault("failed", False)
            outcome = Outcome(step, result, verified=still_there(module, result["item"]["args"], step, result))
            outcomes.setdefault(key, []).append(outcome)
            if result["failed"] and step.fails is None:
                stopped.add(key)
    return outcomes
