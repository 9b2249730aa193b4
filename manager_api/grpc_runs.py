"""Message conversions for the run RPCs of cocos.manager.v1 (the servicer methods live in grpc_server.py)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cocos_pb import manager_pb2, manager_v1_pb2
from manager_api import runs
from manager_api.domains import RequestError

_STATE = {runs.FORWARDED: manager_v1_pb2.RUN_STATE_FORWARDED, runs.RECEIVING: manager_v1_pb2.RUN_STATE_RECEIVING,
          runs.RUNNING: manager_v1_pb2.RUN_STATE_RUNNING, runs.COMPLETE: manager_v1_pb2.RUN_STATE_COMPLETE,
          runs.FAILED: manager_v1_pb2.RUN_STATE_FAILED, runs.SUPERSEDED: manager_v1_pb2.RUN_STATE_SUPERSEDED}
# Well under gRPC's 4 MiB default message limit, and small enough that a client sees progress.
RESULT_CHUNK = 256 * 1024


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def run_fields(request: manager_pb2.RunRequest) -> dict[str, Any]:
    """The original RunRequest as the JSON fields POST /run takes, so both front ends validate alike."""
    fields: dict[str, Any] = {
        "name": request.name, "description": request.description, "status": request.status,
        "owner": request.owner, "datasets": list(request.datasets), "algorithms": list(request.algorithms),
        "dataset_providers": list(request.dataset_providers), "algorithm_providers": list(request.algorithm_providers),
        "result_consumers": list(request.result_consumers), "ttl": request.ttl}
    if request.HasField("start_time"):
        fields["start_time"] = request.start_time.ToJsonString()
    if request.HasField("end_time"):
        fields["end_time"] = request.end_time.ToJsonString()
    return fields


def run_message(run: runs.Run) -> manager_v1_pb2.Run:
    return manager_v1_pb2.Run(
        id=run.id, name=run.name, agent=run.agent, domain=run.domain, ttl=run.ttl, state=_STATE[run.state],
        created_at=timestamp(run.created_at), updated_at=timestamp(run.updated_at), algorithm=run.algorithm,
        datasets=list(run.datasets), error=run.error, result_bytes=run.result_bytes,
        superseded_by=run.superseded_by, host=run.host)


def collect_upload(chunks: Iterable[manager_v1_pb2.UploadChunk], limit: int) -> tuple[str, bytes]:
    """(run id, content) from a client stream; stops reading as soon as the limit is passed."""
    run_id, parts, size = "", [], 0
    for chunk in chunks:
        if chunk.run_id and run_id and chunk.run_id != run_id:
            raise RequestError("run_id", f"chunks name two runs: {run_id!r} and {chunk.run_id!r}")
        run_id = run_id or chunk.run_id
        size += len(chunk.data)
        if size > limit:
            raise RequestError("data", f"upload exceeds the limit of {limit} bytes", status=413)
        parts.append(chunk.data)
    if not run_id:
        raise RequestError("run_id", "is required in the first chunk")
    if not size:
        raise RequestError("data", "empty upload")
    return run_id, b"".join(parts)


def result_chunks(file: bytes) -> Iterator[manager_v1_pb2.ResultChunk]:
    view = memoryview(file)
    for start in range(0, len(file), RESULT_CHUNK):
        yield manager_v1_pb2.ResultChunk(data=bytes(view[start:start + RESULT_CHUNK]))
