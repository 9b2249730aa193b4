"""Which agent a run goes to: the forward of the agent's guest port, and the newest created domain first."""
from __future__ import annotations

import pytest

from manager_api import jobs
from manager_api.agent_client import HTTP_STATUS, AgentError
from manager_api.agent_locator import AgentLocator, agent_address
from manager_api.config import Config
from manager_api.domains import CREATE, DELETE


def fwd(host: str, host_port: int, guest_port: int, protocol: str = "tcp") -> dict:
    return {"host_address": host, "host_port": host_port, "guest_port": guest_port, "protocol": protocol}


@pytest.mark.parametrize("ports, expected", [
    ([fwd("127.0.0.1", 7020, 7002)], "127.0.0.1:7020"),
    ([fwd("127.0.0.1", 2222, 22), fwd("127.0.0.2", 7021, 7002)], "127.0.0.2:7021"),
    ([fwd("0.0.0.0", 7022, 7002)], "127.0.0.1:7022"),  # bound everywhere: reached through loopback
    ([fwd("127.0.0.1", 7020, 7002, "udp")], None),
    ([fwd("127.0.0.1", 2222, 22)], None),
    ([], None),
])
def test_agent_address_from_forwards(ports, expected):
    assert agent_address({"forwarded_ports": ports}, 7002) == expected


def test_newest_successful_create_first():
    store = jobs.JobStore()
    for name, kind, state, finished in (("old", CREATE, jobs.SUCCESSFUL, 1.0), ("new", CREATE, jobs.SUCCESSFUL, 3.0),
                                        ("broken", CREATE, jobs.FAILED, 4.0), ("gone", DELETE, jobs.SUCCESSFUL, 5.0),
                                        ("old", CREATE, jobs.SUCCESSFUL, 2.0)):
        job, _ = store.submit(kind, name, lambda job: None)
        job.set_state(state)
        job.finished_at = finished
    assert AgentLocator(Config(), store, None)._created_newest_first() == ["new", "old"]


def test_agent_codes_keep_their_meaning_over_http():
    import grpc
    assert AgentError("x", grpc.StatusCode.FAILED_PRECONDITION).http_status == 409
    assert AgentError("x", grpc.StatusCode.ABORTED).http_status == 422
    assert AgentError("x", grpc.StatusCode.INTERNAL).http_status == 502  # the agent's own fault: a bad gateway
    assert AgentError("x", grpc.StatusCode.DEADLINE_EXCEEDED, unavailable=True).http_status == 503
    assert HTTP_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] == 504
