"""The agent's one computation and its state machine; every method is safe to call from many gRPC threads.

States (the original agent's names in brackets):
  IDLE                 no manifest yet [idle, receiving manifest]
  RECEIVING_ALGORITHM  manifest accepted, the algorithm is still missing
  RECEIVING_DATA       algorithm present, datasets still missing
  READY                every declared file is uploaded; the next Result starts the run
  RUNNING              the algorithms are executing, one after the other (Result calls wait for them)
  COMPLETE / FAILED    the outcome is stored; Result returns it again without re-running
Uploads may come in any order; the state names what is still missing.
A new Run is refused only while RUNNING. In any other state it replaces the current computation and discards its
uploads and outcome, so a user can fix a manifest or run again after COMPLETE/FAILED.

Measurements: with a TPM, Run resets the measurement PCR and extends it with the manifest's sha256, and every upload
extends it with its content's sha256 before it is stored, all under the session lock, so the PCR, the upload order
and `measurements()` always agree (agent/tpm.py). A TPM that refuses leaves the call failed (UNAVAILABLE).

Several algorithms: each runs over the same datasets, in upload order, in its own fresh directory, sharing the
computation's ttl; the first failure ends the computation and names that algorithm. One algorithm's result is
its bytes, unchanged; several give one JSON document (`result_document`).
"""

import base64
import enum
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace

from agent import manifest
from agent.errors import (
    AgentError,
    AlgorithmTimedOut,
    AlreadyUploaded,
    InvalidInput,
    NoAttestationDevice,
    OutOfOrder,
    OutputTooLarge,
)
from agent.manifest import Manifest, Slot
from agent.runner import Job, Runner
from agent.tpm import Quote, Tpm

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


@dataclass(frozen=True)
class Upload:
    slot: Slot
    digest: str
    path: str


@dataclass(frozen=True)
class Measurement:
    """One extend of the measurement PCR: `kind` manifest, algorithm or dataset; `sha256` hex of the bytes."""

    kind: str
    sha256: str


@dataclass(frozen=True)
class Step:
    """One algorithm of the computation and how to run it; `name` identifies it in errors and logs."""

    algorithm: Upload
    name: str
    job: Job


class _Computation:
    """One accepted manifest, its on-disk inputs (in upload order) and, later, its outcome."""

    def __init__(self, spec: Manifest, root: str) -> None:
        self.spec = spec
        self.root = root
        self.uploads: list[Upload] = []  # in upload order
        self.result: bytes | None = None
        self.failure: AgentError | None = None

    def slots(self, kind: str) -> tuple[Slot, ...]:
        return self.spec.algorithms if kind == "algorithm" else self.spec.datasets

    def uploaded(self, kind: str) -> list[Upload]:
        return [upload for upload in self.uploads if upload.slot.kind == kind]

    def missing(self, kind: str) -> list[Slot]:
        filled = {upload.slot.index for upload in self.uploaded(kind)}
        return [slot for slot in self.slots(kind) if slot.index not in filled]

    def claim(self, kind: str, digest: str) -> Slot:
        """The slot this upload fills, by the manifest's hash rule, or the error explaining why none fits."""
        missing = self.missing(kind)
        for slot in missing:
            if slot.sha256 == digest:
                return slot
        if any(upload.digest == digest for upload in self.uploaded(kind)):
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
        position = len(self.uploads) + 1
        path = os.path.join(self.root, "inputs", f"{slot.kind}{position:03d}-{digest}")
        with open(path, "xb") as handle:
            handle.write(content)
        os.chmod(path, 0o644)
        self.uploads.append(Upload(slot, digest, path))
        return path

    def measurements(self) -> list[Measurement]:
        """What was extended into the measurement PCR since this computation's Run, in order."""
        manifest = Measurement("manifest", self.spec.digest.hex())
        return [manifest, *(Measurement(upload.slot.kind, upload.digest) for upload in self.uploads)]

    def receiving_state(self) -> State:
        if self.missing("algorithm"):
            return State.RECEIVING_ALGORITHM
        if self.missing("dataset"):
            return State.RECEIVING_DATA
        return State.READY

    def steps(self) -> list[Step]:
        """The algorithms in upload order, each over every dataset in upload order.

        One algorithm runs in `run/` with its logs beside it (as always); several get `algorithm-N/run/` each.
        """
        algorithms = self.uploaded("algorithm")
        datasets = tuple(upload.path for upload in self.uploaded("dataset"))
        steps = []
        for position, algorithm in enumerate(algorithms, 1):
            log_dir = self.root if len(algorithms) == 1 else os.path.join(self.root, f"algorithm-{position}")
            job = Job(algorithm.path, datasets, os.path.join(log_dir, "run"), log_dir, self.spec.ttl)
            steps.append(Step(algorithm, _step_name(algorithm, position, len(algorithms)), job))
        return steps


