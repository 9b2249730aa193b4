"""One job model for HTTP and gRPC: a playbook run with its state, timings, counts and events.

Watchers (SSE, gRPC WatchJob) block on a condition instead of polling, so progress reaches them at once.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

QUEUED, RUNNING, SUCCESSFUL, FAILED, CANCELED = "queued", "running", "successful", "failed", "canceled"
STATES = (QUEUED, RUNNING, SUCCESSFUL, FAILED, CANCELED)
FINAL = frozenset({SUCCESSFUL, FAILED, CANCELED})
# A playbook of a handful of tasks emits tens of events; the cap bounds memory if a playbook loops.
MAX_EVENTS = 2000
# Finished jobs kept for GET /jobs/{id}; the oldest are forgotten first.
MAX_FINISHED_JOBS = 500


@dataclass
class Job:
    kind: str
    target: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    changed: int = 0
    ok: int = 0
    failed: int = 0
    error: str = ""
    result: str = ""
    events: list = field(default_factory=list)
    cancel_requested: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict:
        with self._cond:
            return {
                "id": self.id, "kind": self.kind, "target": self.target, "state": self.state,
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "duration": _duration(self.started_at, self.finished_at),
                "changed": self.changed, "ok": self.ok, "failed": self.failed,
                "error": self.error, "result": self.result, "event_count": len(self.events),
            }

    def add_event(self, kind: str, **data: Any) -> None:
        with self._cond:
            if len(self.events) < MAX_EVENTS:
                self.events.append({"seq": len(self.events) + 1, "job_id": self.id, "type": kind,
                                    "time": time.time(), "state": self.state, **data})
            self._cond.notify_all()

    def set_state(self, state: str, error: str = "") -> bool:
        """Move to a new state; a final state is never left (a late cancel cannot undo success)."""
        with self._cond:
            if self.done:
                return False
            self.state = state
            now = time.time()
            if state == RUNNING:
                self.started_at = now
            if state in FINAL:
                self.finished_at = now
                self.error = error or self.error
        self.add_event("job_state", message=error)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is final; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.done, timeout)

    def _progress_since(self, seq: int) -> Callable[[], bool]:
        return lambda: len(self.events) > seq or self.done

    def follow(self, after_seq: int = 0, heartbeat: float = 15.0) -> Iterator[dict | None]:
        """Yield events after after_seq as they come, None as a keep-alive, and stop once the job is final."""
        seq = max(after_seq, 0)
        while True:
            with self._cond:
                self._cond.wait_for(self._progress_since(seq), heartbeat)
                fresh = self.events[seq:]
                finished = self.done
            yield from fresh
            seq += len(fresh)
            if finished and not fresh:
                return
            if not fresh:
                yield None


def _duration(start: float | None, end: float | None) -> float | None:
    if start is None:
        return None
    return round((end or time.time()) - start, 3)


class JobStore:
    """Jobs by id, plus the in-flight job per target so requests for one domain join instead of racing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._active: dict[str, Job] = {}

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def submit(self, kind: str, target: str, start: Callable[[Job], None]) -> tuple[Job, bool]:
        """Return the in-flight job for target, or create one and start it; the bool says whether it is new.

        The check and the registration happen under one lock: that is what makes N concurrent requests for one
        domain converge once. Jobs for other targets never wait on each other.
        """
        with self._lock:
            current = self._active.get(target)
            if current is not None and not current.done and current.kind == kind:
                return current, False
            if current is not None and not current.done:
                # A delete while a create runs (or the reverse) must wait its turn, not join.
                job = Job(kind=kind, target=target)
                self._register(job)
                threading.Thread(target=self._after, args=(current, job, start), daemon=True).start()
                return job, True
            job = Job(kind=kind, target=target)
            self._register(job)
        start(job)
        return job, True

    def _register(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._active[job.target] = job
        self._forget_old()

    def _after(self, previous: Job, job: Job, start: Callable[[Job], None]) -> None:
        previous.wait()
        if not job.done:
            start(job)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for old in sorted(finished, key=lambda j: j.created_at)[: max(len(finished) - MAX_FINISHED_JOBS, 0)]:
            del self._jobs[old.id]

    def cancel(self, job: Job) -> None:
        """Queued jobs end at once; running ones are stopped by the runner's cancel_callback."""
        with job._cond:
            job.cancel_requested = True
        if job.state == QUEUED:
            job.set_state(CANCELED, "canceled before it started")
