"""guest.vm.wait_for_agent against a real gRPC health server on 127.0.0.1: it returns once the answer is SERVING,
and gives up at its deadline naming the last answer when the agent keeps answering NOT_SERVING or nothing listens
(it used to retry NOT_SERVING forever, until pytest's timeout)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from guest.vm import GuestTimeout, free_loopback_port, wait_for_agent


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(0)


def bounded(call, limit: float):
    """call() in a thread; (result or exception, seconds), or a test failure if it still runs after `limit` s."""
    outcome: dict = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["value"] = exc
        outcome["seconds"] = time.monotonic() - started
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"wait_for_agent still waiting after {limit} s: it has no deadline")
    return outcome["value"], outcome["seconds"]


def test_not_serving_forever_times_out_naming_the_status(health_server):
    port, _ = health_server
    error, seconds = bounded(lambda: wait_for_agent(port, 1.5), 20)
    assert isinstance(error, GuestTimeout), error
    assert "last answer: status NOT_SERVING" in str(error) and f"127.0.0.1:{port}" in str(error)
    assert 1.5 <= seconds < 10


def test_nothing_listening_times_out_naming_the_grpc_error():
    port = free_loopback_port()
    error, seconds = bounded(lambda: wait_for_agent(port, 1.0), 20)
    assert isinstance(error, GuestTimeout), error
    assert "last answer: gRPC error UNAVAILABLE" in str(error)
    assert 1.0 <= seconds < 10


def test_returns_once_the_agent_turns_serving(health_server):
    port, servicer = health_server
    timer = threading.Timer(0.5, servicer.set, ("", health_pb2.HealthCheckResponse.SERVING))
    timer.start()
    try:
        waited, _ = bounded(lambda: wait_for_agent(port, 20), 30)
    finally:
        timer.cancel()
    assert isinstance(waited, float) and 0.5 <= waited < 20
