"""The agent's one computation and its state machine; every method is safe to call from many gRPC threads.

States (the original agent's names in brackets):
  IDLE                 no manifest yet [idle, receiving manifest]
  RECEIVING_ALGORITHM  manifest accepted, the algorithm is still missing
  RECEIVING_DATA       algorithm present, datasets still missing
  READY                every declared file is uploaded; the next Result starts the run
  RUNNING              the algorithm is executing (Result calls wait for it)
  COMPLETE / FAILED    the outcome is stored; Result returns it again without re-running
Uploads may come in any order; the state names what is still missing.
A new Run is refused only while RUNNING. In any other state it replaces the current computation and discards its
uploads and outcome, so a user can fix a manifest or run again after COMPLETE/FAILED.
"""

import enum
import hashlib
import logging
import os
import shutil
import threading
import uuid

from agent import manifest
from agent.errors import AgentError, AlreadyUploaded, InvalidInput, OutOfOrder
from agent.manifest import Manifest, Slot
from agent.runner import Job, Runner

log = logging.getLogger("agent.computation")
DIR_PREFIX = "computation-"


class State(enum.Enum):
    IDLE = "idle"
    RECEIVING_ALGORITHM = "receiving_algorithm"
    RECEIVING_DATA = "receiving_data"
    READY = "ready"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


RECEIVING = (State.RECEIVING_ALGORITHM, State.RECEIVING_DATA, State.READY)


class _Computation:
    """One accepted manifest, its on-disk inputs (in upload order) and, later, its outcome."""

    def __init__(self, spec: Manifest, root: str) -> None:
        self.spec = spec
        self.root = root
        self.files: dict[str, dict[int, str]] = {"algorithm": {}, "dataset": {}}
        self.digests: dict[str, set[str]] = {"algorithm": set(), "dataset": set()}
        self.upload_order: list[str] = []
        self.result: bytes | None = None
        self.failure: AgentError | None = None

    def slots(self, kind: str) -> tuple[Slot, ...]:
        return self.spec.algorithms if kind == "algorithm" else self.spec.datasets

    def missing(self, kind: str) -> list[Slot]:
        return [slot for slot in self.slots(kind) if slot.index not in self.files[kind]]

    def claim(self, kind: str, digest: str) -> Slot:
        """The slot this upload fills, by the manifest's hash rule, or the error explaining why none fits."""
        missing = self.missing(kind)
        for slot in missing:
            if slot.sha256 == digest:
                return slot
        if digest in self.digests[kind]:
            raise AlreadyUploaded(f"{kind} sha256:{digest} was already uploaded for computation '{self.spec.id}'")
        unhashed = [slot for slot in missing if slot.sha256 is None]
        if unhashed:
            return unhashed[0]
        if missing:
            expected = ", ".join(f"sha256:{slot.sha256}" for slot in missing)
            raise InvalidInput(
                f"{kind} sha256:{digest} is not declared by computation '{self.spec.id}' (still expected: {expected})"
            )
        count = len(self.slots(kind))
        raise OutOfOrder(f"all {count} declared {kind}(s) of computation '{self.spec.id}' are already uploaded")

    def store(self, slot: Slot, digest: str, content: bytes) -> str:
        """Write the upload read-only under inputs/; the name keeps the upload position and the content id."""
        position = len(self.upload_order) + 1
        path = os.path.join(self.root, "inputs", f"{slot.kind}{position:03d}-{digest}")
        with open(path, "xb") as handle:
            handle.write(content)
        os.chmod(path, 0o644)
        self.files[slot.kind][slot.index] = path
        self.digests[slot.kind].add(digest)
        self.upload_order.append(path)
        return path

    def receiving_state(self) -> State:
        if self.missing("algorithm"):
            return State.RECEIVING_ALGORITHM
        if self.missing("dataset"):
            return State.RECEIVING_DATA
        return State.READY

    def job(self) -> Job:
        datasets = tuple(path for path in self.upload_order if path in self.files["dataset"].values())
        return Job(
            algorithm=self.files["algorithm"][0],
            datasets=datasets,
            run_dir=os.path.join(self.root, "run"),
            log_dir=self.root,
            ttl=self.spec.ttl,
        )


