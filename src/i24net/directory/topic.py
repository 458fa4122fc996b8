"""Publishing and reading the log-compacted ``i24.directory`` topic.

The functions take an already-started aiokafka producer or consumer, so the
caller owns connection settings, TLS and lifecycle. Key = station code
(UTF-8), value = the signed ``net.i24.DirectoryEntry``; the GS-signed
manifest (:mod:`i24net.directory.manifest`) sits on the same topic under the
reserved key ``@manifest``, and each GS root rotation
(:mod:`i24net.directory.roots`) under ``@root/<new root key id>``, so that
they are compacted like the entries, read by the same consumers and written
under the same ACL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from i24net.directory._directory import Directory
from i24net.directory.manifest import MANIFEST_KEY
from i24net.directory.reader import DirectoryReader
from i24net.directory.roots import ROTATION_PREFIX, Roots
from i24net.errors import DirectoryError
from i24net.keys import RootPublic
from i24net.schemas import SchemaStore

TOPIC = "i24.directory"


async def publish(
    producer: Any,
    entries: Mapping[str, bytes],
    *,
    topic: str = TOPIC,
    manifest: bytes | None = None,
    rotations: Mapping[str, bytes] | None = None,
) -> None:
    """Send every signed entry, keyed by station code, and wait for the acks.

    ``rotations`` (new root key id -> signed rotation value) are sent and
    acknowledged first, so that a reader meets a new root before what it signed.
    ``manifest`` (a signed manifest value) is sent after every entry is
    acknowledged, so that it never names an entry the topic does not hold.
    """
    for new_key_id, value in sorted((rotations or {}).items()):
        key = (ROTATION_PREFIX + new_key_id).encode()
        await (await producer.send(topic, key=key, value=value))
    futures = [
        await producer.send(topic, key=code.encode(), value=entry)
        for code, entry in sorted(entries.items())
    ]
    for fut in futures:
        await fut
    if manifest is not None:
        await (await producer.send(topic, key=MANIFEST_KEY.encode(), value=manifest))


async def read_all(
    consumer: Any,
    root: RootPublic | Roots,
    store: SchemaStore,
    *,
    topic: str = TOPIC,
    reader: DirectoryReader | None = None,
) -> Directory:
    """Read the topic from the beginning to its current end into a verified Directory.

    ``consumer`` must be started and unsubscribed; it is assigned every
    partition of ``topic``. Every value goes through ``reader`` (by default a
    new one with its marks in memory; pass a ``DirectoryReader`` with a
    persisted ``DirectoryState`` for protection across restarts): a bad,
    older or equivocating value is counted and skipped, never raised. The
    directory returned is ``reader.directory``. Tombstones (null values)
    remove nothing: a station leaves the directory by a REVOKED record, never
    by deletion. Raises DirectoryError only when the topic does not exist.
    """
    from aiokafka import TopicPartition

    if reader is None:
        reader = DirectoryReader(root, store)
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        # An unsubscribed consumer holds no metadata for the topic yet: fetch it.
        await consumer._client.add_topic(topic)
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise DirectoryError(f"directory topic {topic} does not exist or has no partitions")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    pending = {tp for tp in tps if end[tp] > 0}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, records in batch.items():
            for rec in records:
                reader.offer(rec.value, f"{topic}:{rec.partition}:{rec.offset}")
            if records and records[-1].offset + 1 >= end[tp]:
                pending.discard(tp)
    reader.caught_up()
    return reader.directory
