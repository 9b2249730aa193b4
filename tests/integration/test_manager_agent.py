"""Forwarding when the agent is missing or late: bounded retry, then 503 / UNAVAILABLE; a late agent is found."""
from __future__ import annotations

import socket
import threading
import time

import grpc
import pytest
from manager_support import agent_server, make_config, manager_server, request

from cocos_pb import manager_pb2, manager_pb2_grpc

RUN = {"name": "r", "owner": "o", "datasets": ["d"], "algorithms": ["a"], "ttl": 5}


def free_port() -> int:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_absent_agent_gives_503_after_bounded_retry():
    with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{free_port()}", agent_retry_total=1.5)) as mgr:
        start = time.monotonic()
        status, headers, body = request("POST", mgr.base + "/run", RUN)
        elapsed = time.monotonic() - start
        assert status == 503 and headers["Content-Type"] == "application/json"
        assert "unavailable" in body["error"] and body["agent_code"] == "UNAVAILABLE"
        assert 1.4 <= elapsed < 4, elapsed


def test_absent_agent_gives_grpc_unavailable():
    with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{free_port()}", agent_retry_total=1.0)) as mgr:
        with grpc.insecure_channel(mgr.grpc_target) as chan:
            with pytest.raises(grpc.RpcError) as err:
                manager_pb2_grpc.ManagerServiceStub(chan).Run(
                    manager_pb2.RunRequest(name="r", owner="o", datasets=["d"], algorithms=["a"], ttl=5), timeout=20)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_that_boots_late_is_reached_by_retry():
    port = free_port()
    with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{port}", agent_retry_total=15)) as mgr:
        started = threading.Event()
        release = threading.Event()

        def boot_late():
            # Nothing answers gRPC on the port until the manager has tried it once: a bare TCP listener takes the
            # manager's first connection and closes it (that attempt fails), and only then does the agent start.
            with socket.create_server(("127.0.0.1", port)) as listener:
                listener.settimeout(20)
                first, _ = listener.accept()
                first.close()
                boot_late.tried = time.monotonic()
            with agent_server(port) as (recorder, _, _server):
                started.set()
                release.wait(20)
                boot_late.recorder = recorder
        thread = threading.Thread(target=boot_late)
        thread.start()
        t0 = time.monotonic()
        status, _, body = request("POST", mgr.base + "/run", RUN)
        elapsed = time.monotonic() - t0
        release.set()
        thread.join()
        assert started.is_set() and status == 200, body
        assert boot_late.recorder.received[0]["id"] == body["id"]
        assert t0 < boot_late.tried < t0 + elapsed and elapsed < 6, elapsed  # a failed try, then the retry


def test_agent_error_keeps_its_meaning_not_retried():
    class Refusing(grpc.GenericRpcHandler):
        calls = 0

        def service(self, details):
            def refuse(request, context):
                Refusing.calls += 1
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "computation rejected")
            return grpc.unary_unary_rpc_method_handler(refuse)

    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[Refusing()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{port}", agent_retry_total=5)) as mgr:
            status, _, body = request("POST", mgr.base + "/run", RUN)
        # The agent judged the computation invalid: a client error (400), said by the agent, not a gateway fault.
        assert status == 400 and "computation rejected" in body["error"] and body["agent_code"] == "INVALID_ARGUMENT"
        assert Refusing.calls == 1
    finally:
        server.stop(0)
