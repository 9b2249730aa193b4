"""Domain manager behind libvirt_domain and libvirt_domain_info.

One connection, and per run: one lookup, one inactive XMLDesc, state and autostart (plus the live
XML only while the domain runs, to tell whether it still runs an older definition). The plan of
actions is computed once, before anything changes; check mode returns it, the real run executes it,
so `changed` is the same in both. How definitions are compared: see domain_compare; what an
option the task omits leaves as it is: see domain_carry.
"""
from __future__ import annotations

import copy
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import domain_carry, domain_compare, domain_record, domain_xml, domcaps
from .common import (
    LibvirtModuleError,
    from_libvirt,
    is_local,
    is_no_such,
    libvirt,
    lookup_or_none,
)
from .plan import Plan, Step, converge
from .xmlcanon import parse

# libvirt's virDomainState numbers (https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainState): the one
# table of state names, for the modules, the manager and the guest tooling.
STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutting_down", 5: "shutoff",
               6: "crashed", 7: "pmsuspended"}
# States with a QEMU process behind them. A blocked guest runs (its vCPUs wait on a resource).
ACTIVE = frozenset({"running", "blocked", "paused", "shutting_down", "pmsuspended"})
RUNNING = frozenset({"running", "blocked"})
# Steps that start the guest: a definition without our record is recorded before them (see plan).
STARTS = frozenset({"start", "start_paused"})
# The states each run-state step reaches.
REACHES: dict[str, frozenset[str]] = {
    "start": RUNNING, "resume": RUNNING, "wakeup": RUNNING, "start_paused": frozenset({"paused"}),
    "suspend": frozenset({"paused"}), "shutdown": frozenset({"shutoff"}), "destroy": frozenset({"shutoff"})}
POLL_SECONDS = 0.2

if libvirt is not None:
    # libvirt prints every error to stderr by default, including the "no such domain" every first run
    # expects; errors reach users through exceptions and fail_json instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# ---- domain type `auto` ------------------------------------------------------------------------


def pick_domain_type(kvm_device_usable: bool, kvm_pvm_loaded: bool, caps_offer_kvm: bool) -> str:
    """kvm only where KVM boots standard guests: kvm_pvm (a paravirtual nested KVM) hangs them."""
    return "kvm" if kvm_device_usable and not kvm_pvm_loaded and caps_offer_kvm else "qemu"


def kvm_pvm_loaded(sys_module: str = "/sys/module", proc_modules: str = "/proc/modules") -> bool:
    if os.path.isdir(os.path.join(sys_module, "kvm_pvm")):
        return True
    try:
        with open(proc_modules, encoding="utf-8") as handle:
            return any(line.split(" ", 1)[0] == "kvm_pvm" for line in handle)
    except OSError:
        return False


def kvm_device_usable(path: str = "/dev/kvm") -> bool:
    return os.path.exists(path) and os.access(path, os.R_OK | os.W_OK)


def caps_offer_kvm(caps_xml: str) -> bool:
    root = ET.fromstring(caps_xml)
    return any(d.get("type") == "kvm" for d in root.findall("guest/arch/domain"))


def machine_aliases(caps_xml: str) -> dict[str, str]:
    """Machine alias -> canonical versioned machine, e.g. pc -> pc-i440fx-7.2."""
    root = ET.fromstring(caps_xml)
    return {m.text: m.get("canonical", "") for m in root.iter("machine") if m.get("canonical") and m.text}


def auto_domain_type(uri: str, caps_xml: str) -> str:
    """`auto`: kvm or qemu for a connection (caps_xml: its virConnectGetCapabilities document)."""
    caps_kvm = caps_offer_kvm(caps_xml)
    if not is_local(uri):
        return "kvm" if caps_kvm else "qemu"  # /dev/kvm of this host says nothing about a remote one
    return pick_domain_type(kvm_device_usable(), kvm_pvm_loaded(), caps_kvm)


