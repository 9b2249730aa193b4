"""Convergence shared by persistent libvirt objects that are defined, started and autostarted.

Pools and networks follow the same life cycle, so one planner serves both: it compares the desired
definition with the canonicalised current one ONCE and turns the difference into a plan of named steps
(plan.Plan), which answers check mode (`changed`), diff mode (`before`/`after`) and the real run, and
rolls back a definition this run created when a later step fails. Subclasses only say how to look up,
define, start and describe their object.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from . import xmlcanon
from .common import from_libvirt, libvirt, lookup_or_none
from .plan import Plan, converge


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr by default; ours are reported through fail_json."""


if libvirt is not None:
    libvirt.registerErrorHandler(_quiet, None)


def drop_unrequested(current: ET.Element, desired: ET.Element, elements: Iterable[str] = (),
                     attributes: Iterable[tuple[str, str]] = ()) -> None:
    """Remove from `current` what libvirt fills in by itself unless `desired` asks for it.

    `elements` are ElementTree paths ("mac", "forward/nat"); `attributes` are (path, name) pairs.
    What the user did write is still compared, so a changed bridge name is still a change.
    """
    drop = [path for path in elements if desired.find(path) is None]
    xmlcanon.remove(current, drop)
    for path, attr in attributes:
        wanted = [desired] if path == "." else desired.findall(path)
        if not any(attr in elem.attrib for elem in wanted):
            xmlcanon.remove_attrs(current, [(path, attr)])


def drop_empty(root: ET.Element, paths: Iterable[str]) -> None:
    """Remove elements with neither attributes, text nor children (libvirt writes `<source/>`)."""
    empty = [p for p in paths for e in root.findall(p) if not e.attrib and not len(e) and not (e.text or "").strip()]
    xmlcanon.remove(root, empty)


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

    # --- hooks for subclasses -------------------------------------------------------------
    def lookup_raw(self, name: str) -> Any:
        raise NotImplementedError

    def define_raw(self, xml: str) -> Any:
        raise NotImplementedError

    def build_desired(self) -> ET.Element:
        """The desired definition (name set, no uuid) from `xml` or the structured options."""
        raise NotImplementedError

    def normalise(self, current: ET.Element, desired: ET.Element) -> None:
        """Strip from `current` what libvirt fills in; called on copies before comparing."""

    def prepare_start(self, obj: Any) -> None:
        """Work needed before starting, e.g. building a pool's directory."""

    def after_define(self, obj: Any) -> None:
        """Work right after a (re)definition, e.g. building a pool's directory."""

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

    def xml_desc(self, obj: Any, flags: int) -> str:
        try:
            return obj.XMLDesc(flags)
        except libvirt.libvirtError as exc:
            # Drivers without a separate persistent definition (test:///default) reject the flag.
            if flags and exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                return obj.XMLDesc(0)
            raise from_libvirt(exc, f"cannot read the definition of {self.what}") from exc

    def canonical_of(self, xml_text: str, desired: ET.Element) -> str:
        current = xmlcanon.parse(xml_text, self.what)
        xmlcanon.remove(current, ["uuid"])
        self.normalise(current, desired)
        return xmlcanon.canonical(current)

    def desired_text(self, desired: ET.Element) -> str:
        copy = ET.fromstring(ET.tostring(desired))
        xmlcanon.remove(copy, ["uuid"])
        self.normalise(copy, desired)
        return xmlcanon.canonical(copy)

    # --- planning ------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The plan from what libvirt says now; the object it found is kept in self.obj."""
        self.obj = obj = self.lookup()
        if self.params["state"] == "absent":
            return self.plan_absent(obj)
        return self.plan_present(obj)

    def plan_absent(self, obj: Any) -> Plan:
        plan = Plan(self.what)
        if obj is None:
            return plan
        active = bool(self.call("cannot read the state of", obj.isActive))
        plan.before = state_text(self.canonical_of(self.xml_desc(obj, self.inactive_flag), ET.Element("x")),
                                 active, bool(self.call("cannot read autostart of", obj.autostart)))
        if active:
            plan.add("stop", lambda: self.call("cannot stop", obj.destroy))
        self.remove_extra(obj, plan)
        if self.call("cannot read the persistence of", obj.isPersistent):
            plan.add("undefine", lambda: self.call("cannot undefine", obj.undefine))
        return plan

    def plan_present(self, obj: Any) -> Plan:
        desired = self.build_desired()
        want_text = self.desired_text(desired)
        want_active = self.params["active"]
        want_autostart = self.params["autostart"]
        plan = Plan(self.what)
        if obj is None:
            return self.plan_create(plan, desired, want_text, want_active, want_autostart)
        active = bool(self.call("cannot read the state of", obj.isActive))
        autostart = bool(self.call("cannot read autostart of", obj.autostart))
        persistent = bool(self.call("cannot read the persistence of", obj.isPersistent))
        have_text = self.canonical_of(self.xml_desc(obj, self.inactive_flag), desired)
        live_text = self.canonical_of(self.xml_desc(obj, 0), desired) if active else have_text
        target_active = active if want_active is None else want_active
        target_autostart = autostart if want_autostart is None else want_autostart
        plan.before = state_text(have_text, active, autostart)
        plan.after = state_text(want_text, target_active, target_autostart)
        redefine = have_text != want_text or not persistent
        if redefine:
            plan.add("redefine", lambda: self.redefine(obj, desired))
        stale_live = active and target_active and live_text != want_text
        if stale_live and self.restart_allowed():
            plan.add("restart", lambda: self.restart(obj))
        elif stale_live:
            plan.restart_required = True
            plan.warnings.append(f"{self.what} runs with an older definition; set allow_restart: true to restart it")
        if target_active and not active:
            plan.add("start", lambda: self.start(obj))
        if active and not target_active:
            plan.add("stop", lambda: self.call("cannot stop", obj.destroy))
        if target_autostart != autostart:
            plan.add("autostart", lambda: self.call("cannot set autostart of", obj.setAutostart, int(target_autostart)))
        return plan

    def plan_create(self, plan: Plan, desired: ET.Element, want_text: str, want_active: bool | None,
                    want_autostart: bool | None) -> Plan:
        target_active = True if want_active is None else want_active
        plan.after = state_text(want_text, target_active, bool(want_autostart))
        created: dict[str, Any] = {}
        define = plan.add("define", lambda: created.update(obj=self.define(desired)),
                          undo=lambda: self.remove_new(created["obj"]), undone="the new definition was removed again")
        if target_active:
            plan.add("start", lambda: self.start(created["obj"]), within=define)
        if want_autostart:
            plan.add("autostart", lambda: self.call("cannot set autostart of", created["obj"].setAutostart, 1),
                     within=define)
        return plan

    # --- actions -------------------------------------------------------------------------
    def define(self, desired: ET.Element) -> Any:
        obj = self.call("cannot define", self.define_raw, ET.tostring(desired, encoding="unicode"))
        self.after_define(obj)
        return obj

    def redefine(self, obj: Any, desired: ET.Element) -> None:
        """Redefine in place: keep the object's UUID unless the user's XML names one."""
        copy = ET.fromstring(ET.tostring(desired))
        if copy.find("uuid") is None:
            uuid = ET.SubElement(copy, "uuid")
            uuid.text = self.call("cannot read the UUID of", obj.UUIDString)
        self.after_define(self.call("cannot redefine", self.define_raw, ET.tostring(copy, encoding="unicode")))

    def start(self, obj: Any) -> None:
        self.prepare_start(obj)
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
        obj = self.obj if self.check_mode else self.lookup()
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