class Session:
    """The agent holds at most one computation; this object owns it and its transitions."""

    def __init__(self, work_dir: str, runner: Runner) -> None:
        self._work_dir = work_dir
        self._runner = runner
        self._cond = threading.Condition()
        self._state = State.IDLE
        self._current: _Computation | None = None
        _prepare_work_dir(work_dir)

    @property
    def state(self) -> State:
        with self._cond:
            return self._state

    def manifest_digest(self) -> bytes | None:
        with self._cond:
            return self._current.spec.digest if self._current else None

    def run(self, raw: bytes) -> str:
        spec = manifest.parse(raw)  # outside the lock: bad input leaves everything as it was
        with self._cond:
            if self._state is State.RUNNING:
                assert self._current is not None
                raise OutOfOrder(f"computation '{self._current.spec.id}' is running; Run again once it has finished")
            replaced = self._current
            self._current = _Computation(spec, self._new_dir())
            self._state = self._current.receiving_state()
        if replaced is not None:
            log.info("previous computation discarded", extra={"computation": replaced.spec.id})
            shutil.rmtree(replaced.root, ignore_errors=True)
        log.info("computation accepted", extra={"computation": spec.id, "ttl": spec.ttl, "state": self._state.value})
        return spec.id

    def upload(self, kind: str, content: bytes) -> str:
        """Store an algorithm or dataset; returns its content id (sha256 hex)."""
        if kind == "algorithm" and not content:
            raise InvalidInput("algorithm is empty")
        digest = hashlib.sha256(content).hexdigest()
        with self._cond:
            current = self._receiving(kind)
            slot = current.claim(kind, digest)
            current.store(slot, digest, content)
            self._state = current.receiving_state()
            state = self._state
        details = {"sha256": digest, "bytes": len(content), "slot": slot.label, "state": state.value}
        log.info(f"{kind} received", extra=details)
        return digest

    def result(self, wait_seconds: float | None = None) -> bytes:
        """Run the algorithm on the first call once READY; every later call returns the same outcome."""
        with self._cond:
            current = self._current
            if self._state is State.RUNNING:
                self._cond.wait_for(lambda: self._state is not State.RUNNING, timeout=wait_seconds)
            if self._state in (State.COMPLETE, State.FAILED):
                return _outcome(self._current)
            self._require_ready()
            assert current is not None
            self._state = State.RUNNING
        return self._execute(current)

    def close(self) -> None:
        """Agent shutdown: kill a running algorithm and forget the computation's files."""
        self._runner.stop()
        with self._cond:
            self._cond.wait_for(lambda: self._state is not State.RUNNING, timeout=5)
            if self._current is not None:
                shutil.rmtree(self._current.root, ignore_errors=True)

    def _execute(self, current: _Computation) -> bytes:
        log.info("computation running", extra={"computation": current.spec.id})
        try:
            current.result = self._runner.run(current.job())
        except AgentError as exc:
            current.failure = exc
        except Exception:  # the agent's own bug: keep it in the log, tell the client only that it happened
            log.exception("running the algorithm failed unexpectedly", extra={"computation": current.spec.id})
            current.failure = AgentError("internal agent error while running the algorithm (see the agent log)")
        with self._cond:
            self._state = State.FAILED if current.failure else State.COMPLETE
            self._cond.notify_all()
        log.info("computation finished", extra={"computation": current.spec.id, "state": self._state.value})
        return _outcome(current)

    def _receiving(self, kind: str) -> _Computation:
        if self._current is None:
            raise OutOfOrder(f"no computation: call Run with a manifest before uploading the {kind}")
        if self._state not in RECEIVING:
            raise OutOfOrder(
                f"computation '{self._current.spec.id}' is {self._state.value}; uploads are accepted only before Result"
            )
        return self._current

    def _require_ready(self) -> None:
        if self._current is None:
            raise OutOfOrder("no computation: call Run, upload the algorithm and datasets, then ask for the Result")
        if self._state is State.RUNNING:
            raise OutOfOrder(f"computation '{self._current.spec.id}' is still running")
        if self._state is not State.READY:
            algorithms, datasets = len(self._current.missing("algorithm")), len(self._current.missing("dataset"))
            raise OutOfOrder(
                f"computation '{self._current.spec.id}' still needs {algorithms} algorithm(s) and {datasets} dataset(s)"
                " before Result"
            )

    def _new_dir(self) -> str:
        root = os.path.join(self._work_dir, f"{DIR_PREFIX}{uuid.uuid4().hex}")
        os.makedirs(os.path.join(root, "inputs"))
        # Traversable but not listable: the unprivileged algorithm reaches its inputs by the paths it is given.
        os.chmod(root, 0o711)
        os.chmod(os.path.join(root, "inputs"), 0o755)
        return root


def _outcome(current: _Computation | None) -> bytes:
    assert current is not None
    if current.failure is not None:
        raise type(current.failure)(str(current.failure))
    assert current.result is not None
    return current.result


def _prepare_work_dir(work_dir: str) -> None:
    """Create the work dir and drop what an earlier agent process left: its state did not survive the restart."""
    os.makedirs(work_dir, exist_ok=True)
    if os.stat(work_dir).st_uid == os.geteuid():
        os.chmod(work_dir, 0o711)
    for name in os.listdir(work_dir):
        if name.startswith(DIR_PREFIX):
            shutil.rmtree(os.path.join(work_dir, name), ignore_errors=True)
