"""Where a domain runs: the placement ledger, the placement decision, agent ports and ttl.

The ledger (SQLite, `placements.sqlite3` in the manager's state directory) holds one row per domain this manager
placed: its host, the agent port it allocated, its memory, and its ttl deadline, so all of them survive a restart.
A row is `reserved` from the moment a request is placed until its create job succeeds (then `placed`); a job that
fails, is canceled, or dies with the manager gives its reservation back.

The decision (`decide`), for a domain of M bytes, among the reachable hosts (or the one the request names):
- a host has room when the manager's VMs on it (its ledger rows) are fewer than its max_vms, its uncommitted memory
  (node memory, virNodeGetMemoryStats, minus the maximum memory of its running domains and of the domains placed
  there that do not run yet) is at least M, its node has M bytes available (free + buffers + cache,
  virNodeGetMemoryStats, minus the domains placed but not running yet), and a port of its agent range is free;
- of those, the one with the most uncommitted memory wins (ties: fewer VMs, then inventory order).
The figures are those of the hosts' last health check (manager_api/hosts.py, at most one check interval old)
together with the ledger, which counts what was placed since: so the decision itself waits for no host, and one lock
around decide-and-record makes concurrent requests see each other (no two get the same port or overfill a host).

A port is free when no ledger row of that host holds it, no domain on the host forwards it (libvirt's domain list,
any address that covers the host's agent address) and nothing on this machine listens on it (the agent address is
loopback, so a bind test here is exact). A domain that already exists on its host keeps the port it forwards.

After its create job succeeds the placement is also written into the domain's <metadata> under the manager's own
namespace (METADATA_NS, virDomainSetMetadata: other namespaces' elements are left alone), so the domain itself says
where it was placed and until when.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import libvirt

from manager_api import domain_view
from manager_api.errors import Busy, Conflict, HostUnavailable, NoRoom, RequestError
from manager_api.hosts import REACHABLE, UNREACHABLE, HostRegistry, HostSpec, Snapshot
from module_utils.cocos_libvirt import metadata

log = logging.getLogger("manager_api.placement")
RESERVED, PLACED = "reserved", "placed"
METADATA_NS = "urn:cocos-ai:manager:placement:1"
METADATA_KEY = "cocos-manager"
MIB = 1024 * 1024
# Forward addresses that bind every address, the host's agent address included.
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
_COLUMNS = ("domain", "host", "port", "memory", "ttl", "expires_at", "state", "token", "created_at", "placed_at")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS placements (domain TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER,
  memory INTEGER NOT NULL, ttl INTEGER, expires_at REAL, state TEXT NOT NULL, token TEXT NOT NULL,
  created_at REAL NOT NULL, placed_at REAL);
-- A second guard behind the placement lock: one agent port per host.
CREATE UNIQUE INDEX IF NOT EXISTS placements_port ON placements (host, port) WHERE port IS NOT NULL;
"""


@dataclass(frozen=True)
class Placement:
    """One ledger row. memory in bytes; ttl in seconds; expires_at and the times in time.time() seconds."""

    domain: str
    host: str
    port: int | None
    memory: int
    ttl: int | None = None
    expires_at: float | None = None
    state: str = RESERVED
    token: str = ""
    created_at: float = 0.0
    placed_at: float | None = None

    def view(self) -> dict:
        """The placement as GET /domains shows it beside libvirt's facts."""
        return {"host": self.host, "agent_port": self.port, "ttl": self.ttl, "expires_at": self.expires_at}


class Ledger:
    """Placement rows in SQLite (WAL); callers serialise writes (PlacementService's lock)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def load(self) -> list[Placement]:
        rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM placements").fetchall()
        return [Placement(*row) for row in rows]

    def save(self, row: Placement) -> None:
        values = [getattr(row, column) for column in _COLUMNS]
        self._conn.execute(f"INSERT OR REPLACE INTO placements VALUES ({', '.join('?' * len(_COLUMNS))})", values)

    def delete(self, domain: str) -> None:
        self._conn.execute("DELETE FROM placements WHERE domain = ?", (domain,))

    def close(self) -> None:
        self._conn.close()


# ---- the decision (pure: figures in, choice out) --------------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    """A host's capacity as the decision sees it; memory in bytes."""

    vms: int
    max_vms: int
    memory_total: int
    memory_committed: int
    memory_available: int
    ports_used: frozenset[int]

    @property
    def memory_free(self) -> int:
        """Node memory not committed to running or placed domains: what placement ranks hosts by."""
        return self.memory_total - self.memory_committed


