"""A guest and a manager run locally, for the end-to-end test, bench/e2e.py and the demo (scripts/demo_run.py).

`start_manager_process()` starts `python -m manager_api` on ephemeral 127.0.0.1 ports (a ManagerProcess: its pid,
ports and JSON log; RuntimeError quoting the log if it does not start in time). `prepare()` writes a Setting: its own
XML directory describing one `PREFIX-` domain that boots the built guest ISO (build/guest/cocos-guest.iso, from
`make guest`) under TCG, with a free loopback port forwarded to the agent (guest 7002); `start_manager()` starts a
manager confined to that setting and `cleanup()` removes its domain, pool and files. Nothing here touches libvirt
objects that are not the setting's. PREFIX and WORK_ROOT come from COCOS_E2E_PREFIX and COCOS_E2E_DIR, so several
people can share one libvirtd."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import libvirt

import guest
from guest.vm import free_loopback_port, remove_domain

ROOT = Path(__file__).resolve().parents[1]
ISO = ROOT / "build" / "guest" / "cocos-guest.iso"
# Engineers sharing one libvirtd run this at once under their own names: COCOS_E2E_PREFIX / COCOS_E2E_DIR.
PREFIX = os.environ.get("COCOS_E2E_PREFIX", "ctest-e2e")
WORK_ROOT = Path(os.environ.get("COCOS_E2E_DIR", "/var/lib/cocos-test/e2e"))
URI = "qemu:///system"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # our lookups of absent objects are expected


@dataclass
class Setting:
    tag: str
    workdir: Path
    xml_dir: Path
    pool: str
    volume: str
    domain: str
    port: int  # host side of the agent forward, on 127.0.0.1

    @property
    def console(self) -> Path:
        return self.workdir / "log" / "console.log"  # inside the manager's log directory (its XML policy)

    @property
    def volume_path(self) -> Path:
        return self.workdir / "img" / self.volume


def prepare(prefix: str = PREFIX, tpm: bool = True, firmware: str = "efi", secure_boot: bool = False) -> Setting:
    """Write pool, volume and domain XML for a fresh domain into its own directory (the manager's XML dir).

    tpm: the domain has libvirt's emulated TPM 2.0, so the agent measures the runs and can attest them.
    firmware: "efi" (q35, OVMF chosen by libvirt's firmware auto-selection, as a confidential VM boots) or
    "bios"; secure_boot: with efi, OVMF's Secure Boot varstore with enrolled keys."""
    tag = uuid.uuid4().hex[:8]
    workdir = WORK_ROOT / f"{prefix}-{tag}"
    setting = Setting(tag, workdir, workdir / "xml", f"{prefix}-pool-{tag}", f"{prefix}-{tag}.qcow2",
                      f"{prefix}-{tag}", free_loopback_port())
    for sub in ("xml", "img", "iso", "log"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    iso = workdir / "iso" / "cocos-guest.iso"
    shutil.copyfile(ISO, iso)  # libvirt relabels the file it boots: the shared build stays untouched
    (setting.xml_dir / "pool.xml").write_text(
        f"<pool type='dir'><name>{setting.pool}</name><target><path>{workdir / 'img'}</path></target></pool>\n")
    (setting.xml_dir / "vol.xml").write_text(
        f"<volume><name>{setting.volume}</name><capacity unit='MiB'>64</capacity>"
        "<target><format type='qcow2'/></target></volume>\n")
    (setting.xml_dir / "dom.xml").write_text(guest.domain_xml(
        setting.domain, iso, setting.port, setting.console, disk=setting.volume_path, disk_format="qcow2",
        tpm="tpm-crb" if tpm else None, firmware=firmware, secure_boot=secure_boot))
    return setting


@dataclass
class ManagerProcess:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> int:
        """SIGTERM by pid (never by name), then wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


def dead_loopback_port() -> int:
    """A port nobody listens on: the configured agent URL points here, so a run reaching an agent proves the
    manager found the address in the domain."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_manager(setting: Setting, timeout: float = 30) -> ManagerProcess:
    """The manager for this setting; its configured agent URL is a dead port (see dead_loopback_port)."""
    work = setting.workdir
    return start_manager_process(work / "manager.log", {
        "CC_MANAGER_XML_DIR": str(setting.xml_dir), "CC_MANAGER_AGENT_GRPC_URL": f"127.0.0.1:{dead_loopback_port()}",
        # The XML policy pointed at this setting's directory: pool under it, the ISO in iso/, the console in log/.
        "CC_MANAGER_STORAGE_ROOTS": str(work), "CC_MANAGER_ISO_ROOTS": str(work / "iso"),
        "CC_MANAGER_LOG_DIR": str(work / "log"), "CC_MANAGER_STATE_DIR": str(work / "state"),
        # The agent forward's port is the manager's to allocate from its range: a one-port range of the setting's
        # free port keeps it where the setting (and its checks) expect it.
        "CC_MANAGER_AGENT_PORT_RANGE": f"{setting.port}-{setting.port}",
    }, timeout)


def start_manager_process(log: Path, env_extra: dict[str, str], timeout: float = 30) -> ManagerProcess:
    """`python -m manager_api` on ephemeral loopback ports, its JSON log in `log`; waits for "manager started"."""
    env = {**os.environ, "CC_MANAGER_HTTP_HOST": "127.0.0.1", "CC_MANAGER_HTTP_PORT": "0",
           "CC_MANAGER_GRPC_HOST": "127.0.0.1", "CC_MANAGER_GRPC_PORT": "0", "CC_MANAGER_LIBVIRT_URI": URI,
           "CC_MANAGER_AGENT_GRPC_TIMEOUT": "20", "CC_MANAGER_DOMAIN_TIMEOUT": "300", **env_extra}
    # stderr to a file, not a pipe: an undrained pipe would block the manager once it fills with access logs.
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "manager_api"], cwd=ROOT, env=env, stderr=sink,
                                stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if entry.get("msg") == "manager started":
                return ManagerProcess(proc, entry["http_port"], entry["grpc_port"], log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"manager did not start:\n{log.read_text()[-3000:]}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def leftovers(setting: Setting) -> list[str]:
    """What still exists of the setting's domain and volume (the pool is the setting's, removed by cleanup)."""
    found = []
    conn = libvirt.open(URI)
    try:
        if setting.domain in [d.name() for d in conn.listAllDomains(0)]:
            found.append(f"domain {setting.domain}")
        try:
            conn.storageVolLookupByPath(str(setting.volume_path))
            found.append(f"volume {setting.volume_path}")
        except libvirt.libvirtError:
            pass
    finally:
        conn.close()
    if setting.volume_path.exists():
        found.append(f"file {setting.volume_path}")
    return found


def cleanup(setting: Setting) -> list[str]:
    """Remove our domain, pool (with its volumes) and files whatever state they are in; returns what was left."""
    left = leftovers(setting)
    conn = libvirt.open(URI)
    try:
        remove_domain(conn, setting.domain)
        remove_pool(conn, setting.pool)
    finally:
        conn.close()
    shutil.rmtree(setting.workdir, ignore_errors=True)
    return left


def remove_pool(conn: libvirt.virConnect, name: str) -> None:
    """Delete pool `name`'s volumes (an inactive pool lists none), stop it if it runs, undefine it; nothing if it
    does not exist."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    for vol in pool.listAllVolumes() if pool.isActive() else []:
        vol.delete()
    if pool.isActive():
        pool.destroy()
    pool.undefine()


def pool_exists(name: str) -> bool:
    conn = libvirt.open(URI)
    try:
        return name in [p.name() for p in conn.listAllStoragePools(0)]
    finally:
        conn.close()
