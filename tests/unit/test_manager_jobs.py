"""The job model: states, events, followers, and one in-flight job per domain."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from manager_api import jobs


def worker(duration: float, log: list):
    """A start function that runs the job in a thread, like the playbook runner does."""
    def start(job: jobs.Job) -> None:
        job.set_state(jobs.RUNNING)
        log.append((job.target, time.monotonic()))

        def finish():
            time.sleep(duration)
            job.set_state(jobs.SUCCESSFUL)
        threading.Thread(target=finish).start()
    return start


def test_concurrent_submits_for_one_target_share_one_job():
    store, log = jobs.JobStore(), []
    barrier = threading.Barrier(8)

    def submit(_):
        barrier.wait()
        return store.submit("create_domain", "d1", worker(0.3, log))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(8)))
    assert len({job.id for job, _ in results}) == 1 and sum(new for _, new in results) == 1
    assert len(log) == 1


def test_different_targets_run_in_parallel():
    store, log = jobs.JobStore(), []
    start = time.monotonic()
    a, _ = store.submit("create_domain", "a", worker(0.5, log))
    b, _ = store.submit("create_domain", "b", worker(0.5, log))
    assert a.wait(5) and b.wait(5)
    assert time.monotonic() - start < 0.9  # not 1.0: they overlapped


def test_delete_waits_for_a_running_create():
    store, log = jobs.JobStore(), []
    create, _ = store.submit("create_domain", "d", worker(0.4, log))
    delete, new = store.submit("delete_domain", "d", worker(0.0, log))
    assert new and delete.state == jobs.QUEUED
    assert delete.wait(5) and create.state == jobs.SUCCESSFUL
    assert [t for t, _ in log] == ["d", "d"] and log[1][1] >= log[0][1] + 0.35


def test_finished_job_is_not_reused():
    store, log = jobs.JobStore(), []
    first, _ = store.submit("create_domain", "d", worker(0.0, log))
    first.wait(5)
    second, new = store.submit("create_domain", "d", worker(0.0, log))
    assert new and second.id != first.id


def test_final_state_is_never_left():
    job = jobs.Job(kind="k", target="t")
    job.set_state(jobs.RUNNING)
    assert job.set_state(jobs.SUCCESSFUL)
    assert not job.set_state(jobs.CANCELED) and job.state == jobs.SUCCESSFUL
    d = job.to_dict()
    assert d["duration"] is not None and d["event_count"] == 2


def test_cancel_of_a_queued_job_ends_it():
    store = jobs.JobStore()
    job = jobs.Job(kind="k", target="t")
    store.cancel(job)
    assert job.state == jobs.CANCELED and job.cancel_requested


def test_follow_yields_live_events_then_stops():
    job = jobs.Job(kind="k", target="t")
    stream = job.follow(heartbeat=0.05)
    assert next(stream) is None  # nothing yet: a keep-alive, and the follower is waiting
    job.set_state(jobs.RUNNING)
    first = next(e for e in stream if e is not None)
    assert not job.done  # the follower has the first event before the rest exist
    job.add_event("runner_on_ok", task="x")
    job.set_state(jobs.FAILED, "boom")
    seen = [first, *(e for e in stream if e is not None)]
    assert [e["type"] for e in seen] == ["job_state", "runner_on_ok", "job_state"]
    assert seen[-1]["state"] == jobs.FAILED and seen[-1]["message"] == "boom"
    assert [e["type"] for e in job.follow(after_seq=2) if e] == ["job_state"]
