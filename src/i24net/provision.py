"""Provisioning: topics, per-station SCRAM credentials and ACLs, declared and converged.

``provision(conn, stations, ...)`` computes the desired state from the station
list and makes the broker match it, idempotently:

* **topics** (``docs/topics.md``): the shared ingress topic ``i24.out``
  (partitioned by sender), ``i24.in.<code>`` per station (and, while
  ``TopicPolicy.legacy_out_topics``, the old per-station ``i24.out.<code>``),
  ``i24.directory`` (log-compacted), ``i24.quarantine``, ``i24.audit``
  (one partition, kept forever), ``i24.review`` (one partition, kept as the
  audit: review claims and four-eyes proposals), ``i24.dlq``; each with its partitions,
  replication factor, ``min.insync.replicas`` and retention. Missing topics are
  created, a managed config that drifted is set back. Topics of a removed
  station are *kept* (their data is evidence); the station loses access to them.
* **credentials**: one SCRAM-SHA-512 user per station (its code) and per service
  principal (``router``, ``publisher``, ``auditor``, ``operator``), with a random
  password written to ``<credentials_dir>/<user>.password`` (mode 0600), never
  printed or logged. An existing password file is reused, so re-running changes
  nothing; ``rotate`` issues new passwords.
* **ACLs** (deny by default; ``StandardAuthorizer``):

  ==================  =============================================================
  ``User:<code>``     WRITE ``i24.out`` (and ``i24.out.<code>`` while legacy
                      topics are on), never READ it; READ ``i24.in.<code>`` and
                      ``i24.directory``; READ group ``i24.gw.<code>``;
                      WRITE/DESCRIBE transactional ids ``i24.gw.<code>.*``;
                      IDEMPOTENT_WRITE on the cluster
  ``User:router``     READ ``i24.out`` (and ``i24.out.*``); WRITE ``i24.in.*``; READ+WRITE
                      quarantine, audit, review; WRITE dlq; READ directory; groups and
                      transactional ids ``i24.router*``; IDEMPOTENT_WRITE
  ``User:publisher``  WRITE ``i24.directory`` (the GS publishes station records)
  ``User:auditor``    READ ``i24.audit`` and ``i24.directory``; groups ``i24.auditor*``
  ``User:operator``   DESCRIBE and DESCRIBE_CONFIGS on ``i24.*`` topics, groups, cluster
  ==================  =============================================================

  Provisioning owns every ACL on ``i24.*`` resources and on the cluster that
  names a ``User:`` principal other than the super users: an ACL not in the
  desired set is deleted, which is how removing a station revokes it.
* **client quotas** (``QuotaPolicy``): every station principal gets a
  ``producer_byte_rate`` (and optionally ``request_percentage``), so that on the
  shared ingress topic no station can take more than its share of the broker and
  the router (the broker delays a producer over its quota; nothing is refused).
  Provisioning owns the quotas of named ``user`` entities: a removed station's are
  deleted; service principals and super users have none.

The caller's connection must be a super user (the ``admin`` SCRAM user created
when the broker's storage is formatted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i24net.errors import BrokerAuthenticationError, BrokerError, ConfigError
from i24net.kafka.acls import (
    CLUSTER_RESOURCE,
    AclBinding,
    AclOperation,
    PatternType,
    ResourceType,
    SecurityAdmin,
    raise_for_code,
)
from i24net.kafka.admin import KafkaConnection, TopicSpec
from i24net.kafka.broker import Broker, BrokerSettings, free_port, run_sync
from i24net.kafka.security import (
    ADMIN_USER,
    Credential,
    SecuredListeners,
    check_connection,
    generate_password,
    password_file,
    read_password_file,
    secured_properties,
    write_dev_pki,
    write_password_file,
)

log = logging.getLogger(__name__)

PREFIX = "i24"
DIRECTORY_TOPIC = f"{PREFIX}.directory"
QUARANTINE_TOPIC = f"{PREFIX}.quarantine"
AUDIT_TOPIC = f"{PREFIX}.audit"
SEEN_TOPIC = f"{PREFIX}.router.seen"
REVIEW_TOPIC = f"{PREFIX}.review"
"""Review claims and four-eyes proposals (docs/review.md); one partition, kept as the audit."""
SEEN_RETENTION_MS = 8 * 86_400_000
"""The seen-id changelog outlives every message it protects: the envelope's maximum
lifetime (7 days) plus the clock skew, with a day to spare."""
DLQ_TOPIC = f"{PREFIX}.dlq"
INGRESS_TOPIC = f"{PREFIX}.out"
"""The shared ingress topic: every station's gateway writes here, partitioned by sender."""
OUT_PREFIX = f"{PREFIX}.out."
IN_PREFIX = f"{PREFIX}.in."

