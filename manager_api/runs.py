"""Computation runs: validate, give an id, forward to the agent as the JSON document it expects, then carry the
run's uploads and result between the user and that same agent.

Each run remembers the agent address it was sent to. An agent holds one computation at a time (a new Run
replaces the previous one and its uploads), so a run stays usable only while it is its agent's latest: calls for an
older run are refused here with 409 instead of silently reaching the wrong computation.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from manager_api import schemas
from manager_api.admission import Gate
from manager_api.agent_client import AgentClient, AgentError, AgentPool
from manager_api.errors import RequestError, check_json

# The keys of the computation document, as the original manager marshalled its Computation struct.
_LISTS = ("datasets", "algorithms", "dataset_providers", "algorithm_providers", "result_consumers")
FORWARDED, RECEIVING, RUNNING, COMPLETE, FAILED, SUPERSEDED = (
    "forwarded", "receiving", "running", "complete", "failed", "superseded")
# The agent's verdicts on the algorithm itself: the run is over. Other errors (out of order, bad upload) leave it.
_OUTCOME_CODES = frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.RESOURCE_EXHAUSTED})
MAX_RUNS = 1000  # remembered runs; the oldest are forgotten first
ALGORITHM, DATASET = "algorithm", "dataset"
AGENT_RESTARTED = "agent restarted"


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


@dataclass
class Run:
    id: str
    name: str
    agent: str
    domain: str
    ttl: int
    host: str = ""  # the inventory host the domain is on ("" for the configured agent URL)
    state: str = FORWARDED
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    algorithm: str = ""
    datasets: list[str] = field(default_factory=list)
    error: str = ""
    result_bytes: int | None = None
    superseded_by: str = ""
    losses: int = 0  # the agent connection's losses when the run was last known held (AgentClient.losses)
    # What the agent measures into its TPM, as the manager sent it: ("manifest", sha256 of the computation bytes),
    # then (kind, sha256) of each upload the agent accepted, in order. The attestation verdict replays it.
    measurements: list[tuple[str, bytes]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "agent": self.agent, "domain": self.domain, "host": self.host,
                "ttl": self.ttl,
                "state": self.state, "created_at": self.created_at, "updated_at": self.updated_at,
                "algorithm": self.algorithm, "datasets": list(self.datasets), "error": self.error,
                "result_bytes": self.result_bytes, "superseded_by": self.superseded_by}


class RunService:
    """What HTTP and gRPC both call. `locate(domain)` answers (agent address, domain name, host) for a new run;
    `check_host(host)` raises HostUnavailable (503 naming it) before a call to an agent on an unreachable host."""

    def __init__(self, agents: AgentPool, locate: Callable[[str | None], tuple[str, str, str]],
                 gate: Gate | None = None, check_host: Callable[[str], None] | None = None) -> None:
        self.agents = agents
        self.locate = locate
        self.gate = gate or Gate("agent calls", 1000, 5)
        self.check_host = check_host or (lambda host: None)
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}
        self._latest: dict[str, str] = {}  # agent address -> id of the run it holds
        self._address_locks: dict[str, threading.Lock] = {}

    def run(self, fields: dict[str, Any], require_positive_ttl: bool = False) -> str:
        """Forward a run and return its id; raises RequestError or AgentError."""
        check_json(fields)
        schemas.validate(schemas.RUN, fields)
        if require_positive_ttl and int(fields.get("ttl") or 0) <= 0:
            raise RequestError("ttl", "must be greater than 0")
        address, domain, host = self.locate(fields.get("domain") or None)
        if host:
            self.check_host(host)
        run = Run(id=str(uuid.uuid4()), name=fields["name"], agent=address, domain=domain,
                  ttl=int(fields.get("ttl") or 0), host=host)
        payload = json.dumps(build_computation(fields, run.id), separators=(",", ":")).encode()
        run.measurements.append(("manifest", hashlib.sha256(payload).digest()))
        # Forwarding and recording happen under the address's lock, so "latest" is what the agent really holds.
        client = self.agents.get(address)
        with self.gate.enter(), self._agent_turn(client):
            client.run(payload)
            run.losses = client.losses
            self._record(run)
        return run.id

    def get(self, run_id: str) -> Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise RequestError("id", f"run {run_id!r} not found", status=404)
        return run

    def upload(self, run_id: str, kind: str, content: bytes) -> str:
        """Forward an algorithm or dataset to the run's agent; returns the agent's content id (sha256)."""
        run = self.usable(run_id)
        client = self.agents.get(run.agent)
        # One upload at a time per agent, so the order recorded is the order the agent measured.
        with self.gate.enter(), self._agent_turn(client):
            self.usable(run_id)  # a newer Run may have replaced it while we waited
            try:
                content_id = client.algo(content) if kind == ALGORITHM else client.data(content)
            except AgentError as exc:
                self._check_restart(run, client.losses, exc)
                raise
            with self._lock:
                run.measurements.append((kind, hashlib.sha256(content).digest()))
        with self._lock:
            if kind == ALGORITHM:
                run.algorithm = content_id
            else:
                run.datasets.append(content_id)
            self._move(run, RECEIVING)
        return content_id

    def result(self, run_id: str) -> bytes:
        """The run's result; the agent runs the algorithm on the first request (up to the run's ttl)."""
        run = self.usable(run_id)
        client = self.agents.get(run.agent)
        with self.gate.enter():
            with self._lock:
                before = run.state
                self._move(run, RUNNING)
            try:
                file = client.result(wait=float(run.ttl))
            except AgentError as exc:
                self._check_restart(run, client.losses, exc)
                with self._lock:
                    if run.state != RUNNING:
                        pass  # the agent restarted: the run is already failed with that reason
                    elif exc.code in _OUTCOME_CODES and not exc.unavailable:
                        run.error = str(exc)
                        self._move(run, FAILED)
                    else:
                        self._move(run, before)
                raise
        with self._lock:
            run.result_bytes = len(file)
            self._move(run, COMPLETE)
        return file

    def usable(self, run_id: str) -> Run:
        """The run, if calls for it may go to its agent: not superseded, not lost, its host reachable."""
        run = self.get(run_id)
        if run.state == FAILED and run.error.startswith(AGENT_RESTARTED):
            raise RequestError("id", run.error, status=409)
        if run.state == SUPERSEDED:
            raise RequestError("id", f"run {run_id} was replaced on agent {run.agent} by run {run.superseded_by}; "
                                     "the agent holds one computation at a time", status=409)
        if run.host:
            self.check_host(run.host)
        return run

    def _check_restart(self, run: Run, losses: int, exc: AgentError) -> None:
        """An agent whose connection was lost since it took this run, and that now holds no computation, restarted:
        it keeps a computation in memory only, so the run cannot go on. It is failed with that reason (409)."""
        if exc.code != grpc.StatusCode.FAILED_PRECONDITION or exc.unavailable or losses <= run.losses:
            return
        with self._lock:
            run.error = (f"{AGENT_RESTARTED}: agent {run.agent} lost its connection after taking this run and now "
                         f"holds no computation (it keeps computations in memory only); start a new run ({exc})")
            self._move(run, FAILED)
        raise RequestError("id", run.error, status=409) from None

    def vtpm_attestation(self, run_id: str, nonce: bytes) -> tuple[Any, list[tuple[str, bytes]]]:
        """The agent's TPM quote for `nonce` (cocos.agent.v1.VtpmQuote) and what the manager sent for the run, taken
        while no upload to that agent is in flight, so both describe the same moment."""
        run = self.usable(run_id)
        client = self.agents.get(run.agent)
        with self.gate.enter(), self._agent_turn(client):
            self.usable(run_id)
            quote = client.vtpm_attestation(nonce)
            with self._lock:
                return quote, list(run.measurements)

    def _record(self, run: Run) -> None:
        with self._lock:
            previous = self._runs.get(self._latest.get(run.agent, ""))
            if previous is not None:
                previous.superseded_by = run.id
                self._move(previous, SUPERSEDED)
            self._runs[run.id] = run
            self._latest[run.agent] = run.id
            for old in sorted(self._runs.values(), key=lambda r: r.created_at)[: max(len(self._runs) - MAX_RUNS, 0)]:
                del self._runs[old.id]

    @contextlib.contextmanager
    def _agent_turn(self, client: AgentClient) -> Iterator[None]:
        """Hold the agent's turn: one call at a time per agent address. The wait for it is bounded by the agent's
        retry budget (AgentClient.retry_total, seconds): callers queued behind an unreachable agent then fail within
        one budget, saying they found it busy, instead of each waiting its whole budget in turn (the eighth of eight
        once answered after 280 s that the agent was "not reachable within 30 s") while holding an admission slot.
        Raises AgentError (UNAVAILABLE, HTTP 503) when the turn does not come in time."""
        with self._lock:
            lock = self._address_locks.setdefault(client.address, threading.Lock())
        budget = client.retry_total
        if not lock.acquire(timeout=budget):
            raise AgentError(f"agent at {client.address} is busy: another call held it for the whole {budget:g} s "
                             "budget", grpc.StatusCode.UNAVAILABLE, unavailable=True)
        try:
            yield
        finally:
            lock.release()

    @staticmethod
    def _move(run: Run, state: str) -> None:
        run.state = state
        run.updated_at = time.time()
