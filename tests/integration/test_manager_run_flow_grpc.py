"""The run RPCs of cocos.manager.v1 against the real reference agent: streamed uploads and result, status codes."""
from __future__ import annotations

import grpc
import pytest
from manager_support import make_config, manager_server
from run_support import (
    DATASET_A,
    DATASET_B,
    EXPECTED,
    FAILING_ALGORITHM,
    SUM_ALGORITHM,
    reference_agent,
    run_body,
    sha256,
)

from cocos_pb import manager_pb2, manager_v1_pb2, manager_v1_pb2_grpc

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def agent():
    with reference_agent() as server:
        yield server


@pytest.fixture(scope="module")
def stub(agent):
    config = make_config(agent_grpc_url=f"127.0.0.1:{agent.port}", max_upload_bytes=LIMIT)
    with manager_server(config) as mgr, grpc.insecure_channel(mgr.grpc_target) as channel:
        yield manager_v1_pb2_grpc.ManagerServiceStub(channel)


def create_run(stub, **body) -> manager_v1_pb2.Run:
    fields = run_body(**body)
    fields.pop("description")
    return stub.CreateRun(manager_v1_pb2.CreateRunRequest(run=manager_pb2.RunRequest(**fields)), timeout=30)


def chunks(run_id: str, content: bytes, size: int = 7):
    """The run id in the first chunk only, as the proto allows; small chunks to exercise the joining."""
    for start in range(0, len(content), size):
        yield manager_v1_pb2.UploadChunk(run_id=run_id if start == 0 else "", data=content[start:start + size])


def upload_all(stub, run_id: str, algorithm: bytes = SUM_ALGORITHM) -> None:
    assert stub.UploadAlgorithm(chunks(run_id, algorithm), timeout=30).id == sha256(algorithm)
    for dataset in (DATASET_A, DATASET_B):
        reply = stub.UploadDataset(chunks(run_id, dataset), timeout=30)
        assert reply.id == sha256(dataset)


def result(stub, run_id: str) -> bytes:
    return b"".join(c.data for c in stub.GetResult(manager_v1_pb2.GetRunRequest(id=run_id), timeout=60))


def error_of(call, *args) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=60)
    return info.value


def test_create_upload_result(stub, agent):
    run = create_run(stub)
    assert run.agent == f"127.0.0.1:{agent.port}" and run.state == manager_v1_pb2.RUN_STATE_FORWARDED
    upload_all(stub, run.id)
    assert result(stub, run.id) == EXPECTED
    got = stub.GetRun(manager_v1_pb2.GetRunRequest(id=run.id), timeout=10)
    assert got.state == manager_v1_pb2.RUN_STATE_COMPLETE and got.result_bytes == len(EXPECTED)
    assert list(got.datasets) == [sha256(DATASET_A), sha256(DATASET_B)]


def test_failing_algorithm_is_aborted_with_stderr(stub):
    run = create_run(stub)
    upload_all(stub, run.id, FAILING_ALGORITHM)
    err = error_of(lambda req, timeout: list(stub.GetResult(req, timeout=timeout)),
                   manager_v1_pb2.GetRunRequest(id=run.id))
    assert err.code() == grpc.StatusCode.ABORTED and "no such column" in err.details()


def test_result_before_uploads_is_failed_precondition(stub):
    run = create_run(stub)
    err = error_of(lambda req, timeout: list(stub.GetResult(req, timeout=timeout)),
                   manager_v1_pb2.GetRunRequest(id=run.id))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_upload_over_the_limit_is_resource_exhausted_and_not_sent(stub):
    run = create_run(stub)
    err = error_of(stub.UploadAlgorithm, chunks(run.id, b"x" * (LIMIT + 1), size=16 * 1024))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in err.details()
    assert stub.GetRun(manager_v1_pb2.GetRunRequest(id=run.id), timeout=10).algorithm == ""


@pytest.mark.parametrize("stream, code, words", [
    ([manager_v1_pb2.UploadChunk(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT, "run_id"),
    ([manager_v1_pb2.UploadChunk(run_id="nope", data=b"x")], grpc.StatusCode.NOT_FOUND, "nope"),
    ([], grpc.StatusCode.INVALID_ARGUMENT, "run_id"),
])
def test_bad_upload_streams(stub, stream, code, words):
    err = error_of(stub.UploadDataset, iter(stream))
    assert err.code() == code and words in err.details()


def test_create_run_validation_names_the_field(stub):
    err = error_of(stub.CreateRun, manager_v1_pb2.CreateRunRequest(run=manager_pb2.RunRequest(name="r", ttl=5)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "owner" in err.details()
    err = error_of(stub.CreateRun, manager_v1_pb2.CreateRunRequest(
        run=manager_pb2.RunRequest(**{k: v for k, v in run_body().items() if k != "description"}),
        domain="ctest-e2e-no-such-domain"))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "domain" in err.details()


def test_streaming_rpcs_need_the_token(agent):
    config = make_config(agent_grpc_url=f"127.0.0.1:{agent.port}", token="tok")
    with manager_server(config) as mgr, grpc.insecure_channel(mgr.grpc_target) as channel:
        stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)
        assert error_of(stub.UploadAlgorithm, chunks("x", b"x")).code() == grpc.StatusCode.UNAUTHENTICATED
        err = error_of(lambda req, timeout: list(stub.GetResult(req, timeout=timeout)),
                       manager_v1_pb2.GetRunRequest(id="x"))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
