"""The desired state provisioning converges to: topics and least-privilege ACLs."""

from __future__ import annotations

import pytest

from i24net.cli import build_parser
from i24net.errors import ConfigError
from i24net.kafka.acls import AclOperation, PatternType, ResourceType, scram_salted_password
from i24net.provision import (
    TopicPolicy,
    _station_codes,
    desired_acls,
    service_acls,
    station_acls,
)


def test_station_may_write_only_its_out_topic_and_read_only_its_in_topic() -> None:
    acls = station_acls("FR")
    topics = {(a.operation, a.resource_name) for a in acls if a.resource_type == ResourceType.TOPIC}
    assert topics == {
        (AclOperation.WRITE, "i24.out.FR"),
        (AclOperation.READ, "i24.in.FR"),
        (AclOperation.READ, "i24.directory"),
    }
    assert all(a.pattern_type == PatternType.LITERAL for a in acls if a.resource_type != 5)
    assert all(a.principal == "User:FR" for a in acls)


def test_station_prefixes_do_not_reach_a_longer_code() -> None:
    prefixed = [a for a in station_acls("FR") if a.pattern_type == PatternType.PREFIXED]
    assert prefixed and all(a.resource_name == "i24.gw.FR." for a in prefixed)


def test_router_reads_every_out_and_writes_every_in_topic() -> None:
    router = {a for a in service_acls() if a.principal == "User:router"}
    assert any(
        a.resource_name == "i24.out."
        and a.pattern_type == PatternType.PREFIXED
        and a.operation == AclOperation.READ
        for a in router
    )
    assert any(a.resource_name == "i24.in." and a.operation == AclOperation.WRITE for a in router)
    assert not any(
        a.operation == AclOperation.WRITE and a.resource_name == "i24.out." for a in router
    )


def test_auditor_and_operator_are_read_only() -> None:
    for user in ("auditor", "operator"):
        ops = {a.operation for a in service_acls() if a.principal == f"User:{user}"}
        assert ops <= {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS}


def test_desired_acls_scale_with_the_station_list() -> None:
    assert desired_acls(["FR", "JP"]) - desired_acls(["FR"]) == station_acls("JP")


def test_topic_policy() -> None:
    specs = {s.name: s for s in TopicPolicy.for_brokers(3).topics(["FR"])}
    assert set(specs) == {
        "i24.directory",
        "i24.quarantine",
        "i24.audit",
        "i24.dlq",
        "i24.out.FR",
        "i24.in.FR",
        "i24.router.seen",
    }
    assert specs["i24.directory"].config["cleanup.policy"] == "compact"
    # every topic takes the largest record the router produces (docs/topics.md)
    assert {s.config["max.message.bytes"] for s in specs.values()} == {str(2 << 20)}
    # the router decides revocation on a time the sender does not choose
    assert specs["i24.out.FR"].config["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in specs["i24.in.FR"].config
    assert specs["i24.audit"].partitions == 1
    assert specs["i24.audit"].config["retention.ms"] == "-1"
    assert all(s.replication_factor == 3 for s in specs.values())
    assert all(s.config["min.insync.replicas"] == "2" for s in specs.values())
    single = TopicPolicy.for_brokers(1)
    assert (single.replication_factor, single.min_insync_replicas) == (1, 1)


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
