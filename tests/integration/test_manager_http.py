"""HTTP API against a real cheroot server on an ephemeral loopback port, with a real in-test gRPC agent."""
from __future__ import annotations

import json
import re

import pytest
from manager_support import README_RUN, agent_server, curl_shell, make_config, manager_server, readme_command, request
from prometheus_client.parser import text_string_to_metric_families

VALID_RUN = {"name": "r", "owner": "o", "datasets": ["d"], "algorithms": ["a"], "ttl": 10}


@pytest.fixture(scope="module")
def agent():
    with agent_server() as (recorder, port, _server):
        yield recorder, port


@pytest.fixture(scope="module")
def manager(agent):
    with manager_server(make_config(agent_grpc_url=f"127.0.0.1:{agent[1]}", max_body_bytes=4096)) as mgr:
        yield mgr


def test_readme_run_command_verbatim_reaches_agent(manager, agent):
    recorder = agent[0]
    before = len(recorder.received)
    status, headers, body = curl_shell(readme_command(README_RUN, manager.http_port))
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    run_id = json.loads(body)["id"]
    sent = recorder.received[before]
    assert sorted(sent) == sorted(["id", "name", "description", "status", "owner", "start_time", "end_time",
                                   "datasets", "algorithms", "dataset_providers", "algorithm_providers",
                                   "result_consumers", "ttl", "metadata"])
    assert sent["id"] == run_id
    assert sent["name"] == "my-run" and sent["description"] == "this is a test run" and sent["owner"] == "John Doe"
    assert sent["datasets"] == ["dataset1", "dataset2"] and sent["algorithms"] == ["algorithm1", "algorithm2"]
    assert sent["dataset_providers"] == ["provider1", "provider2"]
    assert sent["algorithm_providers"] == ["provider3", "provider4"]
    assert sent["result_consumers"] == ["consumer1", "consumer2"]
    assert sent["ttl"] == 3600 and sent["metadata"] == {}
    assert re.match(r"^\d{4}-\d\d-\d\dT", sent["start_time"]) and sent["end_time"] > sent["start_time"]


def test_health_is_health_json(manager):
    status, headers, body = request("GET", manager.base + "/health")
    assert status == 200 and headers["Content-Type"] == "application/health+json"
    assert body["status"] == "pass" and {"version", "commit", "description", "build_time"} <= set(body)


@pytest.mark.parametrize("body, field", [
    ({**VALID_RUN, "ttl": "3600"}, "ttl"),
    ({**VALID_RUN, "datasets": "d"}, "datasets"),
    ({**VALID_RUN, "datasets": []}, "datasets"),
    ({**VALID_RUN, "algorithms": [1]}, "algorithms.0"),
    ({k: v for k, v in VALID_RUN.items() if k != "owner"}, "owner"),
    ({**VALID_RUN, "name": ""}, "name"),
    ([1, 2], "body"),
])
def test_invalid_run_names_the_field(manager, agent, body, field):
    before = len(agent[0].received)
    status, headers, reply = request("POST", manager.base + "/run", body)
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert reply["field"] == field and field.split(".")[0] in reply["error"]
    assert len(agent[0].received) == before, "nothing must be forwarded"


def test_malformed_json_is_400(manager):
    status, _, reply = request("POST", manager.base + "/run", raw=b'{"name": ')
    assert status == 400 and "malformed JSON" in reply["error"]


def test_non_json_content_type_is_415(manager):
    status, headers, reply = request("POST", manager.base + "/run", raw=b"name=x",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and headers["Content-Type"] == "application/json" and "Content-Type" in reply["error"]


def test_oversize_body_is_413(manager):
    big = {**VALID_RUN, "description": "x" * 10000}
    status, headers, reply = request("POST", manager.base + "/run", big)
    assert status == 413 and headers["Content-Type"] == "application/json" and "4096" in reply["error"]


def test_unknown_route_404_and_wrong_method_405_are_json(manager):
    status, headers, reply = request("GET", manager.base + "/nothing-here")
    assert status == 404 and headers["Content-Type"] == "application/json" and "/nothing-here" in reply["error"]
    status, headers, reply = request("PUT", manager.base + "/run", VALID_RUN)
    assert status == 405 and headers["Content-Type"] == "application/json" and "POST" in headers["Allow"]


def test_unknown_job_is_404(manager):
    status, _, reply = request("GET", manager.base + "/jobs/does-not-exist")
    assert status == 404 and reply["field"] == "id"


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "sub/../../x.xml"])
def test_traversal_is_refused_before_any_job(manager, path):
    status, _, reply = request("POST", manager.base + "/domain", {"pool": path})
    assert status == 400 and reply["field"] == "pool"
    assert manager.services.store.list() == []


def test_request_id_is_echoed(manager):
    _, headers, _ = request("GET", manager.base + "/health", headers={"X-Request-Id": "abc-123"})
    assert headers["X-Request-Id"] == "abc-123"


def test_metrics_count_requests_per_method(manager):
    request("GET", manager.base + "/health")
    status, headers, text = request("GET", manager.base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = metric_samples(text)
    assert samples[("cocos_manager_requests_total",
                    (("method", "GET"), ("protocol", "http"), ("route", "/health"), ("status", "200")))] >= 1
    assert ("cocos_manager_request_duration_seconds_count",
            (("method", "POST"), ("protocol", "http"), ("route", "/run"))) in samples


def metric_samples(text: str) -> dict:
    """(sample name, sorted labels) -> value, read with prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_openapi_lists_exactly_the_served_routes(manager):
    _, _, doc = request("GET", manager.base + "/openapi.json")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    app = manager.services  # the app lives in the server; rebuild the route table from a fresh app instead
    from manager_api.app import create_app
    served = {(r.method, re.sub(r"<(\w+)>", r"{\1}", r.rule)) for r in create_app(app).routes}
    assert documented == served


def test_bearer_token_required_except_health(agent):
    with manager_server(make_config(token="s3cret", agent_grpc_url=f"127.0.0.1:{agent[1]}")) as mgr:
        assert request("GET", mgr.base + "/health")[0] == 200
        status, headers, reply = request("POST", mgr.base + "/run", VALID_RUN)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "token" in reply["error"]
        assert request("POST", mgr.base + "/run", VALID_RUN, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request("GET", mgr.base + "/metrics", headers={"Authorization": "Basic czNjcmV0"})[0] == 401
        status, _, reply = request("POST", mgr.base + "/run", VALID_RUN, headers={"Authorization": "Bearer s3cret"})
        assert status == 200 and reply["id"]


def test_unexpected_error_is_json_500_without_traceback(manager, monkeypatch):
    def broken(conn):
        raise ValueError("internal detail that must stay in the log")
    monkeypatch.setattr("manager_api.domains.domain_view.list_domains", broken)
    status, headers, body = request("GET", manager.base + "/domains")
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert "internal detail" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert body["request_id"] == headers["X-Request-Id"]
