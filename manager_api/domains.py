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

from manager_api import domain_view, jobs, policy
from manager_api.config import Config
from manager_api.errors import Busy, RequestError, check_text
from module_utils.cocos_libvirt import xmlcanon
from module_utils.cocos_libvirt.common import LibvirtModuleError

__all__ = ["CREATE", "DELETE", "ROLLBACK", "Definitions", "DomainService", "RequestError", "check_domain_name",
           "load_definitions", "read_xml", "resolve_xml_path"]
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

    def digest(self, uri: str) -> str:
        """Identity of the request: requests share a job only when this is equal."""
        parts = (uri, self.pool_xml, self.volume_xml, self.domain_xml)
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


def load_definitions(config: Config, pool: str, volume: str, domain: str) -> Definitions:
    """Read the three files and check them against the XML policy; nothing has run yet."""
    texts, roots = {}, {}
    for field, given in (("pool", pool), ("volume", volume), ("domain", domain)):
        path = resolve_xml_path(config.xml_dir, given, field)
        texts[field], roots[field] = read_xml(path, field, config.xml_max_bytes)
    pool_facts = policy.check_pool(config, roots["pool"])
    volume_name = policy.check_volume(config, roots["volume"])
    pools = allowed_pools(config)
    pools[pool_facts["name"]] = pool_facts["path"]
    domain_name = policy.check_domain(config, roots["domain"], pools)
    return Definitions(pool_xml=texts["pool"], volume_xml=texts["volume"], domain_xml=texts["domain"],
                       pool_name=pool_facts["name"], volume_name=volume_name, domain_name=domain_name,
                       pool_path=pool_facts["path"])


def allowed_pools(config: Config) -> dict[str, str]:
    """Pools libvirt has now whose directories the policy allows (name -> directory)."""
    return {name: path for name, path in domain_view.pool_directories(config.libvirt_uri).items()
            if path is not None and policy.pool_path_allowed(config, path)}


class DomainService:
    """What HTTP and gRPC both call: create and delete domains as jobs."""

    def __init__(self, config: Config, store: jobs.JobStore, runner) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.stopping = False  # set at shutdown: rollbacks then wait for the next start

    def create(self, pool: str = "", volume: str = "", domain: str = "") -> tuple[jobs.Job, bool]:
        defs = load_definitions(self.config, pool, volume, domain)
        uri = self.config.libvirt_uri
        vars_ = defs.extravars(uri)
        return self.store.submit(CREATE, defs.domain_name, lambda job: self._start_create(job, vars_),
                                 digest=defs.digest(uri), details=_names(defs))

    def _start_create(self, job: jobs.Job, vars_: dict) -> None:
        """Record what exists before the playbook changes anything; recovery removes only the rest."""
        names = job.details
        try:
            pool_found, volume_found = domain_view.storage_exists(self.config.libvirt_uri, names["pool_name"],
                                                                  names["volume_name"])
            before = {"pool": pool_found, "volume": volume_found,
                      "domain": domain_view.domain_exists(self.config.libvirt_uri, names["domain_name"])}
        except domain_view.LibvirtUnavailable as exc:
            job.set_state(jobs.FAILED, str(exc))
            return
        job.update(details={**names, "existed": before})
        job._on_final.append(self._after_create)
        self.runner.start(job, "domain.yml", vars_)

    def _after_create(self, job: jobs.Job) -> None:
        if job.state == jobs.CANCELED:
            self.rollback(job, "canceled")

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
        vars_ = {"libvirt_uri": self.config.libvirt_uri, "domain_name": details["domain_name"],
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
                                            digest=job.id, details={"rollback_of": job.id})
        except (Busy, RequestError) as exc:
            job.update(error=f"{why}; its rollback could not start ({exc}) and runs when the manager starts again")
            return None

        def report(done: jobs.Job) -> None:
            state = "done" if done.state == jobs.SUCCESSFUL else "failed"
            job.update(error=f"{why}; {rollback_report(done)}", details={**job.details, "rollback": state})
        rollback._on_final.append(report)
        return rollback

    def delete(self, name: str) -> tuple[jobs.Job, bool]:
        """A job that removes the domain and its volumes; an unknown name is a 404, not a job that finds nothing.

        Only domains whose disks are managed storage are removed: the playbook deletes the volumes behind them.
        """
        check_domain_name(name)
        root = domain_view.domain_definition(self.config.libvirt_uri, name)
        if root is None:
            raise RequestError("name", "no such domain", status=404)
        policy.check_removable(self.config, root, allowed_pools(self.config))
        vars_ = {"libvirt_uri": self.config.libvirt_uri, "domain_name": name}
        return self.store.submit(DELETE, name, lambda job: self.runner.start(job, "domain_absent.yml", vars_),
                                 details={"domain_name": name})

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