# ---- reading facts -----------------------------------------------------------------------------


def state_name(state: Any) -> str:
    """Name (STATE_NAMES) of a libvirt domain state number, or of a virDomain's current state; 'unknown'
    for a number a later libvirt adds. Raises libvirt.libvirtError when reading a domain's state fails."""
    number = state if isinstance(state, int) else state.state()[0]
    return STATE_NAMES.get(number, "unknown")


def describe(dom: Any, xml_text: str, state: str | None = None, autostart: bool | None = None) -> dict:
    """Facts of a defined domain from its inactive XML (the info module's and the result's shape)."""
    root = ET.fromstring(xml_text)
    return {
        "name": dom.name(),
        "uuid": dom.UUIDString(),
        "state": state if state is not None else state_name(dom),
        "autostart": autostart if autostart is not None else bool(dom.autostart()),
        "memory": domain_xml.memory_bytes(root),
        "vcpus": domain_xml.vcpus(root),
        "xml": xml_text,
        "disks": domain_xml.disks(root),
        "interfaces": domain_xml.interfaces(root),
        "forwarded_ports": domain_xml.forwarded_ports(root),
    }


def lookup(conn: Any, name: str) -> Any | None:
    return lookup_or_none(conn.lookupByName, name, f"domain {name}: lookup failed")


class DomainInfo:
    """libvirt_domain_info: read-only facts of one domain or all of them."""

    def __init__(self, conn: Any, module: Any) -> None:
        self.conn = conn
        self.name = module.params.get("name")

    def run(self) -> dict[str, Any]:
        if self.name:
            dom = lookup(self.conn, self.name)
            doms = [dom] if dom is not None else []
        else:
            doms = self.conn.listAllDomains(0)
        out = []
        for dom in doms:
            facts = self._facts(dom)
            if facts is not None:
                out.append(facts)
        return {"changed": False, "domains": sorted(out, key=lambda d: d["name"])}

    def _facts(self, dom: Any) -> dict[str, Any] | None:
        try:
            facts = describe(dom, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if is_no_such(exc):
                return None  # undefined by someone else between listing and reading: not an error
            raise from_libvirt(exc, f"domain {dom.name()}: cannot read") from exc
        for disk in facts["disks"]:
            if disk["pool"] and not disk["path"]:
                disk["path"] = self._volume_path(disk["pool"], disk["volume"])
        return facts

    def _volume_path(self, pool: str, volume: str) -> str | None:
        try:
            return self.conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).path()
        except libvirt.libvirtError:
            return None  # a dangling reference is a fact too: path stays unknown


# ---- the manager -------------------------------------------------------------------------------


@dataclass
class DomainPlan(Plan):
    """A plan with what the domain's result reports besides the steps: its inactive XML as read before
    the run, and its run state and autostart after it."""

    current_xml: str | None = None
    state_after: str = "absent"
    autostart_after: bool = False


