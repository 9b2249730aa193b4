"""Convergence shared by persistent libvirt objects that are defined, started and autostarted: pools, networks.

How a definition is compared: libvirt's own parser renders the desired definition (render.py), with the
identity the driver allocated for the existing object carried over (carry_identity), and the rendering is
compared as canonical text with the stored definition, so whatever libvirt rewrites is on both sides and
settles without a list of rewrites. Left out of both: the uuid, and facts a running object reports that
are no part of a definition (strip_runtime: a pool's sizes, the permissions it found on its directory).

Whether a running object still runs an older definition is libvirt's own answer: an object redefined while
active keeps its running definition apart from the pending one until it restarts (runs_older).

The difference becomes one plan of named steps (plan.Plan), which answers check mode (`changed`), diff
mode (`before`/`after`) and the real run, and rolls back what this run created when a later step fails.
Subclasses say how to look up, define, start and describe their object.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from . import xmlcanon
from .common import from_libvirt, libvirt, lookup_or_none
from .plan import Plan, Step, converge


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; ours are reported through fail_json."""


if libvirt is not None:
    libvirt.registerErrorHandler(_quiet, None)


def state_text(definition: str, active: bool, autostart: bool) -> str:
    """Diff text: the canonical definition followed by the run state, so both show in --diff."""
    return f"{definition}active: {'yes' if active else 'no'}\nautostart: {'yes' if autostart else 'no'}\n"


