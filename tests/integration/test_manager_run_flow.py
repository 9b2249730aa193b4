"""Runs through the manager's HTTP API to the real reference agent (agent/ in-process on loopback): uploads,
result, the agent's errors with their meaning kept, bad input refused with nothing changed."""
from __future__ import annotations

import http.client

import pytest
from manager_support import make_config, manager_server, request
from run_support import (
    DATASET_A,
    DATASET_B,
    EXPECTED,
    FAILING_ALGORITHM,
    SLEEPING_ALGORITHM,
    SUM_ALGORITHM,
    CallRecorder,
    reference_agent,
    run_body,
    sha256,
)

OCTET = {"Content-Type": "application/octet-stream"}
UPLOAD_LIMIT = 64 * 1024


RECORDER = CallRecorder()


@pytest.fixture(scope="module")
def agent():
    with reference_agent(RECORDER) as server:
        yield server


@pytest.fixture(scope="module")
def manager(agent):
    config = make_config(agent_grpc_url=f"127.0.0.1:{agent.port}", max_upload_bytes=UPLOAD_LIMIT)
    with manager_server(config) as mgr:
        yield mgr


def start_run(manager, **body) -> str:
    status, _, reply = request("POST", manager.base + "/run", run_body(**body))
    assert status == 200, reply
    return reply["id"]


def upload(manager, run_id: str, kind: str, content: bytes, headers: dict | None = None):
    return request("POST", f"{manager.base}/runs/{run_id}/{kind}", raw=content, headers=headers or OCTET)


def upload_all(manager, run_id: str, algorithm: bytes = SUM_ALGORITHM) -> None:
    for kind, content in (("algorithm", algorithm), ("datasets", DATASET_A), ("datasets", DATASET_B)):
        status, _, reply = upload(manager, run_id, kind, content)
        assert status == 200 and reply["id"] == sha256(content), reply


def run_state(manager, run_id: str) -> dict:
    status, _, reply = request("GET", f"{manager.base}/runs/{run_id}")
    assert status == 200, reply
    return reply


def test_run_upload_result(manager, agent):
    run_id = start_run(manager)
    state = run_state(manager, run_id)
    assert state["state"] == "forwarded" and state["agent"] == f"127.0.0.1:{agent.port}" and state["domain"] == ""
    upload_all(manager, run_id)
    state = run_state(manager, run_id)
    assert state["algorithm"] == sha256(SUM_ALGORITHM)
    assert state["datasets"] == [sha256(DATASET_A), sha256(DATASET_B)] and state["state"] == "receiving"
    status, headers, result = request("GET", f"{manager.base}/runs/{run_id}/result")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream" and result == EXPECTED.decode()
    assert run_state(manager, run_id)["state"] == "complete" and run_state(manager, run_id)["result_bytes"] == 8
    assert request("GET", f"{manager.base}/runs/{run_id}/result")[2] == EXPECTED.decode()  # stored, not rerun


def test_failing_algorithm_is_422_with_its_stderr(manager):
    run_id = start_run(manager)
    upload_all(manager, run_id, FAILING_ALGORITHM)
    status, _, reply = request("GET", f"{manager.base}/runs/{run_id}/result")
    assert status == 422 and reply["agent_code"] == "ABORTED", reply
    assert "exit status 3" in reply["error"] and "no such column: price" in reply["error"]
    assert run_state(manager, run_id)["state"] == "failed"


def test_algorithm_past_its_ttl_is_504(manager):
    run_id = start_run(manager, ttl=1)
    upload_all(manager, run_id, SLEEPING_ALGORITHM)
    status, _, reply = request("GET", f"{manager.base}/runs/{run_id}/result")
    assert status == 504 and reply["agent_code"] == "DEADLINE_EXCEEDED" and "ttl" in reply["error"], reply
    assert run_state(manager, run_id)["state"] == "failed"


def test_result_before_uploads_is_409_and_changes_nothing(manager):
    run_id = start_run(manager)
    assert RECORDER.calls[-1] == "/agent.AgentService/Run"
    status, _, reply = request("GET", f"{manager.base}/runs/{run_id}/result")
    assert RECORDER.calls[-1] == "/agent.AgentService/Result"  # asked, and the agent said not yet
    assert status == 409 and reply["agent_code"] == "FAILED_PRECONDITION" and "algorithm" in reply["error"], reply
    assert run_state(manager, run_id)["state"] == "forwarded"
    upload_all(manager, run_id)  # the run is still usable afterwards
    assert request("GET", f"{manager.base}/runs/{run_id}/result")[2] == EXPECTED.decode()


