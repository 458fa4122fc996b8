"""Router metric definitions (recording happens in the pipeline and app).

Registered in a **passed-in** ``CollectorRegistry``; labels are bounded:
kinds, precedences, outcomes, reasons (``Reason`` values and policy reason
codes from the policy file), rule ids, stations (bounded by the directory).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Status(enum.StrEnum):
    """``outcome`` label values."""

    DELIVERED = "delivered"
    HELD = "held"
    REFUSED = "refused"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    messages: Counter
    refusals: Counter
    holds: Counter
    verification_failures: Counter
    policy_decisions: Counter
    deliveries: Counter
    status_notices: Counter
    sent_to_routed: Histogram
    batch_seconds: Histogram
    batch_size: Histogram
    transactions: Counter
    quarantine_size: Gauge
    quarantine_oldest: Gauge
    review_overdue: Gauge
    review_decisions: Counter
    audit_chain_length: Gauge
    directory_stations: Gauge
    directory_serial: Gauge
    directory_updates: Counter
    policy_info: Gauge
    policy_reloads: Counter
    directory_manifest_version: Gauge
    directory_manifest_expiry: Gauge
    directory_withheld: Gauge
    audit_chain_problems: Gauge
    audit_verified: Gauge
    consumer_lag: Gauge
    queued: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterMetrics:
        m = cls._define(registry)
        # Bounded label sets exported from the start (0), so rules see a series at once.
        for verdict in ("approved", "rejected", "expired"):
            m.review_decisions.labels(verdict)
        m.quarantine_size.set(0)
        m.quarantine_oldest.set(0)
        m.review_overdue.set(0)
        return m

    @classmethod
    def _define(cls, registry: CollectorRegistry) -> RouterMetrics:
        r = registry
        return cls(
            messages=Counter(
                "i24net_router_messages_total",
                "Messages the router decided on, by kind, precedence and outcome",
                ["kind", "precedence", "outcome"],
                registry=r,
            ),
            refusals=Counter(
                "i24net_router_refusals_total",
                "Messages refused (to i24.dlq), by reason",
                ["reason"],
                registry=r,
            ),
            holds=Counter(
                "i24net_router_holds_total",
                "Messages held for review (to i24.quarantine), by policy reason",
                ["reason"],
                registry=r,
            ),
            verification_failures=Counter(
                "i24net_router_verification_failures_total",
                "Envelopes that failed verification, by reason and claimed station (the "
                "topic's station; on i24.out the sender hint if in the directory, else unknown)",
                ["reason", "station"],
                registry=r,
            ),
            policy_decisions=Counter(
                "i24net_router_policy_decisions_total",
                "Neutrality screen decisions, by rule and decision",
                ["rule", "decision"],
                registry=r,
            ),
            deliveries=Counter(
                "i24net_router_deliveries_total",
                "Delivery envelopes produced to i24.in.<station>",
                ["station"],
                registry=r,
            ),
            status_notices=Counter(
                "i24net_router_status_notices_total",
                "Status notices sent to senders, by status",
                ["status"],
                registry=r,
            ),
            sent_to_routed=Histogram(
                "i24net_router_sent_to_routed_seconds",
                "From the envelope's creation to the router's commit",
                ["precedence"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            batch_seconds=Histogram(
                "i24net_router_batch_seconds",
                "Time to decide and commit one transaction",
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            batch_size=Histogram(
                "i24net_router_batch_records",
                "Input records per transaction",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                registry=r,
            ),
            transactions=Counter(
                "i24net_router_transactions_total",
                "Kafka transactions, by result",
                ["result"],
                registry=r,
            ),
            quarantine_size=Gauge(
                "i24net_router_quarantine_messages",
                "Messages held and awaiting review",
                registry=r,
            ),
            quarantine_oldest=Gauge(
                "i24net_router_quarantine_oldest_hold_timestamp_seconds",
                "When the oldest undecided hold was made (0 when none)",
                registry=r,
            ),
            review_overdue=Gauge(
                "i24net_review_overdue",
                "Held messages past their review deadline ([review.deadlines]: per precedence "
                "and kind, the tighter wins)",
                registry=r,
            ),
            review_decisions=Counter(
                "i24net_router_review_decisions_total",
                "Reviewer decisions, by verdict",
                ["verdict"],
                registry=r,
            ),
            audit_chain_length=Gauge(
                "i24net_router_audit_chain_length",
                "Records in this instance's audit chain",
                ["chain"],
                registry=r,
            ),
            directory_stations=Gauge(
                "i24net_router_directory_stations",
                "Stations in the verified directory",
                registry=r,
            ),
            directory_serial=Gauge(
                "i24net_router_directory_serial",
                "Highest record serial in the verified directory (grows with each change)",
                registry=r,
            ),
            policy_info=Gauge(
                "i24net_router_policy_info",
                "The screening policy in force: 1 for its file's digest (sha256, 16 hex)",
                ["digest"],
                registry=r,
            ),
            policy_reloads=Counter(
                "i24net_router_policy_reloads",
                "Policy reloads (SIGHUP or file change), by outcome (reloaded, failed: the "
                "previous policy stays in force)",
                ["outcome"],
                registry=r,
            ),
            directory_updates=Counter(
                "i24net_router_directory_updates",
                "Values read from the directory topic, by outcome (applied, unchanged, "
                "superseded, rollback, equivocation, bad_signature, malformed, tombstone, "
                "manifest, manifest_unchanged, manifest_rollback)",
                ["outcome"],
                registry=r,
            ),
            directory_manifest_version=Gauge(
                "i24net_router_directory_manifest_version",
                "Version of the newest GS-signed directory manifest accepted (0: none seen, "
                "the directory is not protected against rollback after compaction)",
                registry=r,
            ),
            directory_manifest_expiry=Gauge(
                "i24net_router_directory_manifest_expiry_seconds",
                "Seconds until that manifest expires; negative: stale (the directory may be "
                "frozen); 0 without a manifest",
                registry=r,
            ),
            directory_withheld=Gauge(
                "i24net_router_directory_withheld_stations",
                "Stations not trusted because their entry is older than the manifest names",
                registry=r,
            ),
            audit_chain_problems=Gauge(
                "i24net_audit_chain_problems",
                "Problems found by the latest verification of i24.audit, by kind "
                "(edit, gap, reorder, duplicate, malformed, truncated)",
                ["kind"],
                registry=r,
            ),
            audit_verified=Gauge(
                "i24net_router_audit_verified_timestamp_seconds",
                "When the latest verification of i24.audit finished (0 before the first)",
                registry=r,
            ),
            consumer_lag=Gauge(
                "i24net_router_consumer_lag_records",
                "Records behind the end of each assigned i24.out partition",
                ["topic", "partition"],
                registry=r,
            ),
            queued=Gauge(
                "i24net_router_queued_records",
                "Records fetched and waiting in the fair scheduler",
                registry=r,
            ),
        )
