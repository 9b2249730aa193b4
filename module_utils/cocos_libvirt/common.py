"""Connection handling, typed errors and the one helper every module's main() uses.

Managers never call exit_json/fail_json: they return result dicts and raise LibvirtModuleError.
"""
from __future__ import annotations

import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

try:
    import libvirt
except ImportError:  # pragma: no cover - reported through missing_required_lib
    libvirt = None
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

DEFAULT_URI = "qemu:///system"

# Options every libvirt module accepts, merged into its argument_spec.
COMMON_ARGS: dict[str, dict[str, Any]] = {
    "uri": {"type": "str", "default": DEFAULT_URI},
}


class LibvirtModuleError(Exception):
    """A failure a user can act on: what failed, and libvirt's error code and message if any."""

    def __init__(self, msg: str, error_code: int | None = None, libvirt_message: str | None = None,
                 **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.error_code = error_code
        self.libvirt_message = libvirt_message
        self.details = details

    def to_fail_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"msg": self.msg}
        if self.error_code is not None:
            out["error_code"] = self.error_code
        if self.libvirt_message is not None:
            out["libvirt_message"] = self.libvirt_message
        out.update(self.details)
        return out


def from_libvirt(exc: libvirt.libvirtError, what: str) -> LibvirtModuleError:
    """Wrap a libvirtError with the object it concerned, keeping libvirt's code and message."""
    message = (exc.get_error_message() or str(exc)).strip()
    return LibvirtModuleError(f"{what}: {message}", error_code=exc.get_error_code(), libvirt_message=message)


def connect(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise from_libvirt(exc, f"cannot connect to {uri}") from exc


def is_local(uri: str) -> bool:
    """Whether a libvirt URI names this host (no host part), so paths it uses are local paths."""
    return not urllib.parse.urlparse(uri).netloc


def is_no_such(exc: libvirt.libvirtError) -> bool:
    """True when libvirt says the looked-up object does not exist."""
    return exc.get_error_code() in (
        libvirt.VIR_ERR_NO_DOMAIN,
        libvirt.VIR_ERR_NO_NETWORK,
        libvirt.VIR_ERR_NO_STORAGE_POOL,
        libvirt.VIR_ERR_NO_STORAGE_VOL,
    )


def lookup_or_none(find: Callable[[str], Any], name: str, what: str) -> Any:
    """find(name), or None when libvirt says no such object exists; any other error fails naming `what`."""
    try:
        return find(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc):
            return None
        raise from_libvirt(exc, what) from exc


def run_module(module: Any, build_manager: Callable[[Any, Any], Any]) -> None:
    """Shared body of every module's main(): connect, let the manager converge, report.

    build_manager(conn, module) returns an object whose run() gives the result dict. Its "warnings" (a list
    of text) go through module.warn, which ansible-core 2.19 expects instead of a returned key.
    """
    from ansible.module_utils.basic import missing_required_lib

    if LIBVIRT_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        conn = connect(module.params["uri"])
        try:
            result = build_manager(conn, module).run()
        finally:
            conn.close()
    except LibvirtModuleError as exc:
        module.fail_json(**exc.to_fail_kwargs())
    except libvirt.libvirtError as exc:  # a call a manager did not wrap: still no traceback
        module.fail_json(**from_libvirt(exc, "libvirt call failed").to_fail_kwargs())
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)