ROUTER = "router"
PUBLISHER = "publisher"
AUDITOR = "auditor"
OPERATOR = "operator"
SERVICE_USERS: tuple[str, ...] = (ROUTER, PUBLISHER, AUDITOR, OPERATOR)
ROUTER_GROUP_PREFIX = f"{PREFIX}.router"
AUDITOR_GROUP_PREFIX = f"{PREFIX}.auditor"

DAY_MS = 86_400_000
MAX_MESSAGE_BYTES = 2 << 20
"""``max.message.bytes`` of every i24net topic: a delivery envelope (``max_envelope``,
1 MiB + 16 KiB, docs/envelope.md) with its record headers fits, and so does every
record the router produces (it checks them against ``MAX_RECORD_BYTES``)."""
OUT_RETENTION_MS = 7 * DAY_MS
"""Ingress retention: the envelope's maximum lifetime (past it a message is expired)."""
OUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}
"""Ingress records (``i24.out``, and the legacy ``i24.out.*``) carry the broker's append
time, a time the sending station does not choose: the router decides on it whether the
sender's key was revoked (security.md)."""


def out_topic(code: str) -> str:
    return f"{OUT_PREFIX}{code}"


def in_topic(code: str) -> str:
    return f"{IN_PREFIX}{code}"


def gateway_group(code: str) -> str:
    return f"{PREFIX}.gw.{code}"


def _check_code(code: str) -> str:
    if not code or code != code.upper() or not code.replace("-", "").isalnum():
        raise ConfigError(f"{code!r} is not a station code (upper case letters, digits, '-')")
    if code.lower() in (*SERVICE_USERS, ADMIN_USER):
        raise ConfigError(f"station code {code!r} clashes with a service principal")
    return code


@dataclass(frozen=True)
class TopicPolicy:
    """Partitions, replication and retention of every i24net topic."""

    replication_factor: int = 1
    min_insync_replicas: int = 1
    ingress_partitions: int = 12
    """Partitions of ``i24.out``: the router's instances share them; a station's records
    stay in one (partitioned by sender). 12 keeps every fetch small (docs/topics.md)."""
    legacy_out_topics: bool = False
    """Also create the old per-station ``i24.out.<code>`` topics (and their WRITE ACLs)
    while gateways that write them remain (a migration from an older release:
    ``i24net provision --legacy-out-topics``, docs/topics.md). Off by default: every
    per-station topic that exists adds its partitions to each of the router's fetches."""
    out_partitions: int = 1
    in_partitions: int = 1
    quarantine_partitions: int = 1
    dlq_partitions: int = 1
    out_retention_ms: int = OUT_RETENTION_MS
    in_retention_ms: int = 14 * DAY_MS  # a gateway may be offline for days
    quarantine_retention_ms: int = 30 * DAY_MS  # held until a GS reviewer decides
    dlq_retention_ms: int = 30 * DAY_MS
    audit_retention_ms: int = -1  # the audit chain is never deleted

    @classmethod
    def for_brokers(cls, brokers: int, **overrides: Any) -> TopicPolicy:
        """Replication factor 3 and ``min.insync.replicas=2`` when there are 3+ brokers."""
        rf = min(3, max(1, brokers))
        return cls(replication_factor=rf, min_insync_replicas=2 if rf >= 3 else 1, **overrides)

    def _config(self, retention_ms: int, **extra: str) -> dict[str, str]:
        config = {
            "min.insync.replicas": str(self.min_insync_replicas),
            "retention.ms": str(retention_ms),
            "cleanup.policy": "delete",
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }
        config.update(extra)
        return config

    def topics(self, stations: Iterable[str]) -> list[TopicSpec]:
        rf = self.replication_factor
        specs = [
            TopicSpec(
                DIRECTORY_TOPIC,
                1,
                rf,
                self._config(-1, **{"cleanup.policy": "compact"}),
            ),
            TopicSpec(
                QUARANTINE_TOPIC,
                self.quarantine_partitions,
                rf,
                self._config(self.quarantine_retention_ms),
            ),
            TopicSpec(AUDIT_TOPIC, 1, rf, self._config(self.audit_retention_ms)),
            TopicSpec(SEEN_TOPIC, 1, rf, self._config(SEEN_RETENTION_MS)),
            TopicSpec(REVIEW_TOPIC, 1, rf, self._config(self.audit_retention_ms)),
            TopicSpec(DLQ_TOPIC, self.dlq_partitions, rf, self._config(self.dlq_retention_ms)),
            TopicSpec(
                INGRESS_TOPIC,
                self.ingress_partitions,
                rf,
                self._config(self.out_retention_ms, **OUT_TOPIC_CONFIG),
            ),
        ]
        for code in sorted(set(stations)):
            if self.legacy_out_topics:
                specs.append(
                    TopicSpec(
                        out_topic(code),
                        self.out_partitions,
                        rf,
                        self._config(self.out_retention_ms, **OUT_TOPIC_CONFIG),
                    )
                )
            specs.append(
                TopicSpec(
                    in_topic(code), self.in_partitions, rf, self._config(self.in_retention_ms)
                )
            )
        return specs


