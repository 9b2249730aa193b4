"""One job model for HTTP and gRPC: a playbook run with its state, timings, counts and events, stored in SQLite.

Live jobs are objects in memory whose watchers (SSE, gRPC WatchJob) block on a condition instead of polling; every
change is also written to the job database (SQLite in WAL mode, in the manager's state directory), so a restarted
manager lists earlier jobs, and a job that was queued or running when the manager died is found and marked failed
on start-up (manager_api/recovery.py rolls back what it created).
"""
from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from manager_api.errors import Busy, Conflict

QUEUED, RUNNING, SUCCESSFUL, FAILED, CANCELED = "queued", "running", "successful", "failed", "canceled"
STATES = (QUEUED, RUNNING, SUCCESSFUL, FAILED, CANCELED)
FINAL = frozenset({SUCCESSFUL, FAILED, CANCELED})
# A playbook of a handful of tasks emits tens of events; the cap bounds memory and disk if a playbook loops.
MAX_EVENTS = 2000
# Finished jobs kept in memory (the database keeps MAX_STORED_JOBS, the oldest are forgotten first).
MAX_FINISHED_JOBS = 500
MAX_STORED_JOBS = 5000
LIST_LIMIT = 500


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
    # sha256 of the request's definitions: requests share a job only when theirs are identical.
    digest: str = ""
    # What recovery needs: the objects' names and which of them existed before the job (see domains.py).
    details: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    cancel_requested: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    # Set by the store (persist every change) and the runner (stop the playbook's processes).
    _sink: Callable[[Job, dict | None], None] | None = field(default=None, repr=False)
    _on_cancel: Callable[[], None] | None = field(default=None, repr=False)
    _on_final: list = field(default_factory=list, repr=False)

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
                "host": self.details.get("host", ""),
            }

    def add_event(self, kind: str, **data: Any) -> None:
        event = None
        with self._cond:
            if len(self.events) < MAX_EVENTS:
                event = {"seq": len(self.events) + 1, "job_id": self.id, "type": kind, "time": time.time(),
                         "state": self.state, **data}
                self.events.append(event)
            self._cond.notify_all()
        self._save(event)

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
        if state in FINAL:
            for callback in self._on_final:
                callback(self)
        return True

    def update(self, **values: Any) -> None:
        """Change recorded fields (error, result, details...) of a job, final or not, and store them."""
        with self._cond:
            for key, value in values.items():
                setattr(self, key, value)
        self._save(None)

    def _save(self, event: dict | None) -> None:
        if self._sink is not None:
            self._sink(self, event)

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


