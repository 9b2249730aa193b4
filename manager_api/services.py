"""The objects both front ends share, built once from the Config."""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from manager_api import __version__
from manager_api.agent_client import AgentPool
from manager_api.agent_locator import AgentLocator
from manager_api.config import ROOT, Config
from manager_api.domains import DomainService
from manager_api.jobs import JobStore
from manager_api.metrics import Metrics
from manager_api.runner import PlaybookRunner
from manager_api.runs import RunService


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
    metrics: Metrics = field(default_factory=Metrics)
    build: dict = field(default_factory=dict)

    def close(self) -> None:
        self.agents.close()


def build_info() -> dict:
    return {"version": __version__, "commit": _git("rev-parse", "HEAD"),
            "description": "Cocos AI manager: libvirt domains through Ansible playbooks, runs forwarded to the agent",
            "build_time": _git("show", "-s", "--format=%cI", "HEAD"), "started": time.time()}


def build_services(config: Config) -> Services:
    store = JobStore()
    agents = AgentPool(config.agent_grpc_timeout, config.agent_retry_total)
    domains = DomainService(config, store, PlaybookRunner(config.playbook_dir))
    runs = RunService(agents, AgentLocator(config, store).locate)
    return Services(config=config, store=store, domains=domains, runs=runs, agents=agents, build=build_info())
