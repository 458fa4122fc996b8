"""Gateway metric **definitions**; recording happens where the work is done.

Everything is registered in the ``CollectorRegistry`` passed in (never the
global one). Labels are bounded: kinds, precedences, reasons and outcomes
are enums; no message ids, no free text.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class GatewayMetrics:
    intake: Counter
    intake_refusals: Counter
    intake_seconds: Histogram
    sent: Counter
    produce_errors: Counter
    outbox_messages: Gauge
    outbox_bytes: Gauge
    outbox_oldest_age: Gauge
    inbound: Counter
    verification_failures: Counter
    status_notices: Counter
    receipts_received: Counter
    receipts_refused: Counter
    stage_seconds: Histogram
    broker_up: Gauge
    directory_stations: Gauge
    directory_serial: Gauge
    directory_updates: Counter
    directory_manifest_version: Gauge
    directory_manifest_expiry_seconds: Gauge
    directory_withheld_stations: Gauge
    undelivered_oldest_age: Gauge
    consumer_lag: Gauge
    inbox_unacked: Gauge
    auth_failures: Counter
    integrator_messages: Counter
    integrator_refusals: Counter
    integrators: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> GatewayMetrics:
        r = registry
        return cls(
            intake=Counter(
                "i24net_gateway_intake",
                "Messages submitted by integrators, by kind, precedence and outcome "
                "(accepted, duplicate, refused)",
                ["kind", "precedence", "outcome"],
                registry=r,
            ),
            intake_refusals=Counter(
                "i24net_gateway_intake_refusals",
                "Submissions refused at the API, by reason",
                ["reason"],
                registry=r,
            ),
            intake_seconds=Histogram(
                "i24net_gateway_intake_seconds",
                "Time to validate, seal and durably store one submission",
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            sent=Counter(
                "i24net_gateway_messages_sent",
                "Envelopes acknowledged by Kafka on the station's out topic",
                ["kind", "precedence"],
                registry=r,
            ),
            produce_errors=Counter(
                "i24net_gateway_produce_errors",
                "Failed produce rounds (the batch is retried)",
                registry=r,
            ),
            outbox_messages=Gauge(
                "i24net_gateway_outbox_messages", "Envelopes waiting to be sent", registry=r
            ),
            outbox_bytes=Gauge(
                "i24net_gateway_outbox_bytes",
                "Bytes of envelopes waiting to be sent (the disk bound applies to this)",
                registry=r,
            ),
            outbox_oldest_age=Gauge(
                "i24net_gateway_outbox_oldest_age_seconds",
                "Age of the oldest envelope waiting to be sent (0 when none)",
                registry=r,
            ),
            inbound=Counter(
                "i24net_gateway_inbound",
                "Records read from the station's in topic, by kind and outcome "
                "(stored, duplicate, rejected)",
                ["kind", "outcome"],
                registry=r,
            ),
            verification_failures=Counter(
                "i24net_gateway_verification_failures",
                "Inbound envelopes refused, by reason (kept in the rejected table)",
                ["reason"],
                registry=r,
            ),
            status_notices=Counter(
                "i24net_gateway_status_notices",
                "Status notices received from the router, by status",
                ["status"],
                registry=r,
            ),
            receipts_received=Counter(
                "i24net_gateway_receipts_received",
                "Delivery receipts received for messages this station sent, by outcome",
                ["outcome"],
                registry=r,
            ),
            receipts_refused=Counter(
                "i24net_gateway_receipts_refused",
                "Delivery receipts not applied, by reason: receipt_not_delivered (from a "
                "station the router did not deliver to), receipt_pending_full (no room to "
                "wait for the DELIVERED notice)",
                ["reason"],
                registry=r,
            ),
            stage_seconds=Histogram(
                "i24net_gateway_stage_seconds",
                "Latency of each stage: intake_to_sent (this gateway), sent_to_routed (Kafka "
                "ack here to the router's decision, from its status notice), routed_to_stored "
                "and end_to_end (created at the sender to stored here)",
                ["stage"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            broker_up=Gauge(
                "i24net_gateway_broker_up",
                "1 when the producer's last round succeeded, 0 while it retries",
                registry=r,
            ),
            directory_stations=Gauge(
                "i24net_gateway_directory_stations",
                "Stations in the loaded, verified directory",
                registry=r,
            ),
            directory_serial=Gauge(
                "i24net_gateway_directory_serial",
                "Highest record serial in the loaded, verified directory (grows with each change)",
                registry=r,
            ),
            directory_updates=Counter(
                "i24net_gateway_directory_updates",
                "Entries read from the directory topic (follow_topic), by outcome (applied, "
                "unchanged, superseded, rollback, equivocation, bad_signature, malformed, "
                "tombstone, manifest, manifest_unchanged, manifest_rollback)",
                ["outcome"],
                registry=r,
            ),
            directory_manifest_version=Gauge(
                "i24net_gateway_directory_manifest_version",
                "Version of the newest GS-signed directory manifest accepted (0: none seen, "
                "the directory is not protected against rollback after compaction)",
                registry=r,
            ),
            directory_manifest_expiry_seconds=Gauge(
                "i24net_gateway_directory_manifest_expiry_seconds",
                "Seconds until the newest directory manifest expires; negative once expired "
                "(the directory may be frozen); 0 while no manifest is known",
                registry=r,
            ),
            directory_withheld_stations=Gauge(
                "i24net_gateway_directory_withheld_stations",
                "Stations not trusted because their entry is older than the manifest names "
                "(a rollback, or the newer entry not read yet)",
                registry=r,
            ),
            undelivered_oldest_age=Gauge(
                "i24net_gateway_undelivered_oldest_age_seconds",
                "Age of the oldest message this station sent (not expired, not refused) that is "
                "not yet delivered to every recipient, by precedence (0 when none)",
                ["precedence"],
                registry=r,
            ),
            consumer_lag=Gauge(
                "i24net_gateway_consumer_lag",
                "Records in the in topic not yet processed, per partition",
                ["topic", "partition"],
                registry=r,
            ),
            inbox_unacked=Gauge(
                "i24net_gateway_inbox_unacked",
                "Stored inbound messages not yet acknowledged by the integrator",
                registry=r,
            ),
            auth_failures=Counter(
                "i24net_gateway_auth_failures",
                "API requests refused 401, by AuthFailure reason (missing, malformed, unknown, "
                "bad_token, expired, revoked, cert_mismatch)",
                ["reason"],
                registry=r,
            ),
            integrator_messages=Counter(
                "i24net_gateway_integrator_messages",
                "Messages accepted from each integrator (label: its name in the integrator "
                "store, so bounded by the store)",
                ["integrator"],
                registry=r,
            ),
            integrator_refusals=Counter(
                "i24net_gateway_integrator_refusals",
                "Authenticated requests refused: forbidden (outside the integrator's scopes, "
                "403) or rate_limited (429)",
                ["integrator", "reason"],
                registry=r,
            ),
            integrators=Gauge(
                "i24net_gateway_integrators",
                "Integrators in the store, by state (active, expired, revoked)",
                ["state"],
                registry=r,
            ),
        )
