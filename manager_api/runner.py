"""Runs a playbook for a job through ansible-runner's run_async, turning runner events into job events.

Request data is data: every string of the extra vars reaches Ansible wrapped in ansible-core's unsafe marker
(`{"__ansible_unsafe": ...}` in the JSON extra-vars file ansible-runner writes), so ansible-core 2.19 never trusts it
as a template, however it is spelled. Each job gets its own private data dir (mode 0700, under the manager's state
directory, removed afterwards, and by recovery after a crash) holding the runner's files and Ansible's temp files, so
the request's XML is nowhere else. The playbook runs under manager_api.playbook_guard, in its own process group, and
dies with the manager.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import ansible_runner

from manager_api import jobs
from manager_api.config import ROOT

log = logging.getLogger("manager_api.runner")

# Runner events worth a line in the job's progress; the rest (verbose, deprecation, ...) are noise for watchers.
_KEPT = {
    "playbook_on_play_start", "playbook_on_task_start", "runner_on_ok", "runner_on_changed", "runner_on_failed",
    "runner_on_unreachable", "runner_on_skipped", "playbook_on_stats",
}
_RUNNER_STATE = {"successful": jobs.SUCCESSFUL}
# A playbook's own fail task already speaks to the user (domain.yml's rollback report names the failed step and
# what remains), so its message is the job's error as it stands; other failures get their task's name in front.
_OWN_MESSAGE_ACTIONS = frozenset({"ansible.builtin.fail", "ansible.legacy.fail", "fail"})
GUARD_PIDFILE = "guard.pid"
GUARD_CANCELFILE = "cancel"  # created on cancel, before the pidfile is read (see playbook_guard)


def unsafe(value: Any) -> Any:
    """value with every string wrapped in ansible-core's unsafe marker (dict keys stay plain: they are ours)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, dict):
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(item) for item in value]
    return value


def run_dir(state_dir: str) -> str:
    """Where jobs' private data dirs live; recovery empties it of dead jobs' dirs."""
    return os.path.join(state_dir, "run")


class PlaybookRunner:
    def __init__(self, playbook_dir: str, state_dir: str, inventory: str | None = None) -> None:
        self.playbook_dir = playbook_dir
        self.data_root = run_dir(state_dir)
        self.inventory = inventory or str(ROOT / "inventory" / "hosts.yml")

    def start(self, job: jobs.Job, playbook: str, extravars: dict[str, Any]) -> None:
        """Start the playbook in the background; the job reaches a final state when it ends."""
        os.makedirs(self.data_root, mode=0o700, exist_ok=True)
        data_dir = tempfile.mkdtemp(prefix=f"job-{job.id}-", dir=self.data_root)
        job.update(details={**job.details, "data_dir": data_dir})
        job._on_cancel = lambda: _signal_guard(data_dir)
        job.set_state(jobs.RUNNING)
        playbook_path = str(Path(self.playbook_dir) / playbook)
        try:
            ansible_runner.run_async(
                private_data_dir=data_dir,
                project_dir=self.playbook_dir,
                # The guard runs ansible-playbook with these arguments (see playbook_guard); in this mode
                # ansible-runner appends inventory and extra vars but not the playbook, hence cmdline.
                binary=sys.executable,
                cmdline=shlex.join(["-m", "manager_api.playbook_guard", playbook_path]),
                inventory=self.inventory,
                extravars=unsafe(extravars),
                envvars=_envvars(data_dir),
                quiet=True,
                settings={"pexpect_timeout": 0.5, "suppress_ansible_output": True},
                event_handler=lambda event: _on_event(job, event),
                finished_callback=lambda runner: _on_finished(job, runner, data_dir),
                # Cancelling is the guard's SIGTERM (job._on_cancel). Without a callback, ansible-runner called from
                # the main thread (the startup rollback) installs its own SIGTERM and SIGINT handlers over the
                # manager's, which then no longer stops on SIGTERM.
                cancel_callback=lambda: False,
            )
        except Exception as exc:  # a runner that cannot start must still end the job, with the reason
            log.exception("playbook start failed", extra={"job_id": job.id})
            job.set_state(jobs.FAILED, f"cannot start playbook {playbook}: {type(exc).__name__}")
            shutil.rmtree(data_dir, ignore_errors=True)


def _signal_guard(data_dir: str) -> None:
    """Cancel: SIGTERM to the job's guard, which stops ansible-playbook and its workers; a guard that has not written
    its pid yet finds the cancel file and starts nothing."""
    with open(os.path.join(data_dir, GUARD_CANCELFILE), "w", encoding="ascii"):
        pass
    try:
        with open(os.path.join(data_dir, GUARD_PIDFILE), encoding="ascii") as handle:
            os.kill(int(handle.read().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass  # not started yet (the job then ends at its first chance) or already gone


def _envvars(data_dir: str) -> dict[str, str]:
    # ansible-playbook must be the one beside this Python (it has libvirt-python), and must read our ansible.cfg.
    bindir = os.path.dirname(sys.executable)
    tmp = os.path.join(data_dir, "tmp")
    return {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        # Module payloads carry the request's XML as arguments: keep them in the job's own directory.
        "ANSIBLE_LOCAL_TEMP": tmp,
        "ANSIBLE_REMOTE_TMP": tmp,
        "COCOS_MANAGER_PID": str(os.getpid()),
        "COCOS_GUARD_PIDFILE": os.path.join(data_dir, GUARD_PIDFILE),
        "COCOS_GUARD_CANCELFILE": os.path.join(data_dir, GUARD_CANCELFILE),
    }


def _on_event(job: jobs.Job, event: dict) -> bool:
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if kind == "playbook_on_stats":
        _take_stats(job, data)
    if kind in _KEPT:
        res = data.get("res") or {}
        failed = kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors")
        message = str(res.get("msg", "")) if failed else ""
        if failed:
            job.error = _job_error(data, message)
        job.add_event(kind, task=data.get("task", ""), host=data.get("host", ""),
                      changed=bool(res.get("changed")), failed=failed, message=message)
    return False  # nothing to keep on disk: the job holds what watchers need


def _job_error(data: dict, message: str) -> str:
    """The error a failed task leaves on its job; the last failure wins, so a rescue's final report is kept."""
    if data.get("task_action") in _OWN_MESSAGE_ACTIONS and message:
        return message
    return f"{data.get('task', '')}: {message}".strip(": ")


def _take_stats(job: jobs.Job, data: dict) -> None:
    job.changed = sum((data.get("changed") or {}).values())
    job.ok = sum((data.get("ok") or {}).values())
    job.failed = sum((data.get("failures") or {}).values()) + sum((data.get("dark") or {}).values())
    artifacts = data.get("artifact_data") or {}
    if artifacts.get("domain_name"):
        job.result = str(artifacts["domain_name"])
    if artifacts.get("report"):
        job.details = {**job.details, "report": artifacts["report"]}


def _on_finished(job: jobs.Job, runner: Any, data_dir: str) -> None:
    state = _RUNNER_STATE.get(runner.status, jobs.FAILED)
    error = ""
    if job.cancel_requested and state != jobs.SUCCESSFUL:
        state, error = jobs.CANCELED, job.error or "canceled"
    elif state == jobs.FAILED:
        error = job.error or f"playbook ended with status {runner.status} (rc {runner.rc})"
    elif not job.result:
        job.result = job.target
    shutil.rmtree(data_dir, ignore_errors=True)
    job.set_state(state, error)
    log.info("job finished", extra={"job_id": job.id, "state": state, "changed": job.changed})
