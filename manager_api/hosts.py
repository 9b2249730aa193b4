"""The hypervisors the manager places domains on: read from the Ansible inventory, watched by a health check.

Hosts are the `hypervisors` group of CC_MANAGER_INVENTORY (Ansible's own inventory reader, so INI, YAML, directories,
group_vars and templated values all work), with the contract scripts/fleet.sh and inventory/hosts.yml write
(docs/ARCHITECTURE.md, "Inventory contract"):

- `cocos_libvirt_uri`: how the manager reaches the host's libvirt (`qemu:///system` by default for `localhost` only);
- `cocos_agent_address`: the loopback address the host's guests forward their agent port on (127.0.0.1 by default
  for `localhost` only). It must lie in 127.0.0.0/8: the XML policy allows loopback forwards only;
- `cocos_max_vms` and `cocos_agent_port_range` (`FIRST-LAST`): optional, CC_MANAGER_MAX_VMS and
  CC_MANAGER_AGENT_PORT_RANGE by default.

Health: each host has one long-lived libvirt connection (with libvirt's keepalive, so a peer that stops answering is
closed by libvirt itself) and one thread that reads the host's figures every CC_MANAGER_HOST_CHECK_INTERVAL: node
memory (virNodeGetMemoryStats, or virNodeGetInfo and virNodeGetFreeMemory where a driver lacks it) and every domain
with its state, maximum memory and forwarded ports (virConnectListAllDomains). A host whose last check failed, or
whose last good check is older than interval + CC_MANAGER_HOST_TIMEOUT (a check that hangs), is unreachable. Request
threads never wait for a check: they read its verdict, and run their own libvirt calls on the host's small executor
under the same timeout, so a host that stops answering costs a request at most that timeout and every later one
nothing (503 naming it).
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from manager_api import domain_view, policy
from manager_api.config import Config, ConfigError, parse_port_range
from manager_api.errors import HostUnavailable, RequestError

log = logging.getLogger("manager_api.hosts")
GROUP = "hypervisors"
LOCALHOST = "localhost"
REACHABLE, UNREACHABLE, UNKNOWN = "reachable", "unreachable", "unknown"
# libvirt's keepalive (virConnectSetKeepAlive): a peer silent for interval * (count + 1) seconds is disconnected,
# which ends the calls waiting on it. The health check notices far sooner; this frees the threads.
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3
CALL_WORKERS = 4  # concurrent request calls per host; a hung host can block at most these
T = TypeVar("T")


@dataclass(frozen=True)
class HostSpec:
    """One inventory host as the manager uses it. ports: the inclusive agent forward range."""

    name: str
    libvirt_uri: str
    agent_address: str
    max_vms: int
    ports: tuple[int, int]


@dataclass(frozen=True)
class DomainFacts:
    """What placement needs of one domain: memory in bytes (its maximum), forwards as domain_xml reads them."""

    name: str
    active: bool
    memory: int
    forwards: tuple[dict, ...]


@dataclass(frozen=True)
class Snapshot:
    """A host's figures from one health check. Memory in bytes; available = free + buffers + page cache."""

    taken_at: float  # time.time()
    memory_total: int
    memory_available: int
    domains: tuple[DomainFacts, ...]


# ---- inventory -------------------------------------------------------------------------------------------------


def load_hosts(config: Config) -> list[HostSpec]:
    """The hosts this manager uses: CC_MANAGER_LIBVIRT_URI alone (one host, localhost), else the inventory's.

    Raises ConfigError naming the variable and every bad host.
    """
    if config.libvirt_uri:
        return [HostSpec(LOCALHOST, config.libvirt_uri, "127.0.0.1", config.max_vms, config.agent_port_range)]
    return read_inventory(config.inventory, config.max_vms, config.agent_port_range)


def read_inventory(source: str, max_vms: int, ports: tuple[int, int]) -> list[HostSpec]:
    """The `hypervisors` group of an Ansible inventory file or directory, values templated as Ansible would."""
    # Imported here: ansible's inventory machinery takes seconds to import and a single-host manager needs none of it.
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[source])
    variables = VariableManager(loader=loader, inventory=inventory)
    group = inventory.groups.get(GROUP)
    members = group.get_hosts() if group is not None else []
    if not members:
        raise ConfigError(f"CC_MANAGER_INVENTORY: no hosts in group {GROUP!r} of {source}")
    specs, errors = [], []
    for host in members:
        values = variables.get_vars(host=host, include_hostvars=False)
        templar = Templar(loader=loader, variables=values)
        try:
            ours = {key: templar.template(value) for key, value in values.items() if key.startswith("cocos_")}
            specs.append(host_spec(host.name, ours, max_vms, ports))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("CC_MANAGER_INVENTORY: " + "; ".join(errors))
    return specs


