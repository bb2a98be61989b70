"""Prometheus collectors of webhook delivery, in the default registry (the metrics endpoint exposes them).

* ``berth_webhooks_events_total{endpoint,outcome}``: ``queued`` (written to the
  outbox for this endpoint), ``delivered``, ``deadlettered``, ``filtered``;
* ``berth_webhooks_attempts_failed_total{endpoint}``: failed delivery attempts;
* ``berth_webhooks_responses_total{endpoint,code}``: HTTP status codes received;
* ``berth_webhooks_pending{endpoint}``: events waiting for delivery;
* ``berth_webhooks_last_success_timestamp_seconds{endpoint}``;
* ``berth_webhooks_delivery_seconds{endpoint}``: request latency of attempts;
* ``berth_webhooks_publish_seconds``: time to make a batch of events durable.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("berth_webhooks_events", "Webhook events by endpoint and outcome.", ["endpoint", "outcome"])
FAILED_ATTEMPTS = Counter("berth_webhooks_attempts_failed", "Failed webhook delivery attempts.", ["endpoint"])
RESPONSES = Counter("berth_webhooks_responses", "HTTP responses from webhook endpoints.", ["endpoint", "code"])
PENDING = Gauge("berth_webhooks_pending", "Webhook events waiting for delivery.", ["endpoint"])
LAST_SUCCESS = Gauge("berth_webhooks_last_success_timestamp_seconds",
                     "Unix time of the last successful delivery.", ["endpoint"])
DELIVERY_SECONDS = Histogram("berth_webhooks_delivery_seconds", "Webhook delivery attempt latency.", ["endpoint"])
PUBLISH_SECONDS = Histogram("berth_webhooks_publish_seconds", "Time to make a batch of events durable.",
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
