"""Runs a playbook for a job through ansible-runner's run_async, turning runner events into job events.

Each job gets its own private data dir (removed afterwards) so parallel jobs never share artifacts.
"""
from __future__ import annotations

import logging
import os
import shutil
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
_RUNNER_STATE = {"successful": jobs.SUCCESSFUL, "canceled": jobs.CANCELED}
# A playbook's own fail task already speaks to the user (domain.yml's rollback report names the failed step and
# what remains), so its message is the job's error as it stands; other failures get their task's name in front.
_OWN_MESSAGE_ACTIONS = frozenset({"ansible.builtin.fail", "ansible.legacy.fail", "fail"})


class PlaybookRunner:
    def __init__(self, playbook_dir: str, inventory: str | None = None) -> None:
        self.playbook_dir = playbook_dir
        self.inventory = inventory or str(ROOT / "inventory" / "hosts.yml")

    def start(self, job: jobs.Job, playbook: str, extravars: dict[str, Any]) -> None:
        """Start the playbook in the background; the job reaches a final state when it ends."""
        data_dir = tempfile.mkdtemp(prefix=f"cocos-job-{job.id[:8]}-")
        job.set_state(jobs.RUNNING)
        try:
            ansible_runner.run_async(
                private_data_dir=data_dir,
                project_dir=self.playbook_dir,
                playbook=str(Path(self.playbook_dir) / playbook),
                inventory=self.inventory,
                extravars=extravars,
                envvars=_envvars(),
                quiet=True,
                # Cancel is polled at this interval (default 5 s), so DELETE /jobs/{id} acts within half a second.
                settings={"pexpect_timeout": 0.5, "suppress_ansible_output": True},
                event_handler=lambda event: _on_event(job, event),
                cancel_callback=lambda: job.cancel_requested,
                finished_callback=lambda runner: _on_finished(job, runner, data_dir),
            )
        except Exception as exc:  # a runner that cannot start must still end the job, with the reason
            log.exception("playbook start failed", extra={"job_id": job.id})
            job.set_state(jobs.FAILED, f"cannot start playbook {playbook}: {exc}")
            shutil.rmtree(data_dir, ignore_errors=True)


def _envvars() -> dict[str, str]:
    # ansible-playbook must be the one beside this Python (it has libvirt-python), and must read our ansible.cfg.
    bindir = os.path.dirname(sys.executable)
    return {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
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
    result = (data.get("artifact_data") or {}).get("domain_name")
    if result:
        job.result = str(result)


def _on_finished(job: jobs.Job, runner: Any, data_dir: str) -> None:
    state = _RUNNER_STATE.get(runner.status, jobs.FAILED)
    error = ""
    if state == jobs.FAILED:
        error = job.error or f"playbook ended with status {runner.status} (rc {runner.rc})"
    elif state == jobs.CANCELED:
        error = "canceled"
    elif not job.result:
        job.result = job.target
    job.set_state(state, error)
    log.info("job finished", extra={"job_id": job.id, "state": state, "changed": job.changed})
    shutil.rmtree(data_dir, ignore_errors=True)