def host_spec(name: str, values: dict[str, Any], max_vms: int, ports: tuple[int, int]) -> HostSpec:
    """One host from its (templated) cocos_* variables; ConfigError naming the host and the variable."""
    try:
        policy.check_name("host", name, "host")
    except RequestError as exc:
        raise ConfigError(str(exc)) from None
    local = name == LOCALHOST
    uri = values.get("cocos_libvirt_uri") or ("qemu:///system" if local else None)
    address = values.get("cocos_agent_address") or ("127.0.0.1" if local else None)
    if not uri or not address:
        raise ConfigError(f"host {name}: cocos_libvirt_uri and cocos_agent_address are required")
    try:
        loopback = ipaddress.IPv4Address(str(address)).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"host {name}: cocos_agent_address {address!r} is not an IPv4 address in 127.0.0.0/8 "
                          "(the XML policy allows loopback forwards only)")
    limit = values.get("cocos_max_vms", max_vms)
    if isinstance(limit, bool) or not str(limit).isdigit() or int(limit) < 1:
        raise ConfigError(f"host {name}: cocos_max_vms {limit!r} is not a whole number of at least 1")
    if "cocos_agent_port_range" in values:
        ports = parse_port_range(f"host {name}: cocos_agent_port_range", values["cocos_agent_port_range"])
    return HostSpec(name, str(uri), str(address), int(limit), ports)


# ---- one host --------------------------------------------------------------------------------------------------

_events_started = False
_events_lock = threading.Lock()


def _start_libvirt_events() -> None:
    """libvirt's default event loop, which its client keepalive needs (once per process)."""
    global _events_started
    with _events_lock:
        if _events_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_libvirt_events, name="libvirt-events", daemon=True).start()
        _events_started = True


def _run_libvirt_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def read_snapshot(conn: libvirt.virConnect) -> Snapshot:
    """The host's figures through libvirt (one health check); raises libvirt.libvirtError."""
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)  # KiB, as /proc/meminfo has them
        total = stats["total"] * 1024
        available = sum(stats.get(key, 0) for key in ("free", "buffers", "cached")) * 1024
    except (libvirt.libvirtError, KeyError):  # drivers without node memory statistics (the test driver)
        total = conn.getInfo()[1] * 1024 * 1024  # virNodeGetInfo, in MiB through libvirt-python
        available = conn.getFreeMemory()
    domains = []
    for dom in conn.listAllDomains(0):
        try:
            max_kib = dom.info()[1]
            domains.append(DomainFacts(dom.name(), bool(dom.isActive()), max_kib * 1024,
                                       tuple(domain_view.forwarded_ports(dom.XMLDesc(0)))))
        except libvirt.libvirtError:
            continue  # undefined while we looked
        except domain_view.LibvirtUnavailable:
            continue  # an unreadable definition holds no forward we could honour
    return Snapshot(time.time(), total, available, tuple(domains))


