"""`python -m manager_api.playbook_guard ARGS...`: `ansible-playbook ARGS...` that never outlives the manager.

ansible-runner starts this guard as the job's process (in its own session and process group). The guard
- asks the kernel for SIGTERM when the manager thread that started it dies (PR_SET_PDEATHSIG), also after kill -9;
- becomes a child subreaper (PR_SET_CHILD_SUBREAPER), so ansible's workers, which start sessions of their own, stay
  its descendants even when ansible-playbook dies first;
- on SIGTERM, SIGINT or SIGHUP, and when ansible-playbook ends, sends SIGTERM to every descendant (ansible-playbook
  then stops its workers itself), and SIGKILL to what is left after GRACE seconds.
It writes its pid to $COCOS_GUARD_PIDFILE so the manager can cancel the job by signalling it, then starts nothing if
$COCOS_GUARD_CANCELFILE exists: the manager creates that file before it reads the pidfile, so a cancel that came before
the pid was written is not lost (one of the two sees the other).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 3.0
_stopping = False


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def descendants(pid: int) -> list[int]:
    """Every process below pid, from /proc (parents first)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _signal_all(sig: int) -> int:
    targets = descendants(os.getpid())
    for pid in targets:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return len(targets)


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def stop_tree() -> None:
    """SIGTERM to every descendant, SIGKILL to those still there after GRACE seconds."""
    if not _signal_all(signal.SIGTERM):
        return
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        _reap()
        if not descendants(os.getpid()):
            return
        time.sleep(0.05)
    _signal_all(signal.SIGKILL)
    _reap()


def _on_signal(signum: int, _frame: object) -> None:
    global _stopping
    if _stopping:
        return
    _stopping = True
    stop_tree()
    os._exit(128 + signum)


def main(argv: list[str]) -> int:
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    expected_parent = int(os.environ.get("COCOS_MANAGER_PID", "0"))
    if expected_parent and os.getppid() != expected_parent:
        return 1  # the manager died before the line above took effect: nothing may start
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    pidfile = os.environ.get("COCOS_GUARD_PIDFILE")
    if pidfile:
        with open(pidfile, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
    cancelfile = os.environ.get("COCOS_GUARD_CANCELFILE")
    if cancelfile and os.path.exists(cancelfile):
        return 128 + signal.SIGTERM  # canceled before ansible-playbook started: as if signalled
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    child = subprocess.Popen([playbook, *argv])
    code = child.wait()
    stop_tree()  # workers ansible left behind
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
