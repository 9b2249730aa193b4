"""The planning engine (module_utils/cocos_libvirt/plan.py): order, rollback, the failure's account, races."""
from __future__ import annotations

import libvirt
import pytest

from module_utils.cocos_libvirt.common import LibvirtModuleError
from module_utils.cocos_libvirt.plan import Plan, converge


def raising(exc: Exception) -> None:
    """A step that fails with `exc`, as a libvirt call would."""
    raise exc


def recording_plan(log: list[str], fail: str | None = None, undo_fails: str | None = None) -> Plan:
    """define (undoable) -> build (undoable) -> start (within define) -> autostart; `fail` raises in that step."""
    def act(name: str):
        def apply() -> None:
            if name == fail:
                raise LibvirtModuleError(f"cannot {name} pool 'p'")
            log.append(name)
        return apply

    def undo(name: str):
        def apply() -> None:
            if name == undo_fails:
                raise OSError(f"{name}: directory not empty")
            log.append(f"undo {name}")
        return apply

    plan = Plan("pool 'p'", before="b", after="a")
    define = plan.add("define", act("define"), undo=undo("define"), undone="the new definition was removed again")
    plan.add("build", act("build"), undo=undo("build"), undone="its directories were removed")
    plan.add("start", act("start"), within=define)
    plan.add("autostart", act("autostart"), within=define)
    return plan


def test_check_mode_returns_the_plan_without_applying_it():
    log: list[str] = []
    plan = converge(lambda: recording_plan(log), check_mode=True)
    assert plan.actions == ["define", "build", "start", "autostart"] and plan.changed and log == []


def test_steps_apply_in_order():
    log: list[str] = []
    converge(lambda: recording_plan(log), check_mode=False)
    assert log == ["define", "build", "start", "autostart"]


def test_empty_plan_is_no_change():
    assert not Plan("x").changed and Plan("x").actions == []


def test_failure_rolls_back_what_this_run_created_in_reverse_order():
    log: list[str] = []
    with pytest.raises(LibvirtModuleError) as caught:
        converge(lambda: recording_plan(log, fail="autostart"), check_mode=False)
    assert log == ["define", "build", "start", "undo build", "undo define"]
    error = caught.value
    assert error.msg.startswith("cannot autostart pool 'p' (step 'autostart' failed after define, build, start;")
    assert ("rolled back: build (its directories were removed), define (the new definition was removed again)"
            in error.msg)
    assert error.msg.endswith("nothing of this run remains)")
    # start went with the definition it ran in
    assert error.details == {"failed_step": "autostart", "applied": ["define", "build", "start"],
                             "rolled_back": ["build", "define"], "remaining": []}


def test_a_failed_undo_is_reported_and_its_step_remains():
    log: list[str] = []
    with pytest.raises(LibvirtModuleError) as caught:
        converge(lambda: recording_plan(log, fail="start", undo_fails="build"), check_mode=False)
    assert "undoing 'build' failed: build: directory not empty" in caught.value.msg
    assert caught.value.msg.endswith("still applied: build)")
    assert caught.value.details["remaining"] == ["build"]


def test_steps_without_undo_remain_and_are_named():
    plan = Plan("network 'n'")
    plan.add("redefine", lambda: None)
    plan.add("restart", lambda: raising(LibvirtModuleError("cannot start network 'n'")))
    with pytest.raises(LibvirtModuleError) as caught:
        converge(lambda: plan, check_mode=False)
    assert caught.value.msg == ("cannot start network 'n' (step 'restart' failed after redefine; "
                                "still applied: redefine)")


def test_libvirt_errors_are_wrapped_with_the_object_and_step():
    def refuse() -> None:
        raise libvirt.libvirtError("boom")

    plan = Plan("domain d")
    plan.add("start", refuse)
    with pytest.raises(LibvirtModuleError) as caught:
        converge(lambda: plan, check_mode=False)
    assert caught.value.msg.startswith("domain d: start failed") and "nothing was applied" in caught.value.msg


def test_a_step_someone_else_did_is_done():
    """A start that fails because another run started the object meanwhile is no failure."""
    log: list[str] = []
    plan = Plan("pool 'p'")
    plan.add("define", lambda: log.append("define"), undo=lambda: log.append("undo define"))
    plan.add("start", lambda: raising(LibvirtModuleError("already active")), done=lambda: True)
    plan.add("autostart", lambda: log.append("autostart"))
    converge(lambda: plan, check_mode=False)
    assert log == ["define", "autostart"]


def test_a_first_step_lost_to_another_run_is_planned_again():
    """Two runs create the same object: the loser's define fails, it reads libvirt again and converges."""
    world = {"exists": False}
    log: list[str] = []

    def make() -> Plan:
        plan = Plan("volume 'v'")
        if not world["exists"]:
            def create() -> None:
                world["exists"] = True  # the other run got there first
                raise LibvirtModuleError("storage volume 'v' exists already")
            plan.add("create", create)
        else:
            plan.add("resize", lambda: log.append("resize"))
        return plan

    plan = converge(make, check_mode=False)
    assert plan.actions == ["resize"] and log == ["resize"]


def test_a_failure_that_planning_again_does_not_explain_is_raised():
    calls = []

    def make() -> Plan:
        calls.append(1)
        plan = Plan("domain d")
        plan.add("define", lambda: raising(LibvirtModuleError("libvirt rejected the definition")))
        return plan

    with pytest.raises(LibvirtModuleError, match="rejected"):
        converge(make, check_mode=False)
    assert len(calls) == 2  # planned once more, found the same plan, gave up
