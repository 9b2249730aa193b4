"""The real reference agent (agent/ package) served in-process on 127.0.0.1:0, and the computations the run
tests send: the product's "sum over two CSVs" (guest/demo.py, which the demo, the end-to-end test and the
benchmarks send too) plus a failing and a sleeping algorithm."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import grpc

from agent import service
from agent.config import AgentConfig
from guest.demo import DATASET_A, DATASET_B, EXPECTED, SUM_ALGORITHM, run_body
from tests.helpers import PYTHON

__all__ = ["DATASET_A", "DATASET_B", "EXPECTED", "PYTHON", "SUM_ALGORITHM", "CallRecorder", "reference_agent",
           "run_body", "sha256"]

# World-traversable, not pytest's 0700 tmp: the agent runs algorithms as nobody when we are root.
WORK_ROOT = "/var/lib/cocos-test/e2e"

FAILING_ALGORITHM = b"import sys\nsys.stderr.write('no such column: price\\n')\nsys.exit(3)\n"
SLEEPING_ALGORITHM = b"import time\ntime.sleep(60)\n"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class CallRecorder(grpc.ServerInterceptor):
    """Records the full method name of every call that reaches the agent (e.g. "/agent.AgentService/Run"), health
    checks left out, so a test can assert that nothing was sent."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def intercept_service(self, continuation, details):
        if not details.method.startswith("/grpc.health."):
            self.calls.append(details.method)
        return continuation(details)


@contextmanager
def reference_agent(recorder: CallRecorder | None = None, **overrides: object) -> Iterator[service.AgentServer]:
    """The real agent on 127.0.0.1:0 in a fresh work directory; `recorder` sees every call it receives."""
    os.makedirs(WORK_ROOT, exist_ok=True)
    os.chmod(WORK_ROOT, 0o755)
    work_dir = tempfile.mkdtemp(prefix="agent-", dir=WORK_ROOT)
    config = replace(AgentConfig(host="127.0.0.1", port=0, work_dir=work_dir, python=PYTHON, tpm_tcti="none"),
                     **overrides)
    server = service.start(config, [recorder] if recorder else [])
    try:
        yield server
    finally:
        server.stop(0)
        shutil.rmtree(work_dir, ignore_errors=True)
