"""JSON Schemas of the request bodies; a failure becomes one message that names the field."""
from __future__ import annotations

from typing import Any

import jsonschema

from manager_api.domains import RequestError

_STRINGS = {"type": "array", "items": {"type": "string"}}

RUN = {
    "type": "object",
    "required": ["name", "owner", "datasets", "algorithms"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "status": {"type": "string"},
        "owner": {"type": "string", "minLength": 1},
        "start_time": {"type": "string"},
        "end_time": {"type": "string"},
        "datasets": {**_STRINGS, "minItems": 1},
        "algorithms": {**_STRINGS, "minItems": 1},
        "dataset_providers": _STRINGS,
        "algorithm_providers": _STRINGS,
        "result_consumers": _STRINGS,
        "ttl": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        # Our addition: the domain whose agent gets the run (see manager_api/agent_locator.py).
        "domain": {"type": "string", "minLength": 1, "maxLength": 200},
    },
}

DOMAIN = {
    "type": "object",
    "properties": {
        "pool": {"type": "string"}, "volume": {"type": "string"}, "domain": {"type": "string"},
        # Our additions: the inventory host to place the domain on (else the manager chooses), and seconds after
        # which the manager removes the domain again (manager_api/placement.py).
        "host": {"type": "string", "minLength": 1, "maxLength": 100},
        "ttl": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
}

_VALIDATORS = {id(s): jsonschema.Draft202012Validator(s) for s in (RUN, DOMAIN)}


def validate(schema: dict, body: Any) -> dict:
    """Return body if valid, else raise RequestError for the most relevant problem."""
    error = jsonschema.exceptions.best_match(_VALIDATORS[id(schema)].iter_errors(body))
    if error is None:
        return body
    field = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{field}.{missing}" if field else missing
        raise RequestError(field, "is required")
    if not field:
        raise RequestError("body", error.message)
    raise RequestError(field, error.message)
