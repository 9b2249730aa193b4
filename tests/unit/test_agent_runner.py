"""The sandboxed run: failures, ttl, limits, identity and result handling, through the real server."""

import ast
import glob
import os
import time

import grpc
import pytest
from agent_testlib import DATASET_A, manifest, rpc_error, running_agent, upload_all


def _run(agent, algorithm: bytes, **changes) -> bytes:
    agent.run(manifest(datasets=["a.csv"], **changes))
    upload_all(agent, algorithm=algorithm, datasets=(DATASET_A,))
    return agent.result()


@pytest.fixture
def agent():
    with running_agent() as running:
        yield running


def test_stdout_is_the_result_when_no_result_file_is_written(agent):
    assert _run(agent, b"import sys\nprint(open(sys.argv[1]).read().count(','))") == b"3\n"


def test_failing_algorithm_reports_exit_status_and_stderr_tail_and_stays_failed(agent):
    algorithm = b"import sys\nprint('x' * 5000, file=sys.stderr)\nprint('bad row 7', file=sys.stderr)\nsys.exit(3)"
    error = rpc_error(_run, agent, algorithm)
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details().startswith("algorithm failed with exit status 3; stderr tail: ")
    assert error.details().endswith("bad row 7")
    assert len(error.details()) < 1200  # the tail, not the whole stderr
    assert agent.state == "failed"
    again = rpc_error(agent.result)
    assert (again.code(), again.details()) == (error.code(), error.details())


def test_python_exception_is_quoted(agent):
    error = rpc_error(_run, agent, b"raise ValueError('no such column')")
    assert error.code() == grpc.StatusCode.ABORTED
    assert "exit status 1" in error.details() and "ValueError: no such column" in error.details()


def test_ttl_kills_the_whole_process_group(agent):
    algorithm = b"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("child.pid", "w").write(str(child.pid))
time.sleep(60)
"""
    started = time.monotonic()
    error = rpc_error(lambda: _run(agent, algorithm, ttl=1))
    assert time.monotonic() - started < 10
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "algorithm exceeded the computation's ttl of 1 s and was killed"
    (pid_file,) = glob.glob(os.path.join(agent.work_dir, "computation-*", "run", "child.pid"))
    assert _gone(int(open(pid_file).read()))
    assert rpc_error(agent.result).code() == grpc.StatusCode.DEADLINE_EXCEEDED  # stored, not re-run


def _gone(pid: int, limit: float = 5.0) -> bool:
    """True once the pid no longer runs (absent, or a zombie waiting for init)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_the_algorithm_runs_once(agent):
    first = _run(agent, b"import os\nprint(os.urandom(16).hex())")
    assert agent.result() == first
    assert agent.result() == first


def test_output_limit_on_the_result_file():
    with running_agent(max_output_bytes=1000) as agent:
        algorithm = b"import os\nopen(os.environ['RESULT_PATH'], 'wb').write(b'x' * 5000)"
        error = rpc_error(_run, agent, algorithm)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (
            error.details() == "algorithm result file exceeds the output limit of 1000 bytes (AGENT_MAX_OUTPUT_BYTES)"
        )


def test_output_limit_on_stdout():
    with running_agent(max_output_bytes=1000) as agent:
        error = rpc_error(_run, agent, b"print('y' * 5000)")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "stdout exceeds the output limit of 1000 bytes" in error.details()


def test_output_of_exactly_the_limit_is_returned():
    with running_agent(max_output_bytes=1000) as agent:
        algorithm = b"import os\nopen(os.environ['RESULT_PATH'], 'wb').write(b'z' * 1000)"
        assert _run(agent, algorithm) == b"z" * 1000


def test_memory_limit():
    with running_agent(max_memory_bytes=256 * 1024 * 1024) as agent:
        error = rpc_error(_run, agent, b"hog = bytearray(1024 * 1024 * 1024)")
        assert error.code() == grpc.StatusCode.ABORTED
        assert "MemoryError" in error.details()


def test_environment_is_minimal_and_cwd_is_fresh(agent):
    algorithm = b"""
import os, sys
state = repr((sorted(os.environ), os.getcwd(), os.listdir("."), sys.argv[1:]))
open(os.environ["RESULT_PATH"], "w").write(state)
"""
    keys, cwd, listing, args = ast.literal_eval(_run(agent, algorithm).decode())
    assert "RESULT_PATH" in keys and not any(key.startswith(("AGENT_", "GRPC")) for key in keys)
    assert cwd.endswith("/run") and cwd.startswith(agent.work_dir)
    assert listing == []
    assert len(args) == 1 and os.path.basename(args[0]).startswith("dataset")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_algorithm_runs_as_nobody_when_the_agent_is_root(agent):
    algorithm = b"import os\nprint(os.getuid(), os.getgid(), os.getgroups())"
    assert _run(agent, algorithm) == b"65534 65534 []\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the leak needs a root agent")
def test_result_link_to_a_root_only_file_is_refused(agent):
    error = rpc_error(_run, agent, b"import os\nos.symlink('/etc/shadow', os.environ['RESULT_PATH'])")
    assert error.code() == grpc.StatusCode.ABORTED
    assert "must be a regular file" in error.details()
    assert "root:" not in error.details()


def test_missing_interpreter_is_an_internal_error_without_traceback():
    with running_agent(python="no-such-python3") as agent:
        error = rpc_error(_run, agent, b"print(1)")
        assert error.code() == grpc.StatusCode.INTERNAL
        assert "'no-such-python3' not found" in error.details() and "Traceback" not in error.details()
