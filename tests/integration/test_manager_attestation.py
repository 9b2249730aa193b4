"""POST /runs/{id}/attestation and gRPC AttestRun end to end on loopback: the manager's servers, the real reference
agent measuring into a real software TPM (swtpm), and the manager's verdict on what comes back."""
from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from manager_support import make_config, manager_server, request
from run_support import DATASET_A, DATASET_B, SUM_ALGORITHM, reference_agent, run_body, sha256

from cocos_pb import agent_pb2, agent_pb2_grpc, manager_v1_pb2, manager_v1_pb2_grpc
from tests.swtpm_support import software_tpm

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[int]:
    with software_tpm(str(tmp_path_factory.mktemp("swtpm"))) as tcti, reference_agent(tpm_tcti=tcti) as server:
        yield server.port


@pytest.fixture(scope="module")
def manager(agent):
    config = make_config(agent_grpc_url=f"127.0.0.1:{agent}", agent_grpc_timeout=20.0, agent_retry_total=5.0)
    with manager_server(config) as mgr:
        yield mgr


def new_run(manager, datasets: tuple[bytes, ...] = (DATASET_A, DATASET_B)) -> str:
    status, _, body = request("POST", f"{manager.base}/run", run_body())
    assert status == 200, body
    run_id = body["id"]
    for path, content in (("algorithm", SUM_ALGORITHM), *(("datasets", d) for d in datasets)):
        status, _, body = request("POST", f"{manager.base}/runs/{run_id}/{path}", raw=content, headers=OCTET)
        assert status == 200, body
    return run_id


def attest(manager, run_id: str, body: object = None) -> tuple[int, dict]:
    status, _, answer = request("POST", f"{manager.base}/runs/{run_id}/attestation", body)
    return status, answer


def test_a_run_attests_with_a_fresh_manager_nonce_and_verifies(manager):
    run_id = new_run(manager)
    status, first = attest(manager, run_id)
    assert status == 200, first
    assert first["verified"] is True, first["checks"]
    assert [(c["name"], c["ok"]) for c in first["checks"]] == [
        ("signature", True), ("nonce", True), ("pcr_digest", True), ("measurements", True)]
    assert first["nonce_source"] == "manager" and len(bytes.fromhex(first["nonce"])) == 32
    kinds = [(m["kind"], m["sha256"]) for m in first["expected"]["measurements"]]
    assert kinds[1:] == [("algorithm", sha256(SUM_ALGORITHM)), ("dataset", sha256(DATASET_A)),
                         ("dataset", sha256(DATASET_B))] and kinds[0][0] == "manifest"
    assert first["evidence"]["pcrs"]["23"] == first["expected"]["value"]
    assert first["evidence"]["measurements"] == first["expected"]["measurements"]
    assert any("endorsement key" in limit for limit in first["not_established"])
    _, second = attest(manager, run_id)
    assert second["nonce"] != first["nonce"] and second["verified"] is True


def test_a_client_nonce_is_used_and_echoed(manager):
    run_id = new_run(manager)
    nonce = "0f" * 20
    status, answer = attest(manager, run_id, {"nonce": nonce})
    assert status == 200 and answer["verified"] is True
    assert answer["nonce"] == nonce and answer["nonce_source"] == "client"


@pytest.mark.parametrize(("body", "message"), [
    ({"nonce": "ab" * 15}, "nonce: must be 16 to 32 bytes, got 15"),
    ({"nonce": "ab" * 33}, "nonce: must be 16 to 32 bytes, got 33"),
    ({"nonce": "not hex"}, "nonce: must be a hex string"),
    ({"nonce": 7}, "nonce: must be a hex string"),
    ({"nonce": "ab" * 16, "extra": 1}, 'body: expected {"nonce": "<hex>"} or no body'),
])
def test_a_bad_nonce_is_400_and_asks_the_agent_nothing(manager, body, message):
    run_id = new_run(manager)
    status, answer = attest(manager, run_id, body)
    assert status == 400 and answer["error"] == message


def test_an_unknown_run_is_404(manager):
    status, answer = attest(manager, "no-such-run")
    assert status == 404 and "not found" in answer["error"]


def test_a_dataset_changed_behind_the_managers_back_fails_the_measurements(manager, agent):
    run_id = new_run(manager, datasets=(DATASET_A,))
    with grpc.insecure_channel(f"127.0.0.1:{agent}") as channel:  # someone else reaches the agent directly
        agent_pb2_grpc.AgentServiceStub(channel).Data(agent_pb2.DataRequest(dataset=b"9,9,9\n"), timeout=10)
    status, answer = attest(manager, run_id)
    assert status == 200 and answer["verified"] is False
    failed = {c["name"]: c["detail"] for c in answer["checks"] if not c["ok"]}
    assert list(failed) == ["measurements"]
    assert "the agent reports 4 measurements, the manager sent 3" in failed["measurements"]


def test_grpc_attest_run_verifies_with_the_clients_nonce(manager):
    run_id = new_run(manager)
    with grpc.insecure_channel(manager.grpc_target) as channel:
        stub = manager_v1_pb2_grpc.ManagerServiceStub(channel)
        answer = stub.AttestRun(manager_v1_pb2.AttestRunRequest(run_id=run_id, nonce=b"n" * 16), timeout=60)
        drawn = stub.AttestRun(manager_v1_pb2.AttestRunRequest(run_id=run_id), timeout=60)
        with pytest.raises(grpc.RpcError) as short:
            stub.AttestRun(manager_v1_pb2.AttestRunRequest(run_id=run_id, nonce=b"n"), timeout=60)
    assert answer.verified and answer.nonce == b"n" * 16 and answer.nonce_from_client
    assert [c.name for c in answer.checks if c.ok] == ["signature", "nonce", "pcr_digest", "measurements"]
    quoted = {pcr.index: pcr.value for pcr in answer.evidence.pcrs}
    assert answer.expected_pcr == 23 and answer.expected_pcr_value == quoted[23]
    assert drawn.verified and not drawn.nonce_from_client and len(drawn.nonce) == 32
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_agent_without_a_tpm_is_409_saying_so():
    with reference_agent() as server, manager_server(make_config(agent_grpc_url=f"127.0.0.1:{server.port}",
                                                                 agent_grpc_timeout=20.0)) as mgr:
        run_id = new_run(mgr)
        status, answer = attest(mgr, run_id)
    assert status == 409 and answer["agent_code"] == "FAILED_PRECONDITION"
    assert "no TPM in this guest" in answer["error"]
