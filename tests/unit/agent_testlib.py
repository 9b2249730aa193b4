"""Shared helpers for the agent tests: a real agent server on 127.0.0.1:0 and a real gRPC client."""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc
import pytest

from agent import service
from agent.config import AgentConfig
from cocos_pb import agent_pb2, agent_pb2_grpc
from guest.demo import SUM_ALGORITHM
from tests.helpers import PYTHON

# Under /var/lib (world-traversable), not pytest's 0700 tmp: the algorithm runs as nobody when we are root.
TEST_ROOT = "/var/lib/cocos-test/agent"

DATASET_A = b"1,2,3\n4,5\n"  # 15
DATASET_B = b"10\n20\n"  # 30


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def manifest(**changes: Any) -> bytes:
    """A computation as the manager sends it; keyword arguments override or add keys (None removes one)."""
    document: dict[str, Any] = {
        "id": "comp-1",
        "name": "sum",
        "description": "sum over two CSVs",
        "status": "executable",
        "owner": "alice",
        "start_time": "2025-01-01T00:00:00Z",
        "end_time": None,
        "datasets": ["a.csv", "b.csv"],
        "algorithms": ["sum.py"],
        "dataset_providers": ["bob"],
        "algorithm_providers": ["alice"],
        "result_consumers": ["alice"],
        "ttl": 30,
        "metadata": {"k": "v"},
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None or k == "end_time"}).encode()


@dataclass
class Agent:
    stub: agent_pb2_grpc.AgentServiceStub
    channel: grpc.Channel
    server: service.AgentServer
    work_dir: str

    def run(self, raw: bytes) -> str:
        return self.stub.Run(agent_pb2.RunRequest(computation=raw), timeout=10).Computation

    def algo(self, content: bytes) -> str:
        return self.stub.Algo(agent_pb2.AlgoRequest(algorithm=content), timeout=10).algorithmID

    def data(self, content: bytes) -> str:
        return self.stub.Data(agent_pb2.DataRequest(dataset=content), timeout=10).datasetID

    def result(self, timeout: float = 30) -> bytes:
        return self.stub.Result(agent_pb2.ResultRequest(), timeout=timeout).file

    def attestation(self) -> bytes:
        return self.stub.Attestation(agent_pb2.AttestationRequest(), timeout=10).file

    @property
    def state(self) -> str:
        return self.server.session.state.value


def make_work_dir() -> str:
    os.makedirs(TEST_ROOT, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    return tempfile.mkdtemp(prefix="work-", dir=TEST_ROOT)


@contextmanager
def running_agent(**overrides: Any) -> Iterator[Agent]:
    work_dir = make_work_dir()
    # No TPM unless a test gives one (tpm_tcti of a software TPM): the host's own TPM, if any, is not ours to extend.
    defaults = AgentConfig(host="127.0.0.1", port=0, work_dir=work_dir, python=PYTHON, tpm_tcti="none")
    server = service.start(replace(defaults, **overrides))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Agent(agent_pb2_grpc.AgentServiceStub(channel), channel, server, work_dir)
    finally:
        channel.close()
        server.stop(0)
        shutil.rmtree(work_dir, ignore_errors=True)


def upload_all(agent: Agent, algorithm: bytes = SUM_ALGORITHM, datasets: tuple[bytes, ...] = (DATASET_A, DATASET_B)):
    agent.algo(algorithm)
    for dataset in datasets:
        agent.data(dataset)


def rpc_error(call: Any, *args: Any) -> grpc.RpcError:
    """Call and return the RpcError it must raise."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value
