"""The HTTP API: a Bottle app built by create_app(services), never the module-level default app."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import bottle

from manager_api import attestation, jobs, runs, schemas
from manager_api.domains import check_domain_name
from manager_api.errors import check_json, check_text
from manager_api.metrics import CONTENT_TYPE
from manager_api.openapi import document
from manager_api.plugins import (
    ApiError,
    AuthPlugin,
    JsonErrorPlugin,
    RequestIdPlugin,
    TextPlugin,
    install_error_handlers,
    json_response,
    request_id,
)
from manager_api.services import Services

HEALTH_TYPE = "application/health+json"
OCTET_STREAM = "application/octet-stream"


def create_app(services: Services) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.config["json.enable"] = False  # every reply is built by json_response, with its content type
    app.config["cocos.services"] = services
    install_error_handlers(app)
    app.install(RequestIdPlugin())
    app.install(AuthPlugin(services.config.token))
    app.install(JsonErrorPlugin(services.metrics))
    app.install(TextPlugin())
    _routes(app, services)
    return app


def _routes(app: bottle.Bottle, s: Services) -> None:
    app.route("/health", "GET", lambda: health(s), auth=False)
    app.route("/metrics", "GET", lambda: metrics(s))
    app.route("/openapi.json", "GET", lambda: json_response(200, document()))
    app.route("/domain", "POST", lambda: create_domain(s))
    app.route("/domains", "GET", lambda: list_domains(s))
    app.route("/domains/<name>", "GET", lambda name: get_domain(s, name))
    app.route("/domains/<name>", "DELETE", lambda name: delete_domain(s, name))
    app.route("/hosts", "GET", lambda: json_response(200, {"hosts": s.placement.hosts_view()}))
    app.route("/run", "POST", lambda: run(s))
    app.route("/runs/<run_id>", "GET", lambda run_id: json_response(200, s.runs.get(run_id).to_dict()))
    app.route("/runs/<run_id>/algorithm", "POST", lambda run_id: upload(s, run_id, runs.ALGORITHM))
    app.route("/runs/<run_id>/datasets", "POST", lambda run_id: upload(s, run_id, runs.DATASET))
    app.route("/runs/<run_id>/result", "GET", lambda run_id: result(s, run_id))
    app.route("/runs/<run_id>/attestation", "POST", lambda run_id: attest(s, run_id))
    app.route("/jobs", "GET", lambda: json_response(200, {"jobs": [j.to_dict() for j in s.store.list()]}))
    app.route("/jobs/<job_id>", "GET", lambda job_id: json_response(200, _job(s, job_id).to_dict()))
    app.route("/jobs/<job_id>", "DELETE", lambda job_id: cancel_job(s, job_id))
    app.route("/jobs/<job_id>/events", "GET", lambda job_id: job_events(s, job_id))


def json_body(max_bytes: int) -> Any:
    """The request's JSON document: 415 for another media type, 413 above the limit, 400 when malformed.

    Read from the server's input stream, which cheroot has already de-chunked, so a chunked body is accepted like
    any other (Bottle's own reader would try to de-chunk it a second time).
    """
    _require_media_type("application/json")
    raw = _body_bytes(max_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: malformed JSON: {exc}", field="body") from None
    check_json(body)
    return body


def _body_bytes(max_bytes: int) -> bytes:
    stream = bottle.request.environ["wsgi.input"]
    if bottle.request.get_header("Content-Length") is None:  # chunked: read one byte past the limit at most
        content = _read_up_to(stream, max_bytes + 1)
    else:
        length = bottle.request.content_length
        if length > max_bytes:
            raise ApiError(413, f"request body of {length} bytes exceeds the limit of {max_bytes} bytes", field="body")
        content = _read_up_to(stream, length)
        if len(content) < length:
            raise ApiError(400, f"body: {len(content)} of {length} bytes arrived", field="body")
    if len(content) > max_bytes:
        raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes", field="body")
    return content


def raw_body(max_bytes: int) -> bytes:
    """An upload's bytes, read straight from the server's input stream into one bytes object.

    Bottle's request.body would first copy the whole body into a BytesIO or a temp file; the agent API takes one
    message, so the least we can hold is the upload itself, once. 415 for another media type, 413 above the limit
    (refused from Content-Length before anything is read).
    """
    _require_media_type(OCTET_STREAM)
    content = _body_bytes(max_bytes)
    if not content:
        raise ApiError(400, "body: empty upload", field="body")
    return content


def _require_media_type(expected: str) -> None:
    ctype = bottle.request.content_type.split(";")[0].strip().lower()
    if ctype != expected:
        raise ApiError(415, f"Content-Type must be {expected}, got {ctype or 'none'!r}")


def _read_up_to(stream: Any, limit: int) -> bytes:
    try:
        return _read_chunks(stream, limit)
    except ValueError as exc:  # cheroot's verdict on a malformed chunked body
        raise ApiError(400, f"body: {exc}", field="body") from None


def _read_chunks(stream: Any, limit: int) -> bytes:
    first = stream.read(limit)  # normally everything at once, without a join
    if len(first) == limit or not first:
        return first
    parts = [first]
    size = len(first)
    while size < limit:
        part = stream.read(min(limit - size, 1 << 20))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _flag(name: str) -> bool:
    return bottle.request.query.get(name, "").lower() in ("1", "true", "yes")


def health(s: Services) -> bottle.HTTPResponse:
    info = {k: v for k, v in s.build.items() if k != "started"}
    return json_response(200, {"status": "pass", **info}, content_type=HEALTH_TYPE)


def metrics(s: Services) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(body=s.metrics.render(), status=200, headers={"Content-Type": CONTENT_TYPE})


def create_domain(s: Services) -> bottle.HTTPResponse:
    body = schemas.validate(schemas.DOMAIN, json_body(s.config.max_body_bytes))
    args = (body.get("pool", ""), body.get("volume", ""), body.get("domain", ""), body.get("host"), body.get("ttl"))
    if _flag("async"):
        return _accepted(s.domains.create(*args)[0])
    with s.waiters.enter():  # a synchronous request holds a thread for the whole job: bounded
        job, _ = s.domains.create(*args)
        return _job_outcome(s, job, lambda: {"name": job.result or job.target, "host": job.details["host"]})


def _host_param() -> str | None:
    """The optional ?host= of the domain routes: which host's domain of that name is meant."""
    return bottle.request.query.get("host") or None


def delete_domain(s: Services, name: str) -> bottle.HTTPResponse:
    check_domain_name(name)
    if _flag("async"):
        return _accepted(s.domains.delete(name, _host_param())[0])
    with s.waiters.enter():
        job, _ = s.domains.delete(name, _host_param())
        return _job_outcome(s, job, lambda: {"name": name, "host": job.details["host"], "deleted": True})


def _accepted(job: jobs.Job) -> bottle.HTTPResponse:
    """?async=true: 202 with the job at once."""
    resp = json_response(202, {**job.to_dict(), "links": {"self": f"/jobs/{job.id}",
                                                          "events": f"/jobs/{job.id}/events"}})
    resp.set_header("Location", f"/jobs/{job.id}")
    return resp


def _job_outcome(s: Services, job: jobs.Job, success: Callable[[], dict]) -> bottle.HTTPResponse:
    """Wait for the job and answer like the original manager."""
    if not s.domains.wait(job):
        raise ApiError(504, f"job {job.id} still {job.state} after {s.config.domain_timeout:g} s", job_id=job.id)
    if job.state == jobs.SUCCESSFUL:
        return json_response(200, success())
    if job.state == jobs.CANCELED:
        raise ApiError(409, f"job {job.id} was canceled", job_id=job.id)
    raise ApiError(500, f"{job.kind} failed: {job.error}", job_id=job.id)


def list_domains(s: Services) -> bottle.HTTPResponse:
    domains, unreachable = s.domains.all_domains()
    return json_response(200, {"domains": domains, "unreachable_hosts": unreachable})


def get_domain(s: Services, name: str) -> bottle.HTTPResponse:
    return json_response(200, s.domains.get(check_text("name", name), _host_param()))


def run(s: Services) -> bottle.HTTPResponse:
    run_id = s.runs.run(json_body(s.config.max_body_bytes))
    return json_response(200, {"id": run_id})


def upload(s: Services, run_id: str, kind: str) -> bottle.HTTPResponse:
    s.runs.get(run_id)  # an unknown run is a 404 before its upload is read
    content_id = s.runs.upload(run_id, kind, raw_body(s.config.max_upload_bytes))
    return json_response(200, {"id": content_id, "kind": kind, "run": s.runs.get(run_id).to_dict()})


def result(s: Services, run_id: str) -> bottle.HTTPResponse:
    file = s.runs.result(run_id)
    return bottle.HTTPResponse(body=file, status=200, headers={
        "Content-Type": OCTET_STREAM, "Content-Length": str(len(file)), "X-Request-Id": request_id(),
        "Content-Disposition": f'attachment; filename="result-{run_id}"'})


def attest(s: Services, run_id: str) -> bottle.HTTPResponse:
    """The run's vTPM evidence and verdict; body optional: {"nonce": "<hex>"}, else the manager draws one."""
    nonce = None
    if bottle.request.content_length or bottle.request.get_header("Transfer-Encoding"):
        body = json_body(s.config.max_body_bytes)
        if not isinstance(body, dict) or set(body) - {"nonce"}:
            raise ApiError(400, 'body: expected {"nonce": "<hex>"} or no body', field="body")
        if "nonce" in body:
            try:
                nonce = bytes.fromhex(body["nonce"])
            except (TypeError, ValueError):
                raise ApiError(400, "nonce: must be a hex string", field="nonce") from None
    return json_response(200, attestation.attest_run(s.runs, run_id, nonce).to_dict())


def _job(s: Services, job_id: str) -> jobs.Job:
    job = s.store.get(job_id)
    if job is None:
        raise ApiError(404, "no such job", field="id")
    return job


def cancel_job(s: Services, job_id: str) -> bottle.HTTPResponse:
    job = _job(s, job_id)
    if job.done:
        raise ApiError(409, f"job {job_id} already {job.state}", job_id=job_id)
    s.store.cancel(job)
    return json_response(202, job.to_dict())


def job_events(s: Services, job_id: str) -> Iterator[str]:
    job = _job(s, job_id)
    after = bottle.request.get_header("Last-Event-ID", "") or bottle.request.query.get("after", "0")
    if not after.isdigit():
        raise ApiError(400, "Last-Event-ID / after must be a non-negative integer", field="after")
    slot = s.streams.enter()
    slot.__enter__()  # held while the stream runs: released when the generator ends or is closed
    bottle.response.content_type = "text/event-stream"
    bottle.response.set_header("Cache-Control", "no-cache")
    bottle.response.set_header("X-Accel-Buffering", "no")
    return _sse(job, int(after), lambda: slot.__exit__(None, None, None))


def _sse(job: jobs.Job, after: int, release: Callable[[], Any]) -> Iterator[str]:
    try:
        yield "retry: 2000\n\n"
        for event in job.follow(after):
            if event is None:
                yield f": keep-alive {time.time():.0f}\n\n"
                continue
            yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
        yield f"event: end\ndata: {json.dumps(job.to_dict())}\n\n"
    finally:
        release()
