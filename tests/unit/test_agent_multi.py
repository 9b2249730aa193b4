"""Computations declaring several algorithms: each runs over the same datasets in upload order, in its own fresh
directory, sharing the one ttl; the result is one JSON document, and a failure names the algorithm."""

import base64
import glob
import json
import os
import shutil
import time

import grpc
import pytest
from agent_testlib import (
    DATASET_A,
    DATASET_B,
    SUM_ALGORITHM,
    make_work_dir,
    manifest,
    rpc_error,
    running_agent,
    sha,
)

from agent.computation import Session
from agent.errors import AlgorithmTimedOut

COUNT_ALGORITHM = b"""
import os, sys
lines = [len(open(path).read().splitlines()) for path in sys.argv[1:]]
open(os.environ["RESULT_PATH"], "w").write("lines=" + ",".join(map(str, lines)))
"""
# Reports where it ran and what it found there, then leaves a file behind for the next algorithm to (not) see.
PLACE_ALGORITHM = b"""
import json, os, sys
seen = {"cwd": os.getcwd(), "listing": sorted(os.listdir(".")), "args": sys.argv[1:]}
open("left-behind", "w").write("x")
print(json.dumps(seen))
"""
FAILING_ALGORITHM = b"import sys\nsys.stderr.write('no such column: price\\n')\nsys.exit(3)\n"


@pytest.fixture
def agent():
    with running_agent() as running:
        yield running


def two_algorithms(**changes) -> bytes:
    return manifest(algorithms=["sum.py", "count.py"], **changes)


def upload(agent, algorithms, datasets=(DATASET_A, DATASET_B)):
    for algorithm in algorithms:
        assert agent.algo(algorithm) == sha(algorithm)
    for dataset in datasets:
        agent.data(dataset)


def results(document: bytes) -> list[tuple[str, str, bytes]]:
    parsed = json.loads(document)
    assert parsed["computation"] == "comp-1" and set(parsed) == {"computation", "results"}
    return [(entry["algorithm"], entry["name"], base64.b64decode(entry["result"])) for entry in parsed["results"]]


def test_both_algorithms_run_over_the_same_datasets_into_one_document(agent):
    assert agent.run(two_algorithms()) == "comp-1"
    agent.algo(SUM_ALGORITHM)
    assert agent.state == "receiving_algorithm"  # the second algorithm is still missing
    agent.algo(COUNT_ALGORITHM)
    assert agent.state == "receiving_data"
    agent.data(DATASET_A)
    agent.data(DATASET_B)
    assert agent.state == "ready"
    document = agent.result()
    assert results(document) == [
        (sha(SUM_ALGORITHM), "sum.py", b"15,30=45"),
        (sha(COUNT_ALGORITHM), "count.py", b"lines=2,2"),
    ]
    assert agent.state == "complete"
    assert agent.result() == document  # stored, not re-run


def test_algorithms_run_in_upload_order_not_manifest_order(agent):
    agent.run(manifest(algorithms=[sha(COUNT_ALGORITHM), {"name": "sum", "hash": "sha256:" + sha(SUM_ALGORITHM)}]))
    upload(agent, (SUM_ALGORITHM, COUNT_ALGORITHM), datasets=(DATASET_B, DATASET_A))
    assert results(agent.result()) == [
        (sha(SUM_ALGORITHM), "sum", b"30,15=45"),
        (sha(COUNT_ALGORITHM), sha(COUNT_ALGORITHM), b"lines=2,2"),
    ]


def test_each_algorithm_gets_a_fresh_directory_and_the_same_datasets(agent):
    second = PLACE_ALGORITHM + b"# the second copy\n"
    agent.run(two_algorithms())
    upload(agent, (PLACE_ALGORITHM, second))
    (_, _, first_seen), (_, _, second_seen) = results(agent.result())
    first_seen, second_seen = json.loads(first_seen), json.loads(second_seen)
    assert first_seen["listing"] == [] and second_seen["listing"] == []  # nothing left over from the first
    assert first_seen["cwd"] != second_seen["cwd"]
    assert first_seen["cwd"].endswith("/algorithm-1/run") and second_seen["cwd"].endswith("/algorithm-2/run")
    assert first_seen["args"] == second_seen["args"] and len(first_seen["args"]) == 2


