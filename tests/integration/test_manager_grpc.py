"""gRPC API with clients built from protos/: the original ManagerService, v1 jobs, health, reflection, auth."""
from __future__ import annotations

import json
import threading
import time

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
    """A job driven by hand (no playbook) shows that WatchJob streams live events and ends at the final state."""
    job, _ = manager.services.store.submit("create_domain", "ctest-mgr-watch", lambda j: None)
    stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)

    def drive():
        time.sleep(0.3)
        job.set_state("running")
        job.add_event("runner_on_ok", task="t1", host="localhost", changed=True)
        job.set_state("successful")
    threading.Thread(target=drive).start()
    events = list(stub.WatchJob(manager_v1_pb2.WatchJobRequest(id=job.id), timeout=10))
    assert [e.type for e in events] == ["job_state", "runner_on_ok", "job_state"]
    assert events[1].changed and events[1].task == "t1"
    assert events[-1].state == manager_v1_pb2.JOB_STATE_SUCCESSFUL
    got = stub.GetJob(manager_v1_pb2.GetJobRequest(id=job.id), timeout=10)
    assert got.state == manager_v1_pb2.JOB_STATE_SUCCESSFUL and got.target == "ctest-mgr-watch"
    # the same job, through HTTP: one model for both front ends
    status, _, body = request("GET", f"{manager.base}/jobs/{job.id}")
    assert status == 200 and body["state"] == "successful" and body["event_count"] == 3


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
                stub.Run(run_request(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = stub.Run(run_request(), timeout=10, metadata=[("authorization", "Bearer tok")])
            assert json.loads(json.dumps(reply.ID))
            health = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