# -- desired ACLs --------------------------------------------------------------

_T, _G, _C, _X = (
    ResourceType.TOPIC,
    ResourceType.GROUP,
    ResourceType.CLUSTER,
    ResourceType.TRANSACTIONAL_ID,
)
_LIT, _PRE = PatternType.LITERAL, PatternType.PREFIXED
_R, _W, _D = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE


def _acl(
    user: str, rtype: ResourceType, name: str, pattern: PatternType, op: AclOperation
) -> AclBinding:
    return AclBinding(f"User:{user}", rtype, name, pattern, op)


def station_acls(code: str, *, legacy: bool = False) -> set[AclBinding]:
    """What a station's gateway may do, and nothing more: WRITE (never READ) the shared
    ingress topic; with ``legacy``, WRITE its old ``i24.out.<code>`` topic too."""
    acls = {
        _acl(code, _T, INGRESS_TOPIC, _LIT, _W),
        _acl(code, _T, in_topic(code), _LIT, _R),
        _acl(code, _T, DIRECTORY_TOPIC, _LIT, _R),
        _acl(code, _G, gateway_group(code), _LIT, _R),
        # transactional ids "i24.gw.<code>." + anything: the trailing dot keeps
        # station "FR" from matching the ids of a station "FRX".
        _acl(code, _X, f"{gateway_group(code)}.", _PRE, _W),
        _acl(code, _X, f"{gateway_group(code)}.", _PRE, _D),
        _acl(code, _C, CLUSTER_RESOURCE, _LIT, AclOperation.IDEMPOTENT_WRITE),
    }
    if legacy:
        acls.add(_acl(code, _T, out_topic(code), _LIT, _W))
    return acls


