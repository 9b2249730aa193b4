"""Run validation and the computation document sent to the agent."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from manager_api import schemas
from manager_api.domains import RequestError
from manager_api.runs import RunService, build_computation

VALID = {"name": "r", "owner": "o", "datasets": ["d"], "algorithms": ["a"], "ttl": 60}


def test_computation_document():
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    doc = build_computation({**VALID, "description": "x", "result_consumers": ["c"]}, "id-1", now)
    assert doc == {"id": "id-1", "name": "r", "description": "x", "status": "executing", "owner": "o",
                   "start_time": "2024-01-02T03:04:05Z", "end_time": "2024-01-02T03:05:05Z",
                   "datasets": ["d"], "algorithms": ["a"], "dataset_providers": [], "algorithm_providers": [],
                   "result_consumers": ["c"], "ttl": 60, "metadata": {}}


@pytest.mark.parametrize("body, field", [
    ({**VALID, "ttl": True}, "ttl"), ({**VALID, "ttl": 1.5}, "ttl"), ({**VALID, "ttl": -1}, "ttl"),
    ({**VALID, "owner": 3}, "owner"), ({"owner": "o", "datasets": ["d"], "algorithms": ["a"]}, "name"),
    ({**VALID, "result_consumers": [None]}, "result_consumers.0"), ("text", "body"),
])
def test_schema_errors_name_the_field(body, field):
    with pytest.raises(RequestError) as err:
        schemas.validate(schemas.RUN, body)
    assert err.value.field == field


def test_grpc_rule_requires_positive_ttl():
    def no_agent(domain):
        raise AssertionError("must not be located nor forwarded")
    with pytest.raises(RequestError, match="ttl"):
        RunService(None, no_agent).run({**VALID, "ttl": 0}, require_positive_ttl=True)
