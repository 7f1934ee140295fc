"""Prometheus metrics, one registry per daemon (never the global one).

Counters are bumped where things happen; gauges that mirror the store (lines
by status, alerts firing, outbox depth) are refreshed just before a scrape.
No label ever carries a secret: labels are results, reasons, notifier and
rule names, and statuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import __version__

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.info = Gauge("linqwatch_build_info", "linqwatch version", ["version"], registry=r)
        self.info.labels(version=__version__).set(1)
        self.webhooks = Counter(
            "linqwatch_webhooks", "Webhook requests by result", ["result"], registry=r
        )
        self.polls = Counter(
            "linqwatch_polls", "Polls of the Linq API by result", ["result"], registry=r
        )
        self.poll_duration = Histogram(
            "linqwatch_poll_duration_seconds",
            "Duration of a poll cycle (fetch, parse, store)",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.last_poll_success = Gauge(
            "linqwatch_last_successful_poll_timestamp_seconds",
            "When the last poll succeeded",
            registry=r,
        )
        self.transitions = Counter(
            "linqwatch_line_transitions", "Line state transitions by source", ["source"], registry=r
        )
        self.lines = Gauge("linqwatch_lines", "Monitored lines by status", ["status"], registry=r)
        self.alerts_firing = Gauge(
            "linqwatch_alerts_firing", "Firing alerts by rule", ["rule"], registry=r
        )
        self.notifications = Counter(
            "linqwatch_notifications",
            "Notification delivery attempts by notifier and result",
            ["notifier", "result", "reason"],
            registry=r,
        )
        self.given_up = Counter(
            "linqwatch_notifications_given_up",
            "Notifications handed to a fallback notifier after their own kept failing",
            ["notifier", "fallback"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "linqwatch_outbox_depth", "Notifications waiting to be sent", ["notifier"], registry=r
        )

        self.reloads = Counter(
            "linqwatch_config_reloads", "Config reloads by result", ["result"], registry=r
        )
        self.reload_ok = Gauge(
            "linqwatch_config_last_reload_successful",
            "1 if the last config reload succeeded (or none was tried), 0 if it was refused",
            registry=r,
        )
        self.reload_ok.set(1)
        self.reload_time = Gauge(
            "linqwatch_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded",
            registry=r,
        )

        self.poller_leader = Gauge(
            "linqwatch_poller_leader",
            "1 if this replica leads the polling (holds the poller lock), else 0",
            registry=r,
        )
        self.replicas = Gauge(
            "linqwatch_replicas_alive",
            "Replicas that sent a heartbeat recently (1 with SQLite)",
            registry=r,
        )

    def refresh(
        self,
        *,
        line_statuses: Iterable[str],
        firing: Mapping[str, int],
        outbox: Mapping[str, int],
        notifiers: Iterable[str],
        rules: Iterable[str],
    ) -> None:
        counts: dict[str, int] = {}
        for status in line_statuses:
            counts[status] = counts.get(status, 0) + 1
        self.lines.clear()
        for status, n in counts.items():
            self.lines.labels(status=status).set(n)
        self.alerts_firing.clear()
        for rule in rules:
            self.alerts_firing.labels(rule=rule).set(firing.get(rule, 0))
        self.outbox_depth.clear()
        for notifier in notifiers:
            self.outbox_depth.labels(notifier=notifier).set(outbox.get(notifier, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