_COLUMNS = ("id", "kind", "target", "state", "created_at", "started_at", "finished_at", "changed", "ok", "failed",
            "error", "result", "digest", "details", "instance")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs ({', '.join(c + (' TEXT PRIMARY KEY' if c == 'id' else '') for c in _COLUMNS)});
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE TABLE IF NOT EXISTS events (job_id TEXT, seq INTEGER, body TEXT, PRIMARY KEY (job_id, seq));
"""


class JobDatabase:
    """Job records and their events in one SQLite file (WAL: readers never wait for the writer)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def save(self, job: Job, instance: str, event: dict | None = None) -> None:
        row = job.to_dict()
        values = [row.get(c) for c in _COLUMNS[:12]] + [job.digest, json.dumps(job.details), instance]
        with self._lock:
            self._conn.execute(f"INSERT OR REPLACE INTO jobs VALUES ({', '.join('?' * len(_COLUMNS))})", values)
            if event is not None:
                self._conn.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                                   (job.id, event["seq"], json.dumps(event)))

    def load(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            events = self._conn.execute("SELECT body FROM events WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
        if row is None:
            return None
        job = _job_from_row(row)
        job.events = [json.loads(body) for (body,) in events]
        return job

    def recent(self, limit: int = LIST_LIMIT) -> list[Job]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created_at DESC LIMIT ?",
                                      (limit,)).fetchall()
        return [_job_from_row(row) for row in reversed(rows)]

    def unfinished(self, instance: str) -> list[Job]:
        """Jobs another manager instance left queued or running: it stopped before they ended."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE state IN (?, ?) AND instance != ?",
                                      (QUEUED, RUNNING, instance)).fetchall()
        return [_job_from_row(row) for row in rows]

    def prune(self, keep: int = MAX_STORED_JOBS) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM events WHERE job_id IN (SELECT id FROM jobs WHERE state IN (?, ?, ?) "
                               "ORDER BY created_at DESC LIMIT -1 OFFSET ?)", (*sorted(FINAL), keep))
            self._conn.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state IN (?, ?, ?) "
                               "ORDER BY created_at DESC LIMIT -1 OFFSET ?)", (*sorted(FINAL), keep))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _job_from_row(row: tuple) -> Job:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["details"] = json.loads(values["details"] or "{}")
    values.pop("instance")
    return Job(**values)


class JobStore:
    """Jobs by id, plus the in-flight job per target so requests for one domain join instead of racing.

    max_running bounds the jobs that are queued or running at once (a new one beyond it is Busy: HTTP 503).
    """

    def __init__(self, path: str = ":memory:", max_running: int = 1000, retry_after: int = 5) -> None:
        self.db = JobDatabase(path)
        self.instance = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._active: dict[str, Job] = {}
        self._slots = threading.BoundedSemaphore(max_running)
        self.max_running = max_running
        self.retry_after = retry_after
        self.db.prune()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None else self.db.load(job_id)

    def list(self) -> list[Job]:
        stored = self.db.recent()
        with self._lock:
            live = dict(self._jobs)
        return [live.get(job.id, job) for job in stored]

    def adopt(self, job: Job) -> Job:
        """Keep a job (new, or loaded from the database) live in memory, storing every change."""
        job._sink = lambda changed, event: self.db.save(changed, self.instance, event)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        job._save(None)
        return job

    def submit(self, kind: str, target: str, start: Callable[[Job], None], digest: str = "",
               details: dict | None = None, on_final: Callable[[Job], None] | None = None) -> tuple[Job, bool]:
        """Return the in-flight job for target, or create one and start it; the bool says whether it is new.

        A job is shared only by requests of the same kind with the same definitions (digest); another definition
        for a target whose job is under way is a Conflict (HTTP 409): applying it afterwards would silently undo
        the first request, and waiting would hold the caller for the whole playbook. A delete while a create runs
        (or the reverse) is queued after it. The check and the registration happen under one lock: that is what
        makes N concurrent requests for one domain converge once. Jobs for other targets never wait on each other.
        on_final runs once a new job reaches a final state, however it gets there (registered before it can start).
        """
        with self._lock:
            current = self._active.get(target)
            busy = current is not None and not current.done
            if current is not None and busy and current.kind == kind and current.digest == digest:
                return current, False
            if current is not None and busy and current.kind == kind:
                raise Conflict("domain", f"job {current.id} is converging {target!r} from a different definition; "
                                         "send this one again when that job has ended", job_id=current.id)
            if not self._slots.acquire(blocking=False):
                raise Busy("playbook jobs", self.max_running, self.retry_after)
            job = Job(kind=kind, target=target, digest=digest, details=dict(details or {}))
            job._on_final.append(lambda _job: self._slots.release())
            if on_final is not None:
                job._on_final.append(on_final)
            self._active[target] = job
        self.adopt(job)
        if current is not None and busy:
            threading.Thread(target=self._after, args=(current, job, start), daemon=True).start()
        else:
            start(job)
        return job, True

    def _after(self, previous: Job, job: Job, start: Callable[[Job], None]) -> None:
        previous.wait()
        if not job.done:
            start(job)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for old in sorted(finished, key=lambda j: j.created_at)[: max(len(finished) - MAX_FINISHED_JOBS, 0)]:
            del self._jobs[old.id]

    def running(self) -> builtins.list[Job]:
        with self._lock:
            return [job for job in self._jobs.values() if not job.done]

    def cancel(self, job: Job) -> None:
        """Queued jobs end at once; running ones are stopped through the runner's hook."""
        with job._cond:
            job.cancel_requested = True
        if job.state == QUEUED:
            job.set_state(CANCELED, "canceled before it started")
        elif job._on_cancel is not None:
            job._on_cancel()

    def close(self) -> None:
        self.db.close()
