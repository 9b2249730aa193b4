"""Domain requests: XML files resolved inside CC_MANAGER_XML_DIR, parsed by the library, checked against the XML
policy (manager_api/policy.py), then turned into playbook jobs.

A per-domain in-flight job (JobStore.submit) makes concurrent requests with identical definitions converge once,
refuses a different definition while one runs (409), and lets jobs for different domains run in parallel. What a
create job found in place is recorded before its playbook starts, so a job that is canceled, or that a crash of the
manager interrupted, can be rolled back exactly (playbooks/domain_rollback.yml).
"""
from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt

from manager_api import domain_view, jobs, policy
from manager_api.config import Config
from manager_api.errors import Busy, HostUnavailable, RequestError, check_text
from manager_api.hosts import HostRegistry
from manager_api.placement import Placement, PlacementService, write_metadata
from module_utils.cocos_libvirt import domain_xml, xmlcanon
from module_utils.cocos_libvirt.common import LibvirtModuleError

__all__ = ["CREATE", "DELETE", "ROLLBACK", "Definitions", "DomainService", "RequestError", "check_definitions",
           "check_domain_name", "load_definitions", "read_definitions", "read_xml", "resolve_xml_path"]
log = logging.getLogger("manager_api.domains")
DEFAULT_FILES = {"pool": "pool.xml", "volume": "vol.xml", "domain": "dom.xml"}
ROOT_TAGS = {"pool": "pool", "volume": "volume", "domain": "domain"}
CREATE, DELETE, ROLLBACK = "create_domain", "delete_domain", "rollback_domain"
XML_DIR_RULE = "must name a file inside the XML directory (CC_MANAGER_XML_DIR), without '..'"


@dataclass(frozen=True)
class Definitions:
    pool_xml: str
    volume_xml: str
    domain_xml: str
    pool_name: str
    volume_name: str
    domain_name: str
    pool_path: str = ""

    def extravars(self, uri: str) -> dict:
        return {"libvirt_uri": uri, "pool_xml": self.pool_xml, "volume_xml": self.volume_xml,
                "domain_xml": self.domain_xml, "pool_name": self.pool_name, "volume_name": self.volume_name,
                "domain_name": self.domain_name}

    def digest(self, uri: str, ttl: int | None = None) -> str:
        """Identity of the request: requests share a job only when this is equal."""
        parts = (uri, self.pool_xml, self.volume_xml, self.domain_xml, str(ttl or ""))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def resolve_xml_path(xml_dir: str, given: str, field: str) -> Path:
    """The real path of a requested XML file, which must lie inside xml_dir.

    Relative paths are taken from xml_dir; absolute ones must already point inside it. `..` is refused outright
    (even when it would land inside) so the rule is simple to state, and the resolved path is checked again so
    a symlink cannot lead out. Messages name the field and the rule, never the directory.
    """
    text = check_text(field, given) if given else DEFAULT_FILES[field]
    candidate = Path(text)
    if ".." in candidate.parts:
        raise RequestError(field, XML_DIR_RULE)
    base = Path(xml_dir).resolve()
    full = candidate if candidate.is_absolute() else base / candidate
    real = Path(os.path.realpath(full))
    if real != base and base not in real.parents:
        raise RequestError(field, f"path is outside the XML directory: it {XML_DIR_RULE}")
    if not real.is_file():
        raise RequestError(field, "no such XML file in the XML directory", status=404)
    return real


def read_xml(path: Path, field: str, max_bytes: int) -> tuple[str, ET.Element]:
    """Text and parsed root of a definition, refused when large, malformed, carrying DTDs, or of another kind."""
    if path.stat().st_size > max_bytes:
        raise RequestError(field, f"XML file is larger than {max_bytes} bytes")
    try:
        text = path.read_text(encoding="utf-8")
        check_text(field, text)
        root = xmlcanon.parse(text, f"{field} XML")
    except UnicodeDecodeError:
        raise RequestError(field, "XML file is not UTF-8 text") from None
    except LibvirtModuleError as exc:
        raise RequestError(field, str(exc).removeprefix(f"{field} XML: ")) from None
    if root.tag != ROOT_TAGS[field]:
        raise RequestError(field, f"expected a <{ROOT_TAGS[field]}> definition, found <{root.tag}>")
    return text, root