class DomainManager:
    """Converges one domain: definition, run state, autostart."""

    def __init__(self, conn: Any, module: Any) -> None:
        self.conn = conn
        self.params = module.params
        self.check_mode = bool(module.check_mode)
        self.want_diff = bool(getattr(module, "_diff", False))
        self.name: str = self.params["name"]
        self.what = f"domain {self.name}"
        self._caps: str | None = None
        # VIR_DOMAIN_START_RESET_NVRAM when the UEFI varstore was made for other firmware (domain_xml.nvram_stale)
        self.start_flags = 0
        # What the last plan found and built, and what state: absent will remove.
        self.dom: Any = None
        self.desired_root: ET.Element | None = None
        # What the task alone describes (the whole xml, or the options' own definition): its digest is
        # the record's `desired` (domain_record).
        self.own: ET.Element | None = None
        self.removed_volumes: list[str] = []
        self.kept_storage: list[str] = []

    # -- desired definition --

    def desired(self, current_xml: str | None) -> ET.Element | None:
        """The desired <domain> element, or None when the task only manages state/autostart.

        current_xml is libvirt's inactive XML of the existing domain (None for a new one): options
        the task omits leave its parts as they are (see domain_carry).
        """
        self.own = None
        if self.params.get("xml"):
            # A copy of libvirt's XML given back as `xml` may carry our record: what we write is ours to say.
            self.own = domain_record.strip(self._from_xml(self.params["xml"]))
            return self.own
        if not domain_xml.structured_given(self.params):
            return None
        if current_xml is None:
            self.own = self._new_definition()
            return self.own
        return self._updated_definition(ET.fromstring(current_xml))

    def _new_definition(self) -> ET.Element:
        if self.params.get("memory") is None:
            raise LibvirtModuleError(f"{self.what} does not exist; memory is required to define it from options")
        return domain_xml.build(self.name, self.params, self._domain_type(None), self._volume_formats())

    def _updated_definition(self, current: ET.Element) -> ET.Element:
        self.own = domain_xml.build(self.name, self.params, self._domain_type(current), self._volume_formats())
        out = domain_carry.carry_over(self.own, current, self.params, self.what)
        domain_carry.keep_metadata(out, current)
        return out

    def _domain_type(self, current: ET.Element | None) -> str:
        """Omitted on an existing domain: its own type, so `auto` resolving differently today
        never flips a kvm domain to qemu."""
        wanted = self.params.get("domain_type")
        if wanted is None and current is not None and current.get("type"):
            return current.get("type", "")
        wanted = wanted or "auto"
        return self.auto_domain_type() if wanted == "auto" else wanted

    @property
    def source(self) -> str:
        """What describes the desired definition: a whole `xml`, or structured `options`."""
        return "xml" if self.params.get("xml") else "options"

    def _from_xml(self, text: str) -> ET.Element:
        root = parse(text, self.what)
        if root.tag != "domain":
            raise LibvirtModuleError(f"{self.what}: xml must be a <domain> definition, not <{root.tag}>")
        name = root.find("name")
        if name is None:
            ET.SubElement(root, "name").text = self.name
        elif (name.text or "").strip() != self.name:
            raise LibvirtModuleError(f"{self.what}: xml names the domain {name.text!r}, not {self.name!r}")
        return root

    def capabilities(self) -> str:
        if self._caps is None:
            self._caps = self.conn.getCapabilities()
        return self._caps

    def auto_domain_type(self) -> str:
        return auto_domain_type(self.params.get("uri") or "", self.capabilities())

    def machine_alias(self, alias: str) -> str | None:
        return machine_aliases(self.capabilities()).get(alias)

    def _volume_formats(self) -> dict[int, str]:
        """Format of each pool-volume disk; also proves pool and volume exist before anything changes."""
        out = {}
        for index, disk in enumerate(self.params.get("disks") or []):
            if disk.get("pool") and disk.get("volume"):
                vol = self._volume(disk["pool"], disk["volume"], index)
                fmt = ET.fromstring(vol.XMLDesc(0)).find("target/format")
                if fmt is not None and fmt.get("type"):
                    out[index] = fmt.get("type", "")
        return out

    def _volume(self, pool_name: str, vol_name: str, index: Any) -> Any:
        try:
            pool = self.conn.storagePoolLookupByName(pool_name)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{self.what}: disk {index}: storage pool {pool_name!r} not found") from exc
        try:
            return pool.storageVolLookupByName(vol_name)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{self.what}: disk {index}: volume {vol_name!r} not found in pool "
                                    f"{pool_name!r}") from exc

    def _check_xml_volumes(self, root: ET.Element) -> None:
        """Raw XML may name pool volumes too: refuse a missing one before defining anything."""
        for index, disk in enumerate(root.findall("devices/disk")):
            source = disk.find("source")
            if disk.get("type") == "volume" and source is not None and source.get("pool"):
                self._volume(source.get("pool", ""), source.get("volume", ""), index)

    # -- run --

    def run(self) -> dict[str, Any]:
        if self.params["state"] == "absent":
            return self._absent_result(converge(self.plan_absent, self.check_mode))
        return self._result(converge(self.plan_present, self.check_mode))

    def _inactive_xml(self, dom: Any) -> str | None:
        if dom is None:
            return None
        try:
            return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{self.what}: cannot read its definition") from exc

    def plan_present(self) -> DomainPlan:
        """Read libvirt once (the domain found is kept in self.dom) and plan from it."""
        self.dom = dom = lookup(self.conn, self.name)
        current_xml = self._inactive_xml(dom)
        self.desired_root = desired = self.desired(current_xml)
        if desired is not None and self.params.get("xml"):
            self._check_xml_volumes(desired)
        if dom is None and desired is None:
            raise LibvirtModuleError(f"{self.what} does not exist; give xml or structured options "
                                     "(memory, disks, ...) to define it")
        return self.plan(dom, desired, current_xml)

    def plan(self, dom: Any, desired: ET.Element | None, current_xml: str | None) -> DomainPlan:
        """Everything this run will do, decided before anything changes.

        Whether to (re)define, from our record in the domain's metadata (domain_record): D is the digest
        of what the task describes, S the digest of libvirt's stored XML read right after our define.

        record | D       | S       | definition
        -------|---------|---------|---------------------------------------------------------------
        yes    | same    | same    | converged, whatever libvirt rewrote (nothing is compared)
        yes    | same    | changed | drift behind our back: semantic comparison, redefine if it differs
        yes    | changed | any     | an xml replacing what an xml applied: redefine (it is the whole
               |         |         | definition). Otherwise (options describe parts, and another task,
               |         |         | the manager's xml or a role's options, may describe the same
               |         |         | domain): semantic comparison
        no     |         |         | semantic comparison (domains we did not define)

        A (re)definition writes a fresh record.
        """
        cur_state = state_name(dom) if dom is not None else "absent"
        cur_autostart = bool(dom.autostart()) if dom is not None else False
        plan = DomainPlan(self.what, current_xml=current_xml)
        current = ET.fromstring(current_xml) if current_xml else None
        record = domain_record.found_in(current) if current is not None else None
        if current is not None:
            domain_record.strip(current)
        stored = domain_record.stored_digest(current) if current is not None else None
        wanted = domain_record.digest(self.own) if self.own is not None else None
        drifted = record is not None and record.stored != stored
        def_before, def_after = "", ""
        created: Step | None = None
        redefine = False
        if desired is not None:
            differs, def_before, def_after = self._differs(current, desired, record, wanted, drifted)
            if differs:
                domcaps.check(self.conn, desired, self.what)  # UEFI/TPM/launch security the host lacks: define nothing
            if differs and dom is None:
                created = plan.add("define", lambda: self._define(desired, current_xml, wanted, plan),
                                   undo=lambda: self._remove_new(self.dom),
                                   undone="the new definition was removed again")
            elif differs:
                redefine = True
                plan.add("redefine", lambda: self._define(desired, current_xml, wanted, plan))
        # Starting a domain whose definition matches but carries no (or a stale) record records it first,
        # so the guest's live XML says what it runs.
        adopt = wanted is not None and not redefine and dom is not None and (record is None or drifted)
        run_state = "shutoff" if cur_state == "absent" else cur_state
        stopping = self.params["state"] in ("shutdown", "destroyed")
        after = wanted if redefine else (record.desired if record is not None else None)
        if self._runs_older(dom, cur_state, desired, redefine, after, drifted) and not stopping:
            if self.params.get("allow_restart"):
                # the restart itself starts the guest again, paused when it was or is meant to be paused
                paused = self.params["state"] == "paused" or (self.params["state"] == "present" and
                                                              run_state == "paused")
                run_state = into = "paused" if paused else "running"
                plan.add("restart", lambda: self._restart(self.dom, into, wanted if adopt else None, plan))
            else:
                plan.restart_required = True
        step = self._run_step(run_state)
        if step:
            adopting = wanted if adopt and step in STARTS else None
            plan.add(step, lambda: self._do(self.dom, step, adopting, plan), within=created,
                     done=lambda: self._in_state(REACHES[step]))
        plan.state_after = self._state_after(run_state, step)
        want_auto = self.params.get("autostart")
        plan.autostart_after = cur_autostart if want_auto is None else bool(want_auto)
        if plan.autostart_after != cur_autostart:
            name = "autostart" if want_auto else "no_autostart"
            plan.add(name, lambda: self._do(self.dom, name), within=created,
                     done=lambda: self._autostarts(plan.autostart_after))
        plan.before = self._diff_text(cur_state, cur_autostart, def_before, dom is not None)
        plan.after = self._diff_text(plan.state_after, plan.autostart_after, def_after, True)
        return plan

    def _differs(self, current: ET.Element | None, desired: ET.Element, record: domain_record.Record | None,
                 wanted: str | None, drifted: bool) -> tuple[bool, str, str]:
        """(differs, before, after) of the definition, by the table in plan(); the texts are the diff's."""
        if record is not None and record.desired == wanted and not drifted:
            # converged, whatever libvirt made of what we applied: nothing to compare
            after = domain_compare.compare(None, desired, self.what)[2]
            return False, after, after
        differs, before, after = domain_compare.compare(current, desired, self.what, self.machine_alias)
        # a whole definition replacing the whole definition applied before: whatever it no longer says goes,
        # also what the semantic comparison cannot see missing, so it is defined again
        rewritten = record is not None and record.source == "xml" and record.desired != wanted
        return differs or (rewritten and self.source == "xml"), before, after

    def _runs_older(self, dom: Any, cur_state: str, desired: ET.Element | None, redefine: bool,
                    after: str | None, drifted: bool) -> bool:
        """Whether the running guest runs something other than its definition after this run.

        The guest's live record (what it was started from) against `after`, the record the persistent
        definition has after this run, never libvirt's live rendering of it. Only without a conclusive
        record (none in the live XML or the persistent one, or a persistent definition that drifted, so
        the guest may have been started from the drifted one) is the live XML compared semantically.
        """
        if dom is None or cur_state not in ACTIVE:
            return False
        if desired is not None and domain_xml.uses_efi(desired):
            # a guest whose varstore was made for other firmware restarts with a fresh one (nvram_stale)
            self._note_nvram(domain_record.strip(ET.fromstring(dom.XMLDesc(0))), desired)
        live = domain_record.live(dom)
        if live is not None and after is not None and not drifted:
            return live.desired != after
        if desired is None:
            return False
        if redefine:
            return True
        current_live = domain_record.strip(ET.fromstring(dom.XMLDesc(0)))
        return domain_compare.compare(current_live, domain_xml.live_form(without_current_memory(desired)), self.what,
                                      self.machine_alias)[0]

    def _note_nvram(self, before: ET.Element, desired: ET.Element) -> None:
        if domain_xml.nvram_stale(before, desired):
            self.start_flags |= getattr(libvirt, "VIR_DOMAIN_START_RESET_NVRAM", 0)

    # Whether another run reached a step's goal meanwhile (plan.Step.done): then its failure is none.
    def _in_state(self, states: Iterable[str]) -> bool:
        now = lookup(self.conn, self.name)
        return (state_name(now) if now is not None else "absent") in states

    def _autostarts(self, wanted: bool) -> bool:
        now = lookup(self.conn, self.name)
        return now is not None and bool(now.autostart()) == wanted

    def _run_step(self, run_state: str) -> str | None:
        target = self.params["state"]
        active = run_state in ACTIVE
        if target == "running":
            return {"paused": "resume", "pmsuspended": "wakeup"}.get(run_state, None if active else "start")
        if target == "paused":
            return None if run_state == "paused" else ("suspend" if active else "start_paused")
        if target == "shutdown":
            return "shutdown" if active else None
        if target == "destroyed":
            return "destroy" if active else None
        return None

    @staticmethod
    def _state_after(run_state: str, step: str | None) -> str:
        return {"start": "running", "resume": "running", "wakeup": "running", "suspend": "paused",
                "start_paused": "paused", "shutdown": "shutoff", "destroy": "shutoff"}.get(step or "", run_state)

    @staticmethod
    def _diff_text(state: str, autostart: bool, definition: str, exists: bool) -> str:
        if not exists:
            return ""
        return f"# state: {state}\n# autostart: {str(autostart).lower()}\n{definition}"

    # -- execution --

    def _define(self, desired: ET.Element, current_xml: str | None, wanted: str | None, plan: Plan) -> None:
        """Step define/redefine: the domain (self.dom) is defined from the desired element, then what was
        applied is recorded (before any start, so a guest started later carries the record)."""
        self._make_log_dirs(desired)
        if current_xml:
            self._note_nvram(ET.fromstring(current_xml), desired)
        text = domain_xml.to_text(keep_identity(desired, current_xml))
        try:
            self.dom = self.conn.defineXML(text)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{self.what}: libvirt rejected the definition") from exc
        if wanted is not None:
            self._record(wanted, plan)

    def _record(self, wanted: str, plan: Plan) -> None:
        """Write our record (domain_record) into the persistent definition as libvirt stores it now.

        The record only saves later runs a comparison: when libvirt refuses it, the definition stands and
        the next run compares semantically, so this is a warning, not a failure."""
        try:
            stored = domain_record.stored_digest(domain_record.strip(
                ET.fromstring(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))))
            domain_record.write(self.dom, domain_record.Record(wanted, stored, self.source))
        except libvirt.libvirtError as exc:
            plan.warnings.append(f"{self.what}: cannot record what was applied in its metadata "
                                 f"({exc.get_error_message()}); the next run compares its definition with libvirt's")

    def _make_log_dirs(self, desired: ET.Element) -> None:
        """Serial logs land in a file whose directory libvirt will not create."""
        if not is_local(self.params.get("uri") or ""):
            return
        paths = [e.get("file") for e in desired.iter("log")]
        paths += [s.find("source").get("path") for s in desired.findall("devices/serial[@type='file']")  # type: ignore
                  if s.find("source") is not None]
        for path in paths:
            if path and os.path.isabs(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)

    def _remove_new(self, dom: Any) -> None:
        """Undo of 'define': a domain this run defined must not outlive the failure that followed."""
        if dom.isActive():
            dom.destroy()
        undefine(dom)

    def _do(self, dom: Any, action: str, adopt: str | None = None, plan: Plan | None = None) -> None:
        """One run-state or autostart step; `adopt`: record this desired digest before starting (see plan)."""
        if adopt is not None and plan is not None:
            self._record(adopt, plan)
        if action == "start":
            dom.createWithFlags(self.start_flags)
        elif action == "start_paused":
            start_paused(dom, self.start_flags)
        elif action == "resume":
            dom.resume()
        elif action == "wakeup":
            dom.pMWakeup(0)
        elif action == "suspend":
            dom.suspend()
        elif action == "destroy":
            dom.destroy()
        elif action == "shutdown":
            self._shutdown(dom, force=bool(self.params.get("force_shutdown")))
        elif action in ("autostart", "no_autostart"):
            dom.setAutostart(1 if action == "autostart" else 0)
        self._wait_settled(dom, action)

    def _wait_settled(self, dom: Any, action: str) -> None:
        wanted = REACHES.get(action) if action != "shutdown" else None  # shutdown waits in _shutdown
        if wanted and not self._wait_for(dom, set(wanted)):
            raise LibvirtModuleError(f"{self.what}: still {state_name(dom)} {self._timeout()} s after {action}, "
                                     f"expected {' or '.join(sorted(wanted))}")

    def _timeout(self) -> int:
        return int(self.params.get("wait_timeout") or 60)

    def _wait_for(self, dom: Any, states: set, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (self._timeout() if timeout is None else timeout)
        while True:
            if state_name(dom) in states:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)

    def _shutdown(self, dom: Any, force: bool) -> None:
        """ACPI power button, wait; destroy after the timeout only when forcing is allowed."""
        if state_name(dom) == "paused":
            dom.resume()  # a paused guest cannot react to the power button
        dom.shutdown()
        if self._wait_for(dom, {"shutoff", "crashed"}):
            return
        if not force:
            raise LibvirtModuleError(
                f"{self.what}: the guest did not shut down within wait_timeout={self._timeout()} s after the ACPI "
                "power button; it is still running. Set force_shutdown: true to power it off after the timeout, "
                "or use state: destroyed")
        dom.destroy()

    def _restart(self, dom: Any, into: str, adopt: str | None, plan: Plan) -> None:
        """Stop (graceful, then forced after wait_timeout: the user allowed a restart) so the new definition
        applies; `adopt`: record this desired digest first (see plan)."""
        if adopt is not None:
            self._record(adopt, plan)
        if state_name(dom) in ACTIVE:
            self._shutdown(dom, force=True)
        if into == "paused":
            start_paused(dom, self.start_flags)
        else:
            dom.createWithFlags(self.start_flags)
        self._wait_settled(dom, "start_paused" if into == "paused" else "start")

    # -- absent --

    def plan_absent(self) -> DomainPlan:
        """Stop, undefine and, with remove_storage, delete the disk volumes; nothing when already gone."""
        self.dom = dom = lookup(self.conn, self.name)
        plan = DomainPlan(self.what, state_after="absent")
        self.removed_volumes, self.kept_storage = [], []
        if dom is None:
            return plan
        xml_text = self._inactive_xml(dom) or ""
        cur_state = state_name(dom)
        volumes, kept = self._storage(ET.fromstring(xml_text)) if self.params.get("remove_storage") else ([], [])
        self.removed_volumes, self.kept_storage = [v.path() for v in volumes], kept
        plan.before = self._diff_text(cur_state, bool(dom.autostart()), xml_text, True)
        if cur_state in ACTIVE:
            plan.add("destroy", dom.destroy, done=lambda: self._in_state({"shutoff", "absent"}))
        plan.add("undefine", lambda: undefine(dom), done=lambda: self._in_state({"absent"}))
        if volumes:
            plan.add("delete_volumes", lambda: self._delete_volumes(volumes))
        return plan

    def _absent_result(self, plan: DomainPlan) -> dict[str, Any]:
        result: dict[str, Any] = {"changed": plan.changed, "domain": {"name": self.name, "state": "absent"},
                                  "removed_volumes": self.removed_volumes, "restart_required": False,
                                  "actions": plan.actions}
        if plan.before:
            result["kept_storage"] = self.kept_storage
            if self.want_diff:
                result["diff"] = {"before": plan.before, "after": ""}
        return result

    def _storage(self, root: ET.Element) -> tuple:
        """Pool volumes behind the domain's disks (device disk only), and paths that are no pool volume.

        cdroms are left alone: install and guest ISOs are typically shared between domains.
        """
        volumes, kept = [], []
        for disk in root.findall("devices/disk[@device='disk']"):
            source = disk.find("source")
            if source is None:
                continue
            vol = self._volume_of(source)
            if vol is not None:
                volumes.append(vol)
            else:
                kept.append(source.get("file") or source.get("dev") or f"{source.get('pool')}/{source.get('volume')}")
        return volumes, kept

    def _volume_of(self, source: ET.Element) -> Any | None:
        try:
            if source.get("pool"):
                return self.conn.storagePoolLookupByName(source.get("pool")).storageVolLookupByName(
                    source.get("volume"))
            path = source.get("file") or source.get("dev")
            return self.conn.storageVolLookupByPath(path) if path else None
        except libvirt.libvirtError:
            return None  # not a pool volume (or already gone): nothing of ours to delete

    def _delete_volumes(self, volumes: list[Any]) -> None:
        for index, vol in enumerate(volumes):
            try:
                vol.delete(0)
            except libvirt.libvirtError as exc:
                remaining = ", ".join(v.path() for v in volumes[index:])
                raise from_libvirt(exc, f"{self.what}: undefined, but deleting its volumes failed; still present: "
                                        f"{remaining}") from exc

    # -- result --

    def _result(self, plan: DomainPlan) -> dict[str, Any]:
        dom = self.dom
        if dom is not None and not self.check_mode and plan.changed:
            info = describe(dom, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        elif dom is not None:
            info = describe(dom, plan.current_xml or "", plan.state_after, plan.autostart_after)
        else:  # check mode for a domain that would be created: describe the desired definition
            root = domain_compare.normalise(self.desired_root, self.what)  # type: ignore[arg-type]
            info = {"name": self.name, "uuid": None, "state": plan.state_after,
                    "autostart": plan.autostart_after, "memory": domain_xml.memory_bytes(root),
                    "vcpus": domain_xml.vcpus(root), "xml": domain_xml.to_text(root),
                    "disks": domain_xml.disks(root), "interfaces": domain_xml.interfaces(root),
                    "forwarded_ports": domain_xml.forwarded_ports(root)}
        info["restart_required"] = plan.restart_required
        result: dict[str, Any] = {"changed": plan.changed, "domain": info,
                                  "restart_required": plan.restart_required, "actions": plan.actions}
        if self.want_diff:
            result["diff"] = {"before": plan.before, "after": plan.after}
        return result


def without_current_memory(desired: ET.Element) -> ET.Element:
    """The live <currentMemory> is what the balloon holds right now, not a definition the guest runs;
    a kept (carried-over) value must not make a running guest look stale."""
    out = copy.deepcopy(desired)
    for elem in out.findall("currentMemory"):
        out.remove(elem)
    return out


def keep_identity(desired: ET.Element, current_xml: str | None) -> ET.Element:
    """The desired element with the current UUID and NIC MACs carried over, so a redefine is in place.

    libvirt refuses a definition of an existing name without its UUID; and a new random MAC would
    look like a new NIC to the guest.
    """
    out = copy.deepcopy(desired)
    if not current_xml:
        return out
    current = ET.fromstring(current_xml)
    if out.find("uuid") is None and current.find("uuid") is not None:
        uuid = ET.Element("uuid")
        uuid.text = current.findtext("uuid")
        out.insert(list(out).index(out.find("name")) + 1, uuid)  # type: ignore[arg-type]
    have = current.findall("devices/interface")
    for index, nic in enumerate(out.findall("devices/interface")):
        if nic.find("mac") is None and index < len(have) and have[index].get("type") == nic.get("type"):
            mac = have[index].find("mac")
            if mac is not None:
                nic.insert(0, copy.deepcopy(mac))
    return out


def undefine_flags() -> int:
    """Remove managed save, snapshot and checkpoint metadata, NVRAM and TPM state with the definition."""
    flags = 0
    for name in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                 "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_TPM"):
        flags |= getattr(libvirt, name, 0)
    return flags


def undefine(dom: Any) -> None:
    """Undefine with every cleanup flag; drivers without NVRAM/TPM/checkpoints (the test driver)
    reject those flags and have nothing of the kind to remove, so they get the flags they know."""
    try:
        dom.undefineFlags(undefine_flags())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def start_paused(dom: Any, flags: int = 0) -> None:
    """Start without running a single guest instruction; drivers without the flag start, then pause."""
    try:
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED | flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        dom.createWithFlags(flags)
        dom.suspend()
