"""Prometheus text exposition of request counts and latencies per method, without a client library."""
from __future__ import annotations

import threading
from collections import defaultdict

from manager_api import jobs


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[tuple, int] = defaultdict(int)
        self._seconds: dict[tuple, float] = defaultdict(float)

    def observe(self, protocol: str, method: str, route: str, status: str, seconds: float) -> None:
        with self._lock:
            self._count[(protocol, method, route, status)] += 1
            self._seconds[(protocol, method, route)] += seconds

    def render(self, store: jobs.JobStore) -> str:
        lines = [
            "# HELP cocos_manager_requests_total Requests served, by protocol, method, route and status.",
            "# TYPE cocos_manager_requests_total counter",
        ]
        with self._lock:
            counts, seconds = dict(self._count), dict(self._seconds)
        for (proto, method, route, status), n in sorted(counts.items()):
            lines.append(f'cocos_manager_requests_total{{protocol="{proto}",method="{method}",route="{_esc(route)}",'
                         f'status="{status}"}} {n}')
        lines += ["# HELP cocos_manager_request_duration_seconds Time spent serving requests.",
                  "# TYPE cocos_manager_request_duration_seconds summary"]
        totals: dict[tuple, int] = defaultdict(int)
        for (proto, method, route, _status), n in counts.items():
            totals[(proto, method, route)] += n
        for key, total in sorted(seconds.items()):
            labels = f'protocol="{key[0]}",method="{key[1]}",route="{_esc(key[2])}"'
            lines.append(f"cocos_manager_request_duration_seconds_sum{{{labels}}} {total:.6f}")
            lines.append(f"cocos_manager_request_duration_seconds_count{{{labels}}} {totals[key]}")
        lines += ["# HELP cocos_manager_jobs Jobs known to the manager, by state.", "# TYPE cocos_manager_jobs gauge"]
        by_state = {state: 0 for state in jobs.STATES}
        for job in store.list():
            by_state[job.state] += 1
        lines += [f'cocos_manager_jobs{{state="{state}"}} {n}' for state, n in by_state.items()]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
