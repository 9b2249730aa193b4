"""gRPC API with clients built from protos/: the original ManagerService, v1 jobs, health, reflection, auth."""
from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from manager_support import agent_server, make_config, manager_server, request

from cocos_pb import manager_pb2, manager_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc


def run_request(**overrides) -> manager_pb2.RunRequest:
    fields = {"name": "g-run", "description": "grpc", "owner": "Jane", "datasets": ["d1"], "algorithms": ["a1"],
              "dataset_providers": ["p1"], "algorithm_providers": ["p2"], "result_consumers": ["c1"], "ttl": 60}
    fields.update(overrides)
    return manager_pb2.RunRequest(**fields)


@pytest.fixture(scope="module")
def agent():
    with agent_server() as (recorder, port, _server):
        yield recorder, port


@pytest.fixture(scope="module")
def manager(agent):
    with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{agent[1]}")) as mgr:
        yield mgr


@pytest.fixture(scope="module")
def channel(manager):
    with grpc.insecure_channel(manager.grpc_target) as chan:
        yield chan


def test_run_forwards_to_agent(channel, agent):
    start = Timestamp(seconds=1700000000)
    reply = manager_pb2_grpc.ManagerServiceStub(channel).Run(run_request(start_time=start), timeout=10)
    sent = agent[0].received[-1]
    assert sent["id"] == reply.ID and sent["name"] == "g-run" and sent["owner"] == "Jane"
    assert sent["result_consumers"] == ["c1"] and sent["ttl"] == 60
    assert sent["start_time"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("overrides, field", [
    ({"ttl": 0}, "ttl"), ({"ttl": -5}, "ttl"), ({"name": ""}, "name"), ({"owner": ""}, "owner"),
    ({"datasets": []}, "datasets"), ({"algorithms": []}, "algorithms"),
])
def test_run_validation_is_invalid_argument(channel, agent, overrides, field):
    before = len(agent[0].received)
    with pytest.raises(grpc.RpcError) as err:
        manager_pb2_grpc.ManagerServiceStub(channel).Run(run_request(**overrides), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()
    assert len(agent[0].received) == before


def test_create_domain_bad_paths(channel):
    stub = manager_pb2_grpc.ManagerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateDomain(manager_pb2.CreateDomainRequest(domain="../../etc/passwd"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "domain" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateDomain(manager_pb2.CreateDomainRequest(pool="missing.xml"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_v1_unknown_job_and_domain_are_not_found(channel):
    stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(manager_v1_pb2.GetJobRequest(id="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.GetDomain(manager_v1_pb2.GetDomainRequest(name="ctest-mgr-does-not-exist"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_v1_watch_job_streams_until_final(channel, manager):
    """A job driven by hand (no playbook) shows that WatchJob streams live events and ends at the final state: the
    stream has answered the first event before the later ones exist."""
    job, _ = manager.services.store.submit("create_domain", "ctest-mgr-watch", lambda j: None)
    stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)
    job.set_state("running")
    stream = stub.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=10)
    first = next(stream)
    assert first.type == "job_state" and first.state == manager_v1_pb2.JOB_STATE_RUNNING
    assert not job.done  # the stream is open and the rest has not happened yet
    job.add_event("runner_on_ok", task="t1", host="localhost", changed=True)
    job.set_state("successful")
    events = [first, *stream]
    assert [e.type for e in events] == ["job_state", "runner_on_ok", "job_state"]
    assert events[1].changed and events[1].task == "t1"
    assert events[-1].state == manager_v1_pb2.JOB_STATE_SUCCESSFUL
    got = stub.GetJob(manager_v1_pb2.GetJobRequest(id=job.id), timeout=10)
    assert got.state == manager_v1_pb2.JOB_STATE_SUCCESSFUL and got.target == "ctest-mgr-watch"
    # the same job, through HTTP: one model for both front ends
    status, _, body = request("GET", f"{manager.base}/jobs/{job.id}")
    assert status == 200 and body["state"] == "successful" and body["event_count"] == 3


STATE_NAMES = {manager_v1_pb2.JOB_STATE_QUEUED: "queued", manager_v1_pb2.JOB_STATE_RUNNING: "running",
               manager_v1_pb2.JOB_STATE_SUCCESSFUL: "successful", manager_v1_pb2.JOB_STATE_FAILED: "failed",
               manager_v1_pb2.JOB_STATE_CANCELED: "canceled"}


def stored(manager, job_id: str) -> dict:
    """The job as the manager's SQLite database holds it (read back from disk, not the live object)."""
    job = manager.services.store.db.load(job_id)
    assert job is not None, f"job {job_id} is not in the database"
    return job.to_dict()


def hand_driven_jobs(manager, tag: str) -> list:
    """Three jobs in three different states, driven by hand (no playbook): successful, failed, queued."""
    store = manager.services.store
    done, _ = store.submit("create_domain", f"ctest-mgr-{tag}-a", lambda j: None)
    done.set_state("running")
    done.update(result=f"ctest-mgr-{tag}-a", changed=2)
    done.set_state("successful")
    failed, _ = store.submit("delete_domain", f"ctest-mgr-{tag}-b", lambda j: None)
    failed.set_state("running")
    failed.set_state("failed", "boom")
    queued, _ = store.submit("create_domain", f"ctest-mgr-{tag}-c", lambda j: None)
    return [done, failed, queued]


def test_v1_list_jobs_is_the_stored_jobs(channel, manager):
    made = hand_driven_jobs(manager, "listg")
    listed = manager_v1_pb2_grpc.ManagerServiceStub(channel).ListJobs(manager_v1_pb2.ListJobsRequest(), timeout=10)
    by_id = {j.id: j for j in listed.jobs}
    assert [j.id for j in listed.jobs] == [j.id for j in manager.services.store.list()]  # every job, in order
    for job in made:
        got, row = by_id[job.id], stored(manager, job.id)
        assert (got.kind, got.target, STATE_NAMES[got.state], got.error, got.result, got.changed, got.event_count) \
            == (row["kind"], row["target"], row["state"], row["error"], row["result"], row["changed"],
                row["event_count"])
    assert [STATE_NAMES[by_id[j.id].state] for j in made] == ["successful", "failed", "queued"]
    assert by_id[made[1].id].error == "boom" and by_id[made[0].id].result == "ctest-mgr-listg-a"


def test_http_get_jobs_is_the_stored_jobs(manager):
    made = hand_driven_jobs(manager, "listh")
    status, headers, body = request("GET", f"{manager.base}/jobs")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert [j["id"] for j in body["jobs"]] == [j.id for j in manager.services.store.list()]
    by_id = {j["id"]: j for j in body["jobs"]}
    for job in made:
        assert by_id[job.id] == stored(manager, job.id)
    assert [by_id[j.id]["state"] for j in made] == ["successful", "failed", "queued"]


def test_v1_cancel_job(channel, manager):
    """A queued job ends canceled at once (a running playbook's cancel: test_manager_domain.py); a final job cannot
    be canceled; an unknown id is NOT_FOUND. The database holds the outcome."""
    job, _ = manager.services.store.submit("create_domain", "ctest-mgr-cancel", lambda j: None)
    stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)
    reply = stub.CancelJob(manager_v1_pb2.CancelJobRequest(id=job.id), timeout=10)
    assert (reply.id, reply.state, reply.error) == (job.id, manager_v1_pb2.JOB_STATE_CANCELED,
                                                     "canceled before it started")
    row = stored(manager, job.id)
    assert row["state"] == "canceled" and row["finished_at"] and row["error"] == "canceled before it started"
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelJob(manager_v1_pb2.CancelJobRequest(id=job.id), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "already canceled" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelJob(manager_v1_pb2.CancelJobRequest(id="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert stored(manager, job.id)["event_count"] == row["event_count"]  # the refused cancel changed nothing


def sse_events(text: str) -> list[tuple[str, str, dict]]:
    """(id, event, data) of each SSE message with data; id is "" where the message has none (the end event)."""
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            found.append((fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])))
    return found


def test_sse_resumes_after_last_event_id(manager):
    """A client that reconnects with Last-Event-ID gets only the events after it (the browser EventSource way),
    and `?after=` does the same; ids are the events' seq."""
    job, _ = manager.services.store.submit("create_domain", "ctest-mgr-sse", lambda j: None)
    job.set_state("running")
    for task in ("t1", "t2", "t3"):
        job.add_event("runner_on_ok", task=task, host="localhost")
    job.set_state("successful")
    url = f"{manager.base}/jobs/{job.id}/events"
    status, _, whole = request("GET", url)
    assert status == 200
    assert [(i, e) for i, e, _ in sse_events(whole)] == [
        ("1", "job_state"), ("2", "runner_on_ok"), ("3", "runner_on_ok"), ("4", "runner_on_ok"), ("5", "job_state"),
        ("", "end")]
    status, _, resumed = request("GET", url, headers={"Last-Event-ID": "3"})
    assert status == 200
    events = sse_events(resumed)
    assert [(i, e) for i, e, _ in events] == [("4", "runner_on_ok"), ("5", "job_state"), ("", "end")]
    assert events[0][2]["task"] == "t3" and events[-1][2]["state"] == "successful"
    assert sse_events(request("GET", url + "?after=3")[2]) == events
    assert [i for i, _, _ in sse_events(request("GET", url, headers={"Last-Event-ID": "5"})[2])] == [""]
    status, _, body = request("GET", url, headers={"Last-Event-ID": "x"})
    assert status == 400 and body["field"] == "after"


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "manager_proto.ManagerService", "cocos.manager.v1.ManagerService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"manager_proto.ManagerService", "cocos.manager.v1.ManagerService", "grpc.health.v1.Health"} <= names


def test_grpc_bearer_token(agent):
    with manager_server(make_config(token="tok", agent_grpc_url=f"127.0.0.1:{agent[1]}")) as mgr:
        with grpc.insecure_channel(mgr.grpc_target) as chan:
            stub = manager_pb2_grpc.ManagerServiceStub(chan)
            with pytest.raises(grpc.RpcError) as err:
                stub.Run(run_request(name="g-token"), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert all(sent["name"] != "g-token" for sent in agent[0].received)  # refused before the agent
            reply = stub.Run(run_request(name="g-token"), timeout=10, metadata=[("authorization", "Bearer tok")])
            sent = [c for c in agent[0].received if c["name"] == "g-token"]
            assert len(sent) == 1 and sent[0]["id"] == reply.ID and sent[0]["owner"] == "Jane"
            health = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