def service_acls(*, legacy: bool = False) -> set[AclBinding]:
    """The router, the directory publisher, the auditor and the operator."""
    r = ROUTER
    acls = {
        _acl(r, _T, INGRESS_TOPIC, _LIT, _R),
        _acl(r, _T, IN_PREFIX, _PRE, _W),
        _acl(r, _T, QUARANTINE_TOPIC, _LIT, _R),
        _acl(r, _T, QUARANTINE_TOPIC, _LIT, _W),
        _acl(r, _T, AUDIT_TOPIC, _LIT, _R),  # to resume the hash chain after a restart
        _acl(r, _T, AUDIT_TOPIC, _LIT, _W),
        _acl(r, _T, SEEN_TOPIC, _LIT, _R),  # the replay window, restored at start
        _acl(r, _T, SEEN_TOPIC, _LIT, _W),
        _acl(r, _T, REVIEW_TOPIC, _LIT, _R),  # claims and proposals, read back by every instance
        _acl(r, _T, REVIEW_TOPIC, _LIT, _W),
        _acl(r, _T, DLQ_TOPIC, _LIT, _W),
        _acl(r, _T, DIRECTORY_TOPIC, _LIT, _R),
        _acl(r, _G, ROUTER_GROUP_PREFIX, _PRE, _R),
        _acl(r, _X, ROUTER_GROUP_PREFIX, _PRE, _W),
        _acl(r, _X, ROUTER_GROUP_PREFIX, _PRE, _D),
        _acl(r, _C, CLUSTER_RESOURCE, _LIT, AclOperation.IDEMPOTENT_WRITE),
        _acl(PUBLISHER, _T, DIRECTORY_TOPIC, _LIT, _W),
        _acl(PUBLISHER, _T, DIRECTORY_TOPIC, _LIT, _R),
        _acl(PUBLISHER, _C, CLUSTER_RESOURCE, _LIT, AclOperation.IDEMPOTENT_WRITE),
        _acl(AUDITOR, _T, AUDIT_TOPIC, _LIT, _R),
        _acl(AUDITOR, _T, DIRECTORY_TOPIC, _LIT, _R),
        _acl(AUDITOR, _G, AUDITOR_GROUP_PREFIX, _PRE, _R),
    }
    for op in (AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS):
        acls.add(_acl(OPERATOR, _T, f"{PREFIX}.", _PRE, op))
        acls.add(_acl(OPERATOR, _C, CLUSTER_RESOURCE, _LIT, op))
    acls.add(_acl(OPERATOR, _G, f"{PREFIX}.", _PRE, AclOperation.DESCRIBE))
    if legacy:
        acls.add(_acl(r, _T, OUT_PREFIX, _PRE, _R))
    return acls


def desired_acls(stations: Iterable[str], *, legacy: bool = False) -> set[AclBinding]:
    acls = service_acls(legacy=legacy)
    for code in stations:
        acls |= station_acls(code, legacy=legacy)
    return acls


# -- desired client quotas --------------------------------------------------------

PRODUCER_BYTE_RATE = "producer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"


@dataclass(frozen=True)
class QuotaPolicy:
    """Kafka client quotas per station principal (``User:<code>``).

    ``producer_byte_rate`` (bytes/s, averaged over the broker's quota window, 11 s by
    default) bounds what one station can write to the shared ingress topic, so one
    station's flood cannot take the others' share of the broker and of the router's
    fair scheduling lane it shares with the stations hashed to the same partition. The
    router's cost is per envelope, the quota's unit is the byte, so the default is sized
    on the smallest envelopes (~340 bytes): 64 KiB/s is ~190 of them per second, a flood
    measured to cost a quiet station sharing the flooder's partition 1.3x its p50 and
    1.6x its p99 latency (``bench/probe_collision.py``; 400/s cost it seconds). That is
    ~20 envelopes/s of 3 KiB sustained, with the window's burst allowance (~10 s of
    quota) on top; a maximum-size envelope (1 MiB + 16 KiB) delays the station's next
    sends by ~5 s. A station over it is slowed (the broker delays its responses), never
    refused. ``request_percentage`` (percent of one
    broker I/O/network thread) optionally bounds its request rate too.
    ``overrides`` gives a station other values (the GS's broadcast notices, a busy NCB).
    """

    producer_byte_rate: int | None = 64 << 10
    request_percentage: float | None = None
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def for_station(self, code: str) -> dict[str, float]:
        want: dict[str, float] = {}
        if self.producer_byte_rate is not None:
            want[PRODUCER_BYTE_RATE] = float(self.producer_byte_rate)
        if self.request_percentage is not None:
            want[REQUEST_PERCENTAGE] = float(self.request_percentage)
        want.update({k: float(v) for k, v in self.overrides.get(code, {}).items()})
        return want


def quota_changes(
    want: Mapping[str, Mapping[str, float]],
    have: Mapping[str, Mapping[str, float]],
    protected: set[str],
) -> dict[str, dict[str, float | None]]:
    """The AlterClientQuotas operations turning ``have`` into ``want`` (user -> key ->
    value, None removes); the quotas of ``protected`` users are left alone."""
    changes: dict[str, dict[str, float | None]] = {}
    for user in sorted(set(want) | set(have)):
        if user in protected:
            continue
        w, h = want.get(user, {}), have.get(user, {})
        ops: dict[str, float | None] = {k: v for k, v in w.items() if h.get(k) != v}
        ops.update({k: None for k in h if k not in w})
        if ops:
            changes[user] = ops
    return changes