class LifecycleManager:
    """present/absent, active, autostart and definition drift for one named object."""

    kind = "object"  # "storage pool", "network": used in every message
    inactive_flag = 0  # the XMLDesc flag for the persistent definition

    def __init__(self, conn: Any, params: dict[str, Any], check_mode: bool) -> None:
        self.conn = conn
        self.params = params
        self.check_mode = check_mode
        self.name: str = params["name"]
        self.what = f"{self.kind} '{self.name}'"
        self.obj: Any = None  # what the last plan() found
        self.live_xml: str | None = None  # its running XML, when the plan read it

    # --- hooks for subclasses -------------------------------------------------------------
    def lookup_raw(self, name: str) -> Any:
        raise NotImplementedError

    def define_raw(self, xml: str) -> Any:
        raise NotImplementedError

    def build_desired(self) -> ET.Element:
        """The desired definition (name set, no uuid) from `xml` or the structured options."""
        raise NotImplementedError

    def render(self, desired: ET.Element) -> ET.Element:
        """The definition libvirt will store for `desired` (render.py)."""
        raise NotImplementedError

    def carry_identity(self, desired: ET.Element, current: ET.Element) -> None:
        """Copy into `desired` what the driver allocated for the existing object and the user left out."""

    def strip_runtime(self, root: ET.Element, other: ET.Element) -> None:
        """Remove from a stored or rendered definition what a running object reports beyond its definition;
        `other` is the definition it is compared with."""

    def strip_started(self, live: ET.Element, stored: ET.Element) -> None:
        """Remove from a running object's live XML what starting it added to the stored definition."""

    def before_start(self, obj: Any) -> None:
        """Work an existing object needs before it starts, e.g. a pool's directory made again."""

    def after_redefine(self, obj: Any) -> None:
        """Work right after a redefinition, e.g. building the new directory of an inactive pool."""

    def add_create_steps(self, plan: Plan, created: dict[str, Any], define: Step) -> None:
        """Steps between define and start of a new object (a pool's build), each undoable."""

    def restart_allowed(self) -> bool:
        return True

    def remove_extra(self, obj: Any, plan: Plan) -> None:
        """Extra steps of `absent` between stop and undefine (e.g. deleting a pool's directory)."""

    def describe(self, obj: Any) -> dict[str, Any]:
        raise NotImplementedError

    # --- libvirt calls, wrapped so errors name the object ---------------------------------
    def call(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except libvirt.libvirtError as exc:
            raise from_libvirt(exc, f"{what} {self.what}") from exc

    def lookup(self) -> Any:
        return lookup_or_none(self.lookup_raw, self.name, f"cannot look up {self.what}")

    def running_xml(self, obj: Any) -> str:
        """The object's XML as it runs: read again unless this run's plan read it and changed nothing since."""
        return self.live_xml if self.live_xml is not None else self.xml_desc(obj, 0)

    def xml_desc(self, obj: Any, flags: int) -> str:
        try:
            return obj.XMLDesc(flags)
        except libvirt.libvirtError as exc:
            # Drivers without a separate persistent definition (test:///default) reject the flag.
            if flags and exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                return obj.XMLDesc(0)
            raise from_libvirt(exc, f"cannot read the definition of {self.what}") from exc

    def comparable(self, root: ET.Element, other: ET.Element) -> str:
        """Canonical text of a stored or rendered definition as it is compared with `other` (no uuid, no
        runtime facts)."""
        copy = ET.fromstring(ET.tostring(root))
        xmlcanon.remove(copy, ["uuid"])
        self.strip_runtime(copy, other)
        return xmlcanon.canonical(copy)

    def runs_older(self, obj: Any, stored: ET.Element) -> bool:
        """Whether the active object runs a definition other than its stored (pending) one.

        The two are read one after the other, so an object another run starts in between looks different
        (a pool's XML gains the permissions found on its directory): a difference is read once more."""
        for _attempt in range(2):
            self.live_xml = self.xml_desc(obj, 0)
            live = xmlcanon.parse(self.live_xml, self.what)
            self.strip_started(live, stored)
            if xmlcanon.canonical(live) == xmlcanon.canonical(stored):
                return False
            stored = xmlcanon.parse(self.xml_desc(obj, self.inactive_flag), self.what)
        return True

    # --- planning ------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The plan from what libvirt says now; the object it found is kept in self.obj."""
        self.live_xml = None
        self.obj = obj = self.lookup()
        if self.params["state"] == "absent":
            return self.plan_absent(obj)
        return self.plan_present(obj)

    def plan_absent(self, obj: Any) -> Plan:
        plan = Plan(self.what)
        if obj is None:
            return plan
        active = bool(self.call("cannot read the state of", obj.isActive))
        stored = xmlcanon.parse(self.xml_desc(obj, self.inactive_flag), self.what)
        plan.before = state_text(self.comparable(stored, stored), active,
                                 bool(self.call("cannot read autostart of", obj.autostart)))
        if active:
            plan.add("stop", lambda: self.call("cannot stop", obj.destroy), done=self.stopped)
        self.remove_extra(obj, plan)
        if self.call("cannot read the persistence of", obj.isPersistent):
            plan.add("undefine", lambda: self.call("cannot undefine", obj.undefine), done=lambda: self.lookup() is None)
        return plan

    # Whether another run reached a step's goal meanwhile (plan.Step.done): then its failure is none.
    def stopped(self) -> bool:
        now = self.lookup()
        return now is None or not now.isActive()

    def running(self) -> bool:
        now = self.lookup()
        return now is not None and bool(now.isActive())

    def autostarting(self, wanted: bool) -> bool:
        now = self.lookup()
        return now is not None and bool(now.autostart()) == wanted

    def plan_present(self, obj: Any) -> Plan:
        desired = self.build_desired()
        want_active = self.params["active"]
        want_autostart = self.params["autostart"]
        plan = Plan(self.what)
        if obj is None:
            rendered = self.render(desired)
            return self.plan_create(plan, desired, self.comparable(rendered, rendered), want_active, want_autostart)
        stored = xmlcanon.parse(self.xml_desc(obj, self.inactive_flag), self.what)
        self.carry_identity(desired, stored)
        rendered = self.render(desired)
        active = bool(self.call("cannot read the state of", obj.isActive))
        # An active object's XML holds what it found at runtime in place of parts of its definition (a pool's
        # directory permissions): those parts are compared only where both sides have them.
        want_text = self.comparable(rendered, stored if active else rendered)
        have_text = self.comparable(stored, rendered)
        autostart = bool(self.call("cannot read autostart of", obj.autostart))
        persistent = bool(self.call("cannot read the persistence of", obj.isPersistent))
        target_active = active if want_active is None else want_active
        target_autostart = autostart if want_autostart is None else want_autostart
        plan.before = state_text(have_text, active, autostart)
        plan.after = state_text(want_text, target_active, target_autostart)
        redefine = have_text != want_text or not persistent
        if redefine:
            plan.add("redefine", lambda: self.redefine(obj, desired))
        stale_live = active and target_active and (redefine or self.runs_older(obj, stored))
        if stale_live and self.restart_allowed():
            plan.add("restart", lambda: self.restart(obj))
        elif stale_live:
            plan.restart_required = True
            plan.warnings.append(f"{self.what} runs with an older definition; set allow_restart: true to restart it")
        if target_active and not active:
            plan.add("start", lambda: self.start(obj), done=self.running)
        if active and not target_active:
            plan.add("stop", lambda: self.call("cannot stop", obj.destroy), done=self.stopped)
        if target_autostart != autostart:
            plan.add("autostart", lambda: self.call("cannot set autostart of", obj.setAutostart, int(target_autostart)),
                     done=lambda: self.autostarting(target_autostart))
        return plan

    def plan_create(self, plan: Plan, desired: ET.Element, want_text: str, want_active: bool | None,
                    want_autostart: bool | None) -> Plan:
        target_active = True if want_active is None else want_active
        plan.after = state_text(want_text, target_active, bool(want_autostart))
        created: dict[str, Any] = {}
        define = plan.add("define", lambda: created.update(obj=self.define(desired)),
                          undo=lambda: self.remove_new(created["obj"]), undone="the new definition was removed again")
        self.add_create_steps(plan, created, define)
        if target_active:
            plan.add("start", lambda: self.call("cannot start", created["obj"].create),
                     undo=lambda: self.call("cannot stop", created["obj"].destroy), undone="stopped again",
                     done=self.running)
        if want_autostart:
            plan.add("autostart", lambda: self.call("cannot set autostart of", created["obj"].setAutostart, 1),
                     within=define, done=lambda: self.autostarting(True))
        return plan

    # --- actions -------------------------------------------------------------------------
    def define(self, desired: ET.Element) -> Any:
        return self.call("cannot define", self.define_raw, ET.tostring(desired, encoding="unicode"))

    def redefine(self, obj: Any, desired: ET.Element) -> None:
        """Redefine in place: keep the object's UUID unless the user's XML names one."""
        copy = ET.fromstring(ET.tostring(desired))
        if copy.find("uuid") is None:
            uuid = ET.SubElement(copy, "uuid")
            uuid.text = self.call("cannot read the UUID of", obj.UUIDString)
        self.after_redefine(self.call("cannot redefine", self.define_raw, ET.tostring(copy, encoding="unicode")))

    def start(self, obj: Any) -> None:
        self.before_start(obj)
        self.call("cannot start", obj.create)

    def restart(self, obj: Any) -> None:
        self.call("cannot stop", obj.destroy)
        self.start(obj)

    def remove_new(self, obj: Any) -> None:
        """Undo of 'define': the object this run defined goes again, stopped first if it was started."""
        if obj.isActive():
            obj.destroy()
        obj.undefine()

    # --- running -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        plan = converge(self.plan, self.check_mode)
        obj = self.obj
        if plan.changed and not self.check_mode:
            obj, self.live_xml = self.lookup(), None
        result: dict[str, Any] = {
            "changed": plan.changed,
            "actions": plan.actions,
            "diff": {"before": plan.before, "after": plan.after},
        }
        if self.params["state"] == "present":
            result["restart_required"] = plan.restart_required
        if plan.warnings:
            result["warnings"] = plan.warnings
        result[self.result_key] = self.describe(obj) if obj is not None and self.params["state"] == "present" else {}
        return result

    result_key = "object"
