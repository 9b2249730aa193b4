"""The real reference agent (agent/ package) served in-process on 127.0.0.1:0, and the computations the run
tests, the end-to-end test, the demo and the benchmark all send (one definition of "a sum over two CSVs"; the
algorithm itself is tests/helpers.py's, which the agent's unit tests send too)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from agent import service
from agent.config import AgentConfig
from tests.helpers import PYTHON
from tests.helpers import SUM_ALGORITHM as SUM_ALGORITHM  # re-exported: the run tests, bench and demo import it here

# World-traversable, not pytest's 0700 tmp: the agent runs algorithms as nobody when we are root.
WORK_ROOT = "/var/lib/cocos-test/e2e"

DATASET_A = b"1,2,3\n4,5\n"  # 15
DATASET_B = b"10,20\n30\n"  # 60
EXPECTED = b"15,60=75"
FAILING_ALGORITHM = b"import sys\nsys.stderr.write('no such column: price\\n')\nsys.exit(3)\n"
SLEEPING_ALGORITHM = b"import time\ntime.sleep(60)\n"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def run_body(name: str = "sum", ttl: int = 30, **extra: object) -> dict:
    """A /run body the reference agent accepts: one algorithm slot, two dataset slots."""
    return {"name": name, "description": "sum over two CSVs", "owner": "alice", "datasets": ["a.csv", "b.csv"],
            "algorithms": ["sum.py"], "dataset_providers": ["bob"], "algorithm_providers": ["alice"],
            "result_consumers": ["alice"], "ttl": ttl, **extra}


@contextmanager
def reference_agent(**overrides: object) -> Iterator[service.AgentServer]:
    os.makedirs(WORK_ROOT, exist_ok=True)
    os.chmod(WORK_ROOT, 0o755)
    work_dir = tempfile.mkdtemp(prefix="agent-", dir=WORK_ROOT)
    config = replace(AgentConfig(host="127.0.0.1", port=0, work_dir=work_dir, python=PYTHON, tpm_tcti="none"),
                     **overrides)
    server = service.start(config)
    try:
        yield server
    finally:
        server.stop(0)
        shutil.rmtree(work_dir, ignore_errors=True)