def _managed(acl: AclBinding, protected: set[str]) -> bool:
    """ACLs provisioning owns: on i24.* resources or the cluster, for a non-super user."""
    if not acl.principal.startswith("User:") or acl.principal[5:] in protected:
        return False
    if acl.resource_type == ResourceType.CLUSTER:
        return True
    return acl.resource_name.startswith(f"{PREFIX}.") or acl.resource_name == PREFIX


async def _quotas_applied(
    admin: SecurityAdmin,
    want: Mapping[str, Mapping[str, float]],
    users: set[str],
    timeout_s: float = 30.0,
) -> None:
    """Wait until the broker describes the quotas of ``users`` as ``want`` (absent: none).

    AlterClientQuotas answers once the controller committed the change; the broker
    applies it from the metadata log a moment later (measured: a describe right after
    the alter still showed the old value), so without this wait a re-run of provisioning
    could see the old value and report a change that was already made."""
    deadline = time.monotonic() + timeout_s
    while True:
        have = await admin.user_quotas()
        if all(dict(have.get(u, {})) == dict(want.get(u, {})) for u in users):
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"client quotas of {sorted(users)} not applied within {timeout_s}s")
        await asyncio.sleep(0.1)


# -- the run -------------------------------------------------------------------


@dataclass
class ProvisionReport:
    """What a run changed. ``changed`` is False when the broker already matched."""

    topics_created: list[str] = field(default_factory=list)
    topics_reconfigured: list[str] = field(default_factory=list)
    topics_underpartitioned: list[str] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)
    users_removed: list[str] = field(default_factory=list)
    quotas_changed: list[str] = field(default_factory=list)
    acls_created: list[str] = field(default_factory=list)
    acls_removed: list[str] = field(default_factory=list)
    password_files: dict[str, Path] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(
            self.topics_created
            or self.topics_reconfigured
            or self.users_created
            or self.users_removed
            or self.quotas_changed
            or self.acls_created
            or self.acls_removed
        )

    def summary(self) -> str:
        if not self.changed:
            return "provision: no change (the broker already matches the station list)"
        parts = [
            f"{len(self.topics_created)} topics created",
            f"{len(self.topics_reconfigured)} topics reconfigured",
            f"{len(self.users_created)} credentials created",
            f"{len(self.users_removed)} credentials revoked",
            f"{len(self.quotas_changed)} quotas changed",
            f"{len(self.acls_created)} ACLs created",
            f"{len(self.acls_removed)} ACLs removed",
        ]
        return "provision: " + ", ".join(parts)


def _station_codes(stations: Iterable[str] | Mapping[str, Any]) -> list[str]:
    codes = sorted({_check_code(c) for c in stations})
    return codes


async def _converge_topics(
    conn: KafkaConnection, specs: Sequence[TopicSpec], report: ProvisionReport
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**conn.client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            resp = await admin.create_topics(
                [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=s.replication_factor,
                        topic_configs=dict(s.config),
                    )
                    for s in missing
                ]
            )
            for entry in resp.topic_errors:
                name, code = entry[0], entry[1]
                if code == 0:
                    report.topics_created.append(name)
                elif code != 36:  # TOPIC_ALREADY_EXISTS: a concurrent run
                    message = entry[2] if len(entry) > 2 else None
                    raise_for_code(code, message, f"creating topic {name}")
        present = [s for s in specs if s.name in existing]
        if not present:
            return
        described = await admin.describe_topics([s.name for s in present])
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
        )
        actual: dict[str, dict[str, str]] = {}
        for response in configs:
            for resource in response.resources:
                # (error_code, error_message, resource_type, resource_name, config_entries)
                name, entries = resource[3], resource[4]
                actual[name] = {e[0]: e[1] for e in entries}
        drifted = []
        for s in present:
            if partitions.get(s.name, s.partitions) < s.partitions:
                report.topics_underpartitioned.append(s.name)
            have = actual.get(s.name, {})
            if any(have.get(k) != v for k, v in s.config.items()):
                drifted.append(s)
        if drifted:
            # AlterConfigs (non-incremental) sets exactly the managed configs.
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name, dict(s.config)) for s in drifted]
            )
            report.topics_reconfigured.extend(s.name for s in drifted)
    finally:
        await admin.close()


