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

Roots (:mod:`i24net.directory.roots`): the reader holds a set of trusted
roots, :attr:`DirectoryReader.roots`. A value signed by a root key id it
does not trust is ``unknown_root`` and held (bounded) until a root rotation
introduces that key (on a multi-partition topic the rotation may come
later), then offered again. A rotation signed by a trusted root is
``root_rotation`` (persisted in the state); its refusals are
``bad_signature``, ``unknown_root``, ``retired_root``, ``rollback`` (back to
a retired root), ``equivocation`` (a second successor) or ``malformed``. An
entry or manifest signed by a root outside its window at the value's
``issued_ms``, or signed by a root that is retired at the reader's clock and
not the very value the reader already accepted, is ``retired_root``.

An expired manifest makes the reader :attr:`~DirectoryReader.stale`; no
manifest at all leaves it :attr:`~DirectoryReader.unprotected` (accepted with
a warning, for directories published before manifests existed). Both are
reported, neither stops a service: the directory held is still the best
one available, and an alert asks an operator to look.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from i24net.clock import Clock, system_clock
from i24net.directory._directory import (
    Directory,
    StationRecord,
    check_key_ids,
    verify_entry,
)
from i24net.directory._signed import signer_key_id
from i24net.directory.manifest import (
    MANIFEST_SCHEMA,
    Manifest,
    entry_digest,
    is_manifest,
    verify_manifest,
)
from i24net.directory.roots import Roots, TrustedRoot, is_rotation, rotation_refusal
from i24net.directory.state import DirectoryState
from i24net.errors import CodecError, DirectoryError, RetiredRootError, UnknownRootError
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
    ROOT_ROTATION = "root_rotation"
    UNKNOWN_ROOT = "unknown_root"
    RETIRED_ROOT = "retired_root"


REFUSED = frozenset(
    {
        Outcome.UNKNOWN_ROOT,
        Outcome.RETIRED_ROOT,
        Outcome.ROLLBACK,
        Outcome.EQUIVOCATION,
        Outcome.BAD_SIGNATURE,
        Outcome.MALFORMED,
        Outcome.MANIFEST_ROLLBACK,
    }
)
"""Outcomes of a value that was refused (logged as a warning or error)."""

MAX_HELD = 1024
"""Values signed by a root not (yet) trusted kept for a later rotation; oldest dropped."""


def verify_entry_with(
    entry: bytes,
    roots: Roots,
    store: SchemaStore,
    *,
    now_ms: int | None = None,
    check_ids: bool = True,
) -> tuple[StationRecord, TrustedRoot]:
    """Check one directory entry against a set of roots: the root it names must be trusted
    and valid at the record's ``issued_ms`` (and, with ``now_ms``, not retired then);
    returns the record and that root. DirectoryError (UnknownRootError, RetiredRootError)."""
    kid = signer_key_id(entry, store, schema="net.i24.DirectoryEntry", what="directory entry")
    root = roots.require(kid, "directory entry")
    record = verify_entry(entry, root.public, store, check_ids=check_ids)
    roots.check(kid, record.issued_ms, now_ms, f"{record.station} serial {record.serial}")
    return record, root


ROTATION_SUFFIX = ".rotation"
"""File suffix of a root rotation value in a folder of entry files."""


def learn_rotation_files(folder: Path, roots: Roots, store: SchemaStore) -> Roots:
    """``roots`` (a copy) extended by every ``*.rotation`` file in ``folder`` that a root
    of the set signed (in chain order, whatever the file order); DirectoryError if one
    is refused for another reason than an unknown signer, or none can be applied."""
    out = roots.copy()
    pending = {p: p.read_bytes() for p in sorted(folder.glob("*" + ROTATION_SUFFIX))}
    while pending:
        progress = False
        for path, value in list(pending.items()):
            try:
                out.learn(value, store, None)
            except UnknownRootError:
                continue
            except DirectoryError as exc:
                raise DirectoryError(f"{path}: {exc}") from exc
            del pending[path]
            progress = True
        if not progress:
            names = ", ".join(p.name for p in pending)
            raise DirectoryError(f"{names}: signed by no trusted root")
    return out


