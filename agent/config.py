"""Agent settings, read once from the environment (the guest's init passes them; defaults suit the guest)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024
DEFAULT_WORK_DIR = "/var/lib/cocos-agent"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """An environment variable has a value the agent cannot use."""


@dataclass(frozen=True)
class AgentConfig:
    host: str = "0.0.0.0"
    port: int = 7002
    work_dir: str = DEFAULT_WORK_DIR
    log_level: str = "INFO"
    # The interpreter that runs algorithms; the guest's Debian python3 is on PATH.
    python: str = "python3"
    # Algorithms run as this user when the agent is root; "" keeps the agent's own user.
    run_as_user: str = "nobody"
    # RLIMIT_AS of the algorithm; 0 means unlimited.
    max_memory_bytes: int = 512 * MIB
    # Largest result/stdout the algorithm may write; under gRPC's default 4 MiB client receive limit.
    max_output_bytes: int = 4 * MIB - 64 * 1024
    # Largest single upload (Algo/Data) the server accepts.
    max_upload_bytes: int = 64 * MIB
    # How much of the algorithm's stderr a failure message quotes.
    stderr_tail_bytes: int = 1024
    sev_device: str = "/dev/sev-guest"
    tdx_device: str = "/dev/tdx_guest"
    # tpm2-tools TCTI of the TPM that measures computations: "" finds /dev/tpmrm0 or /dev/tpm0, "none" disables.
    tpm_tcti: str = ""
    grace_seconds: float = 5.0


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    level = env.get("AGENT_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise ConfigError(f"AGENT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return level


def _work_dir(env: Mapping[str, str]) -> str:
    """The configured dir, else the guest default, else a tempdir (a developer running the agent unprivileged)."""
    configured = env.get("AGENT_WORK_DIR", "").strip()
    if configured:
        return configured
    parent = os.path.dirname(DEFAULT_WORK_DIR)
    if os.access(DEFAULT_WORK_DIR, os.W_OK) or os.access(parent, os.W_OK):
        return DEFAULT_WORK_DIR
    import tempfile  # only here: at start-up under TCG every module imported counts (docs/BENCHMARKS.md)

    return os.path.join(tempfile.gettempdir(), "cocos-agent")


def load(env: Mapping[str, str] | None = None) -> AgentConfig:
    """Build the config from `env` (default os.environ); raises ConfigError naming the bad variable."""
    env = os.environ if env is None else env
    return AgentConfig(
        host=env.get("AGENT_GRPC_HOST", "").strip() or "0.0.0.0",
        port=_int(env, "AGENT_GRPC_PORT", 7002, 0),
        work_dir=_work_dir(env),
        log_level=_log_level(env),
        python=env.get("AGENT_PYTHON", "").strip() or "python3",
        run_as_user=env.get("AGENT_RUN_AS_USER", "nobody").strip(),
        max_memory_bytes=_int(env, "AGENT_MAX_MEMORY_BYTES", 512 * MIB, 0),
        max_output_bytes=_int(env, "AGENT_MAX_OUTPUT_BYTES", 4 * MIB - 64 * 1024, 1),
        max_upload_bytes=_int(env, "AGENT_MAX_UPLOAD_BYTES", 64 * MIB, 1),
        sev_device=env.get("AGENT_SEV_GUEST_DEVICE", "").strip() or "/dev/sev-guest",
        tdx_device=env.get("AGENT_TDX_GUEST_DEVICE", "").strip() or "/dev/tdx_guest",
        tpm_tcti=env.get("AGENT_TPM_TCTI", "").strip(),
    )
