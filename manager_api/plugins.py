"""Bottle plugins for the cross-cutting parts: request ids, bearer auth, errors as JSON."""
from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import bottle

from manager_api.agent_client import AgentError
from manager_api.domain_view import LibvirtUnavailable
from manager_api.errors import Busy, Conflict, HostUnavailable, NoRoom, RequestError, check_text

log = logging.getLogger("manager_api.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def request_id() -> str:
    return bottle.request.environ.get("cocos.request_id") or _assign_request_id()


def _assign_request_id() -> str:
    incoming = bottle.request.get_header("X-Request-Id", "")
    rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    bottle.request.environ["cocos.request_id"] = rid
    return rid


def json_response(status: int, payload: Any, content_type: str = "application/json") -> bottle.HTTPResponse:
    body = json.dumps(payload)
    return bottle.HTTPResponse(body=body, status=status,
                               headers={"Content-Type": content_type, "X-Request-Id": request_id()})


def error_body(status: int, message: str, **extra: Any) -> dict:
    return {"error": message, "status": status, "request_id": request_id(), **extra}


class RequestIdPlugin:
    """Every response carries X-Request-Id (the caller's when it is a sane token) so logs and clients agree."""

    name, api = "request_id", 2

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bottle.response.set_header("X-Request-Id", request_id())
            return callback(*args, **kwargs)
        return wrapper


class AuthPlugin:
    """With a token configured every route needs `Authorization: Bearer <token>`, except those with auth=False."""

    name, api = "auth", 2

    def __init__(self, token: str | None) -> None:
        self.token = token

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        if not self.token or route.config.get("auth") is False:
            return callback

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self._authorized(bottle.request.get_header("Authorization", "")):
                resp = json_response(401, error_body(401, "missing or wrong bearer token in Authorization header"))
                resp.set_header("WWW-Authenticate", 'Bearer realm="cocos-manager"')
                return resp
            return callback(*args, **kwargs)
        return wrapper

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        # compare_digest: the time taken must not tell an attacker how much of the token was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), str(self.token).encode())


class TextPlugin:
    """Path parameters and query values are text: NUL bytes, control characters and lone surrogates are a 400."""

    name, api = "text", 2

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for key, value in kwargs.items():
                check_text(key, value)
            for key, value in bottle.request.query.allitems():
                check_text(key, key)
                check_text(key, value)
            return callback(*args, **kwargs)
        return wrapper


class JsonErrorPlugin:
    """Our typed errors become JSON replies with the right status; a traceback only ever reaches the log."""

    name, api = "json_errors", 2

    def __init__(self, metrics: Any = None) -> None:
        self.metrics = metrics

    def apply(self, callback: Callable, route: bottle.Route) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except Conflict as exc:
                return json_response(409, error_body(409, str(exc), field=exc.field, job_id=exc.job_id))
            except RequestError as exc:
                return json_response(exc.status, error_body(exc.status, str(exc), field=exc.field))
            except Busy as exc:
                if self.metrics is not None:
                    self.metrics.refused(exc.what)
                resp = json_response(503, error_body(503, str(exc)))
                resp.set_header("Retry-After", str(exc.retry_after))
                return resp
            except HostUnavailable as exc:
                resp = json_response(503, error_body(503, str(exc), host=exc.host))
                resp.set_header("Retry-After", str(exc.retry_after))
                return resp
            except NoRoom as exc:
                return json_response(503, error_body(503, str(exc)))
            except ApiError as exc:
                return json_response(exc.status, error_body(exc.status, str(exc), **exc.extra))
            except AgentError as exc:
                return json_response(exc.http_status, error_body(exc.http_status, str(exc), agent_code=exc.code.name))
            except LibvirtUnavailable as exc:
                return json_response(503, error_body(503, str(exc)))
            except Exception:
                log.exception("unhandled error", extra={"request_id": request_id(), "route": route.rule})
                return json_response(500, error_body(500, "internal error; see the manager's log for this request id"))
        return wrapper


def install_error_handlers(app: bottle.Bottle) -> None:
    """Errors Bottle raises itself (no route, wrong method, bad body) get the same JSON shape."""
    messages = {400: "bad request", 404: "no such resource", 405: "method not allowed", 413: "request body too large",
                415: "unsupported media type", 500: "internal error"}

    def handler(err: bottle.HTTPError) -> str:
        status = err.status_code
        if status >= 500 and err.exception is not None:
            log.error("unhandled error", exc_info=err.exception, extra={"request_id": request_id()})
        message = messages.get(status, err.status_line)
        if status == 405:
            message = f"method {bottle.request.method} not allowed on {bottle.request.path}"
        elif status == 404:
            message = f"no such resource: {bottle.request.path}"
        bottle.response.content_type = "application/json"
        bottle.response.set_header("X-Request-Id", request_id())
        return json.dumps(error_body(status, message))

    for status in messages:
        app.error(status)(handler)