def test_failure_of_the_second_algorithm_fails_the_computation_and_names_it(agent):
    agent.run(two_algorithms())
    upload(agent, (SUM_ALGORITHM, FAILING_ALGORITHM))
    error = rpc_error(agent.result)
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details().startswith(
        f"algorithm 2 of 2 'count.py' (sha256:{sha(FAILING_ALGORITHM)}): algorithm failed with exit status 3;"
    )
    assert error.details().endswith("no such column: price")
    assert agent.state == "failed"
    again = rpc_error(agent.result)
    assert (again.code(), again.details()) == (error.code(), error.details())


def test_a_failing_first_algorithm_stops_the_computation(agent):
    agent.run(two_algorithms())
    upload(agent, (FAILING_ALGORITHM, COUNT_ALGORITHM))
    error = rpc_error(agent.result)
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details().startswith(f"algorithm 1 of 2 'sum.py' (sha256:{sha(FAILING_ALGORITHM)}): ")
    assert glob.glob(os.path.join(agent.work_dir, "computation-*", "algorithm-1", "run"))
    assert not glob.glob(os.path.join(agent.work_dir, "computation-*", "algorithm-2"))  # never started


def test_ttl_is_the_budget_of_the_whole_computation(agent):
    # Each alone fits in the ttl; both together do not.
    sleeper = b"import time\ntime.sleep(1.5)\nprint('slept')\n"
    second = sleeper + b"# second\n"
    agent.run(two_algorithms(ttl=2.5))
    upload(agent, (sleeper, second))
    started = time.monotonic()
    error = rpc_error(agent.result)
    assert time.monotonic() - started < 2.5 + 1  # killed at the shared budget, not at 2 x ttl
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == (
        f"algorithm 2 of 2 'count.py' (sha256:{sha(second)}): "
        "algorithm exceeded the computation's ttl of 2.5 s and was killed"
    )


def test_out_of_order_calls_are_still_refused(agent):
    agent.run(two_algorithms())
    agent.algo(SUM_ALGORITHM)
    agent.data(DATASET_A)
    agent.data(DATASET_B)
    assert agent.state == "receiving_algorithm"
    error = rpc_error(agent.result)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "still needs 1 algorithm(s) and 0 dataset(s) before Result" in error.details()
    assert rpc_error(agent.algo, SUM_ALGORITHM).code() == grpc.StatusCode.ALREADY_EXISTS
    agent.algo(COUNT_ALGORITHM)
    error = rpc_error(agent.algo, b"print('a third')")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "all 2 declared algorithm(s) of computation 'comp-1' are already uploaded" in error.details()
    agent.result()
    error = rpc_error(agent.algo, b"print('late')")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is complete; uploads are accepted only before Result" in error.details()


def test_result_document_above_the_output_limit_is_refused():
    writer = b"import os\nopen(os.environ['RESULT_PATH'], 'wb').write(b'r' * 700)\n"
    with running_agent(max_output_bytes=1000) as agent:
        agent.run(two_algorithms())
        upload(agent, (writer, writer + b"# second\n"))
        error = rpc_error(agent.result)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "result document of 2 algorithms is" in error.details()
        assert "above the output limit of 1000 bytes (AGENT_MAX_OUTPUT_BYTES)" in error.details()


class _OvertimeRunner:
    """Stands in for the sandbox: every algorithm 'succeeds' but only after using all the time it was given."""

    max_output_bytes = 1 << 20

    def __init__(self) -> None:
        self.started: list[str] = []

    def run(self, job) -> bytes:
        self.started.append(job.run_dir)
        time.sleep(job.time_limit + 0.05)
        return b"late"

    def stop(self) -> None:
        pass


def test_an_algorithm_left_no_time_is_not_started():
    runner = _OvertimeRunner()
    work_dir = make_work_dir()
    try:
        session = Session(work_dir, runner)  # type: ignore[arg-type]
        session.run(two_algorithms(ttl=0.2))
        session.upload("algorithm", SUM_ALGORITHM)
        session.upload("algorithm", COUNT_ALGORITHM)
        session.upload("dataset", DATASET_A)
        session.upload("dataset", DATASET_B)
        with pytest.raises(AlgorithmTimedOut) as info:
            session.result()
        assert str(info.value) == (
            f"algorithm 2 of 2 'count.py' (sha256:{sha(COUNT_ALGORITHM)}): "
            "not started: the computation's ttl of 0.2 s was used up"
        )
        assert len(runner.started) == 1 and session.state.value == "failed"
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
