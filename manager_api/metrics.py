"""Prometheus metrics through prometheus_client, with label values from bounded sets only.

Label values come from what the manager serves, never from the request as sent: an HTTP request is labelled with
its route's rule ("unmatched" when no route matched) and a known method ("other" otherwise); a gRPC call with its
full method name when a registered service has it, else "unknown". So a client cannot grow /metrics by inventing
paths or method names.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Summary, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from manager_api import jobs

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
UNKNOWN_METHOD = "unknown"
disable_created_metrics()  # the *_created series would double the exposition and say nothing the start time doesn't


class _JobStates(Collector):
    def __init__(self, states: Callable[[], Iterable[str]]) -> None:
        self.states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("cocos_manager_jobs", "Jobs known to the manager, by state.", labels=["state"])
        counts = {state: 0 for state in jobs.STATES}
        for state in self.states():
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


class _Hosts(Collector):
    """Per inventory host (a bounded label set): whether it is reachable, and the VMs the manager placed there."""

    def __init__(self, hosts: Callable[[], Iterable[dict]]) -> None:
        self.hosts = hosts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily("cocos_manager_host_up", "1 when the host's last health check succeeded in time.",
                               labels=["host"])
        vms = GaugeMetricFamily("cocos_manager_host_vms", "VMs the manager placed on the host.", labels=["host"])
        for host in self.hosts():
            up.add_metric([host["name"]], 1 if host["health"] == "reachable" else 0)
            vms.add_metric([host["name"]], host["vms"])
        yield up
        yield vms


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.grpc_methods: frozenset[str] = frozenset()
        self._requests = Counter("cocos_manager_requests", "Requests served, by protocol, method, route and status.",
                                 ["protocol", "method", "route", "status"], registry=self.registry)
        self._seconds = Summary("cocos_manager_request_duration_seconds", "Time spent serving requests.",
                                ["protocol", "method", "route"], registry=self.registry)
        self._refused = Counter("cocos_manager_refused", "Requests refused at once because a bound was reached.",
                                ["what"], registry=self.registry)
        self._store: jobs.JobStore | None = None

    def watch_jobs(self, store: jobs.JobStore) -> None:
        self._store = store
        self.registry.register(_JobStates(lambda: (job.state for job in store.list())))

    def watch_hosts(self, hosts: Callable[[], Iterable[dict]]) -> None:
        """hosts: GET /hosts' entries (PlacementService.hosts_view), read at each scrape."""
        self.registry.register(_Hosts(hosts))

    def observe(self, protocol: str, method: str, route: str, status: str, seconds: float) -> None:
        """route: an HTTP route rule or a gRPC full method name; anything else is folded into one value."""
        if protocol == "grpc":
            route = route if route in self.grpc_methods else UNKNOWN_METHOD
        elif method not in HTTP_METHODS:
            method = "other"
        self._requests.labels(protocol, method, route, status).inc()
        self._seconds.labels(protocol, method, route).observe(seconds)

    def refused(self, what: str) -> None:
        self._refused.labels(what).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
