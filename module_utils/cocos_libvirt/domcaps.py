"""What a domain definition asks of the host, checked against libvirt's domain capabilities.

libvirt describes what one emulator/arch/machine/virttype combination can do in its domain
capabilities (virConnectGetDomainCapabilities; format: https://libvirt.org/formatdomaincaps.html).
Before a definition that asks for UEFI firmware, Secure Boot, an emulated TPM or launch security is
defined, `check()` reads those capabilities for exactly the definition's combination and fails,
naming the capability element that says no, so nothing is defined that could never start.

The elements read (all under <domainCapabilities>):

- ``os/enum[@name='firmware']``: firmware auto-selection values; ``efi`` only when a UEFI firmware
  descriptor exists for this machine (libvirt lists only what it can boot).
- ``os/loader/value``: firmware binaries found on the host (OVMF paths).
- ``os/loader/enum[@name='secure']``: ``yes`` only when a Secure Boot firmware exists for the machine
  (OVMF's Secure Boot builds need SMM, so Debian describes them for q35 machines only).
- ``devices/tpm``: ``model`` (tpm-tis, tpm-crb), ``backendModel`` (emulator = swtpm) and
  ``backendVersion`` (1.2, 2.0; libvirt fills it from swtpm's own capabilities, so no swtpm, no versions).
- ``features/sev``: ``supported='yes'`` with cbitpos, reducedPhysBits, maxGuests... on an SEV host.
- ``features/launchSecurity/enum[@name='sectype']``: sev, sev-snp, tdx (libvirt 10.5 and later; older
  libvirt has no such element and so cannot report, or launch, SEV-SNP or TDX guests).

Pure functions take parsed documents, so recorded capabilities of hosts we do not have (SEV-SNP,
TDX) test the positive paths.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .common import LibvirtModuleError, from_libvirt, libvirt
from .domain_xml import firmware, uses_efi

LAUNCH_SECURITY_TYPES = ("sev", "sev-snp", "tdx")


# ---- reading the capabilities ------------------------------------------------------------------


def query_for(desired: ET.Element) -> dict[str, str | None]:
    """The emulator, arch, machine and virttype of a <domain>, as virConnectGetDomainCapabilities takes them.

    None leaves the choice to libvirt, as defining the domain would (default emulator, host arch,
    the arch's default machine).
    """
    os_type = desired.find("os/type")
    return {
        "emulatorbin": (desired.findtext("devices/emulator") or "").strip() or None,
        "arch": os_type.get("arch") if os_type is not None else None,
        "machine": os_type.get("machine") if os_type is not None else None,
        "virttype": desired.get("type") or None,
    }


def read(conn: Any, what: str, emulatorbin: str | None = None, arch: str | None = None,
         machine: str | None = None, virttype: str | None = None) -> ET.Element:
    """Parsed <domainCapabilities> for one combination; LibvirtModuleError when libvirt cannot say."""
    try:
        text = conn.getDomainCapabilities(emulatorbin, arch, machine, virttype, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            raise LibvirtModuleError(
                f"{what}: this libvirt driver does not report domain capabilities "
                "(virConnectGetDomainCapabilities), so UEFI, TPM and launch security cannot be checked "
                "against the host", error_code=exc.get_error_code(),
                libvirt_message=exc.get_error_message()) from exc
        raise from_libvirt(exc, f"{what}: cannot read the host's domain capabilities") from exc
    return ET.fromstring(text)


def values(caps: ET.Element, path: str) -> list[str]:
    """The <value> texts of the enum (or element) at `path`; [] when libvirt did not report it."""
    elem = caps.find(path)
    return [(v.text or "").strip() for v in elem.findall("value")] if elem is not None else []


def supported(caps: ET.Element, path: str) -> bool:
    elem = caps.find(path)
    return elem is not None and elem.get("supported") == "yes"


def combination(caps: ET.Element) -> str:
    """`qemu-system-x86_64, machine pc-q35-7.2, arch x86_64, virttype qemu`: whose capabilities these are."""
    return (f"{(caps.findtext('path') or '?').rsplit('/', 1)[-1]}, machine {caps.findtext('machine') or '?'}, "
            f"arch {caps.findtext('arch') or '?'}, virttype {caps.findtext('domain') or '?'}")


def _shown(caps: ET.Element, path: str) -> str:
    """An element as libvirt prints it, for messages: <sev supported='no'/> or "no <sev> element"."""
    elem = caps.find(path)
    tag = path.rsplit("/", 1)[-1]
    if elem is None:
        return f"no <{tag}> element"
    attrs = "".join(f" {k}='{v}'" for k, v in elem.attrib.items())
    return f"<{tag}{attrs}/>" if len(elem) == 0 else f"<{tag}{attrs}>"


# ---- what a definition asks for ----------------------------------------------------------------


def asks(desired: ET.Element) -> bool:
    """Whether the definition asks for anything check() verifies (else no capabilities are read)."""
    return uses_efi(desired) or desired.find("devices/tpm") is not None or desired.find("launchSecurity") is not None


def shortfalls(caps: ET.Element, desired: ET.Element) -> list[str]:
    """One sentence per thing the definition asks for and the capabilities deny, naming the element."""
    out: list[str] = []
    if uses_efi(desired):
        out += _firmware_shortfalls(caps, desired)
    for tpm in desired.findall("devices/tpm"):
        out += _tpm_shortfalls(caps, tpm)
    launch = desired.find("launchSecurity")
    if launch is not None:
        out += _launch_security_shortfalls(caps, launch.get("type") or "")
    return out


def _firmware_shortfalls(caps: ET.Element, desired: ET.Element) -> list[str]:
    os_elem = desired.find("os")
    if os_elem is not None and os_elem.get("firmware") == "efi" and "efi" not in values(
            caps, "os/enum[@name='firmware']"):
        return ["UEFI firmware: <os><enum name='firmware'> lists no 'efi' (no UEFI firmware descriptor for this "
                "machine; install OVMF)"]
    out = []
    secure = firmware(desired)["secure_boot"]
    offered = values(caps, "os/loader/enum[@name='secure']")
    if secure and "yes" not in offered:
        out.append(f"Secure Boot: <os><loader><enum name='secure'> offers {_listed(offered)} (no Secure Boot "
                   "firmware for this machine; OVMF's Secure Boot builds need SMM and are described for q35)")
    if secure is False and offered and "no" not in offered:
        out.append("UEFI without Secure Boot: <os><loader><enum name='secure'> offers only 'yes'")
    return out


def _tpm_shortfalls(caps: ET.Element, tpm: ET.Element) -> list[str]:
    if not supported(caps, "devices/tpm"):
        return [f"TPM: {_shown(caps, 'devices/tpm')}"]
    backend = tpm.find("backend")
    asked = {
        "model": tpm.get("model") or "tpm-tis",  # libvirt's default model when none is given
        "backendModel": backend.get("type") if backend is not None else "passthrough",
        "backendVersion": backend.get("version") if backend is not None else None,
    }
    out = []
    for enum, value in asked.items():
        offered = values(caps, f"devices/tpm/enum[@name='{enum}']")
        if value and value not in offered:
            hint = " (libvirt lists what swtpm supports: is swtpm installed?)" if enum == "backendVersion" else ""
            out.append(f"TPM {enum} {value}: <devices><tpm><enum name='{enum}'> lists {_listed(offered)}{hint}")
    return out


def launch_security_types(caps: ET.Element) -> list[str]:
    """Launch security types the host offers: the sectype enum where libvirt reports one (10.5+),
    else `sev` when <sev supported='yes'/> (older libvirt knows no other type)."""
    if caps.find("features/launchSecurity") is not None:
        return values(caps, "features/launchSecurity/enum[@name='sectype']") \
            if supported(caps, "features/launchSecurity") else []
    return ["sev"] if supported(caps, "features/sev") else []


def _launch_security_shortfalls(caps: ET.Element, kind: str) -> list[str]:
    """Why the host cannot launch `kind`, quoting the elements that decide (sev for SEV and SEV-SNP,
    which builds on it; the launchSecurity sectype enum for SEV-SNP and TDX)."""
    if kind in launch_security_types(caps) and (kind != "sev" or supported(caps, "features/sev")):
        return []
    reasons = []
    if kind in ("sev", "sev-snp"):
        reasons.append(_shown(caps, "features/sev"))
    ls = caps.find("features/launchSecurity")
    if ls is None:
        if kind != "sev":
            reasons.append("no <launchSecurity> element (where libvirt lists SEV-SNP and TDX; added in libvirt 10.5)")
    elif supported(caps, "features/launchSecurity"):
        reasons.append(f"<launchSecurity><enum name='sectype'> lists {_listed(launch_security_types(caps))}")
    else:
        reasons.append(_shown(caps, "features/launchSecurity"))
    return [f"launch security {kind}: " + " and ".join(reasons)]


def _listed(found: list[str]) -> str:
    return ", ".join(repr(v) for v in found) if found else "nothing"


def check(conn: Any, desired: ET.Element, what: str) -> None:
    """Fail before anything is defined when the host cannot give the definition what it asks for.

    Reads the domain capabilities for the definition's own emulator/arch/machine/virttype, and only
    when it asks for UEFI, Secure Boot, a TPM or launch security. Raises LibvirtModuleError naming the
    capability element that says no.
    """
    if not asks(desired):
        return
    caps = read(conn, what, **query_for(desired))
    missing = shortfalls(caps, desired)
    if missing:
        raise LibvirtModuleError(f"{what}: this host cannot run the definition; the domain capabilities for "
                                 f"{combination(caps)} say: " + "; ".join(missing),
                                 shortfalls=missing)


# ---- facts -------------------------------------------------------------------------------------


def facts(caps: ET.Element) -> dict[str, Any]:
    """Confidential-computing facts of one capability document (see RETURN of libvirt_host_info)."""
    tpm_versions = values(caps, "devices/tpm/enum[@name='backendVersion']")
    tpm_backends = values(caps, "devices/tpm/enum[@name='backendModel']")
    offered = launch_security_types(caps)
    return {
        "emulator": caps.findtext("path"),
        "domain_type": caps.findtext("domain"),
        "machine": caps.findtext("machine"),
        "arch": caps.findtext("arch"),
        "uefi": {
            "supported": "efi" in values(caps, "os/enum[@name='firmware']"),
            "firmware": values(caps, "os/loader"),
            "secure_boot": "yes" in values(caps, "os/loader/enum[@name='secure']"),
        },
        "tpm": {
            "supported": supported(caps, "devices/tpm"),
            "models": values(caps, "devices/tpm/enum[@name='model']"),
            "backends": tpm_backends,
            "versions": tpm_versions,
            "emulated_tpm2": "emulator" in tpm_backends and "2.0" in tpm_versions,
        },
        "sev": _type_fact(caps, "sev"),
        "sev_snp": _type_fact(caps, "sev-snp"),
        "tdx": _type_fact(caps, "tdx"),
        "launch_security_types": offered,
    }


def _type_fact(caps: ET.Element, kind: str) -> dict[str, Any]:
    """{supported, reason}: reason quotes the capability element that says no (None when supported)."""
    missing = _launch_security_shortfalls(caps, kind)
    return {"supported": not missing, "reason": missing[0].split(": ", 1)[1] if missing else None}
