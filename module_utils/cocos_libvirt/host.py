"""libvirt_host_info: the host's confidential-computing facts, read from libvirt's domain capabilities.

What guests on this host can get (UEFI/OVMF, Secure Boot, an emulated TPM, SEV, SEV-SNP, TDX) is what
libvirt reports for the domain type guests will use (`auto`: the same rule as libvirt_domain) and the
machine they will have (q35 by default: Secure Boot and the TEEs' firmware need it); see domcaps for the
elements read. The swtpm programs are looked up on PATH for local connections only.
"""
from __future__ import annotations

import shutil
from typing import Any

from . import domcaps
from .domain import auto_domain_type, is_local

SWTPM_PROGRAMS = {"swtpm": "swtpm", "swtpm_setup": "swtpm_setup"}  # packages swtpm and swtpm-tools


class HostInfo:
    """Read-only facts; run() returns {changed: False, host: {...}}."""

    def __init__(self, conn: Any, module: Any) -> None:
        self.conn = conn
        self.params = module.params

    def run(self) -> dict[str, Any]:
        uri = self.params.get("uri") or ""
        virttype = self.params.get("domain_type") or "auto"
        if virttype == "auto":
            virttype = auto_domain_type(uri, self.conn.getCapabilities())
        caps = domcaps.read(self.conn, "host", self.params.get("emulator"), self.params.get("arch"),
                            self.params.get("machine"), virttype)
        facts = domcaps.facts(caps)
        facts["swtpm"] = self._swtpm(uri)
        facts["ovmf"] = facts["uefi"]["supported"] and bool(facts["uefi"]["firmware"])
        return {"changed": False, "host": facts}

    @staticmethod
    def _swtpm(uri: str) -> dict[str, Any]:
        """Paths of swtpm and swtpm_setup, None where missing; both None (unknown) for a remote URI."""
        if not is_local(uri):
            return {name: None for name in SWTPM_PROGRAMS} | {"checked": False}
        return {name: shutil.which(program) for name, program in SWTPM_PROGRAMS.items()} | {"checked": True}