def read_definitions(config: Config, pool: str, volume: str, domain: str) -> dict[str, tuple[str, ET.Element]]:
    """The three files' texts and parsed roots (field -> (text, root)); nothing checked against the policy yet."""
    return {field: read_xml(resolve_xml_path(config.xml_dir, given, field), field, config.xml_max_bytes)
            for field, given in (("pool", pool), ("volume", volume), ("domain", domain))}


def check_definitions(config: Config, files: dict[str, tuple[str, ET.Element]], pools: dict[str, str]) -> Definitions:
    """The definitions checked against the XML policy, given the allowed pools of the host they go to."""
    pool_facts = policy.check_pool(config, files["pool"][1])
    volume_name = policy.check_volume(config, files["volume"][1])
    domain_name = policy.check_domain(config, files["domain"][1], {**pools, pool_facts["name"]: pool_facts["path"]})
    return Definitions(pool_xml=files["pool"][0], volume_xml=files["volume"][0], domain_xml=files["domain"][0],
                       pool_name=pool_facts["name"], volume_name=volume_name, domain_name=domain_name,
                       pool_path=pool_facts["path"])


def load_definitions(config: Config, pool: str, volume: str, domain: str,
                     pools: dict[str, str] | None = None) -> Definitions:
    """Read the three files and check them against the XML policy (pools: the host's allowed ones); nothing has
    run yet."""
    return check_definitions(config, read_definitions(config, pool, volume, domain), pools or {})


def allowed_pools(config: Config, conn: libvirt.virConnect) -> dict[str, str]:
    """Pools the host's libvirt has now whose directories the policy allows (name -> directory)."""
    return {name: path for name, path in domain_view.pool_directories(conn).items()
            if path is not None and policy.pool_path_allowed(config, path)}


