"""Happy path, manifests, hashes and every out-of-order call, against a real agent server over gRPC."""

import json
import threading
import time

import grpc
import pytest
from agent_testlib import DATASET_A, DATASET_B, SUM_ALGORITHM, manifest, rpc_error, running_agent, sha, upload_all


@pytest.fixture
def agent():
    with running_agent() as running:
        yield running


def test_full_run_sums_both_datasets_in_upload_order(agent):
    assert agent.state == "idle"
    assert agent.run(manifest()) == "comp-1"
    assert agent.state == "receiving_algorithm"
    assert agent.algo(SUM_ALGORITHM) == sha(SUM_ALGORITHM)
    assert agent.state == "receiving_data"
    assert agent.data(DATASET_A) == sha(DATASET_A)
    assert agent.data(DATASET_B) == sha(DATASET_B)
    assert agent.state == "ready"
    assert agent.result() == b"15,30=45"
    assert agent.state == "complete"


def test_uploads_are_accepted_in_any_order(agent):
    agent.run(manifest())
    agent.data(DATASET_B)
    assert agent.state == "receiving_algorithm"
    agent.data(DATASET_A)
    agent.algo(SUM_ALGORITHM)
    assert agent.result() == b"30,15=45"


def test_declared_hashes_accept_matching_uploads_and_reject_others(agent):
    agent.run(
        manifest(
            algorithms=[{"id": "sum", "hash": "sha256:" + sha(SUM_ALGORITHM)}],
            datasets=[sha(DATASET_A), "sha256:" + sha(DATASET_B).upper()],
        )
    )
    intruder = b"print('not the agreed algorithm')"
    error = rpc_error(agent.algo, intruder)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"algorithm sha256:{sha(intruder)} is not declared by computation 'comp-1'" in error.details()
    error = rpc_error(agent.data, b"9\n")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sha(b"9\n") in error.details() and sha(DATASET_A) in error.details()
    assert agent.state == "receiving_algorithm"
    assert agent.algo(SUM_ALGORITHM) == sha(SUM_ALGORITHM)
    agent.data(DATASET_B)
    agent.data(DATASET_A)
    assert agent.result() == b"30,15=45"


def test_unhashed_slot_takes_any_content_beside_a_hashed_one(agent):
    agent.run(manifest(datasets=[{"name": "agreed", "hash": sha(DATASET_A)}, {"name": "free"}]))
    agent.algo(SUM_ALGORITHM)
    agent.data(DATASET_B)  # not declared, but the free slot takes it
    error = rpc_error(agent.data, b"7\n")  # only the hashed slot is left
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and sha(b"7\n") in error.details()
    agent.data(DATASET_A)
    assert agent.result() == b"30,15=45"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"", "computation is empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (manifest(id=None), "missing required key 'id'"),
        (manifest(id=""), "'id' must be a non-empty string"),
        (manifest(name=None), "missing required key 'name'"),
        (manifest(name=5), "'name' must be a non-empty string, got number"),
        (manifest(datasets=[]), "at least one dataset in 'datasets'"),
        (manifest(datasets=None), "at least one dataset in 'datasets'"),
        (manifest(algorithms=[]), "at least one algorithm in 'algorithms'"),
        (manifest(datasets=[3]), "datasets[0] must be a non-empty string or an object, got number"),
        (manifest(datasets=[{"hash": "md5:abc"}]), "datasets[0].hash must be 'sha256:' followed by 64 hex digits"),
        (manifest(ttl=0), "'ttl' must be > 0 seconds, got 0"),
        (manifest(ttl=-5), "'ttl' must be > 0 seconds, got -5"),
        (manifest(ttl="30"), "'ttl' must be a number of seconds, got string"),
        (manifest(ttl=True), "'ttl' must be a number of seconds, got boolean"),
        (manifest(ttl=None), "missing required key 'ttl'"),
        (manifest(owner=["x"]), "'owner' must be a string, got array"),
        (manifest(metadata=[]), "'metadata' must be an object, got array"),
    ],
)
def test_invalid_computation_is_rejected_and_changes_nothing(agent, raw, fragment):
    error = rpc_error(agent.run, raw)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.details()
    assert "Traceback" not in error.details()
    assert agent.state == "idle"