async def provision(
    conn: KafkaConnection,
    stations: Iterable[str] | Mapping[str, Any],
    credentials_dir: Path,
    *,
    policy: TopicPolicy | None = None,
    quotas: QuotaPolicy | None = None,
    rotate: Iterable[str] = (),
    super_users: Iterable[str] = (ADMIN_USER,),
) -> ProvisionReport:
    """Converge topics, SCRAM credentials, client quotas and ACLs to the station list;
    report changes.

    ``stations`` is the station codes (or a mapping keyed by them, such as
    ``i24net.stations.all_stations()``). ``super_users`` are never given or
    stripped of ACLs or credentials. ``rotate`` names users whose password is
    replaced.
    """
    codes = _station_codes(stations)
    policy = policy or TopicPolicy()
    quotas = quotas or QuotaPolicy()
    report = ProvisionReport()
    protected = set(super_users) | {ADMIN_USER}
    users = [*codes, *SERVICE_USERS]
    rotate_set = set(rotate)

    await _converge_topics(conn, policy.topics(codes), report)

    async with SecurityAdmin(conn) as admin:
        # credentials
        existing_users = await admin.scram_users()
        upserts: dict[str, str] = {}
        for user in users:
            path = password_file(credentials_dir, user)
            report.password_files[user] = path
            if user in rotate_set or not path.exists():
                password = generate_password()
                write_password_file(path, password)
                upserts[user] = password
            elif user not in existing_users:
                upserts[user] = read_password_file(path)
        await admin.upsert_scram(upserts)
        report.users_created = sorted(upserts)
        stale_users = existing_users - set(users) - protected
        await admin.delete_scram(stale_users)
        report.users_removed = sorted(stale_users)
        for user in stale_users:
            password_file(credentials_dir, user).unlink(missing_ok=True)

        # client quotas (stations only)
        want_quotas = {code: quotas.for_station(code) for code in codes}
        changes = quota_changes(
            want_quotas,
            await admin.user_quotas(),
            protected | set(SERVICE_USERS),
        )
        await admin.alter_user_quotas(changes)
        await _quotas_applied(admin, want_quotas, set(changes))
        report.quotas_changed = sorted(changes)

        # ACLs
        want = desired_acls(codes, legacy=policy.legacy_out_topics)
        have = await admin.describe_acls()
        to_create = want - have
        to_delete = {a for a in have - want if _managed(a, protected)}
        await admin.create_acls(to_create)
        await admin.delete_acls(to_delete)
        report.acls_created = sorted(str(a) for a in to_create)
        report.acls_removed = sorted(str(a) for a in to_delete)
        for line in report.acls_created:
            log.debug("ACL created: %s", line)
        for line in report.acls_removed:
            log.debug("ACL removed: %s", line)

    log.info("%s", report.summary())
    return report


# -- a secured single broker for the demo and tests ---------------------------


class SecuredBroker:
    """A running, provisioned single-node broker with TLS, SCRAM and ACLs.

    ``connection(user)`` is a ``KafkaConnection`` (SASL_SSL) for a station code or
    a service user; ``admin`` is the super user. Stop it with ``stop()`` or use it
    as a context manager.
    """

    def __init__(
        self,
        broker: Broker,
        ca_file: Path,
        credentials_dir: Path,
        plaintext_bootstrap: str | None,
        report: ProvisionReport,
    ) -> None:
        self.broker = broker
        self.ca_file = ca_file
        self.credentials_dir = credentials_dir
        self.plaintext_bootstrap = plaintext_bootstrap
        self.report = report

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def credential(self, user: str) -> Credential:
        return Credential(user, read_password_file(password_file(self.credentials_dir, user)))

    def connection(self, user: str, *, client_id: str | None = None) -> KafkaConnection:
        return self.credential(user).connection(self.bootstrap, self.ca_file, client_id=client_id)

    def connections(self) -> dict[str, KafkaConnection]:
        """A connection per provisioned user (stations, services) and ``admin``."""
        users = sorted(
            p.name.removesuffix(".password") for p in self.credentials_dir.glob("*.password")
        )
        return {u: self.connection(u) for u in users}

    @property
    def admin(self) -> KafkaConnection:
        return self.connection(ADMIN_USER)

    def stop(self) -> None:
        self.broker.stop()

    def __enter__(self) -> SecuredBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _await_credentials(
    bootstrap: str, ca_file: Path, creds: Path, users: Iterable[str], timeout_s: float = 20.0
) -> None:
    """Wait until the broker accepts every new SCRAM credential in ``users``.

    AlterUserScramCredentials answers once the controller has committed the
    records; the broker applies them from the metadata log a moment later, so
    a client connecting right after ``provision`` may be refused (seen here:
    the first test after ``start_secured_broker`` failed SaslAuthenticationFailed).
    """
    deadline = time.monotonic() + timeout_s
    for user in users:
        conn = Credential(user, read_password_file(password_file(creds, user))).connection(
            bootstrap, ca_file, client_id="i24net-provision"
        )
        while True:
            try:
                await check_connection(conn, timeout_s=5)
                break
            except BrokerAuthenticationError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


