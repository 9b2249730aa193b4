"""Start-up recovery: jobs a previous manager left unfinished are marked failed and what they created is rolled back.

A manager killed with kill -9 leaves its job records queued or running. Its playbooks died with it (their guards
get SIGTERM from the kernel: manager_api/playbook_guard.py), so those jobs can never end by themselves: they are
marked failed with the reason, a create job's new objects are removed by a rollback job (manager_api/domains.py),
and the private data directories holding the request's XML are deleted.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal

from manager_api import jobs, runner
from manager_api.domains import CREATE, DomainService

log = logging.getLogger("manager_api.recovery")


def recover(store: jobs.JobStore, domains: DomainService, state_dir: str) -> list[str]:
    """Returns the ids of the jobs found interrupted."""
    interrupted = []
    for job in store.db.unfinished(store.instance):
        store.adopt(job)
        _stop_leftover(job.details.get("data_dir"))
        was = job.state
        job.set_state(jobs.FAILED, f"interrupted: the manager stopped while this job was {was}")
        interrupted.append(job)
        log.warning("job interrupted by a manager restart", extra={"job_id": job.id, "kind": job.kind})
    _remove_stale_dirs(store, runner.run_dir(state_dir))
    for job in interrupted:
        if job.kind == CREATE:
            domains.rollback(job, job.error)
    ids = {job.id for job in interrupted}
    for job in store.list():
        # A rollback left pending, or a canceled create whose manager stopped before it could record one.
        pending = job.details.get("rollback") == "pending" or (
            job.kind == CREATE and job.state == jobs.CANCELED and job.details.get("existed")
            and job.details.get("rollback") not in ("done", "failed"))
        if job.done and pending and job.id not in ids:
            domains.rollback(store.adopt(job), job.error.split(";")[0] or "interrupted")
    return sorted(ids)


def _stop_leftover(data_dir: str | None) -> None:
    """A guard that somehow survived its manager (it should not): stop it, and its playbook with it."""
    if not data_dir:
        return
    try:
        with open(os.path.join(data_dir, runner.GUARD_PIDFILE), encoding="ascii") as handle:
            pid = int(handle.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"manager_api.playbook_guard" in handle.read():
                os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def _remove_stale_dirs(store: jobs.JobStore, root: str) -> None:
    """Private data dirs of jobs that no longer run: they may hold request XML."""
    if not os.path.isdir(root):
        return
    live = {job.details.get("data_dir") for job in store.running()}
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if path not in live:
            shutil.rmtree(path, ignore_errors=True)
