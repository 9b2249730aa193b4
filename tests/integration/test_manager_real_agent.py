"""The original README's `/run` (two algorithms, two datasets) against the REAL reference agent: `python -m agent`
as a subprocess on 127.0.0.1:0 and the manager's servers on ephemeral loopback ports pointing at it. Until the
agent accepted several algorithms this command failed against our own agent; the in-test fake agent hid it."""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

import grpc
import pytest
from manager_support import README_RUN, curl_shell, make_config, manager_server, readme_command, request
from run_support import DATASET_A, DATASET_B, PYTHON, SUM_ALGORITHM, sha256

from cocos_pb import agent_pb2, agent_pb2_grpc, manager_pb2, manager_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# World-traversable, not pytest's 0700 tmp: the agent runs algorithms as nobody when we are root.
WORK_ROOT = "/var/lib/cocos-test/manager-real-agent"
OCTET = {"Content-Type": "application/octet-stream"}

# The same run over the original gRPC ManagerService.Run.
README_GRPC_RUN = {"name": "my-run", "description": "this is a test run", "owner": "John Doe",
                   "datasets": ["dataset1", "dataset2"], "algorithms": ["algorithm1", "algorithm2"],
                   "dataset_providers": ["provider1", "provider2"], "algorithm_providers": ["provider3", "provider4"],
                   "result_consumers": ["consumer1", "consumer2"], "ttl": 3600}
COUNT_ALGORITHM = b"""import os, sys
lines = [len(open(path).read().splitlines()) for path in sys.argv[1:]]
open(os.environ["RESULT_PATH"], "w").write("lines=" + ",".join(map(str, lines)))
"""


@pytest.fixture(scope="module")
def agent_port() -> Iterator[int]:
    """`python -m agent` exactly as the guest starts it, on a free loopback port read from its JSON log."""
    os.makedirs(WORK_ROOT, exist_ok=True)
    os.chmod(WORK_ROOT, 0o755)
    work_dir = tempfile.mkdtemp(prefix="agent-", dir=WORK_ROOT)
    env = {**os.environ, "AGENT_GRPC_HOST": "127.0.0.1", "AGENT_GRPC_PORT": "0", "AGENT_PYTHON": PYTHON,
           "AGENT_WORK_DIR": work_dir}
    proc = subprocess.Popen([sys.executable, "-m", "agent"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()], daemon=True).start()
    try:
        while True:
            entry = json.loads(lines.get(timeout=20))
            if entry["msg"] == "agent listening":
                break
        yield entry["port"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def manager(agent_port):
    config = make_config(agent_grpc_url=f"127.0.0.1:{agent_port}", agent_grpc_timeout=10.0, agent_retry_total=10.0)
    with manager_server(config) as mgr:
        yield mgr


@pytest.fixture
def agent(agent_port) -> Iterator[agent_pb2_grpc.AgentServiceStub]:
    """A direct client of the agent, to look at what it holds behind the manager's back."""
    with grpc.insecure_channel(f"127.0.0.1:{agent_port}") as channel:
        yield agent_pb2_grpc.AgentServiceStub(channel)


def agent_error(call, request_message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request_message, timeout=10)
    return info.value


def test_readme_command_is_the_one_in_our_readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        assert README_RUN in handle.read()


def test_readme_run_verbatim_is_accepted_by_the_real_agent_and_runs_both_algorithms(manager, agent):
    status, headers, body = curl_shell(readme_command(README_RUN, manager.http_port))
    assert status == 200 and headers["content-type"] == "application/json", body
    run_id = json.loads(body)["id"]
    # The agent holds this computation, with both algorithms and both datasets still to come.
    error = agent_error(agent.Result, agent_pb2.ResultRequest())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"computation '{run_id}' still needs 2 algorithm(s) and 2 dataset(s) before Result"
    # A user finishes the run through the manager alone: two algorithms, two datasets, one result document.
    for kind, content in (("algorithm", SUM_ALGORITHM), ("algorithm", COUNT_ALGORITHM),
                          ("datasets", DATASET_A), ("datasets", DATASET_B)):
        status, _, reply = request("POST", f"{manager.base}/runs/{run_id}/{kind}", raw=content, headers=OCTET)
        assert status == 200 and reply["id"] == sha256(content), reply
    status, headers, result = request("GET", f"{manager.base}/runs/{run_id}/result")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream", result
    document = json.loads(result)
    assert document["computation"] == run_id
    assert [(entry["algorithm"], entry["name"], base64.b64decode(entry["result"])) for entry in document["results"]] \
        == [(sha256(SUM_ALGORITHM), "algorithm1", b"15,60=75"), (sha256(COUNT_ALGORITHM), "algorithm2", b"lines=2,2")]
    status, _, state = request("GET", f"{manager.base}/runs/{run_id}")
    assert status == 200 and state["state"] == "complete" and state["result_bytes"] == len(result.encode())


def test_readme_run_over_grpc_is_accepted_by_the_real_agent(manager, agent):
    with grpc.insecure_channel(manager.grpc_target) as channel:
        reply = manager_pb2_grpc.ManagerServiceStub(channel).Run(manager_pb2.RunRequest(**README_GRPC_RUN),
                                                                 timeout=30)
    assert reply.ID
    error = agent_error(agent.Result, agent_pb2.ResultRequest())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"computation '{reply.ID}' still needs 2 algorithm(s) and 2 dataset(s) before Result"
    # Both declared algorithm slots take an upload; a third is beyond the manifest.
    assert agent.Algo(agent_pb2.AlgoRequest(algorithm=SUM_ALGORITHM), timeout=10).algorithmID == sha256(SUM_ALGORITHM)
    assert agent.Algo(agent_pb2.AlgoRequest(algorithm=COUNT_ALGORITHM), timeout=10).algorithmID \
        == sha256(COUNT_ALGORITHM)
    error = agent_error(agent.Algo, agent_pb2.AlgoRequest(algorithm=b"print('a third')"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"all 2 declared algorithm(s) of computation '{reply.ID}' are already uploaded"
