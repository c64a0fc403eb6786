"""Prometheus metrics of the server (text exposition format at ``/metrics``), one registry per app.

Requests by endpoint and status, end-to-end latency and time to first token (histograms), prompt and
completion tokens, guard decisions and guard latency, and the engine's queue depth.
"""

from __future__ import annotations

from typing import Any, Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The server's counters and histograms (prometheus_client objects in a private registry)."""

    def __init__(self, queue_depth: Callable[[], float]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("slmkit_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.latency = Histogram("slmkit_request_latency_seconds", "end-to-end request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("slmkit_time_to_first_token_seconds", "time to the first streamed text",
                                     ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("slmkit_prompt_tokens", "prompt tokens of served requests", registry=r)
        self.completion_tokens = Counter("slmkit_completion_tokens", "generated tokens", registry=r)
        self.guard_checks = Counter("slmkit_guard_checks", "prompts scored by the guard", registry=r)
        self.guard_blocked = Counter("slmkit_guard_blocked", "prompts the guard refused", registry=r)
        self.guard_latency = Histogram("slmkit_guard_latency_seconds", "time to score one request's prompts",
                                       buckets=LATENCY_BUCKETS, registry=r)
        Gauge("slmkit_queue_depth", "requests waiting for the engine", registry=r).set_function(queue_depth)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def endpoint_label(path: str, known: Any) -> str:
    """A bounded label set: the known routes, everything else is 'other'."""
    return path if path in known else "other"
