"""The desired state provisioning converges to: topics and least-privilege ACLs."""

from __future__ import annotations

from typing import Any

import pytest

from i24net.cli import build_parser
from i24net.errors import ConfigError
from i24net.kafka.acls import AclOperation, PatternType, ResourceType, scram_salted_password
from i24net.provision import (
    QuotaPolicy,
    TopicPolicy,
    _station_codes,
    desired_acls,
    quota_changes,
    service_acls,
    station_acls,
)


def topic_acls(acls: set[Any]) -> set[tuple[AclOperation, str]]:
    return {(a.operation, a.resource_name) for a in acls if a.resource_type == ResourceType.TOPIC}


def test_station_may_write_only_the_ingress_topic_and_read_only_its_in_topic() -> None:
    acls = station_acls("FR", legacy=False)
    assert topic_acls(acls) == {
        (AclOperation.WRITE, "i24.out"),  # never READ: a station sees no other's records
        (AclOperation.READ, "i24.in.FR"),
        (AclOperation.READ, "i24.directory"),
    }
    assert all(a.pattern_type == PatternType.LITERAL for a in acls if a.resource_type != 5)
    assert all(a.principal == "User:FR" for a in acls)


def test_during_the_migration_a_station_may_also_write_its_old_out_topic() -> None:
    legacy = topic_acls(station_acls("FR", legacy=True))
    assert legacy - topic_acls(station_acls("FR")) == {(AclOperation.WRITE, "i24.out.FR")}


def test_station_prefixes_do_not_reach_a_longer_code() -> None:
    prefixed = [a for a in station_acls("FR") if a.pattern_type == PatternType.PREFIXED]
    assert prefixed and all(a.resource_name == "i24.gw.FR." for a in prefixed)


def test_router_reads_the_ingress_topic_and_writes_every_in_topic() -> None:
    router = {a for a in service_acls(legacy=True) if a.principal == "User:router"}
    assert (AclOperation.READ, "i24.out") in topic_acls(router)
    assert any(  # the old per-station topics, drained during the migration
        a.resource_name == "i24.out."
        and a.pattern_type == PatternType.PREFIXED
        and a.operation == AclOperation.READ
        for a in router
    )
    assert not any(
        a.resource_name == "i24.out."
        for a in service_acls()  # the default: no migration
        if a.principal == "User:router"
    )
    assert any(a.resource_name == "i24.in." and a.operation == AclOperation.WRITE for a in router)
    assert not any(
        a.operation == AclOperation.WRITE and a.resource_name.startswith("i24.out") for a in router
    )


def test_auditor_and_operator_are_read_only() -> None:
    for user in ("auditor", "operator"):
        ops = {a.operation for a in service_acls() if a.principal == f"User:{user}"}
        assert ops <= {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS}


def test_desired_acls_scale_with_the_station_list() -> None:
    assert desired_acls(["FR", "JP"]) - desired_acls(["FR"]) == station_acls("JP")


def test_topic_policy() -> None:
    specs = {s.name: s for s in TopicPolicy.for_brokers(3, legacy_out_topics=True).topics(["FR"])}
    assert set(specs) == {
        "i24.directory",
        "i24.quarantine",
        "i24.audit",
        "i24.dlq",
        "i24.out",
        "i24.out.FR",
        "i24.in.FR",
        "i24.router.seen",
        "i24.review",
    }
    assert specs["i24.out"].partitions == 12
    assert specs["i24.directory"].config["cleanup.policy"] == "compact"
    # every topic takes the largest record the router produces (docs/topics.md)
    assert {s.config["max.message.bytes"] for s in specs.values()} == {str(2 << 20)}
    # the router decides revocation on a time the sender does not choose
    assert specs["i24.out"].config["message.timestamp.type"] == "LogAppendTime"
    assert specs["i24.out.FR"].config["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in specs["i24.in.FR"].config
    assert specs["i24.audit"].partitions == 1
    assert specs["i24.audit"].config["retention.ms"] == "-1"
    assert all(s.replication_factor == 3 for s in specs.values())
    assert all(s.config["min.insync.replicas"] == "2" for s in specs.values())
    single = TopicPolicy.for_brokers(1)
    assert (single.replication_factor, single.min_insync_replicas) == (1, 1)
    after = {s.name for s in TopicPolicy().topics(["FR"])}  # the default: no per-station topics
    assert set(specs) - after == {"i24.out.FR"}


def test_every_station_gets_a_producer_byte_rate_quota() -> None:
    q = QuotaPolicy(overrides={"GS": {"producer_byte_rate": 4 << 20}})
    assert q.for_station("FR") == {"producer_byte_rate": 64 * 1024}
    assert q.for_station("GS") == {"producer_byte_rate": 4 << 20}
    with_requests = QuotaPolicy(request_percentage=25)
    assert with_requests.for_station("FR")["request_percentage"] == 25


def test_quota_changes_converge_and_leave_protected_users_alone() -> None:
    want = {"FR": {"producer_byte_rate": 100.0}, "JP": {"producer_byte_rate": 100.0}}
    have = {
        "FR": {"producer_byte_rate": 100.0},  # already right
        "JP": {"producer_byte_rate": 50.0, "request_percentage": 10.0},  # drifted
        "XX": {"producer_byte_rate": 100.0},  # a removed station
        "admin": {"producer_byte_rate": 1.0},  # protected: not ours
    }
    assert quota_changes(want, have, {"admin"}) == {
        "JP": {"producer_byte_rate": 100.0, "request_percentage": None},
        "XX": {"producer_byte_rate": None},
    }
    assert quota_changes(want, want, set()) == {}


@pytest.mark.parametrize("bad", ["fr", "F R", "ROUTER", ""])
def test_bad_station_codes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        _station_codes([bad])


def test_scram_salted_password_is_pbkdf2_sha512() -> None:
    # RFC 5802 Hi() with HMAC-SHA-512; the broker test proves Kafka accepts it
    a = scram_salted_password("pencil", b"salt", 4096)
    assert len(a) == 64 and a == scram_salted_password("pencil", b"salt", 4096)
    assert a != scram_salted_password("pencil", b"salt2", 4096)


def test_cli_has_provision() -> None:
    args = build_parser().parse_args(
        [
            "provision",
            "--bootstrap",
            "127.0.0.1:9092",
            "--ca-file",
            "ca.pem",
            "--admin-password-file",
            "admin.password",
            "--credentials-dir",
            "creds",
            "--stations",
            "FR,JP",
            "--brokers",
            "3",
        ]
    )
    assert args.command == "provision" and args.brokers == 3