def test_same_dataset_twice_is_409(manager):
    run_id = start_run(manager)
    assert upload(manager, run_id, "datasets", DATASET_A)[0] == 200
    status, _, reply = upload(manager, run_id, "datasets", DATASET_A)
    assert status == 409 and reply["agent_code"] == "ALREADY_EXISTS"
    assert run_state(manager, run_id)["datasets"] == [sha256(DATASET_A)]


def test_older_run_on_the_same_agent_is_refused(manager):
    first = start_run(manager, name="first")
    second = start_run(manager, name="second")
    status, _, reply = upload(manager, first, "algorithm", SUM_ALGORITHM)
    assert status == 409 and reply["field"] == "id" and second in reply["error"]
    assert run_state(manager, first)["state"] == "superseded" and run_state(manager, second)["state"] == "forwarded"


@pytest.mark.parametrize("content, headers, status, words", [
    (b"x" * (UPLOAD_LIMIT + 1), OCTET, 413, "limit"),
    (b"", OCTET, 400, "empty"),
    (SUM_ALGORITHM, {"Content-Type": "text/plain"}, 415, "application/octet-stream"),
    (SUM_ALGORITHM, {"Content-Type": "application/json"}, 415, "application/octet-stream"),
])
def test_bad_uploads_change_nothing(manager, content, headers, status, words):
    run_id = start_run(manager)
    before = len(RECORDER.calls)
    got, reply_headers, reply = upload(manager, run_id, "algorithm", content, headers)
    assert RECORDER.calls[before:] == []  # refused by the manager: nothing reached the agent
    assert got == status and words in reply["error"] and reply_headers["Content-Type"] == "application/json"
    assert run_state(manager, run_id)["algorithm"] == "" and run_state(manager, run_id)["state"] == "forwarded"


def test_chunked_upload_without_length(manager):
    run_id = start_run(manager)
    conn = http.client.HTTPConnection("127.0.0.1", manager.http_port, timeout=30)
    try:
        conn.request("POST", f"/runs/{run_id}/algorithm", body=iter([SUM_ALGORITHM[:10], SUM_ALGORITHM[10:]]),
                     headers=OCTET, encode_chunked=True)
        reply = conn.getresponse()
        assert reply.status == 200 and sha256(SUM_ALGORITHM) in reply.read().decode()
    finally:
        conn.close()


def test_malformed_chunked_body_is_400(manager):
    run_id = start_run(manager)
    conn = http.client.HTTPConnection("127.0.0.1", manager.http_port, timeout=30)
    try:  # a chunked header, then a body that is not in chunk format
        conn.request("POST", f"/runs/{run_id}/algorithm", body=SUM_ALGORITHM,
                     headers={**OCTET, "Transfer-Encoding": "chunked"})
        reply = conn.getresponse()
        assert reply.status == 400 and "chunk" in reply.read().decode()
    finally:
        conn.close()
    assert RECORDER.calls[-1] == "/agent.AgentService/Run"  # the bad body never reached the agent
    assert run_state(manager, run_id)["algorithm"] == ""


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("GET", "/result"), ("POST", "/algorithm"),
                                            ("POST", "/datasets")])
def test_unknown_run_is_404(manager, method, suffix):
    before = len(RECORDER.calls)
    status, _, reply = request(method, f"{manager.base}/runs/no-such-run{suffix}",
                               raw=b"x" if method == "POST" else None, headers=OCTET)
    assert status == 404 and reply["field"] == "id" and "no-such-run" in reply["error"]
    assert RECORDER.calls[before:] == []


def test_run_for_a_missing_domain_is_404_and_nothing_is_sent(manager):
    before = len(RECORDER.calls)
    status, _, reply = request("POST", manager.base + "/run", run_body(domain="ctest-e2e-no-such-domain"))
    assert status == 404 and reply["field"] == "domain", reply
    status, _, reply = request("POST", manager.base + "/run", run_body(domain=""))
    assert status == 400 and reply["field"] == "domain", reply
    assert RECORDER.calls[before:] == []  # the configured agent (this one) got nothing either
    start_run(manager)
    assert RECORDER.calls[before:] == ["/agent.AgentService/Run"]  # the recorder does see what is sent


def test_agent_refusal_of_the_manifest_is_400(manager):
    # HTTP lets ttl 0 through (as the original did); the reference agent needs a time limit and says so.
    status, _, reply = request("POST", manager.base + "/run", run_body(ttl=0))
    assert status == 400 and reply["agent_code"] == "INVALID_ARGUMENT" and "'ttl' must be > 0" in reply["error"], reply
