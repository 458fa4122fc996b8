"""Reading the directory topic safely: high-water marks, the manifest, one outcome per record.

A :class:`DirectoryReader` is a decider: one topic value in, one
:class:`Outcome` out, and the trusted :class:`Directory` updated; it never
raises on a bad record (start-up must not fail because of one entry). The
rules, in the order they are applied to a station entry that verifies:

- a key id that is not recomputed from its key (``i24net.keys.key_id``):
  ``malformed``, refused, whatever the serial;
- serial above the reader's mark for the station: ``applied``, the mark
  moves up (persisted in :class:`DirectoryState`);
- serial equal to the mark: the same bytes are ``unchanged`` (or ``applied``
  when first seen in this run), other bytes are an ``equivocation``, refused;
- serial below the mark: ``rollback``, refused. While catching up (the read
  from the beginning at start) an entry below a mark from an earlier run is
  ``superseded`` instead (history the log still holds), as long as the
  newest entry follows; if it never does (compacted away, deleted), the
  station is counted once as ``rollback`` when the catch-up ends and is not
  trusted (it is absent from the directory).

Manifest values (:mod:`i24net.directory.manifest`) are accepted when newer
than the newest the reader holds (``manifest``), ignored when the same
(``manifest_unchanged``), refused when older (``manifest_rollback``) or when
the same version has other bytes (``equivocation``). A station whose newest
entry is below the serial the manifest names (or at it with another digest)
is **withheld**: removed from the directory until its current entry arrives
(:attr:`DirectoryReader.withheld`). This is what protects a reader with no
state of its own: after compaction the old entry is all it sees, the
manifest says it is not current.

An expired manifest makes the reader :attr:`~DirectoryReader.stale`; no
manifest at all leaves it :attr:`~DirectoryReader.unprotected` (accepted with
a warning, for directories published before manifests existed). Both are
reported, neither stops a service: the directory held is still the best
one available, and an alert asks an operator to look.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from i24net.clock import Clock, system_clock
from i24net.directory._directory import Directory, StationRecord, check_key_ids, verify_entry
from i24net.directory.manifest import Manifest, entry_digest, is_manifest, verify_manifest
from i24net.directory.state import DirectoryState
from i24net.errors import CodecError, DirectoryError
from i24net.keys import RootPublic
from i24net.schemas import SchemaStore

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What reading one directory topic value did (a bounded metric label)."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    SUPERSEDED = "superseded"
    ROLLBACK = "rollback"
    EQUIVOCATION = "equivocation"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    TOMBSTONE = "tombstone"
    MANIFEST = "manifest"
    MANIFEST_UNCHANGED = "manifest_unchanged"
    MANIFEST_ROLLBACK = "manifest_rollback"


REFUSED = frozenset(
    {
        Outcome.ROLLBACK,
        Outcome.EQUIVOCATION,
        Outcome.BAD_SIGNATURE,
        Outcome.MALFORMED,
        Outcome.MANIFEST_ROLLBACK,
    }
)
"""Outcomes of a value that was refused (logged as a warning or error)."""


@dataclass(frozen=True, slots=True)
class Withheld:
    """A verified station record not trusted because the manifest names a newer entry."""

    record: StationRecord
    entry: bytes
    why: str


class DirectoryReader:
    """Applies directory topic values to :attr:`directory` under the rollback rules.

    ``state`` holds the marks (persist them with ``DirectoryState(path)``);
    ``on_outcome`` is called once per outcome (metrics). The reader starts in
    catch-up mode; call :meth:`caught_up` once the topic has been read to its
    end offsets. :attr:`directory` is bound to the reader, so
    ``directory.apply(value, root, store)`` goes through :meth:`offer` too.
    """

    def __init__(
        self,
        root: RootPublic,
        store: SchemaStore,
        *,
        state: DirectoryState | None = None,
        clock: Clock = system_clock,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.state = state if state is not None else DirectoryState()
        self.clock = clock
        self.on_outcome = on_outcome
        self.directory = Directory(())
        self.directory._reader = self
        self.manifest: Manifest | None = None
        self.withheld: dict[str, Withheld] = {}
        self.catching_up = True
        self.changes = 0
        """Grows whenever the trusted directory changed (followers copy it then)."""
        self._current: set[str] = set()  # stations whose marked entry was seen in this run
        self._stale_logged = False
        if self.state.manifest_value is not None:
            try:
                self.manifest = verify_manifest(self.state.manifest_value, root, store)
            except DirectoryError as exc:
                log.error("directory: the stored manifest no longer verifies (%s); ignored", exc)

    # --- status ----------------------------------------------------------------------

    @property
    def unprotected(self) -> bool:
        """No manifest seen: a rollback after compaction would go unnoticed by a fresh reader."""
        return self.manifest is None

    @property
    def stale(self) -> bool:
        """The newest manifest has expired: the directory may be frozen (not updated)."""
        return self.manifest is not None and self.manifest.expired(self.clock())

    def expires_in_s(self) -> float | None:
        """Seconds until the newest manifest expires (negative once expired); None without one."""
        if self.manifest is None:
            return None
        return (self.manifest.expires_ms - self.clock()) / 1000

    def check_freshness(self) -> None:
        """Log once when the directory becomes stale or is unprotected, and when it recovers."""
        stale = self.stale or self.unprotected
        if stale and not self._stale_logged:
            if self.manifest is None:
                log.warning(
                    "directory: no manifest on the topic; entries are accepted, but a rollback "
                    "after compaction cannot be detected (run `i24net directory manifest`)"
                )
            else:
                log.error(
                    "directory: manifest version %d expired %.0f s ago; the directory may be "
                    "frozen (still in use; check the GS manifest timer and this reader's link)",
                    self.manifest.version,
                    -(self.expires_in_s() or 0.0),
                )
        elif not stale and self._stale_logged:
            log.info("directory: manifest version %d is fresh again", self.version)
        self._stale_logged = stale

    @property
    def version(self) -> int:
        """Version of the newest accepted manifest (0: none)."""
        return self.manifest.version if self.manifest is not None else 0

    # --- reading ---------------------------------------------------------------------

    def seed(self, entries: Mapping[str, bytes] | Directory) -> None:
        """Offer already-trusted entries (a gateway's entry files) without counting them."""
        values = entries.entries if isinstance(entries, Directory) else entries
        for value in values.values():
            self._offer(value, "seed")

    def offer(self, value: bytes | None, where: str = "") -> Outcome:
        """Apply one topic value; returns (and counts, and logs) what it did. Never raises."""
        outcome, detail = self._offer(value, where)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if outcome in (Outcome.APPLIED, Outcome.MANIFEST):
            log.info("directory: %s %s (%s)", detail, outcome.value, where)
        elif outcome in (Outcome.ROLLBACK, Outcome.EQUIVOCATION, Outcome.MANIFEST_ROLLBACK):
            log.warning("directory: %s refused, %s: %s", where, outcome.value, detail)
        elif outcome in (Outcome.BAD_SIGNATURE, Outcome.MALFORMED):
            log.error("directory: %s refused (%s): %s", where, outcome.value, detail)
        return outcome

    def caught_up(self) -> None:
        """End of the start-up read: a marked station whose newest entry never came is not
        trusted and counted as a ``rollback``; then the manifest is checked against all."""
        if not self.catching_up:
            return
        self.catching_up = False
        for station, mark in sorted(self.state.stations.items()):
            if station not in self._current:
                self._count(Outcome.ROLLBACK)
                log.warning(
                    "directory: %s refused, rollback: the topic no longer holds its entry "
                    "serial %d (accepted earlier); older entries are not trusted",
                    station,
                    mark.serial,
                )
        self._check_all()
        for station, w in sorted(self.withheld.items()):
            log.warning("directory: %s withheld: %s", station, w.why)
        self.check_freshness()

    def apply_entry(self, value: bytes) -> StationRecord | None:
        """``Directory.apply`` of a bound directory: :meth:`offer`, raising if refused."""
        outcome = self.offer(value)
        if outcome in REFUSED or outcome is Outcome.SUPERSEDED:
            raise DirectoryError(f"directory value refused: {outcome.value}")
        if is_manifest(value, self.store):
            return None
        return verify_entry(value, self.root, self.store)

    # --- the rules -------------------------------------------------------------------

    def _count(self, outcome: Outcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _offer(self, value: bytes | None, where: str) -> tuple[Outcome, str]:
        if value is None:
            return Outcome.TOMBSTONE, "null value"
        if is_manifest(value, self.store):
            return self._offer_manifest(value)
        try:
            self.store.decode_single(value, expected="net.i24.DirectoryEntry")
        except CodecError as exc:
            return Outcome.MALFORMED, str(exc)
        try:
            record = verify_entry(value, self.root, self.store, check_ids=False)
        except DirectoryError as exc:
            return Outcome.BAD_SIGNATURE, str(exc)
        what = f"{record.station} serial {record.serial}"
        try:
            check_key_ids(record)
        except DirectoryError as exc:  # signed, yet a key id is not its key's
            return Outcome.MALFORMED, f"{what}: {exc}"
        digest = entry_digest(value)
        mark = self.state.stations.get(record.station)
        if mark is not None and record.serial < mark.serial:
            if self.catching_up and record.station not in self._current:
                return Outcome.SUPERSEDED, f"{what} is older than the accepted {mark.serial}"
            return Outcome.ROLLBACK, f"{what} is older than the accepted serial {mark.serial}"
        if mark is not None and record.serial == mark.serial:
            if digest != mark.digest:
                return Outcome.EQUIVOCATION, f"{what}: other bytes than the accepted entry"
            if record.station in self._current:
                return Outcome.UNCHANGED, what
        try:
            self._install(record, value)
        except DirectoryError as exc:  # verified, yet unusable (a bad public key)
            return Outcome.MALFORMED, f"{what}: {exc}"
        self.state.mark(record.station, record.serial, digest)
        self._current.add(record.station)
        self._check(record.station)
        return Outcome.APPLIED, what

    def _offer_manifest(self, value: bytes) -> tuple[Outcome, str]:
        try:
            self.store.decode_single(value)
        except CodecError as exc:
            return Outcome.MALFORMED, str(exc)
        try:
            m = verify_manifest(value, self.root, self.store)
        except DirectoryError as exc:
            return Outcome.BAD_SIGNATURE, str(exc)
        what = f"manifest version {m.version}"
        have = self.state.manifest_version
        if m.version < have:
            return Outcome.MANIFEST_ROLLBACK, f"{what} is older than the accepted version {have}"
        if m.version == have:
            if value != self.state.manifest_value:
                return Outcome.EQUIVOCATION, f"{what}: other bytes than the accepted manifest"
            if self.manifest is not None:
                return Outcome.MANIFEST_UNCHANGED, what
        self.manifest = m
        self.state.mark_manifest(m.version, value)
        self._check_all()
        self.check_freshness()
        return Outcome.MANIFEST, f"{what}, {len(m.stations)} stations, expires {m.expires_ms}"

    def _install(self, record: StationRecord, value: bytes) -> None:
        self.withheld.pop(record.station, None)
        self.directory._install(record, value)
        self.changes += 1

    def _check_all(self) -> None:
        for station in sorted({*self.directory.entries, *self.withheld}):
            self._check(station)

    def _check(self, station: str) -> None:
        """Withhold ``station`` if the manifest names a newer entry than the one held."""
        if self.manifest is None:
            return
        item = self.manifest.stations.get(station)
        if item is None or station in self.withheld:
            return
        entry = self.directory.entries.get(station)
        if entry is None:
            return
        record = self.directory.record(station)
        if record.serial > item.serial:
            return  # published after the manifest: newer is fine
        if record.serial == item.serial and entry_digest(entry) == item.entry_digest:
            return
        why = (
            f"entry serial {record.serial} is not the current one: manifest version "
            f"{self.manifest.version} names serial {item.serial}"
        )
        if record.serial == item.serial:
            why += " with another digest"
        self.withheld[station] = Withheld(record, entry, why)
        self.directory._drop(station)
        self.changes += 1
        if not self.catching_up:
            log.warning("directory: %s withheld: %s", station, why)