def start_secured_broker(
    data_dir: Path,
    stations: Iterable[str] | Mapping[str, Any],
    *,
    heap: str = "512m",
    plaintext_listener: bool = False,
    policy: TopicPolicy | None = None,
    attached: bool = True,
) -> SecuredBroker:
    """Start a single secured broker under ``data_dir``, provision it, return it.

    Layout: ``pki/`` (dev CA ``ca.pem`` and the broker keystore), ``credentials/``
    (``<user>.password``, 0600; ``admin`` is the super user), ``node/`` (storage,
    ``server.properties``, ``broker.log``). ``plaintext_listener`` adds an
    unauthenticated listener (principal ``User:ANONYMOUS``, no ACLs) for the
    throughput comparison only. Call from a thread that outlives the broker
    (the main thread): an attached JVM dies with the thread that launched it.
    """
    data_dir = data_dir.resolve()
    pki = write_dev_pki(data_dir / "pki", ["broker-1"])
    creds = data_dir / "credentials"
    admin_file = password_file(creds, ADMIN_USER)
    if not admin_file.exists():
        write_password_file(admin_file, generate_password())
    admin_password = read_password_file(admin_file)
    listeners = SecuredListeners(
        client_port=free_port(),
        internal_port=free_port(),
        controller_port=free_port(),
        plaintext_port=free_port() if plaintext_listener else None,
    )
    host = "127.0.0.1"
    bootstrap = f"{host}:{listeners.client_port}"
    admin_conn = Credential(ADMIN_USER, admin_password).connection(
        bootstrap, pki.ca_file, client_id="i24net-provision"
    )
    props = secured_properties(pki.brokers["broker-1"], listeners, super_users=[ADMIN_USER])
    broker = Broker(
        BrokerSettings(
            data_dir=data_dir / "node",
            host=host,
            port=listeners.client_port,
            controller_port=listeners.controller_port,
            heap=heap,
            properties=props,
            scram_users={ADMIN_USER: admin_password},
            probe_connection=admin_conn,
        )
    )
    broker.start(attached=attached)
    try:
        report = run_sync(provision(admin_conn, stations, creds, policy=policy))
        run_sync(_await_credentials(bootstrap, pki.ca_file, creds, report.users_created))
    except BaseException:
        broker.stop()
        raise
    plain = f"{host}:{listeners.plaintext_port}" if listeners.plaintext_port else None
    return SecuredBroker(broker, pki.ca_file, creds, plain, report)


__all__ = [
    "AUDITOR",
    "AUDIT_TOPIC",
    "DIRECTORY_TOPIC",
    "DLQ_TOPIC",
    "INGRESS_TOPIC",
    "OPERATOR",
    "PUBLISHER",
    "QUARANTINE_TOPIC",
    "REVIEW_TOPIC",
    "ROUTER",
    "SEEN_TOPIC",
    "ProvisionReport",
    "QuotaPolicy",
    "SecuredBroker",
    "TopicPolicy",
    "desired_acls",
    "gateway_group",
    "in_topic",
    "out_topic",
    "provision",
    "service_acls",
    "start_secured_broker",
    "station_acls",
]
