"""Parse and validate the computation manifest that `Run` carries (JSON, as the manager sends it).

Hash rule for `algorithms` and `datasets` entries (each entry is one file the agent expects):
- a string of 64 hex digits, optionally prefixed `sha256:`, declares that file's sha256;
- any other non-empty string is just a name: the slot accepts any content;
- an object may carry `"hash": "sha256:<64 hex>"` (or bare hex); other keys (`id`, `name`, `provider`...)
  are kept as labels. Without `hash` the slot accepts any content.
A computation may declare several algorithms; each runs over all the datasets (see computation.py).
Keys we do not know are accepted and ignored, so newer managers keep working.
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InvalidInput

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_ID_CHARS = 256
_HASH = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")
_OPTIONAL_STRINGS = ("description", "status", "owner")
_OPTIONAL_LISTS = ("dataset_providers", "algorithm_providers", "result_consumers")


@dataclass(frozen=True)
class Slot:
    """One file the computation expects: `sha256` is None when the manifest declares no hash for it."""

    kind: str
    index: int
    label: str
    sha256: str | None


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    ttl: float
    algorithms: tuple[Slot, ...]
    datasets: tuple[Slot, ...]
    # sha256 of the manifest bytes exactly as received; attestation reports bind it.
    digest: bytes
    document: dict[str, Any] = field(repr=False, compare=False)


def parse(raw: bytes) -> Manifest:
    """Validate `raw`; raise InvalidInput with a message naming the offending key."""
    document = _decode(raw)
    ident = _required_string(document, "id")
    if len(ident) > MAX_ID_CHARS:
        raise InvalidInput(f"computation id is longer than {MAX_ID_CHARS} characters")
    _check_optional(document)
    return Manifest(
        id=ident,
        name=_required_string(document, "name"),
        ttl=_ttl(document),
        algorithms=_slots(document, "algorithms", "algorithm"),
        datasets=_slots(document, "datasets", "dataset"),
        digest=hashlib.sha256(raw).digest(),
        document=document,
    )


def _decode(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidInput("computation is empty: expected a JSON object")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"computation is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"computation is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidInput(f"computation is not valid JSON: {exc.msg} at {where}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"computation must be a JSON object, got {_type(document)}")
    return document


def _type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _required_string(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        raise InvalidInput(f"computation is missing required key '{key}'")
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"computation '{key}' must be a non-empty string, got {_type(value)} {value!r}")
    return value


def _check_optional(document: dict[str, Any]) -> None:
    """Known optional keys may be null (Go's zero values) but not of the wrong type."""
    for key in _OPTIONAL_STRINGS:
        if document.get(key) is not None and not isinstance(document[key], str):
            raise InvalidInput(f"computation '{key}' must be a string, got {_type(document[key])}")
    for key in _OPTIONAL_LISTS:
        if document.get(key) is not None and not isinstance(document[key], list):
            raise InvalidInput(f"computation '{key}' must be an array, got {_type(document[key])}")
    if document.get("metadata") is not None and not isinstance(document["metadata"], dict):
        raise InvalidInput(f"computation 'metadata' must be an object, got {_type(document['metadata'])}")


def _ttl(document: dict[str, Any]) -> float:
    value = document.get("ttl")
    if value is None:
        raise InvalidInput("computation is missing required key 'ttl' (seconds the algorithm may run)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"computation 'ttl' must be a number of seconds, got {_type(value)} {value!r}")
    if value <= 0:
        raise InvalidInput(f"computation 'ttl' must be > 0 seconds, got {value}")
    return float(value)


def _slots(document: dict[str, Any], key: str, kind: str) -> tuple[Slot, ...]:
    entries = document.get(key)
    if entries is None or entries == []:
        raise InvalidInput(f"computation must declare at least one {kind} in '{key}'")
    if not isinstance(entries, list):
        raise InvalidInput(f"computation '{key}' must be an array, got {_type(entries)}")
    return tuple(_slot(entry, f"{key}[{i}]", kind, i) for i, entry in enumerate(entries))


def _slot(entry: Any, where: str, kind: str, index: int) -> Slot:
    if isinstance(entry, str) and entry.strip():
        match = _HASH.fullmatch(entry.strip())
        return Slot(kind, index, entry, match.group(1).lower() if match else None)
    if isinstance(entry, dict):
        return Slot(kind, index, _label(entry, where), _declared_hash(entry, where))
    raise InvalidInput(f"computation {where} must be a non-empty string or an object, got {_type(entry)}")


def _label(entry: dict[str, Any], where: str) -> str:
    for key in ("name", "id", "filename"):
        if isinstance(entry.get(key), str) and entry[key]:
            return str(entry[key])
    return where


def _declared_hash(entry: dict[str, Any], where: str) -> str | None:
    value = entry.get("hash")
    if value is None:
        return None
    match = _HASH.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput(f"computation {where}.hash must be 'sha256:' followed by 64 hex digits, got {value!r}")
    return match.group(1).lower()
