"""Configuration from the environment, validated once at start so a typo fails loudly, not at first request."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
# Host resources a domain may only use when the operator names them in CC_MANAGER_ALLOW_PASSTHROUGH
# (manager_api/policy.py and SECURITY.md say what each one opens).
PASSTHROUGH_KINDS = ("hostdev", "tpm", "direct", "filesystem", "block", "input", "smartcard", "redirdev", "bridge")


class ConfigError(ValueError):
    """A setting that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Config:
    log_level: str = "info"
    http_host: str = "0.0.0.0"
    http_port: int = 9021
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 7001
    server_cert: str | None = None
    server_key: str | None = None
    agent_grpc_url: str = "localhost:7002"
    agent_grpc_timeout: float = 5.0
    agent_retry_total: float = 30.0
    # The agent's port inside the guest: the run goes to the host port a domain forwards to it.
    agent_guest_port: int = 7002
    # Largest algorithm or dataset upload; the agent's own default limit (AGENT_MAX_UPLOAD_BYTES) is the same.
    max_upload_bytes: int = 64 * 1024 * 1024
    xml_dir: str = str(ROOT / "xml")
    xml_max_bytes: int = 256 * 1024
    max_body_bytes: int = 64 * 1024
    # Hosts: the `hypervisors` group of this Ansible inventory (file or directory; manager_api/hosts.py). When
    # libvirt_uri is set it replaces the inventory with one host, `localhost`, at that URI.
    inventory: str = str(ROOT / "inventory")
    libvirt_uri: str = ""
    # Per-host defaults an inventory host may override (cocos_max_vms, cocos_agent_port_range): the VMs this manager
    # places on a host, and the host ports it forwards to their agents (upstream Cocos: MANAGER_QEMU_HOST_FWD_RANGE).
    max_vms: int = 10
    agent_port_range: tuple[int, int] = (6100, 6200)
    # Health: every host's libvirt is read this often; one that has not answered for interval + timeout is
    # unreachable, and so is a libvirt call of a request that takes longer than the timeout.
    host_check_interval: float = 1.0
    host_timeout: float = 5.0
    token: str | None = None
    playbook_dir: str = str(ROOT / "playbooks")
    domain_timeout: float = 900.0
    # The XML policy (manager_api/policy.py): where pools, boot media and console logs may live.
    storage_roots: tuple[str, ...] = ("/var/lib/libvirt/images", "/var/lib/cocos")
    iso_roots: tuple[str, ...] = ("/var/lib/cocos/iso",)
    log_dir: str = "/var/lib/cocos/log"
    allow_passthrough: frozenset[str] = frozenset()
    # Job records (SQLite) and the playbooks' private data directories.
    state_dir: str = "/var/lib/cocos/manager"
    # Admission: work beyond these bounds gets 503 + Retry-After at once instead of a server thread.
    max_agent_calls: int = 8
    max_playbooks: int = 4
    max_waiters: int = 8
    max_streams: int = 8
    retry_after: int = 5
    # A client must send its whole request line and headers within this time (slow clients cannot hold a thread).
    header_timeout: float = 10.0

    @property
    def tls(self) -> bool:
        return bool(self.server_cert)


def _port(name: str, raw: str) -> int:
    value = _int(name, raw)
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}: {value} is not a TCP port (0-65535)")
    return value


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from None


def _seconds(name: str, raw: str) -> float:
    """Seconds as a number, or with an s/ms suffix as the Go manager's durations were written ("30s")."""
    text = raw.strip().lower()
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2], 0.001
    elif text.endswith("s"):
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a duration (seconds, e.g. 5 or 5s or 500ms)") from None
    if value <= 0:
        raise ConfigError(f"{name}: {raw!r} must be positive")
    return value


def parse_port_range(name: str, raw: object) -> tuple[int, int]:
    """`FIRST-LAST` (inclusive TCP ports, FIRST <= LAST) as a pair; ConfigError naming `name` otherwise."""
    first, sep, last = str(raw).strip().partition("-")
    try:
        pair = (int(first), int(last))
    except ValueError:
        pair = (0, 0)
    if not sep or not 1 <= pair[0] <= pair[1] <= 65535:
        raise ConfigError(f"{name}: {raw!r} is not a port range FIRST-LAST within 1-65535")
    return pair


def _existing_path(name: str, raw: str) -> str:
    """A file or directory (an Ansible inventory source), resolved."""
    return _resolved(name, raw, os.path.exists, "does not exist")