def covers(forward_address: str, agent_address: str) -> bool:
    """Whether a forward bound to forward_address takes the port on agent_address too."""
    return forward_address in WILDCARDS or forward_address == agent_address


def capacity(spec: HostSpec, snapshot: Snapshot, rows: list[Placement]) -> Capacity:
    """The host's capacity from its last check and the ledger rows placed on it."""
    running = {d.name for d in snapshot.domains if d.active}
    pending = sum(row.memory for row in rows if row.domain not in running)
    committed = sum(d.memory for d in snapshot.domains if d.active) + pending
    used = {row.port for row in rows if row.port is not None}
    used |= {fwd["host_port"] for d in snapshot.domains for fwd in d.forwards
             if fwd["protocol"] == "tcp" and covers(fwd["host_address"], spec.agent_address)}
    return Capacity(len(rows), spec.max_vms, snapshot.memory_total, committed, snapshot.memory_available - pending,
                    frozenset(used))


def port_free_here(address: str, port: int) -> bool:
    """Nothing listens on address:port on this machine (the agent address is loopback: this is its host)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_port(spec: HostSpec, used: frozenset[int],
              bindable: Callable[[str, int], bool] = port_free_here) -> int | None:
    """The lowest port of the host's agent range that is neither used nor listened on, or None."""
    first, last = spec.ports
    return next((port for port in range(first, last + 1) if port not in used and bindable(spec.agent_address, port)),
                None)


def refusal(cap: Capacity, memory: int) -> str:
    """Why a host has no room for `memory` bytes (the VM count, either memory figure), or "" when it has."""
    if cap.vms >= cap.max_vms:
        return f"{cap.vms} of {cap.max_vms} VMs placed"
    if cap.memory_free < memory:
        return f"{cap.memory_free // MIB} MiB uncommitted, {memory // MIB} MiB needed"
    if cap.memory_available < memory:
        return f"{cap.memory_available // MIB} MiB available on the node, {memory // MIB} MiB needed"
    return ""


@dataclass(frozen=True)
class Choice:
    host: str
    port: int | None


def decide(candidates: list[tuple[HostSpec, Snapshot, list[Placement]]], memory: int, wants_port: bool,
           refused: dict[str, str] | None = None,
           bindable: Callable[[str, int], bool] = port_free_here) -> Choice:
    """The host with the most uncommitted memory that has room, and its free agent port; NoRoom otherwise.

    candidates: (host, its last figures, its ledger rows), in inventory order. refused: hosts already out of the
    running (unreachable...) with the reason, quoted in NoRoom's message.
    """
    reasons = dict(refused or {})
    ranked = sorted(((spec, capacity(spec, snapshot, rows)) for spec, snapshot, rows in candidates),
                    key=lambda item: (-item[1].memory_free, item[1].vms))  # sorted() is stable: inventory order last
    for spec, cap in ranked:
        reason = refusal(cap, memory)
        port = free_port(spec, cap.ports_used, bindable) if wants_port and not reason else None
        if not reason and wants_port and port is None:
            reason = f"no free agent port in {spec.ports[0]}-{spec.ports[1]}"
        if not reason:
            return Choice(spec.name, port)
        reasons[spec.name] = reason
    detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no hosts"
    raise NoRoom(f"no host has room for a domain of {memory // MIB} MiB ({detail})")


# ---- the service -----------------------------------------------------------------------------------------------


