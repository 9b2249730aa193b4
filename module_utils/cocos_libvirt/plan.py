"""The one planning engine of every manager (pool, network, volume, domain): a typed plan of named steps.

A manager reads libvirt once and turns the difference between what is and what is wanted into a `Plan`
before anything changes. Everything else derives from that one plan: check mode returns it (its step
names are the result's `actions`, its `before`/`after` texts the diff, `changed` is whether it has
steps), the real run applies it step by step, and when a step fails the steps this run applied that
created something are undone in reverse order, so the error says exactly what was applied, what was
rolled back and what remains.

Concurrent runs on the same object (two playbooks creating it at once) both end converged: a step whose
goal another run reached meanwhile (`done`: the object is running now) counts as done, and when the first
step fails with nothing applied yet (the other run defined or created the object first), `converge()`
plans again from what libvirt says now and applies that. Nothing is rolled back for a race, so the loser
never removes what the winner made.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .common import LibvirtModuleError, from_libvirt, libvirt


@dataclass
class Step:
    """One named change. `undo` is set on steps that create something (a definition, a directory, a
    volume) and removes it again; `undone` says what undo did, for the failure message. A step whose
    effect disappears with an earlier step's undo (autostart of an object this run defined) names that
    step in `within` instead of having an undo of its own. `done`, when set, tells after a failure
    whether the step's goal was reached anyway (another run started the object)."""

    name: str
    apply: Callable[[], Any]
    undo: Callable[[], Any] | None = None
    undone: str = ""
    within: Step | None = None
    done: Callable[[], bool] | None = None


class StepFailed(Exception):
    """A step of a plan failed; `error` is the LibvirtModuleError to report (its message already says
    what was applied, rolled back and what remains), `remaining` the names of applied steps still in effect."""

    def __init__(self, error: LibvirtModuleError, step: Step, applied: list[str]) -> None:
        super().__init__(error.msg)
        self.error = error
        self.step = step
        self.applied = applied


@dataclass
class Plan:
    """Everything one run does to one object, decided before anything changes.

    what: the object, as messages name it ("storage pool 'p'"); before/after: diff text;
    restart_required: the running object keeps an older definition after this run; warnings: text for
    module.warn.
    """

    what: str
    steps: list[Step] = field(default_factory=list)
    before: str = ""
    after: str = ""
    restart_required: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    @property
    def actions(self) -> list[str]:
        return [step.name for step in self.steps]

    def add(self, name: str, apply: Callable[[], Any], undo: Callable[[], Any] | None = None, undone: str = "",
            within: Step | None = None, done: Callable[[], bool] | None = None) -> Step:
        step = Step(name, apply, undo, undone, within, done)
        self.steps.append(step)
        return step

    def apply(self) -> None:
        """Apply every step in order; on a failure roll back what this run created and raise StepFailed."""
        applied: list[Step] = []
        for step in self.steps:
            try:
                step.apply()
            except LibvirtModuleError as exc:
                self._failed(step, applied, exc)
            except libvirt.libvirtError as exc:
                self._failed(step, applied, from_libvirt(exc, f"{self.what}: {step.name} failed"))
            applied.append(step)

    def _failed(self, step: Step, applied: list[Step], error: LibvirtModuleError) -> None:
        """Return when another run reached the step's goal meanwhile; else roll back and raise StepFailed."""
        if step.done is not None and _reached(step.done):
            return
        raise self._rolled_back(step, applied, error) from error

    def _rolled_back(self, failed: Step, applied: list[Step], error: LibvirtModuleError) -> StepFailed:
        rolled: list[Step] = []
        notes: list[str] = []
        for step in reversed(applied):
            if step.undo is None:
                continue
            try:
                step.undo()
            except (LibvirtModuleError, libvirt.libvirtError, OSError) as exc:
                notes.append(f"undoing '{step.name}' failed: {getattr(exc, 'msg', None) or exc}")
                continue
            rolled.append(step)
        gone = {id(step) for step in rolled}
        remaining = [s.name for s in applied if id(s) not in gone and id(s.within) not in gone]
        error.msg = f"{error.msg.rstrip('.')} ({_account(failed, applied, rolled, remaining, notes)})"
        error.args = (error.msg,)
        error.details.update(failed_step=failed.name, applied=[s.name for s in applied],
                             rolled_back=[s.name for s in rolled], remaining=remaining)
        return StepFailed(error, failed, [s.name for s in applied])


def _reached(done: Callable[[], bool]) -> bool:
    try:
        return bool(done())
    except (libvirt.libvirtError, LibvirtModuleError):
        return False  # cannot tell: the step's own error stands


def _account(failed: Step, applied: list[Step], rolled: list[Step], remaining: list[str], notes: list[str]) -> str:
    """'step X failed; ...': what was applied before it, what was rolled back and what remains."""
    if not applied:
        return f"step '{failed.name}' failed; nothing was applied"
    parts = [f"step '{failed.name}' failed after {', '.join(s.name for s in applied)}"]
    if rolled:
        parts.append("rolled back: " + ", ".join(f"{s.name} ({s.undone})" if s.undone else s.name for s in rolled))
    parts.extend(notes)
    parts.append(f"still applied: {', '.join(remaining)}" if remaining else "nothing of this run remains")
    return "; ".join(parts)


P = TypeVar("P", bound=Plan)


def converge(make_plan: Callable[[], P], check_mode: bool, attempts: int = 3) -> P:
    """make_plan(), applied unless in check mode; returns the plan that was (or would be) applied.

    When the first step fails with nothing applied, the object is planned again from what libvirt says
    now: a different plan means another run changed it between our reading and our step (defined or
    created it first), and the new plan is applied instead; the same plan means the failure is real and
    it is raised. Raises LibvirtModuleError.
    """
    plan = make_plan()
    if check_mode:
        return plan
    for attempt in range(attempts):
        try:
            plan.apply()
            return plan
        except StepFailed as failure:
            if failure.applied or attempt + 1 == attempts:
                raise failure.error from failure
            again = make_plan()
            if again.actions == plan.actions:
                raise failure.error from failure
            plan = again
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
