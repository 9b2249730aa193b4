"""Run one algorithm as `python3 ALGORITHM DATASET...` in a sandbox of plain POSIX means.

The sandbox: a fresh working directory, a minimal environment, its own session (so the whole process group can be
killed), an unprivileged user when the agent is root, RLIMIT_AS for memory and RLIMIT_FSIZE for output. The
agent reads the result as root, so it opens it without following links (an algorithm could otherwise point
RESULT_PATH at a root-only file and receive it as its "result").
"""

import logging
import os
import pwd
import select
import shutil
import signal
import stat
import threading
from dataclasses import dataclass
from typing import IO

from agent.config import AgentConfig
from agent.errors import AgentError, AlgorithmFailed, AlgorithmTimedOut, OutputTooLarge

log = logging.getLogger("agent.runner")

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Bounds fork bombs of the unprivileged user; only set when we switch to that user (it counts per real uid).
MAX_PROCESSES = 256


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str


@dataclass(frozen=True)
class Job:
    """Paths of one run: inputs are read-only to the algorithm, run_dir is its writable cwd.

    `ttl` is the computation's, quoted when the algorithm is killed; `time_limit` is what is left of it for this
    algorithm (a computation with several algorithms shares one ttl between them), the whole ttl when None.
    """

    algorithm: str
    datasets: tuple[str, ...]
    run_dir: str
    log_dir: str
    ttl: float
    time_limit: float | None = None


def resolve_identity(user: str) -> Identity | None:
    """The user to switch to, or None when we cannot switch (not root) or were told not to."""
    if not user or os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        log.warning("run-as user does not exist; algorithms run as root", extra={"user": user})
        return None
    return Identity(entry.pw_uid, entry.pw_gid, user)


# The agent never forks: gRPC's fork handlers crash a forked copy of the threaded server at random (SIGSEGV seen
# here). posix_spawn starts this tiny launcher instead, which applies limits and identity, then execs the algorithm.
LAUNCHER = """
import os, resource, sys
run_dir, uid, gid, memory, output, processes = sys.argv[1], *(int(value) for value in sys.argv[2:7])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
if memory:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
if processes:
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
if uid >= 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
os.chdir(run_dir)
os.closerange(3, os.sysconf("SC_OPEN_MAX"))
os.execv(sys.argv[7], sys.argv[7:])
"""


