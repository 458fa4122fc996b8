"""The signed directory on a real log-compacted topic: publish, read back, refuse rollback
(also after the broker compacted a replayed old entry over the revocation)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world

from i24net.directory import (
    Directory,
    DirectoryReader,
    DirectoryState,
    Status,
    publish,
    read_all,
    sign_manifest,
)
from i24net.errors import VerificationError
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka

DAY = 86_400_000


async def _topic(conn: KafkaConnection, unique_name: Callable[[str], str]) -> str:
    topic = unique_name("directory")
    spec = TopicSpec(topic, partitions=3, config={"cleanup.policy": "compact"})
    assert await ensure_topics(conn, [spec]) == [topic]
    return topic


async def _publish(
    conn: KafkaConnection, topic: str, entries: dict[str, bytes], manifest: bytes | None = None
) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **conn.client_kwargs())
    await producer.start()
    try:
        await publish(producer, entries, topic=topic, manifest=manifest)
    finally:
        await producer.stop()


async def _read(
    conn: KafkaConnection, topic: str, w: World, reader: DirectoryReader | None = None
) -> Directory:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **conn.client_kwargs())
    await consumer.start()
    try:
        return await read_all(consumer, w.root.public, w.store, topic=topic, reader=reader)
    finally:
        await consumer.stop()


async def test_published_directory_reads_back_and_verifies(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    await _publish(kafka_conn, topic, w.directory.entries)
    d = await _read(kafka_conn, topic, w)
    assert list(d) == list(w.directory)
    assert d.entries == w.directory.entries
    d.verify(w.root.public, w.store)
    fr = w.secrets["FR"]
    assert bytes(d.signing_key("FR", fr.signing_key_id, T0)) == bytes(fr.signing.verify_key)


async def test_a_republished_lower_serial_is_counted_not_raised(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    old_fr = w.directory.entries["FR"]
    await _publish(kafka_conn, topic, w.directory.entries)
    w.directory.put(dataclasses.replace(w.directory.record("FR"), serial=2))
    new_fr = w.directory.sign(w.root, w.store)["FR"]
    await _publish(kafka_conn, topic, {"FR": new_fr})
    d = await _read(kafka_conn, topic, w)
    assert d.record("FR").serial == 2 and d.entries["FR"] == new_fr

    await _publish(kafka_conn, topic, {"FR": old_fr})  # replay of a genuine, older record
    outcomes: Counter[str] = Counter()
    reader = DirectoryReader(w.root.public, w.store, on_outcome=lambda o: outcomes.update([o]))
    d = await _read(kafka_conn, topic, w, reader)  # start-up does not fail on it
    assert d.record("FR").serial == 2 and d.entries["FR"] == new_fr
    assert outcomes == {"applied": 5, "rollback": 1}


async def _wait_compacted(conn: KafkaConnection, topic: str, gone: bytes) -> None:
    """Roll segments (a tombstone on a spare key) until the cleaner has removed ``gone``.

    Each look is a whole read from the log start by a new consumer: a consumer that
    is sought back can still hand out a fetch made before the seek (records past the
    end it read to), and a partial read would see ``gone`` missing too early."""
    from aiokafka import TopicPartition

    producer = AIOKafkaProducer(**conn.client_kwargs())
    await producer.start()
    tp = TopicPartition(topic, 0)
    deadline = time.monotonic() + 90
    try:
        while True:
            await producer.send_and_wait(topic, key=b"ZZ-FILLER", value=None)
            consumer = AIOKafkaConsumer(enable_auto_commit=False, **conn.client_kwargs())
            await consumer.start()
            try:
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                start = (await consumer.beginning_offsets([tp]))[tp]
                end = (await consumer.end_offsets([tp]))[tp]
                records: list[Any] = []
                while await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    records += batch.get(tp, [])
            finally:
                await consumer.stop()
            assert not records or records[0].offset >= start
            if gone not in [r.value for r in records if r.offset < end]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} not compacted within 90 s")
            await asyncio.sleep(0.5)  # the segment rolls on the next append after segment.ms
    finally:
        await producer.stop()


async def test_rollback_after_revocation_and_compaction_is_not_trusted(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """Issue 11 item 4: the pre-revocation entry re-published after the revocation.

    The broker really compacts the topic, so the revoked entry is gone and the
    replayed old one is what every reader finds. A fresh reader (no state)
    does not trust FR thanks to the manifest; a reader that had read the
    revocation before does not trust it thanks to its persisted marks; and
    neither start-up fails.
    """
    w = make_world()
    topic = unique_name("directory")
    config = {
        "cleanup.policy": "compact",
        "segment.ms": "500",
        "min.cleanable.dirty.ratio": "0.001",
        "min.compaction.lag.ms": "0",
    }
    assert await ensure_topics(kafka_conn, [TopicSpec(topic, 1, config=config)]) == [topic]
    m = w.directory.manifest(version=1, issued_ms=T0, expires_ms=T0 + DAY)
    await _publish(kafka_conn, topic, w.directory.entries, sign_manifest(m, w.root, w.store))
    old_fr = w.directory.entries["FR"]
    fr = w.directory.record("FR")
    w.directory.put(
        dataclasses.replace(
            fr,
            serial=2,
            signing_keys=tuple(
                dataclasses.replace(k, status=Status.REVOKED, revoked_at_ms=T0)
                for k in fr.signing_keys
            ),
        )
    )
    revoked_fr = w.directory.sign(w.root, w.store)["FR"]
    m = w.directory.manifest(version=2, issued_ms=T0 + 1, expires_ms=T0 + DAY)
    await _publish(kafka_conn, topic, {"FR": revoked_fr}, sign_manifest(m, w.root, w.store))

    state_path = tmp_path / "directory-state.sqlite3"
    state = DirectoryState(state_path)
    d = await _read(kafka_conn, topic, w, DirectoryReader(w.root.public, w.store, state=state))
    state.close()
    assert not _trusts(d, w, "FR")  # revoked, as published

    await _publish(kafka_conn, topic, {"FR": old_fr})  # the attack
    await _wait_compacted(kafka_conn, topic, revoked_fr)

    fresh: Counter[str] = Counter()
    reader = DirectoryReader(w.root.public, w.store, on_outcome=lambda o: fresh.update([o]))
    d = await _read(kafka_conn, topic, w, reader)
    assert reader.version == 2 and "FR" in reader.withheld
    assert "FR" not in d and not _trusts(d, w, "FR")
    assert _trusts(d, w, "JP")
    assert fresh["applied"] == 4 and fresh["manifest"] == 1

    stateful: Counter[str] = Counter()
    reader = DirectoryReader(
        w.root.public,
        w.store,
        state=DirectoryState(state_path),
        on_outcome=lambda o: stateful.update([o]),
    )
    d = await _read(kafka_conn, topic, w, reader)
    reader.state.close()
    assert "FR" not in d and not _trusts(d, w, "FR")
    assert _trusts(d, w, "JP")
    assert stateful["rollback"] == 1 and stateful["superseded"] == 1


def _trusts(d: Directory, w: World, code: str) -> bool:
    try:
        d.signing_key(code, w.secrets[code].signing_key_id, T0)
    except VerificationError:
        return False
    return True


async def test_cli_manifest_publishes_entries_and_manifest(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    from i24net.cli import main
    from i24net.keys import ROOT_NAME, save_root

    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    save_root(w.root, tmp_path / "root")
    (tmp_path / "entries").mkdir()
    for code, entry in w.directory.entries.items():
        (tmp_path / "entries" / f"{code}.entry").write_bytes(entry)
    argv = [
        "directory",
        "manifest",
        "--entries",
        str(tmp_path / "entries"),
        "--root-secret",
        str(tmp_path / "root" / f"{ROOT_NAME}.secret.json"),
        "--version",
        "3",
        "--bootstrap",
        kafka_conn.bootstrap,
        "--topic",
        topic,
        "--with-entries",
    ]
    assert await asyncio.to_thread(main, argv) == 0
    reader = DirectoryReader(w.root.public, w.store)
    d = await _read(kafka_conn, topic, w, reader)
    assert reader.version == 3 and not reader.unprotected and reader.withheld == {}
    assert list(d) == list(w.directory)


async def test_a_root_rotation_on_the_topic_hands_over_to_the_new_root(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    """A reader that pins only the old root learns the new one from the topic, whatever
    order it reads the partitions in: re-signed entries read before the rotation (they
    were published first) are held, then applied once the rotation is read."""
    from world import seed

    from i24net.directory.roots import sign_rotation
    from i24net.keys import RootSecrets

    w = make_world()
    new = RootSecrets.from_seed(seed("root-2"), created_ms=T0)
    topic = await _topic(kafka_conn, unique_name)
    await _publish(kafka_conn, topic, w.directory.entries)
    rotated = Directory([dataclasses.replace(r, serial=2) for r in w.directory])
    entries = rotated.sign(new, w.store)
    manifest = sign_manifest(
        rotated.manifest(version=2, issued_ms=T0, expires_ms=T0 + DAY), new, w.store
    )
    await _publish(kafka_conn, topic, entries, manifest)  # the rotation not yet published
    rotation = sign_rotation(
        w.root, new, w.store, new_valid_from_ms=T0, old_valid_until_ms=T0 + DAY, issued_ms=T0
    )
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka_conn.client_kwargs())
    await producer.start()
    try:
        await publish(producer, {}, topic=topic, rotations={new.key_id: rotation})
    finally:
        await producer.stop()
    outcomes: Counter[str] = Counter()
    reader = DirectoryReader(
        w.root.public, w.store, clock=w.clock, on_outcome=lambda o: outcomes.update([o])
    )
    d = await _read(kafka_conn, topic, w, reader)
    assert {r.station: r.serial for r in d} == {code: 2 for code in w.directory.entries}
    assert d.entries == entries
    assert reader.version == 2 and not reader.withheld
    assert new.key_id in reader.roots
    assert outcomes["root_rotation"] == 1
    # every entry applied twice (old root, then new), the manifest once: none lost while held
    assert outcomes["applied"] == 2 * len(entries) and outcomes["manifest"] == 1


async def test_rotate_root_command_publishes_the_rotation_entries_and_manifest(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    from world import seed

    from i24net.cli import main
    from i24net.keys import ROOT_NAME, RootSecrets, save_root

    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    await _publish(kafka_conn, topic, w.directory.entries)
    save_root(w.root, tmp_path / "old")
    new = RootSecrets.from_seed(seed("root-2"), created_ms=T0)
    save_root(new, tmp_path / "new")
    (tmp_path / "entries").mkdir()
    for code, entry in w.directory.entries.items():
        (tmp_path / "entries" / f"{code}.entry").write_bytes(entry)
    argv = ["directory", "rotate-root", "--out", str(tmp_path / "rotated")]
    argv += ["--old", str(tmp_path / "old" / f"{ROOT_NAME}.secret.json")]
    argv += ["--new", str(tmp_path / "new" / f"{ROOT_NAME}.secret.json")]
    argv += ["--entries", str(tmp_path / "entries")]
    argv += ["--bootstrap", kafka_conn.bootstrap, "--topic", topic]
    assert await asyncio.to_thread(main, argv) == 0
    reader = DirectoryReader(w.root.public, w.store)  # pins only the old root, real clock
    d = await _read(kafka_conn, topic, w, reader)
    assert new.key_id in reader.roots and reader.version > 0 and not reader.withheld
    assert {r.station: r.serial for r in d} == {code: 2 for code in w.directory.entries}
