"""The router service: consume ``i24.out``, decide, produce, all in one Kafka transaction.

    async with RouterApp(settings, registry) as app:
        await app.run(stop)

Per batch (one transaction, offsets sent **before** the records, aiokafka
#1098/#1004/#905): verify -> expand recipients -> screen -> deliver / hold /
refuse -> audit records -> status notices. The replay window records a
message id only after its transaction committed, so a crash re-processes
instead of losing. The transactional id ``i24.router.<instance>`` is stable
across restarts: a restarted instance fences its zombie and aborts its open
transaction. A revoked partition waits for the batch in flight (the
rebalance listener takes the processing lock), so two instances never
commit the same records.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from i24net.audit import (
    Action,
    Chain,
    Entry,
    Head,
    HeadCheck,
    HeadSigner,
    ProblemKind,
    Report,
    encode_reason,
    head_of,
    read_records,
    verify_chain,
)
from i24net.audit.topic import prime
from i24net.clock import Clock, system_clock
from i24net.directory import Directory, DirectoryReader, DirectoryState, read_all
from i24net.directory.roots import load_roots
from i24net.errors import BrokerError, Reason, ServiceError
from i24net.kafka import TopicSpec, ensure_topics
from i24net.keys import load_station
from i24net.policy import Engine, load_policy
from i24net.provision import OUT_RETENTION_MS, OUT_TOPIC_CONFIG, SEEN_RETENTION_MS
from i24net.replay import ReplayWindow
from i24net.router.keyring import DLQ_RETENTION_MS, RouterKeyring, hold_ms
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Out, Pipeline, VersionMetrics
from i24net.router.scheduler import RANK, FairScheduler
from i24net.router.settings import RouterSettings
from i24net.schemas import SchemaStore

log = logging.getLogger(__name__)

MAX_BYTES = 2 << 20
URGENT_RANK = RANK["FLASH"]
"""A queued record of this precedence (or higher) ends the linger at once."""
STOP_TIMEOUT_S = 15.0
"""How long :meth:`RouterApp.stop` waits for each Kafka client (a consumer in the middle
of a rebalance could otherwise wait for the group's rebalance timeout)."""


def topic_specs(settings: RouterSettings) -> list[TopicSpec]:
    """The topics the router writes besides ``i24.in.*``, and the ingress topic it reads
    (docs/topics.md; created here when missing, as in tests and the demo: ``i24net
    provision`` makes them all on a secured broker)."""
    t = settings.topics
    big = {"max.message.bytes": str(MAX_BYTES)}
    return [
        TopicSpec(
            t.ingress,
            settings.router.ingress_partitions,
            config={**big, **OUT_TOPIC_CONFIG, "retention.ms": str(OUT_RETENTION_MS)},
        ),
        TopicSpec(t.quarantine, 3, config={**big, "retention.ms": str(90 * 86_400_000)}),
        TopicSpec(t.dlq, 1, config={**big, "retention.ms": str(DLQ_RETENTION_MS)}),
        TopicSpec(t.audit, 1, config={"retention.ms": "-1"}),
        TopicSpec(t.seen, 1, config={"retention.ms": str(SEEN_RETENTION_MS)}),
    ]


def _rebalance_listener(app: RouterApp) -> Any:
    """Waits for the batch in flight before giving partitions away."""
    from aiokafka import ConsumerRebalanceListener

    class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            app.revocations_waiting += 1
            try:
                async with app.lock:
                    app._revoked(revoked)
            finally:
                app.revocations_waiting -= 1

        async def on_partitions_assigned(self, assigned: Any) -> None:
            # Every id that the partitions' previous owner committed is in the changelog
            # below its end now (it committed before giving them up): read up to it
            # before the first record of these partitions is decided.
            await app.catch_up_seen()
            log.info("assigned %d partitions", len(assigned))

    return _Rebalance()


class RouterApp:
    """One router instance (see the module docstring)."""

    def __init__(
        self,
        settings: RouterSettings,
        registry: CollectorRegistry,
        *,
        clock: Clock = system_clock,
        store: SchemaStore | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``monotonic``: the clock of the batching windows (tests drive it)."""
        self.settings = settings
        self._monotonic = monotonic
        self.registry = registry
        self.clock = clock
        self.store = store or SchemaStore.default()
        self.metrics = RouterMetrics.create(registry)
        self.lock = asyncio.Lock()
        self.scheduler: FairScheduler[Any] = FairScheduler(
            settings.topics.out_prefix,
            settings.topics.ingress,
            waking_rate=settings.router.batch_waking_rate,
            clock=monotonic,
        )
        self.conn = settings.kafka.connection(f"i24net-router-{settings.router.instance}")
        self.directory = Directory(())
        self.ready = asyncio.Event()
        self._producer: Any = None
        self._consumer: Any = None
        self._dir_consumer: Any = None
        self._seen_consumer: Any = None
        self._policy_stat: tuple[int, int] | None = None
        self._dir_state: DirectoryState | None = None
        self._dir_reader: DirectoryReader | None = None
        self._replay: ReplayWindow | None = None
        self._pipeline: Pipeline | None = None
        self._chain: Chain | None = None
        self._head_signer_station = ""
        self._stopped = False
        self._paused: set[Any] = set()
        self.committed_batches = 0
        self._done: dict[Any, int] = {}
        self._active: dict[str, float] = {}  # sender -> when its last record was fetched
        self._first_fetched: float | None = None  # when the oldest queued record was fetched
        self._lag_gauges: dict[Any, Any] = {}  # tp -> its consumer_lag child
        self._lag_due = 0.0  # monotonic time of the next lag update
        self._keyring: RouterKeyring | None = None
        self._destroyed_unaudited: list[str] = []
        """Key ids destroyed whose KEY_DESTROYED audit entry is not committed yet."""
        self.revocations_waiting = 0
        """Rebalance callbacks waiting for the processing lock (tests watch it)."""

    # --- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> RouterApp:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        s = self.settings
        secrets = load_station(s.keys.gs_secret)
        hold = s.keys.previous_hold_s
        self._keyring = RouterKeyring.load(
            secrets,
            s.keys.previous,
            hold_ms=(
                hold_ms(OUT_RETENTION_MS, s.review.deadlines, DLQ_RETENTION_MS)
                if hold is None
                else int(hold * 1000)
            ),
            registry=self.registry,
        )
        previous = list(self._keyring.previous)
        root = load_roots([s.keys.root_public, *s.keys.roots])  # a rotation on the topic adds one
        engine, digest, self._policy_stat = _load_policy(s.policy.file)
        await ensure_topics(self.conn, topic_specs(s))
        kw = self.conn.client_kwargs()
        # Directory: read fully, then tailed by a background task. The reader keeps the
        # highest serial accepted per station and the newest manifest in SQLite, so
        # neither a re-published old entry nor a compacted topic rolls it back.
        s.state.dir.mkdir(parents=True, exist_ok=True)
        self._dir_state = DirectoryState(s.state.dir / f"directory-{s.router.instance}.sqlite3")
        self._dir_reader = DirectoryReader(
            root,
            self.store,
            state=self._dir_state,
            clock=self.clock,
            on_outcome=lambda o: self.metrics.directory_updates.labels(o.value).inc(),
        )
        self._dir_consumer = AIOKafkaConsumer(
            **kw, enable_auto_commit=False, isolation_level="read_committed"
        )
        await self._dir_consumer.start()
        await prime(self._dir_consumer, [s.topics.directory])
        self.directory = await read_all(
            self._dir_consumer, root, self.store, topic=s.topics.directory, reader=self._dir_reader
        )
        self._directory_gauges()
        if len(self.directory) == 0:
            raise ServiceError(f"directory topic {s.topics.directory} is empty; publish it first")
        # A cache of i24.router.seen (durable with the deliveries): no fsync per commit.
        self._replay = ReplayWindow(
            clock=self.clock,
            path=s.state.dir / f"replay-{s.router.instance}.sqlite3",
            synchronous=False,
        )
        await self._start_seen()
        self._producer = await self._new_producer()  # fences a zombie with our transactional id
        head = await self._recover_head()
        # the GS signing key signs the chain's head once per transaction (docs/router.md)
        signer = HeadSigner(secrets.signing_key_id, secrets.signing)
        self._chain = Chain(s.chain_id, self.store, head, signer=signer)
        self._head_signer_station = secrets.station
        self.metrics.audit_chain_length.labels(s.chain_id).set(head.next_sequence)
        log.info("audit chain %s continues at sequence %d", s.chain_id, head.next_sequence)
        self._pipeline = Pipeline(
            secrets=secrets,
            directory=self.directory,
            replay=self._replay,
            engine=engine,
            topics=s.topics,
            store=self.store,
            actor=s.chain_id,
            metrics=self.metrics,
            previous=previous,
            notice_lifetime_ms=s.router.notice_lifetime_ms,
            versions=VersionMetrics.create(self.registry),
        )
        self._set_policy(engine, digest)
        self._consumer = AIOKafkaConsumer(
            **kw,
            group_id=s.router.group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            metadata_max_age_ms=s.router.metadata_max_age_ms,
            session_timeout_ms=s.router.session_timeout_ms,
            heartbeat_interval_ms=max(1000, s.router.session_timeout_ms // 3),
            max_poll_interval_ms=300_000,
            max_partition_fetch_bytes=MAX_BYTES,
            fetch_max_bytes=16 * MAX_BYTES,
            # aiokafka leaves a partition whose fetched records are still unconsumed (e.g.
            # during a slow commit) out of its next fetch, and the broker then holds that
            # fetch up to fetch_max_wait_ms if the partitions it lists are empty: 500 ms
            # stalls were seen in 4 of 8 flood runs (docs/router.md, fair scheduling).
            fetch_max_wait_ms=50,
        )
        self._consumer.subscribe(
            pattern=s.topics.out_pattern(legacy=s.router.legacy_out_topics),
            listener=_rebalance_listener(self),
        )
        await self._consumer.start()
        self.ready.set()

    async def _new_producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        s = self.settings
        p = AIOKafkaProducer(
            **self.conn.client_kwargs(),
            transactional_id=s.transactional_id,
            enable_idempotence=True,
            transaction_timeout_ms=s.router.transaction_timeout_ms,
            linger_ms=2,
            max_request_size=MAX_BYTES,
            # One batch per partition per transaction: a full batch makes ``send`` wait
            # for its delivery, which serialised broadcasts (195 partitions).
            max_batch_size=MAX_BYTES // 2,
            # Back-to-back transactions often meet CONCURRENT_TRANSACTIONS while the previous
            # markers are written; aiokafka's default 100 ms sleep then dominated the
            # router's latency (p90 121 -> 66 ms with 10 ms, docs/benchmarks.md).
            retry_backoff_ms=10,
        )
        try:
            await p.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await p.stop()
            raise
        return p

    async def _reset_producer(self) -> None:
        """Replace a producer whose transaction state is broken (aiokafka cannot leave
        FATAL_ERROR); the new one, same transactional id, aborts what was left open."""
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()
        self._producer = await self._new_producer()
        log.warning("transactional producer restarted")

    async def _recover_head(self) -> Head:
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(
            **self.conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
        )
        await c.start()
        try:
            records = [r async for r in read_records(c, topic=self.settings.topics.audit)]
        finally:
            await c.stop()
        return head_of(records, self.settings.chain_id, self.store)

    async def stop(self) -> None:
        """Stop every client (idempotent, bounded in time); a batch in flight is finished first.

        The processing lock is only taken to wait for that batch, never held while the
        consumer stops: leaving the group (or a rebalance started by another member)
        runs ``on_partitions_revoked``, which takes the lock too (a deadlock otherwise).
        Once ``_stopped`` is set no new batch starts (``process`` and ``execute`` check
        it under the lock). Each client gets ``STOP_TIMEOUT_S`` to stop.
        """
        if self._stopped:
            return
        self._stopped = True
        self.ready.clear()
        async with self.lock:
            pass  # the batch in flight has committed (or aborted)
        for client in (self._consumer, self._producer, self._dir_consumer, self._seen_consumer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)
                except TimeoutError:
                    log.warning("%s did not stop within %ss", type(client).__name__, STOP_TIMEOUT_S)
                except Exception as exc:
                    log.debug("stopping %s: %r", type(client).__name__, exc)
        async with self.lock:
            if self._replay is not None:
                self._replay.close()
            if self._dir_state is not None:
                self._dir_state.close()

    def _revoked(self, revoked: Any) -> None:
        """Forget what was queued for partitions given away (the caller holds the lock)."""
        self.scheduler.drop((tp.topic, tp.partition) for tp in revoked)
        for tp in revoked:
            self._done.pop(tp, None)
            self._paused.discard(tp)
            if self._lag_gauges.pop(tp, None) is not None:
                with contextlib.suppress(Exception):
                    self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    # --- the screening policy ------------------------------------------------------------

    def _set_policy(self, engine: Engine, digest: str) -> None:
        p = self.pipeline
        old = p.policy_digest
        p.engine, p.policy_digest = engine, digest
        if old is not None and old != digest:
            with contextlib.suppress(KeyError):
                self.metrics.policy_info.remove(old)
        self.metrics.policy_info.labels(digest).set(1)

    async def reload_policy(self) -> str | None:
        """Read the policy file again and screen with it from the next record on (SIGHUP,
        or the file changed). A file that does not load leaves the policy in force; returns
        the new digest, or None."""
        path = self.settings.policy.file
        if self._pipeline is None:
            log.warning("policy reload asked before the router started: it reads the file then")
            return None
        try:
            engine, digest, stat = await asyncio.to_thread(_load_policy, path)
        except Exception as exc:
            self.metrics.policy_reloads.labels("failed").inc()
            log.error("policy %s not reloaded, the previous one stays in force: %s", path, exc)
            return None
        async with self.lock:  # between two batches
            previous = self.pipeline.policy_digest
            self._set_policy(engine, digest)
            self._policy_stat = stat
        self.metrics.policy_reloads.labels("reloaded").inc()
        log.info("policy %s reloaded: %s -> %s", path, previous, digest)
        return digest

    async def _watch_policy(self, stop: asyncio.Event) -> None:
        interval = self.settings.policy.watch_interval_ms / 1000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            try:
                st = self.settings.policy.file.stat()
            except OSError:
                continue  # being replaced: the next look sees the new file
            if (st.st_mtime_ns, st.st_size) != self._policy_stat:
                self._policy_stat = (st.st_mtime_ns, st.st_size)
                await self.reload_policy()

    # --- the replay window's changelog ------------------------------------------------

    async def _start_seen(self) -> None:
        """Restore the replay window from ``i24.router.seen``: from the offset this
        instance's SQLite copy reached (or the beginning), to the end."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(
            **self.conn.client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",  # the mark's offset may have passed retention
        )
        await c.start()
        self._seen_consumer = c
        tp = TopicPartition(self.settings.topics.seen, 0)
        c.assign([tp])
        mark = self.replay.mark(SEEN_MARK)
        if mark is None:
            await c.seek_to_beginning(tp)
        else:
            c.seek(tp, mark + 1)
        n = await self.catch_up_seen()
        log.info("replay window: %d ids from %s, %d held", n, tp.topic, len(self.replay))

    async def catch_up_seen(self) -> int:
        """Apply the changelog up to its end (last stable offset) now; returns the count."""
        c = self._seen_consumer
        if c is None:
            return 0
        from aiokafka import TopicPartition

        tp = TopicPartition(self.settings.topics.seen, 0)
        end = (await c.end_offsets([tp]))[tp]
        n = 0
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while await c.position(tp) < end:
            if time.monotonic() > deadline:
                raise ServiceError(f"{tp.topic} not read to offset {end} within the time bound")
            n += self._apply_seen(await c.getmany(tp, timeout_ms=500))
        return n

    async def _poll_seen(self) -> None:
        """Apply what other instances committed since the last look (no waiting)."""
        if self._seen_consumer is not None:
            self._apply_seen(await self._seen_consumer.getmany(timeout_ms=0))

    def _apply_seen(self, fetched: Any) -> int:
        items: list[tuple[str, int]] = []
        last = None
        for records in fetched.values():
            for r in records:
                last = r.offset
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    items.append((r.key.decode(), int(r.value)))
        if last is not None:
            self.replay.record_many(items, mark=(SEEN_MARK, last))
        return len(items)

    @property
    def replay(self) -> ReplayWindow:
        if self._replay is None:
            raise ServiceError("router not started")
        return self._replay

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise ServiceError("router not started")
        return self._pipeline

    @property
    def chain(self) -> Chain:
        if self._chain is None:
            raise ServiceError("router not started")
        return self._chain

    # --- main loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Route until ``stop`` is set."""
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._tail_directory(stop), name="directory")]
            if self.settings.policy.watch_interval_ms:
                tasks.append(tg.create_task(self._watch_policy(stop), name="policy-watch"))
            if self.settings.router.audit_verify_interval_ms:
                tasks.append(tg.create_task(self._audit_loop(stop), name="audit-verify"))
            try:
                while not stop.is_set() and not self._stopped:
                    await self._step()
            finally:
                for t in tasks:
                    t.cancel()

    async def _step(self) -> None:
        s = self.settings.router
        c = self._consumer
        sched = self.scheduler
        if not sched:
            self._first_fetched = None
        fetched = await c.getmany(
            timeout_ms=s.poll_timeout_ms if not sched else 0, max_records=2000
        )
        now = self._monotonic()
        if fetched:
            self._fetched(fetched, now)
        await self._linger()
        self._flow_control()
        batch = sched.next_batch(s.batch_max_records) if sched else []
        self.metrics.queued.set(len(sched))
        if batch:
            await self._poll_seen()
            budget = s.batch_shared_budget_ms if self._shared(now) else s.batch_budget_ms
            await self.process(batch, budget_s=budget / 1000, poll=self._waking)
        if now >= self._lag_due:
            self._lag_due = now + s.lag_interval_ms / 1000
            self._lag()

    async def _linger(self) -> None:
        """Fill the next transaction: fetch until ``batch_max_records`` are queued or
        ``batch_linger_ms`` passed since the first of them was fetched, whatever the number
        of senders (a commit costs a few round trips and ~1 ms of client CPU, 2-4 ms of the
        broker's: one per record was the router's main cost under load). A record never
        waits longer than ``batch_linger_ms`` for others; a queued FLASH record does not
        wait at all. A backlog (records left from the previous batch) is older than the
        window, so it is taken at once. Fairness inside the batch is the scheduler's order."""
        s = self.settings.router
        first = self._first_fetched
        if first is None or not s.batch_linger_ms:
            return
        deadline = first + s.batch_linger_ms / 1000
        sched = self.scheduler
        while len(sched) < s.batch_max_records and sched.best_rank() > URGENT_RANK:
            left_ms = int((deadline - self._monotonic()) * 1000)
            if left_ms <= 0:
                return
            more = await self._consumer.getmany(timeout_ms=left_ms, max_records=2000)
            if more:
                self._fetched(more, self._monotonic())

    def _fetched(self, fetched: Any, now: float) -> None:
        for tp, records in fetched.items():
            if records:
                if self._first_fetched is None:
                    self._first_fetched = now
                self.scheduler.add(records)
                self._active[self.scheduler.sender(tp.topic, tp.partition)] = now

    def _shared(self, now: float) -> bool:
        """Whether two or more senders were active within ``active_window_ms``."""
        active = self._active
        if not active:
            return len(self.scheduler.senders()) > 1
        horizon = now - self.settings.router.active_window_ms / 1000
        for sender in [k for k, t in active.items() if t < horizon]:
            del active[sender]
        if len(active) > 1:
            return True
        return len(active.keys() | self.scheduler.senders()) > 1

    def _flow_control(self) -> None:
        """Pause a partition whose queue reached ``buffer_per_partition``, resume it at half.

        Only the partitions with queued records (and the paused ones) are looked at,
        not every assigned partition (hundreds of ``i24.out.*`` partitions).
        """
        cap = self.settings.router.buffer_per_partition
        c = self._consumer
        for topic, partition in self.scheduler.backlog(cap):
            tp = _tp(topic, partition)
            if tp not in self._paused:
                with contextlib.suppress(Exception):  # no longer assigned
                    c.pause(tp)
                    self._paused.add(tp)
        if self._paused:
            for tp in list(self._paused):
                if self.scheduler.queued(tp.topic, tp.partition) < cap // 2:
                    with contextlib.suppress(Exception):
                        c.resume(tp)
                    self._paused.discard(tp)

    def _lag(self) -> None:
        """``consumer_lag`` of every assigned partition, from the consumer's local state
        (the fetch responses' high watermark and last stable offset; no request). Runs
        every ``lag_interval_ms``, not after every batch."""
        c = self._consumer
        gauges = self._lag_gauges
        lag = self.metrics.consumer_lag
        for tp in c.assignment():
            done = self._done.get(tp)
            if done is None:
                continue
            end = c.last_stable_offset(tp) or c.highwater(tp)
            if end is None:
                continue
            g = gauges.get(tp)
            if g is None:
                g = gauges[tp] = lag.labels(tp.topic, str(tp.partition))
            g.set(max(0, end - done))

    async def _waking(self, lanes: set[str]) -> list[Any]:
        """Records that arrived, while a batch of ``lanes`` is being decided, from the
        other lanes (only their partitions are fetched: the busy lanes' next records stay
        in the consumer's buffer). The loop gets a turn first, so that the fetcher can
        read what the broker answered meanwhile."""
        await asyncio.sleep(0)
        c = self._consumer
        sched = self.scheduler
        tps = [tp for tp in c.assignment() if sched.sender(tp.topic, tp.partition) not in lanes]
        if not tps:
            return []
        try:
            more = await c.getmany(
                *tps, timeout_ms=0, max_records=self.settings.router.batch_max_records
            )
        except Exception as exc:  # the loop's own getmany meets it next; finish this batch
            log.debug("looking for waking lanes: %r", exc)
            return []
        if not more:
            return []
        self._fetched(more, self._monotonic())
        return sched.next_batch(self.settings.router.batch_max_records, exclude=lanes)

    async def process(
        self,
        batch: Sequence[Any],
        *,
        budget_s: float | None = None,
        poll: Callable[[set[str]], Awaitable[list[Any]]] | None = None,
    ) -> list[Decided]:
        """Decide the records of ``batch`` in order and commit them in one transaction.

        With ``budget_s``, deciding stops once that much time was spent (at least one
        record is decided): the rest goes back to the scheduler for the next batch.
        A batch with a waking lane's records (a quiet station during another's flood,
        ``FairScheduler.waking_end``) stops once they are decided and
        ``batch_waking_budget_ms`` was spent. With ``poll`` (the consumer loop's
        ``_waking``), every ``batch_poll_ms`` of deciding looks for records of other
        lanes: those are decided next, and the batch then stops the same way.
        A transaction that fails for a reason the broker may get over (retriable) is
        retried from the first record; one that the broker refused for what it holds
        (e.g. a record too large for its topic) is split in halves until the record at
        fault is alone, and that record is dead-lettered (``broker_refused``) with a
        notice to its sender: one record never wedges its partition.
        """
        t0 = time.perf_counter()
        s = self.settings.router
        async with self.lock:
            if self._stopped:  # stopping: leave the records to the group's next owner
                return []
            ids: set[str] = set()
            items: list[tuple[Any, Decided]] = []
            batch = list(batch)
            sched = self.scheduler
            waking_end = sched.waking_end if budget_s is not None else 0
            waking_s = s.batch_waking_budget_ms / 1000
            poll_s = s.batch_poll_ms / 1000
            next_poll = t0 + poll_s
            lanes = {sched.sender(r.topic, r.partition) for r in batch}
            i = 0
            while i < len(batch):
                if budget_s is not None and i >= max(1, waking_end):
                    spent = time.perf_counter() - t0
                    if spent >= budget_s or (waking_end and spent >= waking_s):
                        sched.put_back(batch[i:])
                        del batch[i:]
                        break
                    if poll is not None and spent >= next_poll - t0:
                        extra = await poll(lanes)
                        next_poll = time.perf_counter() + poll_s
                        if extra:  # decided next; the rest of the batch goes back after them
                            batch[i:i] = extra
                            lanes.update(sched.sender(r.topic, r.partition) for r in extra)
                            if sched.waking_end:
                                waking_end = max(waking_end, i + sched.waking_end)
                r = batch[i]
                i += 1
                origin = f"{r.topic}:{r.partition}:{r.offset}"
                d = self.pipeline.process(
                    r.topic, origin, r.key, r.value, list(r.headers or ()), ids, _appended(r)
                )
                items.append((r, d))
            committed = await self._commit_items(items)
        decided = [d for _, d in committed]
        if committed:
            self._after_commit(decided, time.perf_counter() - t0, len(committed))
        return decided

    async def _commit_items(self, items: list[tuple[Any, Decided]]) -> list[tuple[Any, Decided]]:
        """Commit ``items`` (records and their decisions, in batch order); returns what was
        committed. On a retriable failure the partitions are sought back to the first
        uncommitted record. The caller holds the lock."""
        if not items:
            return []
        try:
            await self._commit(
                _offsets(r for r, _ in items),
                *_produced((d for _, d in items), self.settings.topics.seen),
            )
        except Exception as exc:
            self.metrics.transactions.labels("aborted").inc()
            if _fatal(exc):
                self._rewind(items)
                raise ServiceError(f"router transaction failed: {exc!r}") from exc
            if _retriable(exc):
                log.warning("transaction aborted, batch will be retried: %r", exc)
                self._rewind(items)
                return []
            if len(items) > 1:
                mid = len(items) // 2
                log.warning(
                    "transaction of %d records refused (%r): split to find the record at fault",
                    len(items),
                    exc,
                )
                first = await self._commit_items(items[:mid])
                if len(first) < mid:
                    self._rewind(items[len(first) :])
                    return first
                return first + await self._commit_items(items[mid:])
            return await self._dead_letter_refused(items[0], exc)
        self.metrics.transactions.labels("committed").inc()
        for r, _ in items:
            self._done[_tp(r.topic, r.partition)] = r.offset + 1
        self.committed_batches += 1
        return items

    async def _dead_letter_refused(
        self, item: tuple[Any, Decided], exc: Exception
    ) -> list[tuple[Any, Decided]]:
        """The broker refused what one record's decision produced: dead-letter it instead."""
        r, d = item
        origin = f"{r.topic}:{r.partition}:{r.offset}"
        log.error("record %s: the broker refused its outputs (%r): dead-lettered", origin, exc)
        dead = self.pipeline.dead_letter(
            self.pipeline.writer(r.topic),
            origin,
            r.key,
            r.value or b"",
            Reason.BROKER_REFUSED,
            header=d.header,
            hints=list(r.headers or ()),
        )
        try:
            await self._commit(_offsets([r]), *_produced([dead], self.settings.topics.seen))
        except Exception as again:
            self.metrics.transactions.labels("aborted").inc()
            self._rewind([item])
            if _fatal(again) or not _retriable(again):
                raise ServiceError(
                    f"cannot dead-letter record {origin}: {again!r} (after {exc!r})"
                ) from again
            return []
        self.metrics.transactions.labels("committed").inc()
        self._done[_tp(r.topic, r.partition)] = r.offset + 1
        self.committed_batches += 1
        return [(r, dead)]

    def _rewind(self, items: Sequence[tuple[Any, Decided]]) -> None:
        """Seek each partition of ``items`` back to its first record (and forget what the
        scheduler holds for it: the consumer fetches it again)."""
        firsts: dict[Any, int] = {}
        for r, _ in items:
            firsts.setdefault(_tp(r.topic, r.partition), r.offset)
        for tp, first in firsts.items():
            self.scheduler.drop([(tp.topic, tp.partition)])
            with contextlib.suppress(Exception):
                self._consumer.seek(tp, first)

    async def execute(self, decided: Sequence[Decided]) -> None:
        """Commit decisions made outside the consumer loop (review) in one transaction."""
        async with self.lock:
            if self._stopped:
                raise ServiceError("router stopping")
            await self._commit({}, *_produced(decided, self.settings.topics.seen))
        self._after_commit(decided, 0.0, 0)

    async def _commit(
        self, offsets: dict[Any, Any], outputs: list[Out], entries: list[Entry]
    ) -> None:
        """One transaction: offsets first, then every record; each send is confirmed
        before the commit (aiokafka would commit over a failed send, KAFKA-9279), so a
        failure aborts the whole transaction instead of losing a record."""
        chain = self.chain
        saved = chain.head
        appended = chain.extend(entries, self.clock())
        p = self._producer
        sent = False
        try:
            async with p.transaction():
                if offsets:
                    await p.send_offsets_to_transaction(offsets, self.settings.router.group)
                futures = []
                for o in outputs:
                    sent = True
                    futures.append(
                        await p.send(o.topic, key=o.key, value=o.value, headers=list(o.headers))
                    )
                for a in appended:
                    sent = True
                    futures.append(
                        await p.send(
                            self.settings.topics.audit, key=a.key, value=a.value, headers=a.headers
                        )
                    )
                await asyncio.gather(*futures)
                self._fault("before_commit")
        except BaseException as exc:
            chain.reset(saved)
            if isinstance(exc, Exception) and not _fatal(exc) and (sent or _broken(p)):
                # A failed send leaves the idempotent producer's sequence numbers in doubt
                # (OutOfOrderSequenceNumber on the next transaction): start a fresh one.
                try:
                    await self._reset_producer()
                except Exception as again:
                    raise BrokerError(f"cannot restart the producer: {again!r}") from exc
            raise
        self.metrics.audit_chain_length.labels(chain.chain_id).set(chain.head.next_sequence)

    def _fault(self, point: str) -> None:
        """Fault injection for tests (``[testing]`` settings): exit like kill -9 here."""
        after = self.settings.testing.exit_before_commit_after_batches
        if point == "before_commit" and after and self.committed_batches >= after:
            log.warning("testing: exiting with a transaction open (records sent, not committed)")
            os._exit(137)

    def _after_commit(self, decided: Sequence[Decided], seconds: float, n: int) -> None:
        replay = self._replay
        now = self.clock()
        if replay is not None:
            # In memory now; SQLite gets them once, read back from i24.router.seen with its
            # offset (_apply_seen): the changelog, not this copy, makes them durable.
            replay.record_many((d.record for d in decided if d.record is not None), persist=False)
        for d in decided:
            h = d.header
            kind = h.kind if h else "unknown"
            prec = h.precedence.value if h else "unknown"
            self.metrics.messages.labels(kind, prec, d.status).inc()
            if h is not None:
                self.metrics.sent_to_routed.labels(prec).observe(max(0, now - h.created_ms) / 1000)
        if n:
            self.metrics.batch_seconds.observe(seconds)
            self.metrics.batch_size.observe(n)

    # --- directory ----------------------------------------------------------------------

    async def _tail_directory(self, stop: asyncio.Event) -> None:
        c = self._dir_consumer
        while not stop.is_set():
            try:
                batch = await c.getmany(timeout_ms=self.settings.router.directory_refresh_ms)
            except Exception as exc:  # keep routing on the directory we have
                log.warning("directory refresh failed: %r", exc)
                await asyncio.sleep(1)
                continue
            reader = self._dir_reader
            for records in batch.values():
                for rec in records:
                    if reader is not None:  # never raises; counts and logs each outcome
                        reader.offer(rec.value, f"{rec.topic}:{rec.partition}:{rec.offset}")
            self._directory_gauges()  # every pass: the manifest's expiry moves on its own
            try:
                await self.retire_keys()
            except Exception as exc:  # retried at the next pass; routing goes on
                log.error("previous GS keys: destruction or its audit failed: %r", exc)

    async def retire_keys(self) -> list[str]:
        """Destroy previous GS keys no stored message can need any more (router/keyring.py),
        then audit each destruction (``KEY_DESTROYED``, the key id: never key material).
        Checked at every directory pass; a failed audit commit is retried at the next."""
        kr = self._keyring
        if kr is None or self._pipeline is None:
            return []
        gone = kr.retire(self.directory, self.clock())
        if gone:
            async with self.lock:
                self._pipeline.use_previous(kr.previous)
            self._destroyed_unaudited += gone
        if self._destroyed_unaudited:
            entries = [
                Entry(
                    Action.KEY_DESTROYED,
                    self.settings.chain_id,
                    sender=kr.current.station,
                    reason=encode_reason("key_rotation", [f"key_id:{kid}"]),
                )
                for kid in self._destroyed_unaudited
            ]
            async with self.lock:
                if self._stopped:
                    return gone
                await self._commit({}, [], entries)
            self._destroyed_unaudited = []
        return gone

    def _directory_gauges(self) -> None:
        m = self.metrics
        m.directory_stations.set(len(self.directory))
        m.directory_serial.set(max((r.serial for r in self.directory), default=0))
        r = self._dir_reader
        if r is not None:
            m.directory_manifest_version.set(r.version)
            expires = r.expires_in_s()
            m.directory_manifest_expiry.set(0.0 if expires is None else expires)
            m.directory_withheld.set(len(r.withheld))
            r.check_freshness()

    # --- audit verification ------------------------------------------------------------------

    async def verify_audit(self) -> Report:
        """Walk ``i24.audit`` (read_committed), verify every chain, export the problems.

        This instance's own chain is checked against its committed head too
        (``TRUNCATED`` if records at its end were removed).
        """
        from aiokafka import AIOKafkaConsumer

        async with self.lock:  # the head of committed transactions only
            head = self.chain.head
        c = AIOKafkaConsumer(
            **self.conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
        )
        await c.start()
        try:
            records = [r async for r in read_records(c, topic=self.settings.topics.audit)]
        finally:
            await c.stop()
        expect = {self.chain.chain_id: (head.next_sequence, head.last_hash)}
        # Signed heads are checked against the GS signing key of the directory this router
        # follows: a prefix rewritten with recomputed hashes is BAD_HEAD, records appended
        # after the last signed head are UNSIGNED (docs/router.md, "Signed heads").
        heads = HeadCheck(self._head_signer_station, self.directory.signing_key)
        report = await asyncio.to_thread(
            verify_chain,
            records,
            self.store,
            expect=expect if head.next_sequence else None,
            heads=heads,
        )
        counts = {k: 0 for k in ProblemKind}
        for problem in report.problems:
            counts[problem.kind] += 1
        for kind, n in counts.items():
            self.metrics.audit_chain_problems.labels(kind.value).set(n)
        self.metrics.audit_verified.set(time.time())
        for problem in report.problems[:20]:
            log.error("audit chain problem: %s", problem)
        return report

    async def _audit_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.router.audit_verify_interval_ms / 1000
        while not stop.is_set():
            try:
                await self.verify_audit()
            except Exception as exc:  # the next run tries again; the timestamp shows staleness
                log.warning("audit verification failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


def _tp(topic: str, partition: int) -> Any:
    from aiokafka import TopicPartition

    return TopicPartition(topic, partition)


CATCH_UP_TIMEOUT_S = 120.0
"""How long reading the seen-id changelog to its end may take before the router gives up
(at start, or on a partition assignment) rather than decide without its replay window."""


def _load_policy(path: Path) -> tuple[Engine, str, tuple[int, int]]:
    """The engine of the policy file at ``path``, its digest (sha256 of the bytes, 16 hex)
    and its (mtime_ns, size) to notice a change."""
    data = path.read_bytes()
    st = path.stat()
    return (
        Engine(load_policy(path)),
        hashlib.sha256(data).hexdigest()[:16],
        (
            st.st_mtime_ns,
            st.st_size,
        ),
    )


SEEN_MARK = "seen_offset"
"""The last offset of ``i24.router.seen`` applied to this instance's SQLite window."""
LOG_APPEND_TIME = 1
"""``timestamp_type`` of a record stamped by the broker (``message.timestamp.type``)."""


def _appended(record: Any) -> int | None:
    """The broker's append time of ``record``, or None when the topic keeps the producer's
    time (a time the sender chooses: the pipeline then uses the router's clock)."""
    if record.timestamp_type == LOG_APPEND_TIME:
        return int(record.timestamp)
    return None


def _offsets(records: Any) -> dict[Any, Any]:
    """The offsets to commit after ``records``: per partition, the last offset + 1."""
    from aiokafka.structs import OffsetAndMetadata

    out: dict[Any, Any] = {}
    for r in records:
        out[_tp(r.topic, r.partition)] = OffsetAndMetadata(r.offset + 1, "")
    return out


def _produced(decided: Any, seen_topic: str) -> tuple[list[Out], list[Entry]]:
    """The records and audit entries of ``decided``, with one ``seen_topic`` record per
    final message id (key: the id, value: its ``expires_ms`` in decimal)."""
    outputs: list[Out] = []
    entries: list[Entry] = []
    for d in decided:
        outputs.extend(d.outputs)
        entries.extend(d.audit)
        if d.record is not None:
            message_id, expires_ms = d.record
            outputs.append(Out(seen_topic, message_id.encode(), str(expires_ms).encode()))
    return outputs, entries


def _retriable(exc: BaseException) -> bool:
    """A failure the broker may get over (unavailable, timeouts, leadership moving,
    ``CONCURRENT_TRANSACTIONS``...): retry the same records. Anything else that
    aborted a transaction is about what it held: split it."""
    from aiokafka.errors import KafkaError

    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    return isinstance(exc, ConnectionError | TimeoutError)


def _fatal(exc: BaseException) -> bool:
    from aiokafka.errors import ProducerFenced

    return isinstance(exc, ProducerFenced | BrokerError) or "Fenced" in type(exc).__name__


def _broken(producer: Any) -> bool:
    """Whether an aborted transaction left the producer unusable (state FATAL_ERROR, or
    not knowable): then the app replaces it instead of retrying forever."""
    tm = getattr(producer, "_txn_manager", None)
    try:
        return tm is None or bool(tm.is_fatal_error()) or tm.is_in_transaction()
    except Exception:
        return True


def state_path(settings: RouterSettings) -> Path:
    return settings.state.dir
