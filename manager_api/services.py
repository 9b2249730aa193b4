"""The objects both front ends share, built once from the Config."""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass, field

from manager_api import __version__, recovery
from manager_api.admission import Gate
from manager_api.agent_client import AgentPool
from manager_api.agent_locator import AgentLocator
from manager_api.config import ROOT, Config
from manager_api.domains import DomainService
from manager_api.hosts import HostRegistry
from manager_api.jobs import JobStore
from manager_api.metrics import Metrics
from manager_api.placement import PlacementService, Reaper
from manager_api.runner import PlaybookRunner
from manager_api.runs import RunService

log = logging.getLogger("manager_api")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


@dataclass
class Services:
    config: Config
    store: JobStore
    domains: DomainService
    runs: RunService
    agents: AgentPool
    hosts: HostRegistry
    placement: PlacementService
    reaper: Reaper
    metrics: Metrics = field(default_factory=Metrics)
    build: dict = field(default_factory=dict)
    waiters: Gate = field(default_factory=lambda: Gate("waiting requests", 8, 5))
    streams: Gate = field(default_factory=lambda: Gate("event streams", 8, 5))
    interrupted: list = field(default_factory=list)

    def stop_work(self, timeout: float = 5.0) -> None:
        """Shutdown: cancel every job that runs (its rollback waits for the next start) and end agent calls."""
        self.domains.stopping = True
        running = self.store.running()
        for job in running:
            self.store.cancel(job)
        self.agents.close()
        deadline = time.monotonic() + timeout
        for job in running:
            job.wait(max(deadline - time.monotonic(), 0))

    def close(self) -> None:
        self.reaper.stop()
        self.agents.close()
        self.hosts.stop()
        self.placement.close()
        self.store.close()


def build_info() -> dict:
    return {"version": __version__, "commit": _git("rev-parse", "HEAD"),
            "description": "Cocos AI manager: libvirt domains through Ansible playbooks, runs forwarded to the agent",
            "build_time": _git("show", "-s", "--format=%cI", "HEAD"), "started": time.time()}


def build_services(config: Config, hosts: HostRegistry | None = None) -> Services:
    """Everything both front ends share; jobs a previous manager left unfinished are recovered first.

    hosts: the inventory's (HostRegistry.from_config, which raises ConfigError for a bad inventory) unless given.
    Their health checks start here, and the first round is awaited (at most CC_MANAGER_HOST_TIMEOUT) so the first
    request finds every answering host's figures.
    """
    registry = hosts or HostRegistry.from_config(config)
    os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
    store = JobStore(os.path.join(config.state_dir, "jobs.sqlite3"), max_running=config.max_playbooks,
                     retry_after=config.retry_after)
    registry.start()
    registry.wait_checked(config.host_timeout)
    placement = PlacementService(registry, os.path.join(config.state_dir, "placements.sqlite3"),
                                 config.agent_guest_port)
    agents = AgentPool(config.agent_grpc_timeout, config.agent_retry_total)
    domains = DomainService(config, store, PlaybookRunner(config.playbook_dir, config.state_dir), registry, placement)
    runs = RunService(agents, AgentLocator(config, store, domains).locate,
                      Gate("agent calls", config.max_agent_calls, config.retry_after), check_host=registry.require)
    reaper = Reaper(placement, lambda domain, host: domains.delete(domain, host), config.host_check_interval)
    services = Services(config=config, store=store, domains=domains, runs=runs, agents=agents, hosts=registry,
                        placement=placement, reaper=reaper, build=build_info(),
                        waiters=Gate("waiting requests", config.max_waiters, config.retry_after),
                        streams=Gate("event streams", config.max_streams, config.retry_after))
    services.metrics.watch_jobs(store)
    services.metrics.watch_hosts(placement.hosts_view)
    for domain in placement.release_reservations():
        log.warning("reservation of an interrupted job given back", extra={"domain": domain})
    services.interrupted = recovery.recover(store, domains, config.state_dir)
    reaper.start()
    return services