class Session:
    """The agent holds at most one computation; this object owns it and its transitions."""

    def __init__(self, work_dir: str, runner: Runner, tpm: Tpm | None = None) -> None:
        self._work_dir = work_dir
        self._runner = runner
        self._tpm = tpm
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

    def attest(self, nonce: bytes) -> tuple[Quote, list[Measurement]]:
        """A TPM quote with `nonce` and the current computation's measurements, taken together under the lock.

        NoAttestationDevice when the agent has no TPM; an empty list before any Run.
        """
        if self._tpm is None:
            raise NoAttestationDevice("no TPM in this guest (no /dev/tpmrm0 or /dev/tpm0; AGENT_TPM_TCTI unset)")
        with self._cond:
            quote = self._tpm.quote(nonce)
            return quote, self._current.measurements() if self._current else []

    def run(self, raw: bytes) -> str:
        spec = manifest.parse(raw)  # outside the lock: bad input leaves everything as it was
        with self._cond:
            if self._state is State.RUNNING:
                assert self._current is not None
                raise OutOfOrder(f"computation '{self._current.spec.id}' is running; Run again once it has finished")
            if self._tpm is not None:
                self._tpm.reset()
                self._tpm.extend(spec.digest)
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
            if self._tpm is not None:
                self._tpm.extend(bytes.fromhex(digest))
            current.store(slot, digest, content)
            self._state = current.receiving_state()
            state = self._state
        details = {"sha256": digest, "bytes": len(content), "slot": slot.label, "state": state.value}
        log.info(f"{kind} received", extra=details)
        return digest

    def result(self, wait_seconds: float | None = None) -> bytes:
        """Run the algorithm(s) on the first call once READY; every later call returns the same outcome."""
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
        """Agent shutdown: kill a running algorithm (later ones refuse to start) and forget the computation's files."""
        self._runner.stop()
        with self._cond:
            self._cond.wait_for(lambda: self._state is not State.RUNNING, timeout=5)
            if self._current is not None:
                shutil.rmtree(self._current.root, ignore_errors=True)

    def _execute(self, current: _Computation) -> bytes:
        details = {"computation": current.spec.id, "algorithms": len(current.spec.algorithms)}
        log.info("computation running", extra=details)
        try:
            current.result = self._run_steps(current)
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

    def _run_steps(self, current: _Computation) -> bytes:
        """Run every algorithm within the one ttl; a single algorithm's result is returned as it is."""
        steps = current.steps()
        if len(steps) == 1:
            return self._runner.run(steps[0].job)
        deadline = time.monotonic() + current.spec.ttl
        results = []
        for step in steps:
            log.info("algorithm step starting", extra={"computation": current.spec.id, "algorithm": step.name})
            # Traversable, not listable, like the computation's root: the algorithm gets only its own paths.
            os.makedirs(step.job.log_dir)
            os.chmod(step.job.log_dir, 0o711)
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AlgorithmTimedOut(f"not started: the computation's ttl of {current.spec.ttl:g} s was used up")
                results.append((step, self._runner.run(replace(step.job, time_limit=remaining))))
            except AgentError as exc:
                raise type(exc)(f"{step.name}: {exc}") from None
        return result_document(current.spec.id, results, self._runner.max_output_bytes)

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
        root = os.path.join(self._work_dir, f"{DIR_PREFIX}{os.urandom(16).hex()}")  # not uuid: it imports platform
        os.makedirs(os.path.join(root, "inputs"))
        # Traversable but not listable: the unprivileged algorithm reaches its inputs by the paths it is given.
        os.chmod(root, 0o711)
        os.chmod(os.path.join(root, "inputs"), 0o755)
        return root


def _step_name(algorithm: Upload, position: int, count: int) -> str:
    """`algorithm 2 of 3 'train.py' (sha256:...)`; the label is left out when it is the hash itself."""
    label = algorithm.slot.label
    named = "" if algorithm.digest in label.lower() else f" {label!r}"
    return f"algorithm {position} of {count}{named} (sha256:{algorithm.digest})"


def result_document(computation: str, results: list[tuple[Step, bytes]], limit: int) -> bytes:
    """Several algorithms' results as one JSON object (compact, UTF-8), results in run order:

    {"computation": ID, "results": [{"algorithm": SHA256, "name": LABEL, "result": BASE64}, ...]}
    """
    document = {
        "computation": computation,
        "results": [
            {
                "algorithm": step.algorithm.digest,
                "name": step.algorithm.slot.label,
                "result": base64.b64encode(output).decode("ascii"),
            }
            for step, output in results
        ],
    }
    encoded = json.dumps(document, separators=(",", ":")).encode()
    if len(encoded) > limit:
        raise OutputTooLarge(
            f"the result document of {len(results)} algorithms is {len(encoded)} bytes, above the output limit of"
            f" {limit} bytes (AGENT_MAX_OUTPUT_BYTES)"
        )
    return encoded


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
