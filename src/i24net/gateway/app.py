"""The gateway daemon: every part under one TaskGroup.

    async with Gateway(settings) as gw:      # API listening, drain and inbound running
        ...
    # or, for the CLI:  await Gateway(settings).run(stop_event)

Stop (``stop()``, idempotent; SIGTERM in the CLI): the API refuses new
submissions (503 ``stopping``) and long-polls return; the drain finishes
its round in flight and the inbound stream its batch (store, then offset
commit); after ``shutdown_grace_s`` whatever is still running is cancelled
(nothing is lost: unsent envelopes stay in the outbox, uncommitted records
are read again). Then the HTTP server closes. A restart resumes from the
database and the committed offsets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry

from i24net import __version__
from i24net.clock import Clock, system_clock
from i24net.directory import Directory, DirectoryState
from i24net.directory.reader import directory_from_entries, learn_rotation_files
from i24net.directory.roots import Roots, load_roots
from i24net.envelope import Precedence
from i24net.errors import ConfigError, DirectoryError, IntakeRefusedError
from i24net.gateway import outbox
from i24net.gateway.api import Changed, create_app
from i24net.gateway.auth import Authenticator, FailureThrottle, Integrator
from i24net.gateway.db import Database
from i24net.gateway.drain import Drainer
from i24net.gateway.follow import DirectoryFollower
from i24net.gateway.headers import bounded_httptools
from i24net.gateway.inbound import InboundStream
from i24net.gateway.intake import EnvelopeVersionMetrics, Intake, Submission
from i24net.gateway.keyring import PreviousKeys
from i24net.gateway.metrics import GatewayMetrics
from i24net.gateway.settings import Settings
from i24net.gateway.tls import uvicorn_ssl, with_peer_cert
from i24net.keys import load_station
from i24net.schemas import SchemaStore
from i24net.service import HttpServer, build_info, health_router

log = logging.getLogger(__name__)


def load_directory(
    entries: Path, roots: Path | list[Path] | Roots, store: SchemaStore
) -> Directory:
    """The verified directory from a folder of ``<STATION>.entry`` files, each checked by
    the trusted root it names (``roots``: one root public file, several, or a set), after
    the root rotations (``*.rotation`` files) in the folder that those roots signed."""
    if not isinstance(roots, Roots):
        roots = load_roots([roots] if isinstance(roots, Path) else roots)
    files = sorted(entries.glob("*.entry")) if entries.is_dir() else []
    if not files:
        raise ConfigError(f"no <STATION>.entry directory files in {entries}")
    roots = learn_rotation_files(entries, roots, store)
    return directory_from_entries([f.read_bytes() for f in files], roots, store)


class Gateway:
    """One station's gateway. Construct, then ``run(stop)`` or ``async with``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        registry: CollectorRegistry | None = None,
        store: SchemaStore | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = store or SchemaStore.default()
        self.metrics = GatewayMetrics.create(self.registry)
        build_info(self.registry, __version__)
        self.secrets = load_station(settings.keys.secret)
        if self.secrets.station != settings.station:
            raise ConfigError(
                f"key file {settings.keys.secret} is for {self.secrets.station}, "
                f"the settings name station {settings.station}"
            )
        roots = load_roots([settings.keys.root_public, *settings.keys.roots])
        self._directory = load_directory(settings.directory.entries, roots, self.store)
        if settings.station not in self._directory:
            raise ConfigError(f"station {settings.station} is not in the directory")
        self._directory_gauges()
        self.conn = settings.kafka.connection(client_id=f"i24net-gw-{settings.station}")
        self.follower: DirectoryFollower | None = None
        if settings.directory.follow_topic:
            self.follower = DirectoryFollower(
                settings.directory.topic,
                self.conn,
                self.metrics,
                roots,  # the follower's reader adds the rotations it accepts
                self.store,
                get=self.directory,
                replace=self._replace_directory,
                # the highest serial accepted per station and the newest manifest survive
                # restarts: a compacted or re-published old entry cannot roll us back
                state=self._directory_state(settings),
                clock=self.clock,
            )
        self.db = Database(settings.db_path)
        a = settings.auth
        self.auth = Authenticator(
            settings.integrators_path,
            rate_per_s=a.rate_per_s,
            burst=a.burst,
            throttle=FailureThrottle(
                step_s=a.failure_delay_s,
                max_s=a.max_failure_delay_s,
                forget_s=a.failure_forget_s,
                max_peers=a.failure_peers,
            ),
            clock=clock,
        )
        n, size, oldest = self.db.write_sync(outbox.pending_totals)
        self.backlog = outbox.Backlog(n, size, oldest)
        self.intake = Intake(
            self.secrets,
            self.directory,
            clock=clock,
            store=self.store,
            router=settings.router,
            default_lifetime_ms=settings.outbox.default_lifetime_s * 1000,
            version=settings.envelope.version,
            metrics=EnvelopeVersionMetrics.create(self.registry),
        )
        self._intake_writer = IntakeWriter(self.db)
        self.inbox_changed = Changed()
        self.status_changed = Changed()
        self.drainer = Drainer(
            settings, self.db, self.conn, self.metrics, self.backlog, clock=clock
        )
        self.inbound = InboundStream(
            settings,
            self.db,
            self.conn,
            self.metrics,
            self.secrets,
            self.directory,
            self.intake,
            self.backlog,
            clock=clock,
            store=self.store,
            on_stored=self._on_stored,
            on_queued=self.drainer.wake.set,
            previous=PreviousKeys.load(
                self.secrets,
                settings.keys.previous,
                grace_ms=int(settings.keys.previous_grace_s * 1000),
                registry=self.registry,
            ),
        )
        self.app = create_app(self)
        self.app.include_router(
            health_router(
                self.registry,
                {
                    "broker": self._ready_broker,
                    "directory": self._ready_directory,
                    "outbox": self._ready_outbox,
                },
            )
        )
        # Heads are bounded in the HTTP protocol, before anything is buffered
        # (gateway/headers.py); over TLS the protocol also hands the verified client
        # certificate to the app (gateway/tls.py).
        protocol = bounded_httptools(
            settings.api.max_header_bytes,
            settings.api.max_headers,
            lambda code: self.metrics.intake_refusals.labels(code).inc(),
        )
        tls = settings.api.tls
        self.http = HttpServer(
            self.app,
            settings.api.host,
            settings.api.port,
            graceful_s=settings.shutdown_grace_s,
            http=protocol if tls is None else with_peer_cert(protocol),
        )
        if tls is not None:
            # HttpServer (service.py) takes no TLS options yet: its uvicorn Config is given
            # them before it is loaded (at serve()); uvicorn builds the SSLContext then.
            for key, value in uvicorn_ssl(tls).items():
                setattr(self.http._server.config, key, value)
        self.ready = asyncio.Event()
        self.stopping = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # --- state used by the API ---------------------------------------------

    def directory(self) -> Directory:
        return self._directory

    def _replace_directory(self, d: Directory) -> None:
        """Install a newer verified directory (the follower's copy-on-write result)."""
        self._directory = d
        self._directory_gauges()

    def _directory_gauges(self) -> None:
        self.metrics.directory_stations.set(len(self._directory))
        self.metrics.directory_serial.set(directory_serial(self._directory))

    def _ready_directory(self) -> str | None:
        if not len(self._directory):
            return "empty"
        if self.follower is not None and not self.follower.caught_up.is_set():
            return f"directory topic {self.settings.directory.topic} not read yet"
        return None

    @property
    def port(self) -> int:
        return self.http.port

    def _on_stored(self) -> None:
        self.inbox_changed.notify()
        self.status_changed.notify()

    def _ready_broker(self) -> str | None:
        if not self.inbound.connected:
            return "inbound consumer not connected"
        if self.backlog.messages and not self.drainer.connected:
            return "producer cannot reach the broker"
        return None

    def _ready_outbox(self) -> str | None:
        o = self.settings.outbox
        if (
            self.backlog.bytes >= o.max_pending_bytes
            or self.backlog.messages >= o.max_pending_messages
        ):
            return "outbox full"
        return None

    async def submit(
        self, sub: Submission, idem_key: str | None, who: Integrator | None = None
    ) -> outbox.Accepted:
        """Validate, seal and durably store one submission (the API's 202).

        ``who`` is the authenticated integrator: the kind must be in its ``send``
        scope (403 ``forbidden`` otherwise, before anything is stored), its name is
        stored with the message, and its Idempotency-Keys are its own (another
        integrator's key neither collides with nor reveals its message).
        """
        if who is not None and sub.kind is not None and not who.scopes.may_send(sub.kind):
            raise _forbidden(who, sub.kind)
        if self.stopping:
            raise IntakeRefusedError("stopping", "the gateway is shutting down", http_status=503)
        full = self._ready_outbox()
        if full is not None:
            raise IntakeRefusedError(
                "outbox_full",
                f"{self.backlog.messages} messages ({self.backlog.bytes} bytes) wait for the "
                "broker; retry later",
                http_status=503,
            )
        prepared = self.intake.prepare(sub)
        if who is not None and not who.scopes.may_send(prepared.header.kind):
            raise _forbidden(who, prepared.header.kind)
        now = self.clock()
        if who is not None and idem_key is not None:
            idem_key = f"{who.name}/{idem_key}"
        acc = await self._intake_writer.insert(
            outbox.NewMessage(prepared, now, idem_key=idem_key, request_digest=sub.digest()),
            None if who is None else who.name,
        )
        h = prepared.header
        if not acc.duplicate:
            self.backlog.add(len(prepared.envelope), h.created_ms)
            self.drainer.wake.set()
            self.metrics.intake.labels(h.kind, h.precedence.value, "accepted").inc()
            if who is not None:
                self.metrics.integrator_messages.labels(who.name).inc()
        else:
            self.metrics.intake.labels(h.kind, h.precedence.value, "duplicate").inc()
        return acc

    def payload_json(self, data: bytes) -> Any:
        try:
            _, record = self.store.decode_single(data)
        except Exception:
            return None
        return _jsonable(record)

    # --- lifecycle ---------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` (or :meth:`stop`); bounded, graceful shutdown."""
        if self._closed:
            raise ConfigError("a Gateway runs once; make a new one to restart")
        await self.inbound.seed_window()
        log.info(
            "gateway %s: %d messages waiting in the outbox, API on %s://%s:%d, %d integrators",
            self.settings.station,
            self.backlog.messages,
            "http" if self.settings.api.tls is None else "https",
            self.settings.api.host,
            self.settings.api.port,
            len(self.auth.integrators),
        )
        try:
            async with asyncio.TaskGroup() as tg:
                workers = []
                if self.follower is not None:
                    follow = tg.create_task(self.follower.run(self._stop), name="gateway-directory")
                    workers.append(follow)
                    await self._await_directory(follow)
                http = tg.create_task(self.http.serve(ready=self.ready), name="gateway-http")
                workers += [
                    tg.create_task(self.drainer.run(self._stop), name="gateway-drain"),
                    tg.create_task(self.inbound.run(self._stop), name="gateway-inbound"),
                ]
                gauges = tg.create_task(self._gauges(), name="gateway-gauges")
                waits = [asyncio.ensure_future(self._stop.wait())]
                if stop is not None:
                    waits.append(asyncio.ensure_future(stop.wait()))
                try:
                    await asyncio.wait([*waits, http], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
                self.stop()
                t0 = time.monotonic()
                _, pending = await asyncio.wait(workers, timeout=self.settings.shutdown_grace_s)
                for t in pending:
                    log.warning("stop: %s did not finish in time, cancelled", t.get_name())
                    t.cancel()
                gauges.cancel()
                self.http.stop()
            log.info("gateway %s stopped in %.1fs", self.settings.station, time.monotonic() - t0)
        finally:
            self._close()

    async def _await_directory(self, follow: asyncio.Task[None]) -> None:
        """Wait (bounded by ``start_wait_s``) for the directory topic to be read.

        Returns as soon as the topic is read (or the follower ended): the
        bound is for an unreachable broker, not a delay every start pays.
        """
        assert self.follower is not None
        wait_s = self.settings.directory.start_wait_s
        caught_up = asyncio.ensure_future(self.follower.caught_up.wait())
        try:
            await asyncio.wait(
                [caught_up, follow], timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            caught_up.cancel()
        if not self.follower.caught_up.is_set():
            log.warning(
                "gateway %s: directory topic %s not read within %.0fs; serving on the entry "
                "files, the topic is read in the background",
                self.settings.station,
                self.settings.directory.topic,
                wait_s,
            )

    def stop(self) -> None:
        """Begin a graceful stop (idempotent)."""
        if self.stopping:
            return
        self.stopping = True
        log.info("gateway %s: stopping (intake closed)", self.settings.station)
        self._stop.set()
        self.inbox_changed.notify()
        self.status_changed.notify()

    @staticmethod
    def _directory_state(settings: Settings) -> DirectoryState:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return DirectoryState(settings.data_dir / "directory-state.sqlite3")

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.db.close()
            self.auth.close()
            if self.follower is not None:
                self.follower.reader.state.close()

    async def _gauges(self) -> None:
        m = self.metrics
        while True:
            m.outbox_messages.set(self.backlog.messages)
            m.outbox_bytes.set(self.backlog.bytes)
            oldest = self.backlog.oldest_ms
            m.outbox_oldest_age.set(0 if oldest is None else max(0, self.clock() - oldest) / 1000)
            with contextlib.suppress(Exception):
                from i24net.gateway import inbox

                m.inbox_unacked.set((await self.db.read(inbox.counts))["unacked"])
            with contextlib.suppress(Exception):
                await self._undelivered_gauge()
            with contextlib.suppress(Exception):
                self._integrator_gauge()
            if self.backlog.messages == 0:
                self.backlog.oldest_ms = None
            elif self.backlog.oldest_ms is None or oldest is not None:
                _, _, self.backlog.oldest_ms = await self.db.read(outbox.pending_totals)
            await asyncio.sleep(2.0)

    def _integrator_gauge(self) -> None:
        self.auth.refresh()
        now = self.clock()
        states = {"active": 0, "expired": 0, "revoked": 0}
        for i in self.auth.integrators.values():
            states[i.state(now)] += 1
        for state, n in states.items():
            self.metrics.integrators.labels(state).set(n)

    async def _undelivered_gauge(self) -> None:
        now = self.clock()
        oldest = await self.db.read(lambda c: outbox.undelivered_oldest(c, now))
        for p in Precedence:
            created = oldest.get(p.value)
            age = 0.0 if created is None else max(0, now - created) / 1000
            self.metrics.undelivered_oldest_age.labels(p.value).set(age)

    async def __aenter__(self) -> Gateway:
        self._task = asyncio.create_task(self.run(), name=f"gateway-{self.settings.station}")
        ready = asyncio.ensure_future(self.ready.wait())
        await asyncio.wait([ready, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not self.ready.is_set():
            ready.cancel()
            await self._task  # raises what stopped it
            raise ConfigError("gateway stopped before its API was ready")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._task is not None:
            await self._task


class IntakeWriter:
    """Group commit on the event loop's side: one database write for many submissions.

    At most one batch is being written; submissions that arrive meanwhile
    wait for the next one, which takes them all (``outbox.insert_many``, a
    constant number of statements). The database thread competes with the
    event loop for the GIL on every SQLite call, so fewer, larger writes are
    what lets concurrent requests share one fsync'd commit.
    """

    MAX_BATCH = 1000

    def __init__(self, db: Database) -> None:
        self.db = db
        self.batches = 0
        self._pending: list[
            tuple[outbox.NewMessage, str | None, asyncio.Future[outbox.Accepted]]
        ] = []
        self._task: asyncio.Task[None] | None = None

    async def insert(
        self, item: outbox.NewMessage, integrator: str | None = None
    ) -> outbox.Accepted:
        """Store ``item`` durably (with the integrator that submitted it); returns once
        its batch is committed."""
        fut: asyncio.Future[outbox.Accepted] = asyncio.get_running_loop().create_future()
        self._pending.append((item, integrator, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="gateway-intake-commit")
        return await fut

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            items = [item for item, _, _ in batch]
            who = [w for _, w, _ in batch]
            try:
                results = await self.db.write(functools.partial(_insert, items=items, who=who))
            except BaseException as exc:
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            for (_, _, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)


def _insert(
    conn: sqlite3.Connection, items: list[outbox.NewMessage], who: list[str | None]
) -> list[outbox.Accepted]:
    """``outbox.insert_many``, then each new message's integrator, in one transaction."""
    results = outbox.insert_many(conn, items)
    conn.executemany(
        "UPDATE outbox SET integrator = ? WHERE id = ?",
        [
            (w, r.message_id)
            for r, w in zip(results, who, strict=True)
            if w is not None and not r.duplicate
        ],
    )
    return results


def _forbidden(who: Integrator, kind: str) -> IntakeRefusedError:
    return IntakeRefusedError(
        "forbidden", f"integrator {who.name} may not send {kind} messages", http_status=403
    )


def directory_serial(d: Directory) -> int:
    """The directory's version: the highest serial of its records (0 when empty)."""
    return max((r.serial for r in d), default=0)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


__all__ = ["DirectoryError", "Gateway", "load_directory"]