class PlacementService:
    """The ledger and the hosts' figures behind one lock: place, confirm, release, forget, look up."""

    def __init__(self, registry: HostRegistry, path: str, guest_port: int = 7002,
                 bindable: Callable[[str, int], bool] = port_free_here) -> None:
        self.registry = registry
        self.guest_port = guest_port
        self.bindable = bindable
        self._ledger = Ledger(path)
        self._lock = threading.Lock()
        self._rows = {row.domain: row for row in self._ledger.load()}

    def close(self) -> None:
        with self._lock:
            self._ledger.close()

    # ---- reading ----

    def get(self, domain: str) -> Placement | None:
        with self._lock:
            return self._rows.get(domain)

    def rows(self, host: str | None = None) -> list[Placement]:
        with self._lock:
            return [row for row in self._rows.values() if host is None or row.host == host]

    def locate(self, domain: str, host: str | None = None) -> str | None:
        """The host a domain is on: the ledger's, else the named host, else the one reachable host whose libvirt
        has it (asked now). None when no reachable host has it; 409 when several do and no host was named."""
        row = self.get(domain)
        if row is not None:
            if host and host != row.host:
                raise Conflict("host", f"domain {domain!r} is placed on host {row.host}, not {host}")
            return row.host
        if host:
            self.registry.host(host)
            return host
        answers = self.registry.each(lambda conn: domain_view.domain_exists(conn, domain))
        found = [name for name, result in answers.items() if result is True]
        if len(found) > 1:
            raise RequestError("host", f"domain {domain!r} exists on hosts {', '.join(found)}: name one", status=409)
        silent = [exc for exc in answers.values() if isinstance(exc, HostUnavailable)]
        if not found and silent:  # it may be on a host that cannot say: that is no 404
            raise HostUnavailable(", ".join(exc.host for exc in silent),
                                  f"{silent[0].reason}; no reachable host has domain {domain!r}", silent[0].retry_after)
        return found[0] if found else None

    # ---- placing ----

    def reserve(self, domain: str, memory: int, host: str | None = None, wants_port: bool = True,
                ttl: int | None = None) -> tuple[Placement, bool]:
        """The domain's placement: its ledger row if it has one, else a new reservation; the bool says it is new.

        A domain that exists on a host already (by the hosts' last checks) stays there and keeps the port it
        forwards. Raises NoRoom, Conflict (the domain is elsewhere), RequestError (unknown host).
        """
        if host:
            self.registry.host(host)
        self.registry.wait_checked(self.registry.timeout)  # at once, unless the manager has only just started
        with self._lock:
            row = self._rows.get(domain)
            if row is not None:
                if host and host != row.host:
                    raise Conflict("host", f"domain {domain!r} is placed on host {row.host}, not {host}")
                return row, False
            choice = self._choose(domain, memory, host, wants_port)
            row = Placement(domain, choice.host, choice.port, memory, ttl, state=RESERVED, token=uuid.uuid4().hex,
                            created_at=time.time())
            self._write(row)
            return row, True

    def _choose(self, domain: str, memory: int, host: str | None, wants_port: bool) -> Choice:
        existing = self._hosts_with(domain)
        if host and existing and host not in existing:
            raise Conflict("host", f"domain {domain!r} exists on host {', '.join(existing)}, not {host}")
        if not host and len(existing) > 1:
            raise RequestError("host", f"domain {domain!r} exists on hosts {', '.join(existing)}: name one",
                               status=409)
        target = host or (existing[0] if existing else None)
        if target is not None and target in existing:
            return Choice(target, self._adopted_port(domain, target) if wants_port else None)
        candidates, refused = [], {}
        for h in self.registry.hosts():
            if target is not None and h.name != target:
                continue
            state, reason = h.health()
            if state == UNREACHABLE or h.snapshot is None:
                if target is not None:
                    raise HostUnavailable(h.name, reason or "not checked yet", h.retry_after)
                refused[h.name] = "unreachable" if state == UNREACHABLE else "not checked yet"
                continue
            candidates.append((h.spec, h.snapshot, [r for r in self._rows.values() if r.host == h.name]))
        return decide(candidates, memory, wants_port, refused, self.bindable)

    def _hosts_with(self, domain: str) -> list[str]:
        """Hosts whose last check listed the domain (reachable ones only)."""
        return [h.name for h in self.registry.hosts()
                if h.snapshot is not None and h.health()[0] == REACHABLE
                and any(d.name == domain for d in h.snapshot.domains)]

    def _adopted_port(self, domain: str, host: str) -> int | None:
        """An existing domain's agent forward port, unless another placement holds it; else a free one."""
        h = self.registry.host(host)
        assert h.snapshot is not None
        rows = [r for r in self._rows.values() if r.host == host]
        taken = {r.port for r in rows if r.port is not None}
        for facts in h.snapshot.domains:
            if facts.name != domain:
                continue
            for fwd in facts.forwards:
                if fwd["protocol"] == "tcp" and fwd["guest_port"] == self.guest_port and fwd["host_port"] not in taken:
                    return int(fwd["host_port"])
        return free_port(h.spec, capacity(h.spec, h.snapshot, rows).ports_used, self.bindable)

    def _write(self, row: Placement) -> None:
        try:
            self._ledger.save(row)
        except sqlite3.IntegrityError:  # the unique port index: only reachable if another process shares the ledger
            raise Conflict("host", f"agent port {row.port} on host {row.host} is held by another placement; "
                                   "send the request again") from None
        self._rows[row.domain] = row

    def confirm(self, domain: str, token: str, ttl: int | None, host: str, port: int | None,
                memory: int) -> Placement:
        """The create job succeeded: the reservation becomes the domain's placement, its ttl deadline set from now.

        A re-converged domain keeps its placement (and its deadline, unless the request gave a ttl).
        """
        now = time.time()
        with self._lock:
            row = self._rows.get(domain)
            if row is None:  # its reservation was given back meanwhile (see DomainService.create): record it again
                row = Placement(domain, host, port, memory, token=token, created_at=now)
            if row.state == RESERVED or ttl is not None:
                ttl = ttl if ttl is not None else row.ttl
                row = replace(row, state=PLACED, placed_at=row.placed_at or now, ttl=ttl,
                              expires_at=now + ttl if ttl else None)
                self._write(row)
            return row

    def release(self, domain: str, token: str) -> None:
        """Give back a reservation whose job did not create the domain (a placed domain is never released here)."""
        with self._lock:
            row = self._rows.get(domain)
            if row is not None and row.state == RESERVED and row.token == token:
                self._ledger.delete(domain)
                del self._rows[domain]

    def forget(self, domain: str, host: str | None = None) -> None:
        """The domain is gone (deleted, expired, or vanished from its host): its placement ends."""
        with self._lock:
            row = self._rows.get(domain)
            if row is not None and (host is None or row.host == host):
                self._ledger.delete(domain)
                del self._rows[domain]

    def release_reservations(self) -> list[str]:
        """At start: reservations a previous manager left had jobs that died with it (recovery rolls them back)."""
        with self._lock:
            stale = [row.domain for row in self._rows.values() if row.state == RESERVED]
            for domain in stale:
                self._ledger.delete(domain)
                del self._rows[domain]
        return stale

    def expired(self, now: float | None = None) -> list[Placement]:
        moment = time.time() if now is None else now
        with self._lock:
            return [row for row in self._rows.values()
                    if row.state == PLACED and row.expires_at is not None and row.expires_at <= moment]

    def reconcile(self) -> list[str]:
        """Forget placed domains that a host's check, taken after they were placed, no longer lists."""
        gone = []
        for h in self.registry.hosts():
            snapshot = h.snapshot
            if snapshot is None or h.health()[0] != REACHABLE:
                continue
            names = {d.name for d in snapshot.domains}
            for row in self.rows(h.name):
                if row.state == PLACED and row.placed_at and snapshot.taken_at > row.placed_at + 1 \
                        and row.domain not in names:
                    self.forget(row.domain, h.name)
                    gone.append(row.domain)
                    log.warning("placed domain vanished from its host", extra={"domain": row.domain, "host": h.name})
        return gone

    # ---- GET /hosts ----

    def hosts_view(self) -> list[dict]:
        """Every host with its health, capacity (VMs, memory in bytes, agent ports) and the time of its last check."""
        out = []
        for h in self.registry.hosts():
            state, reason = h.health()
            rows = self.rows(h.name)
            entry = {"name": h.name, "health": state, "error": reason if state != REACHABLE else "",
                     "checked_at": h.checked_at, "agent_address": h.spec.agent_address, "vms": len(rows),
                     "max_vms": h.spec.max_vms, "domains": None, "memory": None,
                     "agent_ports": {"first": h.spec.ports[0], "last": h.spec.ports[1],
                                     "used": sorted(r.port for r in rows if r.port is not None)}}
            if h.snapshot is not None:
                cap = capacity(h.spec, h.snapshot, rows)
                entry["domains"] = len(h.snapshot.domains)
                entry["memory"] = {"total": cap.memory_total, "committed": cap.memory_committed,
                                   "free": cap.memory_free, "available": cap.memory_available}
            out.append(entry)
        return out