def _log_level(name: str, raw: str) -> str:
    if raw.lower() not in LOG_LEVELS:
        raise ConfigError(f"{name}: {raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return raw.lower()


def _readable_file(name: str, raw: str) -> str:
    if not os.path.isfile(raw) or not os.access(raw, os.R_OK):
        raise ConfigError(f"{name}: {raw!r} is not a readable file")
    return raw


def _directory(name: str, raw: str) -> str:
    return _resolved(name, raw, os.path.isdir, "is not a directory")


def _resolved(name: str, raw: str, exists: Callable[[str], bool], otherwise: str) -> str:
    if not exists(raw):
        raise ConfigError(f"{name}: {raw!r} {otherwise}")
    return str(Path(raw).resolve())


def _text(name: str, raw: str) -> str:
    return raw


def _positive(name: str, raw: str) -> int:
    value = _int(name, raw)
    if value < 1:
        raise ConfigError(f"{name}: {raw!r} must be at least 1")
    return value


def _absolute(name: str, raw: str) -> str:
    if not os.path.isabs(raw):
        raise ConfigError(f"{name}: {raw!r} is not an absolute path")
    return os.path.normpath(raw)


def _paths(name: str, raw: str) -> tuple[str, ...]:
    """A colon-separated list of absolute directories (they need not exist yet)."""
    return tuple(_absolute(name, part) for part in raw.split(os.pathsep) if part)


def _passthrough(name: str, raw: str) -> frozenset[str]:
    kinds = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = sorted(kinds - set(PASSTHROUGH_KINDS))
    if unknown:
        raise ConfigError(f"{name}: {', '.join(unknown)} not among {', '.join(PASSTHROUGH_KINDS)}")
    return frozenset(kinds)


# env variable -> (Config field, parser); unset or empty variables keep the default.
_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "CC_MANAGER_LOG_LEVEL": ("log_level", _log_level),
    "CC_MANAGER_HTTP_HOST": ("http_host", _text),
    "CC_MANAGER_HTTP_PORT": ("http_port", _port),
    "CC_MANAGER_GRPC_HOST": ("grpc_host", _text),
    "CC_MANAGER_GRPC_PORT": ("grpc_port", _port),
    "CC_MANAGER_SERVER_CERT": ("server_cert", _readable_file),
    "CC_MANAGER_SERVER_KEY": ("server_key", _readable_file),
    "CC_MANAGER_AGENT_GRPC_URL": ("agent_grpc_url", _text),
    "CC_MANAGER_AGENT_GRPC_TIMEOUT": ("agent_grpc_timeout", _seconds),
    "CC_MANAGER_AGENT_RETRY_TOTAL": ("agent_retry_total", _seconds),
    "CC_MANAGER_AGENT_GUEST_PORT": ("agent_guest_port", _port),
    "CC_MANAGER_MAX_UPLOAD_BYTES": ("max_upload_bytes", _int),
    "CC_MANAGER_XML_DIR": ("xml_dir", _directory),
    "CC_MANAGER_XML_MAX_BYTES": ("xml_max_bytes", _int),
    "CC_MANAGER_MAX_BODY_BYTES": ("max_body_bytes", _int),
    "CC_MANAGER_LIBVIRT_URI": ("libvirt_uri", _text),
    "CC_MANAGER_INVENTORY": ("inventory", _existing_path),
    "CC_MANAGER_MAX_VMS": ("max_vms", _positive),
    "CC_MANAGER_AGENT_PORT_RANGE": ("agent_port_range", parse_port_range),
    "CC_MANAGER_HOST_CHECK_INTERVAL": ("host_check_interval", _seconds),
    "CC_MANAGER_HOST_TIMEOUT": ("host_timeout", _seconds),
    "CC_MANAGER_TOKEN": ("token", _text),
    "CC_MANAGER_PLAYBOOK_DIR": ("playbook_dir", _directory),
    "CC_MANAGER_DOMAIN_TIMEOUT": ("domain_timeout", _seconds),
    "CC_MANAGER_STORAGE_ROOTS": ("storage_roots", _paths),
    "CC_MANAGER_ISO_ROOTS": ("iso_roots", _paths),
    "CC_MANAGER_LOG_DIR": ("log_dir", _absolute),
    "CC_MANAGER_ALLOW_PASSTHROUGH": ("allow_passthrough", _passthrough),
    "CC_MANAGER_STATE_DIR": ("state_dir", _absolute),
    "CC_MANAGER_MAX_AGENT_CALLS": ("max_agent_calls", _positive),
    "CC_MANAGER_MAX_PLAYBOOKS": ("max_playbooks", _positive),
    "CC_MANAGER_MAX_WAITERS": ("max_waiters", _positive),
    "CC_MANAGER_MAX_STREAMS": ("max_streams", _positive),
    "CC_MANAGER_RETRY_AFTER": ("retry_after", _positive),
    "CC_MANAGER_HEADER_TIMEOUT": ("header_timeout", _seconds),
}


def from_env(env: Mapping[str, str] = os.environ) -> Config:
    """Build the Config; every problem is collected so one start reports all of them."""
    values: dict[str, object] = {}
    errors: list[str] = []
    for var, (field, parse) in _FIELDS.items():
        raw = env.get(var, "")
        if raw == "":
            continue
        try:
            values[field] = parse(var, raw)
        except ConfigError as exc:
            errors.append(str(exc))
    if bool(values.get("server_cert")) != bool(values.get("server_key")):
        errors.append("CC_MANAGER_SERVER_CERT and CC_MANAGER_SERVER_KEY must be set together")
    if errors:
        raise ConfigError("; ".join(errors))
    return Config(**values)  # type: ignore[arg-type]