class DomainService:
    """What HTTP and gRPC both call: place, create, read and delete domains across the inventory's hosts."""

    def __init__(self, config: Config, store: jobs.JobStore, runner, registry: HostRegistry,
                 placement: PlacementService) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.registry = registry
        self.placement = placement
        self.stopping = False  # set at shutdown: rollbacks then wait for the next start

    # ---- create ----

    def create(self, pool: str = "", volume: str = "", domain: str = "", host: str | None = None,
               ttl: int | None = None) -> tuple[jobs.Job, bool]:
        """Place the domain (on `host`, or where placement decides), write its agent port into its forward, check
        the definitions against the policy and start the playbook on that host. Raises RequestError, NoRoom,
        HostUnavailable, Busy; a reservation made here is given back when anything fails before the job exists."""
        files = read_definitions(self.config, pool, volume, domain)
        root = files["domain"][1]
        name = (root.findtext("name") or "").strip()
        check_domain_name(name, "domain")
        guest_port = self.config.agent_guest_port
        wants_port = any(f["protocol"] == "tcp" and f["guest_port"] == guest_port
                         for f in domain_xml.forwarded_ports(root))
        memory = domain_xml.memory_bytes(root) or 0
        row, new = self.placement.reserve(name, memory, host or None, wants_port, ttl)
        try:
            spec = self.registry.spec(row.host)
            if row.port is not None and domain_xml.set_host_forward(root, guest_port, spec.agent_address, row.port):
                files["domain"] = (domain_xml.to_text(root), root)
            defs = check_definitions(self.config, files,
                                     self.registry.call(row.host, lambda conn: allowed_pools(self.config, conn)))
            vars_ = defs.extravars(spec.libvirt_uri)
            details = {**_names(defs), "host": row.host, "port": row.port, "memory": memory, "ttl": ttl,
                       "reservation": row.token}
            return self.store.submit(CREATE, defs.domain_name, lambda job: self._start_create(job, vars_),
                                     digest=defs.digest(spec.libvirt_uri, ttl), details=details,
                                     on_final=self._after_create)
        except BaseException:
            if new:
                self.placement.release(name, row.token)
            raise

    def _start_create(self, job: jobs.Job, vars_: dict) -> None:
        """Record what exists before the playbook changes anything; recovery removes only the rest."""
        names = job.details

        def found(conn: libvirt.virConnect) -> dict:
            pool_found, volume_found = domain_view.storage_exists(conn, names["pool_name"], names["volume_name"])
            return {"pool": pool_found, "volume": volume_found,
                    "domain": domain_view.domain_exists(conn, names["domain_name"])}
        try:
            before = self.registry.call(names["host"], found)
        except HostUnavailable as exc:
            job.set_state(jobs.FAILED, str(exc))
            return
        job.update(details={**names, "existed": before})
        self.runner.start(job, "domain.yml", vars_)

    def _after_create(self, job: jobs.Job) -> None:
        """The placement follows the job: recorded (with the domain's metadata) on success, given back otherwise."""
        d = job.details
        if job.state == jobs.SUCCESSFUL:
            row = self.placement.confirm(d["domain_name"], d.get("reservation", ""), d.get("ttl"), d["host"],
                                         d.get("port"), d.get("memory", 0))
            try:
                spec = self.registry.spec(row.host)
                self.registry.call(row.host, lambda conn: write_metadata(conn, row, spec))
            except (HostUnavailable, RequestError) as exc:  # the ledger has it; the domain's own record waits
                log.warning("placement metadata not written", extra={"domain": row.domain, "error": str(exc)})
            return
        if job.state == jobs.CANCELED:
            self.rollback(job, "canceled")
        self.placement.release(d["domain_name"], d.get("reservation", ""))

    def rollback(self, job: jobs.Job, why: str) -> jobs.Job | None:
        """Start a job that removes what `job` created (objects absent before it); None when it created nothing."""
        details = job.details
        existed = details.get("existed")
        if not existed:
            job.update(error=f"{why}; it had not changed anything yet", details={**details, "rollback": "done"})
            return None
        remove = {f"remove_{kind}": not existed[kind] for kind in ("domain", "volume", "pool")}
        if not any(remove.values()):
            job.update(error=f"{why}; nothing to roll back (pool, volume and domain existed before it)",
                       details={**details, "rollback": "done"})
            return None
        host = details.get("host") or (self.registry.names[0] if len(self.registry.names) == 1 else "")
        try:
            uri = self.registry.spec(host).libvirt_uri
        except RequestError:
            job.update(error=f"{why}; its rollback cannot run: host {host or '(unrecorded)'} is not in the inventory",
                       details={**details, "rollback": "failed"})
            return None
        vars_ = {"libvirt_uri": uri, "domain_name": details["domain_name"],
                 "volume_name": details["volume_name"], "pool_name": details["pool_name"],
                 "pool_path": details["pool_path"], **remove}
        job.update(details={**details, "rollback": "pending"})
        if self.stopping:
            job.update(error=f"{why}; its rollback runs when the manager starts again")
            return None
        job.update(error=f"{why}; rolling back what it created")
        try:
            rollback, _ = self.store.submit(ROLLBACK, details["domain_name"],
                                            lambda new: self.runner.start(new, "domain_rollback.yml", vars_),
                                            digest=job.id, details={"rollback_of": job.id, "host": host})
        except (Busy, RequestError) as exc:
            job.update(error=f"{why}; its rollback could not start ({exc}) and runs when the manager starts again")
            return None

        def report(done: jobs.Job) -> None:
            state = "done" if done.state == jobs.SUCCESSFUL else "failed"
            job.update(error=f"{why}; {rollback_report(done)}", details={**job.details, "rollback": state})
        rollback._on_final.append(report)
        return rollback

    # ---- delete ----

    def delete(self, name: str, host: str | None = None) -> tuple[jobs.Job, bool]:
        """A job that removes the domain and its volumes; an unknown name is a 404, not a job that finds nothing.

        Only domains whose disks are managed storage are removed: the playbook deletes the volumes behind them.
        """
        check_domain_name(name)
        where = self.placement.locate(name, host or None)
        if where is None:
            raise RequestError("name", "no such domain", status=404)
        root, pools = self.registry.call(where, lambda conn: (domain_view.domain_definition(conn, name),
                                                              allowed_pools(self.config, conn)))
        if root is None:
            raise RequestError("name", f"no such domain on host {where}", status=404)
        policy.check_removable(self.config, root, pools)
        vars_ = {"libvirt_uri": self.registry.spec(where).libvirt_uri, "domain_name": name}
        return self.store.submit(DELETE, name, lambda job: self.runner.start(job, "domain_absent.yml", vars_),
                                 details={"domain_name": name, "host": where}, on_final=self._after_delete)

    def _after_delete(self, job: jobs.Job) -> None:
        if job.state == jobs.SUCCESSFUL:
            self.placement.forget(job.details["domain_name"], job.details["host"])

    # ---- read ----

    def all_domains(self) -> tuple[list[dict], list[str]]:
        """Every domain of every reachable host (with its host and placement), and the unreachable hosts' names.

        A domain this manager placed on an unreachable host is listed from the ledger, in state `unknown`. Raises
        HostUnavailable when no host answers at all.
        """
        domains: list[dict] = []
        unreachable: list[str] = []
        errors: list[HostUnavailable] = []
        for host, result in self.registry.each(domain_view.list_domains).items():
            if isinstance(result, HostUnavailable):
                unreachable.append(host)
                errors.append(result)
                domains.extend(self._unknown(row) for row in self.placement.rows(host))
                continue
            domains.extend({**found, **self._placement_of(found["name"], host)} for found in result)
        if errors and len(errors) == len(self.registry.names):
            if len(errors) == 1:
                raise errors[0]
            raise HostUnavailable(", ".join(unreachable), errors[0].reason, errors[0].retry_after)
        return sorted(domains, key=lambda d: (d["name"], d["host"])), unreachable

    def get(self, name: str, host: str | None = None) -> dict:
        """One domain with its host and placement; 404 when no reachable host has it, 503 naming its host when the
        host it is on (by the ledger, or as named) is unreachable."""
        check_text("name", name)
        where = self.placement.locate(name, host or None)
        found = self.registry.call(where, lambda conn: domain_view.get_domain(conn, name)) if where else None
        if where is None or found is None:
            raise RequestError("name", "no such domain", status=404)
        return {**found, **self._placement_of(name, where)}

    def _placement_of(self, name: str, host: str) -> dict:
        row = self.placement.get(name)
        if row is not None and row.host == host:
            return row.view()
        return {"host": host, "agent_port": None, "ttl": None, "expires_at": None}

    def _unknown(self, row: Placement) -> dict:
        spec = self.registry.spec(row.host)
        forwards = [] if row.port is None else [{"host_address": spec.agent_address, "host_port": row.port,
                                                 "guest_port": self.config.agent_guest_port, "protocol": "tcp"}]
        return {"name": row.domain, "uuid": "", "state": "unknown", "forwarded_ports": forwards, **row.view()}

    def wait(self, job: jobs.Job, timeout: float | None = None) -> bool:
        return job.wait(self.config.domain_timeout if timeout is None else timeout)


def _names(defs: Definitions) -> dict:
    return {"domain_name": defs.domain_name, "pool_name": defs.pool_name, "volume_name": defs.volume_name,
            "pool_path": defs.pool_path}


def rollback_report(job: jobs.Job) -> str:
    """What a rollback job did, in one sentence, from its playbook's report."""
    report = job.details.get("report") or {}
    removed, kept = report.get("removed") or [], report.get("kept") or []
    if job.state != jobs.SUCCESSFUL and not report:
        return f"rollback job {job.id} {job.state}: {job.error or 'no report'}"
    return (f"rolled back by job {job.id}: removed {', '.join(removed) or 'nothing'}; "
            f"kept {', '.join(kept) or 'nothing'}")


def check_domain_name(name: str, field: str = "name") -> None:
    """A domain name a request gives (path parameter, run field): the policy's name rule."""
    check_text(field, name)
    policy.check_name(field, name, "domain")
