"""OpenAPI 3.1 document of the HTTP API; tests/unit/test_manager_openapi.py keeps it equal to the real routes."""
from __future__ import annotations

from manager_api import __version__, schemas

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JOB = {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
_ASYNC = {"name": "async", "in": "query", "schema": {"type": "boolean"},
          "description": "answer 202 with the job at once instead of waiting"}
_RUN = {"description": "the run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}}
_RAW_BODY = {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}}
_UPLOADED = {"description": "uploaded: the agent's content id (sha256) and the run",
             "content": {"application/json": {"schema": {"type": "object", "properties": {
                 "id": {"type": "string"}, "kind": {"type": "string"},
                 "run": {"$ref": "#/components/schemas/Run"}}}}}}
# The agent's gRPC status, faithfully: INVALID_ARGUMENT 400, FAILED_PRECONDITION / ALREADY_EXISTS 409 (out of
# order, duplicate, or a run replaced by a newer one on its agent), RESOURCE_EXHAUSTED 413, ABORTED 422 (the
# algorithm failed; message has its exit status and stderr tail), UNAVAILABLE 503, DEADLINE_EXCEEDED 504 (ttl).
_AGENT_ERRORS = {code: _ERROR for code in ("400", "404", "409", "413", "415", "422", "502", "503", "504")}


def _ok(description: str, schema: dict | None = None, ctype: str = "application/json") -> dict:
    return {"description": description, "content": {ctype: {"schema": schema or {"type": "object"}}}}


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_HOST = {"name": "host", "in": "query", "schema": {"type": "string"},
         "description": "the inventory host whose domain of that name is meant (needed only when several have one)"}


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


PATHS = {
    "/health": {"get": {"summary": "Liveness and build information", "security": [],
                        "responses": {"200": _ok("healthy", ctype="application/health+json")}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": _ok("metrics", {"type": "string"},
                                                                                    "text/plain")}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _ok("OpenAPI document")}}},
    "/domain": {"post": {
        "summary": "Create (or reuse) a domain from pool, volume and domain XML files in CC_MANAGER_XML_DIR",
        "parameters": [_ASYNC], "requestBody": _json_body(schemas.DOMAIN),
        "responses": {"200": _ok("domain converged", {"type": "object", "properties": {"name": {"type": "string"}}}),
                      "202": _JOB, "400": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR, "415": _ERROR,
                      "500": _ERROR, "503": _ERROR},
        "description": "Placed on `host`, else on the reachable host with the most uncommitted memory that has room; "
                       "the agent forward gets a free port of the host's range. 400 also when a definition breaks the "
                       "XML policy (SECURITY.md); 409 when a job for that domain runs from another definition, or the "
                       "domain is on another host; 503 with Retry-After when a bound is reached or the host is "
                       "unreachable (the body's `host` names it), 503 when no host has room."}},
    "/domains": {"get": {"summary": "The domains of every host, each with its host; unreachable hosts are listed",
                         "responses": {"200": _ok("domains", {"type": "object", "properties": {
                             "domains": {"type": "array", "items": {"$ref": "#/components/schemas/Domain"}},
                             "unreachable_hosts": {"type": "array", "items": {"type": "string"}}}}),
                             "503": _ERROR}}},
    "/domains/{name}": {
        "parameters": [_path_param("name"), _HOST],
        "get": {"summary": "One domain", "responses": {"200": _ok("domain", {"$ref": "#/components/schemas/Domain"}),
                                                       "404": _ERROR, "409": _ERROR, "503": _ERROR}},
        "delete": {"summary": "Remove a domain with its storage", "parameters": [_ASYNC],
                   "responses": {"200": _ok("deleted"), "202": _JOB, "400": _ERROR, "404": _ERROR, "409": _ERROR,
                                 "500": _ERROR, "503": _ERROR}}},
    "/hosts": {"get": {"summary": "The inventory's hosts with health, capacity and VM count",
                       "responses": {"200": _ok("hosts", {"type": "object", "properties": {
                           "hosts": {"type": "array", "items": {"$ref": "#/components/schemas/Host"}}}})}}},
    "/run": {"post": {
        "summary": "Forward a computation run to the agent", "requestBody": _json_body(schemas.RUN),
        "description": "The agent is the `domain`'s forward of guest port 7002 when given, else the most recently "
                       "created domain's, else CC_MANAGER_AGENT_GRPC_URL.",
        "responses": {"200": _ok("run accepted", {"type": "object", "properties": {"id": {"type": "string"}}}),
                      "400": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR, "415": _ERROR, "502": _ERROR,
                      "503": _ERROR}}},
    "/runs/{run_id}": {
        "parameters": [_path_param("run_id")],
        "get": {"summary": "A run: its agent, state, uploads and result size",
                "responses": {"200": _RUN, "404": _ERROR}}},
    "/runs/{run_id}/algorithm": {
        "parameters": [_path_param("run_id")],
        "post": {"summary": "Forward the algorithm (raw bytes) to the run's agent", "requestBody": _RAW_BODY,
                 "responses": {"200": _UPLOADED, **_AGENT_ERRORS}}},
    "/runs/{run_id}/datasets": {
        "parameters": [_path_param("run_id")],
        "post": {"summary": "Forward one dataset (raw bytes) to the run's agent; datasets reach the algorithm in "
                            "upload order", "requestBody": _RAW_BODY,
                 "responses": {"200": _UPLOADED, **_AGENT_ERRORS}}},
    "/runs/{run_id}/result": {
        "parameters": [_path_param("run_id")],
        "get": {"summary": "The result file; the first request runs the algorithm (up to the run's ttl)",
                "responses": {"200": _ok("result bytes", {"type": "string", "format": "binary"},
                                         "application/octet-stream"), **_AGENT_ERRORS}}},
    "/runs/{run_id}/attestation": {
        "parameters": [_path_param("run_id")],
        "post": {"summary": "The run's vTPM quote for a fresh nonce, and the manager's verdict on it",
                 "description": "Body optional: {\"nonce\": \"<hex, 16 to 32 bytes>\"}; without it the manager "
                                "draws 32 random bytes. 200 whatever the verdict (`verified`, `checks`); 409 when "
                                "the agent has no TPM or the run was replaced. docs/ATTESTATION.md.",
                 "requestBody": {"required": False, "content": {"application/json": {"schema": {
                     "type": "object", "additionalProperties": False,
                     "properties": {"nonce": {"type": "string", "pattern": "^([0-9a-fA-F]{2}){16,32}$"}}}}}},
                 "responses": {"200": _ok("evidence and verdict", {"$ref": "#/components/schemas/Attestation"}),
                               **_AGENT_ERRORS}}},
    "/jobs": {"get": {"summary": "Known jobs", "responses": {"200": _ok("jobs")}}},
    "/jobs/{job_id}": {
        "parameters": [_path_param("job_id")],
        "get": {"summary": "One job", "responses": {"200": _JOB, "404": _ERROR}},
        "delete": {"summary": "Cancel a job", "responses": {"202": _JOB, "404": _ERROR, "409": _ERROR}}},
    "/jobs/{job_id}/events": {
        "parameters": [_path_param("job_id")],
        "get": {"summary": "The job's events as Server-Sent Events, ending when the job is final",
                "responses": {"200": _ok("event stream", {"type": "string"}, "text/event-stream"), "404": _ERROR}}},
}

