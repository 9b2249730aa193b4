"""Computation runs: validate, give an id, forward to the agent as the JSON document it expects."""
from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from manager_api import schemas
from manager_api.agent_client import AgentClient
from manager_api.domains import RequestError

# The keys of the computation document, as the original manager marshalled its Computation struct.
_LISTS = ("datasets", "algorithms", "dataset_providers", "algorithm_providers", "result_consumers")


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def build_computation(fields: dict[str, Any], run_id: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    ttl = int(fields.get("ttl") or 0)
    return {
        "id": run_id,
        "name": fields["name"],
        "description": fields.get("description", ""),
        "status": fields.get("status") or "executing",
        "owner": fields["owner"],
        "start_time": fields.get("start_time") or _rfc3339(now),
        "end_time": fields.get("end_time") or _rfc3339(now + timedelta(seconds=ttl)),
        **{key: list(fields.get(key) or []) for key in _LISTS},
        "ttl": ttl,
        "metadata": {},
    }


class RunService:
    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent

    def run(self, fields: dict[str, Any], require_positive_ttl: bool = False) -> str:
        """Forward a run and return its id; raises RequestError or AgentError."""
        schemas.validate(schemas.RUN, fields)
        if require_positive_ttl and int(fields.get("ttl") or 0) <= 0:
            raise RequestError("ttl", "must be greater than 0")
        run_id = str(uuid.uuid4())
        payload = json.dumps(build_computation(fields, run_id), separators=(",", ":")).encode()
        self.agent.run(payload)
        return run_id