def placement_attributes(row: Placement, spec: HostSpec) -> dict[str, str]:
    """The attributes of <placement host= agent-address= agent-port= [ttl= expires-at=]/> in our namespace."""
    attrs = {"host": row.host, "agent-address": spec.agent_address}
    if row.port is not None:
        attrs["agent-port"] = str(row.port)
    if row.ttl and row.expires_at is not None:
        attrs["ttl"] = str(row.ttl)
        attrs["expires-at"] = datetime.fromtimestamp(row.expires_at, UTC).isoformat().replace("+00:00", "Z")
    return attrs


def write_metadata(conn: libvirt.virConnect, row: Placement, spec: HostSpec) -> None:
    """Record the placement in the domain's <metadata> in our namespace, persistent and (when running) live."""
    metadata.write_attributes(conn.lookupByName(row.domain), "placement", placement_attributes(row, spec),
                              METADATA_KEY, METADATA_NS)


def read_metadata(conn: libvirt.virConnect, domain: str) -> dict | None:
    """The placement attributes recorded in the domain's metadata, or None (no such domain or no record)."""
    try:
        return metadata.read_attributes(conn.lookupByName(domain), METADATA_NS)
    except libvirt.libvirtError:
        return None


class Reaper:
    """Background housekeeping, once per interval: domains past their ttl are removed (`remove(domain, host)` starts
    their delete job; the ledger forgets them when it succeeds), and placed domains a host no longer lists are
    forgotten. A removal that cannot start (host unreachable, a job under way, ...) is tried again after `backoff`
    seconds; its deadline is in the ledger, so it also outlives a restart."""

    def __init__(self, placement: PlacementService, remove: Callable[[str, str], object], interval: float = 1.0,
                 backoff: float = 10.0) -> None:
        self.placement = placement
        self.remove = remove
        self.interval = interval
        self.backoff = backoff
        self._next_try: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="placement-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # housekeeping must outlive any one surprise; the log has it
                log.exception("placement housekeeping failed")

    def tick(self, now: float | None = None) -> list[str]:
        """One round; returns the domains whose removal started."""
        moment = time.monotonic()
        started = []
        for row in self.placement.expired(now):
            if self._next_try.get(row.domain, 0.0) > moment:
                continue
            try:
                self.remove(row.domain, row.host)
            except RequestError as exc:
                if exc.status == 404:  # already gone
                    self.placement.forget(row.domain, row.host)
                    continue
                self._later(row, exc)
            except (HostUnavailable, Busy) as exc:
                self._later(row, exc)
            else:
                started.append(row.domain)
                self._next_try[row.domain] = moment + self.backoff
                log.info("ttl expired: removing domain", extra={"domain": row.domain, "host": row.host})
        self.placement.reconcile()
        return started

    def _later(self, row: Placement, exc: Exception) -> None:
        self._next_try[row.domain] = time.monotonic() + self.backoff
        log.warning("ttl expired but the domain cannot be removed yet",
                    extra={"domain": row.domain, "host": row.host, "error": str(exc)})