COMPONENTS = {
    "schemas": {
        "Error": {"type": "object", "required": ["error", "status"],
                  "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                                 "field": {"type": "string"}, "request_id": {"type": "string"}}},
        "Domain": {"type": "object", "properties": {
            "name": {"type": "string"}, "uuid": {"type": "string"},
            "state": {"type": "string", "description": "libvirt's state; `unknown` while its host is unreachable"},
            "forwarded_ports": {"type": "array", "items": {"type": "object"}},
            "host": {"type": "string"}, "agent_port": {"type": ["integer", "null"]},
            "ttl": {"type": ["integer", "null"]},
            "expires_at": {"type": ["number", "null"], "description": "when the manager removes it (Unix time)"}}},
        "Host": {"type": "object", "properties": {
            "name": {"type": "string"}, "health": {"enum": ["reachable", "unreachable", "unknown"]},
            "error": {"type": "string"}, "checked_at": {"type": ["number", "null"]},
            "agent_address": {"type": "string"}, "vms": {"type": "integer"}, "max_vms": {"type": "integer"},
            "domains": {"type": ["integer", "null"], "description": "all libvirt domains on the host"},
            "memory": {"type": ["object", "null"], "description": "bytes: total, committed, free, available"},
            "agent_ports": {"type": "object", "description": "first, last, used"}}},
        "Job": {"type": "object", "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "target": {"type": "string"},
            "host": {"type": "string"},
            "state": {"enum": ["queued", "running", "successful", "failed", "canceled"]},
            "changed": {"type": "integer"}, "error": {"type": "string"}, "result": {"type": "string"}}},
        "Run": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "agent": {"type": "string", "description": "host:port the run was forwarded to"},
            "domain": {"type": "string", "description": "the domain that agent runs in, empty for the configured URL"},
            "host": {"type": "string", "description": "the host that domain is on"},
            "state": {"enum": ["forwarded", "receiving", "running", "complete", "failed", "superseded"]},
            "algorithm": {"type": "string"}, "datasets": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string"}, "result_bytes": {"type": ["integer", "null"]},
            "superseded_by": {"type": "string"}}},
        "Attestation": {"type": "object", "properties": {
            "run": {"type": "string"}, "verified": {"type": "boolean"},
            "nonce": {"type": "string", "description": "hex"}, "nonce_source": {"enum": ["client", "manager"]},
            "checks": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"enum": ["signature", "nonce", "pcr_digest", "measurements"]}, "ok": {"type": "boolean"},
                "detail": {"type": "string"}}}},
            "expected": {"type": "object", "description": "PCR 23 recomputed from what the manager sent"},
            "evidence": {"type": "object", "description": "the agent's quote: TPM structures in base64, PCRs in hex"},
            "not_established": {"type": "array", "items": {"type": "string"}}}},
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
}


def document() -> dict:
    return {"openapi": "3.1.0",
            "info": {"title": "Cocos AI manager", "version": __version__},
            "security": [{"bearer": []}],
            "paths": PATHS, "components": COMPONENTS}
