"""Domain requests: XML files resolved safely inside CC_MANAGER_XML_DIR, parsed safely, turned into playbook jobs.

A per-domain in-flight job (JobStore.submit) makes concurrent requests for one domain converge once, while jobs
for different domains run in parallel.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from manager_api import domain_view, jobs
from manager_api.config import Config

DEFAULT_FILES = {"pool": "pool.xml", "volume": "vol.xml", "domain": "dom.xml"}
ROOT_TAGS = {"pool": "pool", "volume": "volume", "domain": "domain"}
CREATE, DELETE = "create_domain", "delete_domain"


class RequestError(ValueError):
    """Bad input: the field it concerns and an HTTP status (400 invalid, 404 missing)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Definitions:
    pool_xml: str
    volume_xml: str
    domain_xml: str
    pool_name: str
    volume_name: str
    domain_name: str

    def extravars(self, uri: str) -> dict:
        return {"libvirt_uri": uri, "pool_xml": self.pool_xml, "volume_xml": self.volume_xml,
                "domain_xml": self.domain_xml, "pool_name": self.pool_name, "volume_name": self.volume_name,
                "domain_name": self.domain_name}


def resolve_xml_path(xml_dir: str, given: str, field: str) -> Path:
    """The real path of a requested XML file, which must lie inside xml_dir.

    Relative paths are taken from xml_dir; absolute ones must already point inside it. `..` is refused outright
    (even when it would land inside) so the rule is simple to state, and the resolved path is checked again so
    a symlink cannot lead out.
    """
    text = given if given else DEFAULT_FILES[field]
    if "\x00" in text:
        raise RequestError(field, "path contains a NUL byte")
    candidate = Path(text)
    if ".." in candidate.parts:
        raise RequestError(field, f"path {given!r} must not contain '..'")
    base = Path(xml_dir).resolve()
    full = candidate if candidate.is_absolute() else base / candidate
    real = Path(os.path.realpath(full))
    if real != base and base not in real.parents:
        raise RequestError(field, f"path {given!r} is outside the XML directory {base}")
    if not real.is_file():
        raise RequestError(field, f"XML file {given or text!r} not found in {base}", status=404)
    return real


def read_xml(path: Path, field: str, max_bytes: int) -> tuple[str, str]:
    """Text and <name> of a definition, refused when large, malformed, or carrying DTDs or template syntax."""
    if path.stat().st_size > max_bytes:
        raise RequestError(field, f"XML file is larger than {max_bytes} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RequestError(field, "XML file is not UTF-8 text") from None
    # DTDs are the door to entity expansion and external fetches; libvirt XML never needs them.
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise RequestError(field, "XML with DOCTYPE or ENTITY declarations is not accepted")
    # The text travels as a playbook variable: template syntax in it would be evaluated by Ansible.
    if any(mark in text for mark in ("{{", "{%", "{#")):
        raise RequestError(field, "XML must not contain Jinja template markers ({{, {%, {#)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise RequestError(field, f"malformed XML: {exc}") from None
    if root.tag != ROOT_TAGS[field]:
        raise RequestError(field, f"expected a <{ROOT_TAGS[field]}> definition, found <{root.tag}>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise RequestError(field, "definition has no <name>")
    return text, name


def load_definitions(config: Config, pool: str, volume: str, domain: str) -> Definitions:
    loaded = {}
    for field, given in (("pool", pool), ("volume", volume), ("domain", domain)):
        path = resolve_xml_path(config.xml_dir, given, field)
        loaded[field] = read_xml(path, field, config.xml_max_bytes)
    return Definitions(
        pool_xml=loaded["pool"][0], volume_xml=loaded["volume"][0], domain_xml=loaded["domain"][0],
        pool_name=loaded["pool"][1], volume_name=loaded["volume"][1], domain_name=loaded["domain"][1],
    )


class DomainService:
    """What HTTP and gRPC both call: create and delete domains as jobs."""

    def __init__(self, config: Config, store: jobs.JobStore, runner) -> None:
        self.config = config
        self.store = store
        self.runner = runner

    def create(self, pool: str = "", volume: str = "", domain: str = "") -> tuple[jobs.Job, bool]:
        defs = load_definitions(self.config, pool, volume, domain)
        vars_ = defs.extravars(self.config.libvirt_uri)
        return self.store.submit(CREATE, defs.domain_name,
                                 lambda job: self.runner.start(job, "domain.yml", vars_))

    def delete(self, name: str) -> tuple[jobs.Job, bool]:
        """A job that removes the domain; an unknown name is a 404, not a job that finds nothing to do."""
        if domain_view.get_domain(self.config.libvirt_uri, name) is None:
            raise RequestError("name", f"domain {name!r} not found", status=404)
        check_domain_name(name)
        vars_ = {"libvirt_uri": self.config.libvirt_uri, "domain_name": name}
        return self.store.submit(DELETE, name, lambda job: self.runner.start(job, "domain_absent.yml", vars_))

    def wait(self, job: jobs.Job, timeout: float | None = None) -> bool:
        return job.wait(self.config.domain_timeout if timeout is None else timeout)


def check_domain_name(name: str) -> None:
    # libvirt accepts nearly anything, but a name reaching a playbook should be plain text of sane length.
    if not name or len(name) > 200 or any(c in name for c in "/\x00{}%#") or not name.isprintable():
        raise RequestError("name", f"{name!r} is not a valid domain name")