class Host:
    """A host's connection, its latest figures and the verdict of its health check."""

    def __init__(self, spec: HostSpec, interval: float, timeout: float, retry_after: int) -> None:
        self.spec = spec
        self.interval = interval
        self.timeout = timeout
        self.retry_after = retry_after
        self.snapshot: Snapshot | None = None
        self.checked_at: float | None = None  # time.time() of the last finished check
        self.checked = threading.Event()  # set once the first check has finished
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._error: str | None = None  # None before any check, "" after a good one, else why the last one failed
        self._last_ok = 0.0  # time.monotonic() of the last good check
        self._executor = futures.ThreadPoolExecutor(CALL_WORKERS, thread_name_prefix=f"host-{spec.name}")

    @property
    def name(self) -> str:
        return self.spec.name

    def health(self) -> tuple[str, str]:
        """(reachable | unreachable | unknown, reason); never waits for libvirt."""
        with self._lock:
            if self._error is None:
                return UNKNOWN, "not checked yet"
            if self._error:
                return UNREACHABLE, self._error
            if time.monotonic() - self._last_ok > self.interval + self.timeout:
                return UNREACHABLE, f"its libvirt has not answered for {self.interval + self.timeout:g} s"
            return REACHABLE, ""

    def check(self) -> None:
        """One health check: open the connection if needed and read the host's figures."""
        try:
            conn = self._conn or self._open()
            snapshot = read_snapshot(conn)
        except libvirt.libvirtError as exc:
            self._fail("its libvirt connection failed", exc.get_error_message())
        else:
            with self._lock:
                self.snapshot, self._error, self._last_ok = snapshot, "", time.monotonic()
        finally:
            self.checked_at = time.time()
            self.checked.set()

    def _open(self) -> libvirt.virConnect:
        conn = libvirt.open(self.spec.libvirt_uri)
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # local drivers have no keepalive; they cannot hang on a silent peer either
        with self._lock:
            self._conn = conn
        return conn

    def _fail(self, reason: str, detail: str) -> None:
        with self._lock:
            was, self._error = self._error, reason
            conn, self._conn = self._conn, None
        if was != reason:
            log.warning("host unreachable", extra={"host": self.name, "reason": reason, "error": detail})
        if conn is not None:  # closing may wait for a silent peer: never in the caller's thread
            threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()

    def call(self, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
        """fn(connection) on this host within the timeout; HostUnavailable naming the host otherwise.

        Exceptions of fn other than libvirt's (RequestError, ...) pass through unchanged.
        """
        if not self.checked.is_set():  # only right after start: the first check's verdict is worth its wait
            self.checked.wait(self.timeout)
        state, reason = self.health()
        conn = self._conn
        if state == UNREACHABLE or conn is None:
            raise HostUnavailable(self.name, reason or "not connected", self.retry_after)
        future = self._executor.submit(fn, conn)
        limit = self.timeout if timeout is None else timeout
        try:
            return future.result(limit)
        except futures.TimeoutError:
            raise HostUnavailable(self.name, f"its libvirt did not answer within {limit:g} s",
                                  self.retry_after) from None
        except (libvirt.libvirtError, domain_view.LibvirtUnavailable) as exc:
            if not _alive(conn):
                self._fail("its libvirt connection was lost", str(exc))
            log.error("libvirt call failed", extra={"host": self.name, "error": str(exc)})
            raise HostUnavailable(self.name, "a libvirt call failed; see the manager's log", self.retry_after) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


# ---- all hosts -------------------------------------------------------------------------------------------------


class HostRegistry:
    """The inventory's hosts by name, in inventory order, each with its health check thread."""

    def __init__(self, specs: Iterable[HostSpec], interval: float = 1.0, timeout: float = 5.0,
                 retry_after: int = 5) -> None:
        self._hosts = {spec.name: Host(spec, interval, timeout, retry_after) for spec in specs}
        self.interval = interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_config(cls, config: Config) -> HostRegistry:
        return cls(load_hosts(config), config.host_check_interval, config.host_timeout, config.retry_after)

    def start(self) -> None:
        _start_libvirt_events()
        for host in self._hosts.values():
            thread = threading.Thread(target=self._watch, args=(host,), name=f"health-{host.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch(self, host: Host) -> None:
        while not self._stop.is_set():
            host.check()
            self._stop.wait(self.interval)

    def wait_checked(self, timeout: float) -> None:
        """Wait (at most timeout s in all) until every host has had its first check, so the first request finds
        figures; a host still silent then is simply unknown (and unreachable once its check times out)."""
        deadline = time.monotonic() + timeout
        for host in self._hosts.values():
            host.checked.wait(max(deadline - time.monotonic(), 0))

    def stop(self, timeout: float = 2.0) -> None:
        """End the checks (a check under way finishes first, within timeout) and close the connections."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        for host in self._hosts.values():
            host.close()

    @property
    def names(self) -> list[str]:
        return list(self._hosts)

    def host(self, name: str, field: str = "host") -> Host:
        """The host called name; RequestError (400) naming the inventory's hosts otherwise."""
        found = self._hosts.get(name)
        if found is None:
            raise RequestError(field, f"no host {name!r} in the inventory (hosts: {', '.join(self._hosts)})")
        return found

    def spec(self, name: str) -> HostSpec:
        return self.host(name).spec

    def hosts(self) -> list[Host]:
        return list(self._hosts.values())

    def reachable(self, name: str) -> bool:
        return self.host(name).health()[0] != UNREACHABLE

    def require(self, name: str) -> None:
        """HostUnavailable (503 naming the host) when the health check says it is unreachable."""
        host = self.host(name)
        state, reason = host.health()
        if state == UNREACHABLE:
            raise HostUnavailable(name, reason, host.retry_after)

    def call(self, name: str, fn: Callable[[libvirt.virConnect], T], timeout: float | None = None) -> T:
        return self.host(name).call(fn, timeout)

    def each(self, fn: Callable[[libvirt.virConnect], T]) -> dict[str, T | HostUnavailable]:
        """fn on every host at once; a host that is or becomes unreachable gives its HostUnavailable."""
        pending: dict[str, futures.Future] = {}
        out: dict[str, T | HostUnavailable] = {}
        with futures.ThreadPoolExecutor(max(len(self._hosts), 1), thread_name_prefix="hosts-each") as pool:
            for name, host in self._hosts.items():
                pending[name] = pool.submit(host.call, fn)
            for name, future in pending.items():
                try:
                    out[name] = future.result()
                except HostUnavailable as exc:
                    out[name] = exc
        return out
