"""The small kinds of issue 9, one test each: bounded metrics labels, reflection behind the token, text checks on
every field, error bodies without host paths, a run whose agent restarted, a chunked JSON body, slow clients."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from manager_support import agent_server, make_config, manager_server, request
from run_support import SUM_ALGORITHM, reference_agent, run_body

from cocos_pb import manager_pb2, manager_v1_pb2, manager_v1_pb2_grpc

RUN = {"name": "r", "owner": "o", "datasets": ["d"], "algorithms": ["a"], "ttl": 5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unknown_grpc_methods_are_one_metrics_label():
    with manager_server(make_config(token="tok")) as mgr, grpc.insecure_channel(mgr.grpc_target) as chan:
        _, _, before = request("GET", mgr.base + "/metrics", headers={"Authorization": "Bearer tok"})
        names = [f"/x{uuid.uuid4().hex}.S/M{i}" for i in range(300)]
        for name in names:
            call = chan.unary_unary(name, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError):
                call(b"", timeout=5)
        _, _, after = request("GET", mgr.base + "/metrics", headers={"Authorization": "Bearer tok"})
    assert not any(name in after for name in names)
    assert 'route="unknown",status="UNAUTHENTICATED"} 300.0' in after
    assert len(after) - len(before) < 2000, len(after) - len(before)


def test_reflection_needs_the_token():
    with manager_server(make_config(token="tok")) as mgr, grpc.insecure_channel(mgr.grpc_target) as chan:
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ServerReflectionInfo(iter(ask), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = stub.ServerReflectionInfo(iter(ask), timeout=10, metadata=[("authorization", "Bearer tok")])
        assert "cocos.manager.v1.ManagerService" in {s.name for a in answers for s in a.list_services_response.service}


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/domains/a%00", None),
    ("DELETE", "/domains/a%00b", None),
    ("GET", "/jobs/x%01y", None),
    ("POST", "/domain", {"pool": "\ud800"}),
    ("POST", "/domain", {"domain": "dom\u0000.xml"}),
    ("POST", "/run", {**RUN, "name": "a\u0000b"}),
    ("POST", "/run", {**RUN, "datasets": ["\udfff"]}),
    ("POST", "/run", {**RUN, "description": "bell\u0007"}),
    ("GET", "/jobs?after=%00", None),
])
def test_nul_bytes_and_lone_surrogates_are_400_over_http(method, path, body):
    with manager_server(make_config()) as mgr:
        raw = json.dumps(body).encode() if body is not None else None  # ensure_ascii keeps \\ud800 as written
        status, headers, reply = request(method, mgr.base + path, raw=raw,
                                         headers={"Content-Type": "application/json"} if raw else {})
    assert status == 400 and headers["Content-Type"] == "application/json", reply
    assert "Traceback" not in json.dumps(reply) and "internal error" not in reply["error"]


def test_nul_bytes_are_invalid_argument_over_grpc():
    with manager_server(make_config()) as mgr, grpc.insecure_channel(mgr.grpc_target) as chan:
        v1 = manager_v1_pb2_grpc.ManagerServiceStub(chan)
        for call, message in ((v1.GetDomain, manager_v1_pb2.GetDomainRequest(name="a\0b")),
                              (v1.DeleteDomain, manager_v1_pb2.DeleteDomainRequest(name="a\0b")),
                              (v1.GetJob, manager_v1_pb2.GetJobRequest(id="\x01")),
                              (v1.CreateDomainAsync, manager_pb2.CreateDomainRequest(pool="p\0.xml")),
                              (v1.CreateRun, manager_v1_pb2.CreateRunRequest(run=manager_pb2.RunRequest(
                                  name="x\0", owner="o", datasets=["d"], algorithms=["a"], ttl=5)))):
            with pytest.raises(grpc.RpcError) as err:
                call(message, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert "Exception" not in err.value.details() and "Traceback" not in err.value.details()
        # Bytes that are no protobuf message at all: INVALID_ARGUMENT too, not INTERNAL.
        raw = chan.unary_unary("/cocos.manager.v1.ManagerService/GetDomain", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\x0a\x02\xff\xfe", timeout=10)  # field 1 (name) holding invalid UTF-8
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_error_bodies_name_the_rule_not_host_paths(tmp_path):
    xml_dir = tmp_path / "xml"
    xml_dir.mkdir()
    config = make_config(xml_dir=str(xml_dir), libvirt_uri="qemu+unix:///system?socket=/nonexistent/cocos.sock")
    with manager_server(config) as mgr:
        replies = [request("POST", mgr.base + "/domain", {"pool": "/etc/passwd"}),
                   request("POST", mgr.base + "/domain", {"pool": "missing.xml"}),
                   request("POST", mgr.base + "/domain", {"pool": "../x.xml"}),
                   request("GET", mgr.base + "/domains"),
                   request("GET", mgr.base + "/domains/x")]
        with grpc.insecure_channel(mgr.grpc_target) as chan, pytest.raises(grpc.RpcError) as err:
            manager_v1_pb2_grpc.ManagerServiceStub(chan).ListDomains(manager_v1_pb2.ListDomainsRequest(), timeout=10)
    assert [r[0] for r in replies] == [400, 404, 400, 503, 503]
    for _, _, body in replies:
        text = json.dumps(body)
        assert str(xml_dir) not in text and str(tmp_path) not in text and "/nonexistent" not in text, text
    assert "CC_MANAGER_XML_DIR" in replies[0][2]["error"] and replies[0][2]["field"] == "pool"
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "/nonexistent" not in err.value.details()


def test_a_run_whose_agent_restarted_is_failed_with_the_reason():
    port = free_port()
    config = make_config(agent_grpc_url=f"127.0.0.1:{port}", agent_retry_total=10)
    with manager_server(config) as mgr:
        with reference_agent(port=port):
            status, _, body = request("POST", mgr.base + "/run", run_body())
            assert status == 200, body
            run_id = body["id"]
            status, _, _ = request("POST", f"{mgr.base}/runs/{run_id}/algorithm", raw=SUM_ALGORITHM,
                                   headers={"Content-Type": "application/octet-stream"})
            assert status == 200
        with reference_agent(port=port):  # the agent came back (a restart): it holds nothing
            status, _, reply = request("GET", f"{mgr.base}/runs/{run_id}/result")
            assert status == 409 and reply["error"].startswith("id: agent restarted"), reply
            state = request("GET", f"{mgr.base}/runs/{run_id}")[2]
            assert state["state"] == "failed" and state["error"].startswith("agent restarted"), state
            assert request("POST", f"{mgr.base}/runs/{run_id}/datasets", raw=b"1\n",
                           headers={"Content-Type": "application/octet-stream"})[0] == 409


def test_a_chunked_json_body_is_accepted():
    with agent_server() as (recorder, port, _), \
            manager_server(make_config(agent_grpc_url=f"127.0.0.1:{port}")) as mgr:
        conn = http.client.HTTPConnection("127.0.0.1", mgr.http_port, timeout=30)
        payload = json.dumps(RUN).encode()
        conn.request("POST", "/run", body=iter([payload[:7], payload[7:]]), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        reply = conn.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 200 and recorder.received[-1]["id"] == body["id"]
        conn.request("POST", "/domain", body=iter([b'{"pool": ', b'"missing.xml"}']), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        reply = conn.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 404 and body["field"] == "pool", body  # parsed, then judged: no "bad request"


def test_slow_clients_are_cut_off_and_cannot_starve_health():
    """More trickling partial-header connections than the server has threads: each is shut at the deadline."""
    with manager_server(make_config(header_timeout=2.0)) as mgr:
        socks = []
        for _ in range(48):
            sock = socket.create_connection(("127.0.0.1", mgr.http_port))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.5):
                for sock in socks:
                    try:
                        sock.sendall(b"X")
                    except OSError:
                        pass
        threading.Thread(target=trickle, daemon=True).start()
        try:
            start = time.monotonic()
            status, _, _ = request("GET", mgr.base + "/health", timeout=10)
            waited = time.monotonic() - start
            assert status == 200 and waited < 2.0 + 1.5, waited  # at worst one header deadline
            open_socks = list(socks)
            deadline = time.monotonic() + 3 * 2.0 + 2  # queued connections get their deadline once a thread frees
            while open_socks and time.monotonic() < deadline:
                open_socks = [sock for sock in open_socks if not _closed(sock)]
            assert open_socks == [], f"{len(open_socks)} slow connections still open"
            start = time.monotonic()
            assert request("GET", mgr.base + "/health", timeout=10)[0] == 200
            assert time.monotonic() - start < 1.0
        finally:
            stop.set()
            for sock in socks:
                sock.close()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