def test_extra_keys_are_tolerated(agent):
    raw = json.loads(manifest())
    raw["future_field"] = {"anything": [1, 2]}
    assert agent.run(json.dumps(raw).encode()) == "comp-1"


def test_invalid_run_keeps_the_current_computation(agent):
    agent.run(manifest())
    agent.algo(SUM_ALGORITHM)
    assert rpc_error(agent.run, manifest(ttl=0)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert agent.state == "receiving_data"
    agent.data(DATASET_A)
    agent.data(DATASET_B)
    assert agent.result() == b"15,30=45"


def test_calls_before_run_are_out_of_order(agent):
    for call, content, fragment in (
        (agent.algo, SUM_ALGORITHM, "call Run with a manifest before uploading the algorithm"),
        (agent.data, DATASET_A, "call Run with a manifest before uploading the dataset"),
    ):
        error = rpc_error(call, content)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert fragment in error.details()
    error = rpc_error(agent.result)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no computation: call Run" in error.details()
    assert agent.state == "idle"


def test_result_before_all_inputs_is_out_of_order(agent):
    agent.run(manifest())
    error = rpc_error(agent.result)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "still needs 1 algorithm(s) and 2 dataset(s) before Result" in error.details()
    agent.algo(SUM_ALGORITHM)
    agent.data(DATASET_A)
    error = rpc_error(agent.result)
    assert "still needs 0 algorithm(s) and 1 dataset(s)" in error.details()
    assert agent.state == "receiving_data"


def test_uploads_beyond_the_manifest_are_refused(agent):
    agent.run(manifest())
    upload_all(agent)
    error = rpc_error(agent.algo, b"print(1)")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "all 1 declared algorithm(s) of computation 'comp-1' are already uploaded" in error.details()
    error = rpc_error(agent.data, DATASET_A)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"dataset sha256:{sha(DATASET_A)} was already uploaded" in error.details()
    assert agent.state == "ready"


def test_empty_algorithm_is_invalid(agent):
    agent.run(manifest())
    error = rpc_error(agent.algo, b"")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "algorithm is empty" in error.details()


def test_uploads_after_completion_are_out_of_order(agent):
    agent.run(manifest())
    upload_all(agent)
    agent.result()
    error = rpc_error(agent.data, b"5\n")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "computation 'comp-1' is complete; uploads are accepted only before Result" in error.details()


def test_run_while_running_is_refused_and_the_run_finishes(agent):
    agent.run(manifest())
    upload_all(agent, algorithm=b"import os, time\ntime.sleep(1.5)\nopen(os.environ['RESULT_PATH'], 'w').write('slow')")
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("file", agent.result()))
    worker.start()
    _wait_for_state(agent, "running")
    error = rpc_error(agent.run, manifest(id="comp-2"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "computation 'comp-1' is running" in error.details()
    error = rpc_error(agent.data, b"1\n")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "is running" in error.details()
    worker.join(timeout=30)
    assert outcome["file"] == b"slow"


def test_concurrent_results_share_one_run(agent):
    agent.run(manifest())
    upload_all(agent, algorithm=b"import os, time\ntime.sleep(1)\nprint(os.urandom(16).hex())")
    results: list[bytes] = []
    workers = [threading.Thread(target=lambda: results.append(agent.result())) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(results) == 4 and len(set(results)) == 1
    assert agent.result() == results[0]


def test_second_run_after_completion_starts_fresh(agent):
    agent.run(manifest())
    upload_all(agent)
    assert agent.result() == b"15,30=45"
    assert agent.run(manifest(id="comp-2", datasets=["only.csv"])) == "comp-2"
    assert agent.state == "receiving_algorithm"
    assert rpc_error(agent.result).code() == grpc.StatusCode.FAILED_PRECONDITION
    upload_all(agent, datasets=(b"100\n",))
    assert agent.result() == b"100=100"


def test_run_during_upload_replaces_the_computation(agent):
    agent.run(manifest())
    agent.algo(SUM_ALGORITHM)
    agent.run(manifest(id="comp-2"))
    assert agent.state == "receiving_algorithm"
    upload_all(agent)
    assert agent.result() == b"15,30=45"


def _wait_for_state(agent, state, limit=10.0):
    deadline = time.monotonic() + limit
    while agent.state != state:
        assert time.monotonic() < deadline, f"agent never reached {state}, stuck in {agent.state}"
        time.sleep(0.02)
