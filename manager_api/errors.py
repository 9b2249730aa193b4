"""Errors the front ends turn into statuses: bad input (400/404/409), conflicts (409) and admission (503)."""
from __future__ import annotations

import re


class RequestError(ValueError):
    """Bad input: the field it concerns and an HTTP status (400 invalid, 404 missing)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


class Conflict(RequestError):
    """The request collides with work under way (HTTP 409, gRPC ABORTED: retry once that work is done)."""

    def __init__(self, field: str, message: str, job_id: str = "") -> None:
        super().__init__(field, message, status=409)
        self.job_id = job_id


class Busy(RuntimeError):
    """A bound on concurrent work is reached: HTTP 503 with Retry-After, gRPC UNAVAILABLE, at once."""

    def __init__(self, what: str, limit: int, retry_after: int) -> None:
        super().__init__(f"too many {what} at once (limit {limit}); retry in {retry_after} s")
        self.what = what
        self.retry_after = retry_after


# NUL, C0 controls other than tab/LF/CR, DEL, and lone surrogates (JSON's \ud800 decodes to one).
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
TEXT_RULE = "must be Unicode text without NUL bytes, control characters or lone surrogates"


def check_text(field: str, value: str) -> str:
    if _BAD_TEXT.search(value):
        raise RequestError(field, TEXT_RULE)
    return value


def check_json(value: object, field: str = "body") -> None:
    """check_text on every string (and key) of a decoded JSON document, naming the field."""
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(field, key)
            check_json(item, f"{key}" if field == "body" else f"{field}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{field}.{index}")


class HostUnavailable(RuntimeError):
    """A hypervisor's libvirt did not answer (health check or this request): HTTP 503 naming it, gRPC UNAVAILABLE.

    The message names the host (or the hosts, comma-separated) and the kind of failure only; libvirt's own text
    (which may hold socket or ssh paths) goes to the log.
    """

    def __init__(self, host: str, reason: str, retry_after: int = 5) -> None:
        subject = f"hosts {host} are" if ", " in host else f"host {host} is"
        super().__init__(f"{subject} unreachable: {reason}")
        self.host = host
        self.reason = reason
        self.retry_after = retry_after


class NoRoom(RuntimeError):
    """No candidate host can take the domain (VM count at max_vms, too little memory, no free agent port, or not
    reachable): HTTP 503, gRPC RESOURCE_EXHAUSTED. The message gives each host's reason."""
