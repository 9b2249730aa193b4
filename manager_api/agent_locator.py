"""Which agent a run goes to: read from the domain's own definition, so no address needs configuring.

The rule (README, Manager service):
1. the run names a `domain`: that domain's forward of the agent's guest port (an error if it has none), on the host
   it is on (the placement ledger's, else the one reachable host that has it);
2. otherwise the domain this manager most recently created (a successful create job) that still exists and
   forwards the agent port;
3. otherwise CC_MANAGER_AGENT_GRPC_URL.
The port is read from libvirt at each run, so a redefined domain with a new forward is followed at once. A domain
whose host is unreachable gets HostUnavailable (503 naming the host), never a guess at another agent.
"""
from __future__ import annotations

from manager_api import jobs
from manager_api.config import Config
from manager_api.domains import CREATE, DomainService, RequestError, check_domain_name
from manager_api.placement import WILDCARDS


def agent_address(domain: dict, guest_port: int, host_address: str = "127.0.0.1") -> str | None:
    """host:port of the domain's TCP forward to guest_port, or None when it has none.

    A forward bound to every address is reached through the host's agent address (loopback): the manager never
    leaves 127.0.0.0/8 for it.
    """
    for fwd in domain.get("forwarded_ports", []):
        if fwd["protocol"] == "tcp" and fwd["guest_port"] == guest_port:
            address = host_address if fwd["host_address"] in WILDCARDS else fwd["host_address"]
            return f"{address}:{fwd['host_port']}"
    return None


class AgentLocator:
    def __init__(self, config: Config, store: jobs.JobStore, domains: DomainService) -> None:
        self.config = config
        self.store = store
        self.domains = domains

    def locate(self, domain: str | None) -> tuple[str, str, str]:
        """(agent address, domain name, host name); the last two are "" when the configured URL is used."""
        if domain:
            return self._named(domain)
        for name in self._created_newest_first():
            try:
                found = self.domains.get(name)
            except RequestError:
                continue  # gone (404), or on no single host any more
            address = self._address(found)
            if address:
                return address, name, found["host"]
        return self.config.agent_grpc_url, "", ""

    def _named(self, name: str) -> tuple[str, str, str]:
        try:
            check_domain_name(name)
            found = self.domains.get(name)
        except RequestError as exc:
            status = exc.status
            message = f"domain {name!r} not found" if status == 404 else str(exc).split(": ", 1)[1]
            raise RequestError("domain", message, status=status) from None
        address = self._address(found)
        if address is None:
            raise RequestError("domain", f"domain {name!r} forwards no host TCP port to the agent's guest port "
                                         f"{self.config.agent_guest_port}", status=409)
        return address, name, found["host"]

    def _address(self, found: dict) -> str | None:
        spec = self.domains.registry.spec(found["host"])
        return agent_address(found, self.config.agent_guest_port, spec.agent_address)

    def _created_newest_first(self) -> list[str]:
        created = [j for j in self.store.list() if j.kind == CREATE and j.state == jobs.SUCCESSFUL]
        names: list[str] = []
        for job in sorted(created, key=lambda j: j.finished_at or 0, reverse=True):
            name = job.result or job.target
            if name not in names:
                names.append(name)
        return names
