"""The secured broker: TLS + SCRAM-SHA-512 on the client listener, ACLs from provisioning.

One secured broker (stations FR, JP, GS) serves the whole module. Each denial is
asserted as the broker's own error class from ``aiokafka.errors``; each allowed
operation is exercised too, so a broker that refused everything would fail.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as ke
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from i24net.errors import (
    BrokerAuthenticationError,
    BrokerAuthorizationError,
    BrokerTlsError,
    BrokerUnavailableError,
    ConfigError,
)
from i24net.kafka.acls import AclBinding, AclOperation, PatternType, ResourceType, SecurityAdmin
from i24net.kafka.admin import KafkaConnection
from i24net.kafka.security import check_connection, write_dev_pki
from i24net.provision import SecuredBroker, provision, start_secured_broker

pytestmark = pytest.mark.kafka

STATIONS = ["FR", "GS", "JP"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(
        tmp_path_factory.mktemp("secured"), STATIONS, plaintext_listener=True
    )
    try:
        yield broker
    finally:
        broker.stop()


@asynccontextmanager
async def producer(conn: KafkaConnection) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(**conn.client_kwargs(), enable_idempotence=True, request_timeout_ms=10000)
    try:
        await p.start()
        yield p
    finally:
        await p.stop()


@asynccontextmanager
async def consumer(
    conn: KafkaConnection, topic: str, group: str
) -> AsyncIterator[AIOKafkaConsumer]:
    c = AIOKafkaConsumer(
        topic,
        **conn.client_kwargs(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        await c.start()
        yield c
    finally:
        await c.stop()


async def read_one(conn: KafkaConnection, topic: str, group: str) -> bytes:
    async with consumer(conn, topic, group) as c:
        batches = await c.getmany(timeout_ms=10000)
        records = [r for rs in batches.values() for r in rs]
        assert records, f"nothing read from {topic}"
        assert records[0].value is not None
        return records[0].value


# -- allowed -------------------------------------------------------------------


async def test_station_to_router_to_station_path_is_allowed(secured: SecuredBroker) -> None:
    fr, jp, router = (
        secured.connection("FR"),
        secured.connection("JP"),
        secured.connection("router"),
    )
    async with producer(fr) as p:
        await p.send_and_wait("i24.out.FR", b"from FR")
    assert await read_one(router, "i24.out.FR", "i24.router") == b"from FR"
    async with producer(router) as p:
        await p.send_and_wait("i24.in.JP", b"to JP")
        await p.send_and_wait("i24.audit", b"audit record")
        await p.send_and_wait("i24.quarantine", b"held")
        await p.send_and_wait("i24.dlq", b"refused")
    assert await read_one(jp, "i24.in.JP", "i24.gw.JP") == b"to JP"
    assert await read_one(secured.connection("auditor"), "i24.audit", "i24.auditor") == (
        b"audit record"
    )


async def test_directory_is_written_by_publisher_and_read_by_stations(
    secured: SecuredBroker,
) -> None:
    async with producer(secured.connection("publisher")) as p:
        await p.send_and_wait("i24.directory", b"FR entry", key=b"FR")
    assert await read_one(secured.connection("FR"), "i24.directory", "i24.gw.FR") == b"FR entry"
    with pytest.raises(ke.TopicAuthorizationFailedError):
        async with producer(secured.connection("FR")) as p:
            await p.send_and_wait("i24.directory", b"forged", key=b"JP")


# -- denied to a station --------------------------------------------------------


async def test_station_cannot_write_another_stations_out_topic(secured: SecuredBroker) -> None:
    with pytest.raises(ke.TopicAuthorizationFailedError):
        async with producer(secured.connection("FR")) as p:
            await p.send_and_wait("i24.out.JP", b"impersonation")


async def test_station_cannot_write_an_in_topic_directly(secured: SecuredBroker) -> None:
    with pytest.raises(ke.TopicAuthorizationFailedError):
        async with producer(secured.connection("FR")) as p:
            await p.send_and_wait("i24.in.JP", b"bypassing the router")


@pytest.mark.parametrize("topic", ["i24.in.JP", "i24.audit", "i24.quarantine", "i24.dlq"])
async def test_station_cannot_read_what_is_not_its_own(secured: SecuredBroker, topic: str) -> None:
    with pytest.raises(ke.TopicAuthorizationFailedError):
        async with consumer(secured.connection("FR"), topic, "i24.gw.FR") as c:
            await c.getmany(timeout_ms=5000)


async def test_station_cannot_use_another_stations_group(secured: SecuredBroker) -> None:
    with pytest.raises(ke.GroupAuthorizationFailedError):
        async with consumer(secured.connection("FR"), "i24.in.FR", "i24.gw.JP") as c:
            await c.getmany(timeout_ms=5000)


async def test_station_cannot_create_topics(secured: SecuredBroker) -> None:
    admin = AIOKafkaAdminClient(**secured.connection("FR").client_kwargs())
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic("i24.out.FR2", 1, 1)])
    finally:
        await admin.close()
    (_, code, *_rest) = resp.topic_errors[0]
    assert ke.for_code(code) is ke.TopicAuthorizationFailedError


async def test_station_cannot_alter_acls_or_credentials(secured: SecuredBroker) -> None:
    grant = AclBinding(
        "User:FR", ResourceType.TOPIC, "i24.in.JP", PatternType.LITERAL, AclOperation.READ
    )
    async with SecurityAdmin(secured.connection("FR")) as admin:
        with pytest.raises(BrokerAuthorizationError) as info:
            await admin.create_acls([grant])
        assert isinstance(info.value.__cause__, ke.ClusterAuthorizationFailedError)
        with pytest.raises(BrokerAuthorizationError) as info:
            await admin.upsert_scram({"JP": "stolen"})
        assert isinstance(info.value.__cause__, ke.ClusterAuthorizationFailedError)
    assert grant not in await _acls(secured)


async def _acls(secured: SecuredBroker) -> set[AclBinding]:
    async with SecurityAdmin(secured.admin) as admin:
        return await admin.describe_acls()


# -- authentication -------------------------------------------------------------


async def test_valid_credential_passes_the_startup_check(secured: SecuredBroker) -> None:
    assert await check_connection(secured.connection("FR"), timeout_s=10) == [1]


async def test_wrong_password_is_a_fast_clear_startup_error(secured: SecuredBroker) -> None:
    wrong = dataclasses.replace(secured.connection("FR"), password="not-the-password")
    t0 = time.monotonic()
    with pytest.raises(BrokerAuthenticationError, match="refused user 'FR'") as info:
        await check_connection(wrong, timeout_s=10)
    assert time.monotonic() - t0 < 5
    assert isinstance(info.value.__cause__, ke.SaslAuthenticationFailed)
    # a client that skips the check is refused too, not left hanging
    with pytest.raises(ke.KafkaConnectionError):
        async with producer(wrong):
            pass


async def test_unknown_user_is_refused(secured: SecuredBroker) -> None:
    ghost = dataclasses.replace(secured.connection("FR"), username="XX")
    with pytest.raises(BrokerAuthenticationError) as info:
        await check_connection(ghost, timeout_s=10)
    assert isinstance(info.value.__cause__, ke.SaslAuthenticationFailed)


async def test_missing_password_is_a_config_error(secured: SecuredBroker) -> None:
    with pytest.raises(ConfigError, match="needs sasl_mechanism, username and password"):
        await check_connection(dataclasses.replace(secured.connection("FR"), password=None))


async def test_plaintext_client_on_the_secured_listener_is_refused(secured: SecuredBroker) -> None:
    with pytest.raises(BrokerUnavailableError, match="refuses PLAINTEXT"):
        await check_connection(KafkaConnection(secured.bootstrap), timeout_s=5)


async def test_untrusted_certificate_is_a_tls_error(secured: SecuredBroker, tmp_path: Path) -> None:
    other_ca = write_dev_pki(tmp_path / "other", []).ca_file
    conn = dataclasses.replace(secured.connection("FR"), ca_file=other_ca)
    with pytest.raises(BrokerTlsError, match="not trusted"):
        await check_connection(conn, timeout_s=5)


async def test_anonymous_plaintext_listener_grants_nothing(secured: SecuredBroker) -> None:
    assert secured.plaintext_bootstrap is not None
    anonymous = KafkaConnection(secured.plaintext_bootstrap)
    with pytest.raises(ke.ClusterAuthorizationFailedError):  # idempotent producer id
        async with producer(anonymous) as p:
            await p.send_and_wait("i24.out.FR", b"anonymous")
    with pytest.raises(ke.TopicAuthorizationFailedError):
        async with consumer(anonymous, "i24.in.FR", "i24.gw.FR") as c:
            await c.getmany(timeout_ms=5000)


# -- provisioning ---------------------------------------------------------------


async def test_provision_is_idempotent_and_removal_revokes(secured: SecuredBroker) -> None:
    creds = secured.credentials_dir
    again = await provision(secured.admin, STATIONS, creds)
    assert not again.changed, again.summary()

    added = await provision(secured.admin, [*STATIONS, "BR"], creds)
    assert "BR" in added.users_created and {"i24.out.BR", "i24.in.BR"} <= set(added.topics_created)
    br = secured.connection("BR")
    assert await check_connection(br) == [1]
    assert (creds / "BR.password").stat().st_mode & 0o777 == 0o600

    removed = await provision(secured.admin, STATIONS, creds)
    assert removed.users_removed == ["BR"]
    assert any("User:BR" in a for a in removed.acls_removed)
    assert not [a for a in await _acls(secured) if a.principal == "User:BR"]
    assert not (creds / "BR.password").exists()
    with pytest.raises(BrokerAuthenticationError):
        await check_connection(br, timeout_s=5)
    final = await provision(secured.admin, STATIONS, creds)
    assert not final.changed, final.summary()


async def test_provision_needs_a_super_user(secured: SecuredBroker, tmp_path: Path) -> None:
    with pytest.raises(BrokerAuthorizationError):
        await provision(secured.connection("operator"), STATIONS, tmp_path)
