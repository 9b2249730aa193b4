"""OpenAPI 3.1 document of the HTTP API; tests/unit/test_manager_openapi.py keeps it equal to the real routes."""
from __future__ import annotations

from manager_api import __version__, schemas

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JOB = {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
_ASYNC = {"name": "async", "in": "query", "schema": {"type": "boolean"},
          "description": "answer 202 with the job at once instead of waiting"}


def _ok(description: str, schema: dict | None = None, ctype: str = "application/json") -> dict:
    return {"description": description, "content": {ctype: {"schema": schema or {"type": "object"}}}}


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


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
                      "202": _JOB, "400": _ERROR, "404": _ERROR, "413": _ERROR, "415": _ERROR, "500": _ERROR}}},
    "/domains": {"get": {"summary": "All libvirt domains", "responses": {"200": _ok("domains")}}},
    "/domains/{name}": {
        "parameters": [_path_param("name")],
        "get": {"summary": "One domain", "responses": {"200": _ok("domain"), "404": _ERROR}},
        "delete": {"summary": "Remove a domain with its storage", "parameters": [_ASYNC],
                   "responses": {"200": _ok("deleted"), "202": _JOB, "404": _ERROR, "500": _ERROR}}},
    "/run": {"post": {
        "summary": "Forward a computation run to the agent", "requestBody": _json_body(schemas.RUN),
        "responses": {"200": _ok("run accepted", {"type": "object", "properties": {"id": {"type": "string"}}}),
                      "400": _ERROR, "413": _ERROR, "415": _ERROR, "502": _ERROR, "503": _ERROR}}},
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
        "Job": {"type": "object", "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "target": {"type": "string"},
            "state": {"enum": ["queued", "running", "successful", "failed", "canceled"]},
            "changed": {"type": "integer"}, "error": {"type": "string"}, "result": {"type": "string"}}},
    },
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
}


def document() -> dict:
    return {"openapi": "3.1.0",
            "info": {"title": "Cocos AI manager", "version": __version__},
            "security": [{"bearer": []}],
            "paths": PATHS, "components": COMPONENTS}