def directory_from_entries(
    entries: Iterable[bytes], roots: RootPublic | Roots, store: SchemaStore
) -> Directory:
    """``Directory.from_entries`` for a set of roots (a folder of entry files): each entry
    verified by the root it names, valid at its ``issued_ms``; DirectoryError if one is
    not (serials strictly increase, as in :meth:`Directory.apply`)."""
    trusted = Roots.of(roots)
    d = Directory(())
    for entry in entries:
        _, root = verify_entry_with(entry, trusted, store)
        d.apply(entry, root.public, store)
    return d


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
        root: RootPublic | Roots,
        store: SchemaStore,
        *,
        state: DirectoryState | None = None,
        clock: Clock = system_clock,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.roots = Roots.of(root)
        """The trusted roots: the configured ones, and those learned by rotation."""
        self.store = store
        self.state = state if state is not None else DirectoryState()
        self.clock = clock
        self._held: dict[bytes, bytes] = {}  # digest -> value signed by a root not yet trusted
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
        for new_key_id, value in list(self.state.rotations.items()):
            try:  # in the order accepted: each one's old root is known by then
                self.roots.learn(value, store, None)
            except DirectoryError as exc:
                log.error(
                    "directory: the stored rotation to root %s no longer verifies (%s); ignored",
                    new_key_id,
                    exc,
                )
        if self.state.manifest_value is not None:
            try:
                self.manifest = verify_manifest(self.state.manifest_value, self.roots, store)
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
        self._log(outcome, detail, where)
        if outcome is Outcome.ROOT_ROTATION:
            self._release()
        return outcome

    @staticmethod
    def _log(outcome: Outcome, detail: str, where: str) -> None:
        if outcome in (Outcome.APPLIED, Outcome.MANIFEST, Outcome.ROOT_ROTATION):
            log.info("directory: %s %s (%s)", detail, outcome.value, where)
        elif outcome is Outcome.UNKNOWN_ROOT:
            log.warning("directory: %s held, %s: %s", where, outcome.value, detail)
        elif outcome in (
            Outcome.ROLLBACK,
            Outcome.EQUIVOCATION,
            Outcome.MANIFEST_ROLLBACK,
            Outcome.RETIRED_ROOT,
        ):
            log.warning("directory: %s refused, %s: %s", where, outcome.value, detail)
        elif outcome in (Outcome.BAD_SIGNATURE, Outcome.MALFORMED):
            log.error("directory: %s refused (%s): %s", where, outcome.value, detail)

    def _hold(self, value: bytes) -> None:
        """Keep a value signed by a root not trusted yet, for :meth:`_release`."""
        self._held[entry_digest(value)] = value
        while len(self._held) > MAX_HELD:
            del self._held[next(iter(self._held))]

    def _release(self) -> None:
        """After a rotation: offer again every held value (its root may be known now)."""
        held, self._held = list(self._held.values()), {}
        for value in held:
            self.offer(value, "held until its root was known")

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
        if self._held:
            log.warning(
                "directory: %d value(s) signed by a root this reader does not trust are held "
                "(trusted: %s); a root rotation from a trusted root would release them",
                len(self._held),
                ", ".join(r.key_id for r in self.roots),
            )
        self.check_freshness()

    def apply_entry(self, value: bytes) -> StationRecord | None:
        """``Directory.apply`` of a bound directory: :meth:`offer`, raising if refused."""
        outcome = self.offer(value)
        if outcome in REFUSED or outcome is Outcome.SUPERSEDED:
            raise DirectoryError(f"directory value refused: {outcome.value}")
        if is_manifest(value, self.store) or is_rotation(value, self.store):
            return None
        return verify_entry_with(value, self.roots, self.store)[0]

    # --- the rules -------------------------------------------------------------------

    def _count(self, outcome: Outcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _offer(self, value: bytes | None, where: str) -> tuple[Outcome, str]:
        if value is None:
            return Outcome.TOMBSTONE, "null value"
        if is_manifest(value, self.store):
            return self._offer_manifest(value)
        if is_rotation(value, self.store):
            return self._offer_rotation(value)
        try:
            self.store.decode_single(value, expected="net.i24.DirectoryEntry")
        except CodecError as exc:
            return Outcome.MALFORMED, str(exc)
        try:
            record, root = verify_entry_with(value, self.roots, self.store, check_ids=False)
        except UnknownRootError as exc:
            self._hold(value)
            return Outcome.UNKNOWN_ROOT, str(exc)
        except RetiredRootError as exc:
            return Outcome.RETIRED_ROOT, str(exc)
        except DirectoryError as exc:
            return Outcome.BAD_SIGNATURE, str(exc)
        what = f"{record.station} serial {record.serial}"
        mark = self.state.stations.get(record.station)
        try:
            check_key_ids(record)
        except DirectoryError as exc:  # signed, yet a key id is not its key's
            return Outcome.MALFORMED, f"{what}: {exc}"
        digest = entry_digest(value)
        if mark is not None and record.serial < mark.serial:
            if self.catching_up and record.station not in self._current:
                return Outcome.SUPERSEDED, f"{what} is older than the accepted {mark.serial}"
            return Outcome.ROLLBACK, f"{what} is older than the accepted serial {mark.serial}"
        if mark is not None and record.serial == mark.serial:
            if digest != mark.digest:
                return Outcome.EQUIVOCATION, f"{what}: other bytes than the accepted entry"
            if record.station in self._current:
                return Outcome.UNCHANGED, what
        if root.retired(self.clock()) and (mark is None or mark.digest != digest):
            # history below the mark is superseded or a rollback (above); only what would
            # change the directory is refused: a retired root signs nothing new
            return Outcome.RETIRED_ROOT, (
                f"{what} is signed by root {root.key_id}, retired since {root.valid_until_ms} "
                f"(rotated to {root.successor}), and is not the entry accepted earlier"
            )
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
            m = verify_manifest(value, self.roots, self.store)
        except UnknownRootError as exc:
            self._hold(value)
            return Outcome.UNKNOWN_ROOT, str(exc)
        except RetiredRootError as exc:
            return Outcome.RETIRED_ROOT, str(exc)
        except DirectoryError as exc:
            return Outcome.BAD_SIGNATURE, str(exc)
        what = f"manifest version {m.version}"
        kid = signer_key_id(value, self.store, schema=MANIFEST_SCHEMA, what=what)
        root = self.roots.require(kid, what)
        if root.retired(self.clock()) and value != self.state.manifest_value:
            return Outcome.RETIRED_ROOT, (
                f"{what} is signed by root {kid}, retired since {root.valid_until_ms} "
                f"(rotated to {root.successor})"
            )
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

    def _offer_rotation(self, value: bytes) -> tuple[Outcome, str]:
        try:
            rot, new = self.roots.learn(value, self.store, self.clock())
        except DirectoryError as exc:
            outcome = Outcome(rotation_refusal(exc))
            if outcome is Outcome.UNKNOWN_ROOT:
                self._hold(value)
            return outcome, str(exc)
        what = f"root rotation {rot.old_key_id} -> {rot.new_key_id}"
        if not new:
            return Outcome.UNCHANGED, what
        self.state.mark_rotation(rot.new_key_id, value)
        return Outcome.ROOT_ROTATION, (
            f"{what}: {rot.new_key_id} signs from {rot.new_valid_from_ms}, "
            f"{rot.old_key_id} retires at {rot.old_valid_until_ms}"
        )

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
