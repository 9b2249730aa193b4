"""A small HTTP client of the manager's API (standard library only), for scripts, the demo and the benchmarks.

Errors come back as ManagerError carrying the JSON error body the manager sent, so callers can check the status
and the agent's code instead of parsing text.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

OCTET_STREAM = "application/octet-stream"
# The manager is addressed directly: a proxy from the environment must never see (or reroute) its traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ManagerError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body if isinstance(body, dict) else {"error": str(body)}


class ManagerClient:
    def __init__(self, base: str, token: str | None = None, timeout: float = 900.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def create_domain(self, pool: str = "", volume: str = "", domain: str = "") -> str:
        return self._json("POST", "/domain", {"pool": pool, "volume": volume, "domain": domain})["name"]

    def domain(self, name: str) -> dict:
        return self._json("GET", f"/domains/{name}")

    def delete_domain(self, name: str) -> dict:
        return self._json("DELETE", f"/domains/{name}")

    def run(self, body: dict) -> str:
        return self._json("POST", "/run", body)["id"]

    def run_status(self, run_id: str) -> dict:
        return self._json("GET", f"/runs/{run_id}")

    def upload_algorithm(self, run_id: str, content: bytes) -> str:
        return self._json("POST", f"/runs/{run_id}/algorithm", raw=content)["id"]

    def upload_dataset(self, run_id: str, content: bytes) -> str:
        return self._json("POST", f"/runs/{run_id}/datasets", raw=content)["id"]

    def result(self, run_id: str) -> bytes:
        return self._send("GET", f"/runs/{run_id}/result")

    def attest(self, run_id: str, nonce: bytes | None = None) -> dict:
        """POST /runs/{id}/attestation: evidence and verdict; `nonce` None lets the manager draw one."""
        return self._json("POST", f"/runs/{run_id}/attestation", None if nonce is None else {"nonce": nonce.hex()})

    def _json(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        return json.loads(self._send(method, path, body, raw))

    def _send(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> bytes:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = raw
        if raw is not None:
            headers["Content-Type"] = OCTET_STREAM
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                decoded: Any = json.loads(payload)
            except ValueError:
                decoded = payload.decode(errors="replace")
            raise ManagerError(err.code, decoded) from None
