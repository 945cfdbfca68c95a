"""Prometheus metrics on a registry of the app's own, so two apps in one process do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "egw_http_requests", "HTTP requests served", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "egw_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.emr_errors = Counter("egw_emr_errors", "EMR errors by kind", ["emr", "kind"], registry=self.registry)
        self.location_emr_up = Gauge(
            "egw_location_emr_up",
            "1 when the location's last EMR check succeeded, 0 when it failed (e.g. an expired session)",
            ["location_id", "emr"],
            registry=self.registry,
        )
        self.contract_changed = Counter(
            "egw_emr_contract_changed",
            "EMR answers that no longer decode, by the field path the adapter could not read",
            ["emr", "path"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "egw_idempotent_replays", "Responses replayed for a repeated Idempotency-Key", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