class Runner:
    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._identity = resolve_identity(config.run_as_user)
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._stopped = False

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def max_output_bytes(self) -> int:
        return self._config.max_output_bytes

    def run(self, job: Job) -> bytes:
        """Run `job` once; return the result file's bytes (stdout when there is none) or raise an AgentError."""
        self._prepare(job.run_dir)
        result_path = os.path.join(job.run_dir, "result")
        stdout_path = os.path.join(job.log_dir, "stdout")
        stderr_path = os.path.join(job.log_dir, "stderr")
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            returncode = self._execute(job, result_path, out, err)
        self._check_output(result_path, stdout_path)
        if returncode != 0:
            raise AlgorithmFailed(f"algorithm failed with {_describe(returncode)}; {self._stderr_tail(stderr_path)}")
        output = _read_result(result_path)
        return output if output is not None else _read_file(stdout_path)

    def stop(self) -> None:
        """Kill every running algorithm and refuse new ones (agent shutdown)."""
        with self._lock:
            self._stopped = True
            active = list(self._active)
        for pgid in active:
            _kill_group(pgid)

    def _prepare(self, run_dir: str) -> None:
        os.makedirs(run_dir, mode=0o700)
        if self._identity:
            os.chown(run_dir, self._identity.uid, self._identity.gid)

    def _environment(self, job: Job, result_path: str) -> dict[str, str]:
        return {
            "PATH": SAFE_PATH,
            "HOME": job.run_dir,
            "TMPDIR": job.run_dir,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "RESULT_PATH": result_path,
        }

    def _argv(self, job: Job, python: str) -> list[str]:
        ident = self._identity
        uid, gid = (ident.uid, ident.gid) if ident else (-1, -1)
        # +1 so a result of exactly the limit is allowed and anything bigger is detectable afterwards.
        limits = (self._config.max_memory_bytes, self._config.max_output_bytes + 1, MAX_PROCESSES if ident else 0)
        numbers = [str(value) for value in (uid, gid, *limits)]
        return [python, "-I", "-S", "-c", LAUNCHER, job.run_dir, *numbers, python, job.algorithm, *job.datasets]

    def _spawn(self, job: Job, result_path: str, out: IO[bytes], err: IO[bytes]) -> int:
        python = shutil.which(self._config.python, path=SAFE_PATH)
        if python is None:
            raise AgentError(f"cannot start the algorithm: {self._config.python!r} not found on {SAFE_PATH}")
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        env = self._environment(job, result_path)
        try:
            # setsid: the algorithm leads its own process group, so a kill reaches everything it started.
            return os.posix_spawn(python, self._argv(job, python), env, file_actions=actions, setsid=True)
        except OSError as exc:
            raise AgentError(f"cannot start the algorithm with {python!r}: {exc.strerror}") from None

    def _execute(self, job: Job, result_path: str, out: IO[bytes], err: IO[bytes]) -> int:
        with self._lock:
            if self._stopped:
                raise AgentError("the agent is shutting down")
            pid = self._spawn(job, result_path, out, err)
            self._active.add(pid)
        try:
            return self._wait(pid, job.ttl if job.time_limit is None else job.time_limit, job.ttl)
        finally:
            with self._lock:
                self._active.discard(pid)

    def _wait(self, pid: int, limit: float, ttl: float) -> int:
        log.info("algorithm started", extra={"pid": pid, "ttl": ttl, "time_limit": limit})
        exited = _exited_within(pid, limit)
        # Kill the group before reaping: the unreaped leader keeps the id from being reused, and children it left
        # behind would otherwise keep running (and writing).
        _kill_group(pid)
        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if not exited:
            log.warning("algorithm killed at ttl", extra={"pid": pid, "ttl": ttl, "time_limit": limit})
            raise AlgorithmTimedOut(f"algorithm exceeded the computation's ttl of {ttl:g} s and was killed")
        log.info("algorithm exited", extra={"pid": pid, "returncode": returncode})
        return returncode

    def _check_output(self, *paths: str) -> None:
        limit = self._config.max_output_bytes
        for path in paths:
            try:
                size = os.lstat(path).st_size
            except FileNotFoundError:
                continue
            if size > limit:
                name = "result file" if path.endswith("result") else "stdout"
                raise OutputTooLarge(
                    f"algorithm {name} exceeds the output limit of {limit} bytes (AGENT_MAX_OUTPUT_BYTES)"
                )

    def _stderr_tail(self, path: str) -> str:
        data = _read_file(path)
        tail = data[-self._config.stderr_tail_bytes :].decode("utf-8", errors="replace").strip()
        return f"stderr tail: {tail}" if tail else "stderr was empty"


def _exited_within(pid: int, seconds: float) -> bool:
    """Wait for the child to exit without reaping it (a pidfd turns readable at exit)."""
    fd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([fd], [], [], seconds)
    finally:
        os.close(fd)
    return bool(readable)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _describe(returncode: int) -> str:
    if returncode < 0:
        number = -returncode
        return f"signal {signal.Signals(number).name}" if number in signal.valid_signals() else f"signal {number}"
    return f"exit status {returncode}"


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_result(path: str) -> bytes | None:
    """The result file's bytes; None when absent. Refuses links and anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = f"result file {path} cannot be read ({exc.strerror}); it must be a regular file"
        raise AlgorithmFailed(reason) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise AlgorithmFailed("result file must be a regular file written by the algorithm (no links or devices)")
        return handle.read()
