"""Which agent a run goes to: read from the domain's own definition, so no address needs configuring.

The rule (README, Manager service):
1. the run names a `domain`: that domain's forward of the agent's guest port (an error if it has none);
2. otherwise the domain this manager most recently created (a successful create job) that still exists and
   forwards the agent port;
3. otherwise CC_MANAGER_AGENT_GRPC_URL.
The port is read from libvirt at each run, so a redefined domain with a new forward is followed at once.
"""
from __future__ import annotations

from manager_api import domain_view, jobs
from manager_api.config import Config
from manager_api.domains import CREATE, RequestError, check_domain_name

# A forward bound to every address is reached through loopback: the manager never leaves 127.0.0.0/8 for it.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def agent_address(domain: dict, guest_port: int) -> str | None:
    """host:port of the domain's TCP forward to guest_port, or None when it has none."""
    for fwd in domain.get("forwarded_ports", []):
        if fwd["protocol"] == "tcp" and fwd["guest_port"] == guest_port:
            host = "127.0.0.1" if fwd["host_address"] in _WILDCARDS else fwd["host_address"]
            return f"{host}:{fwd['host_port']}"
    return None


class AgentLocator:
    def __init__(self, config: Config, store: jobs.JobStore) -> None:
        self.config = config
        self.store = store

    def locate(self, domain: str | None) -> tuple[str, str]:
        """(agent address, domain name or "" when the configured URL is used)."""
        if domain:
            return self._named(domain), domain
        for name in self._created_newest_first():
            found = domain_view.get_domain(self.config.libvirt_uri, name)
            address = agent_address(found, self.config.agent_guest_port) if found else None
            if address:
                return address, name
        return self.config.agent_grpc_url, ""

    def _named(self, name: str) -> str:
        try:
            check_domain_name(name)
        except RequestError as exc:
            raise RequestError("domain", str(exc).split(": ", 1)[1]) from None
        found = domain_view.get_domain(self.config.libvirt_uri, name)
        if found is None:
            raise RequestError("domain", f"domain {name!r} not found", status=404)
        address = agent_address(found, self.config.agent_guest_port)
        if address is None:
            raise RequestError("domain", f"domain {name!r} forwards no host TCP port to the agent's guest port "
                                         f"{self.config.agent_guest_port}", status=409)
        return address

    def _created_newest_first(self) -> list[str]:
        created = [j for j in self.store.list() if j.kind == CREATE and j.state == jobs.SUCCESSFUL]
        names: list[str] = []
        for job in sorted(created, key=lambda j: j.finished_at or 0, reverse=True):
            name = job.result or job.target
            if name not in names:
                names.append(name)
        return names
