"""Directory records, their GS root signatures, and key lookups.

Encryption keys of two envelope versions share ``encryption_keys`` (no schema
change, so every reader of the directory keeps working): a 32-byte
``public_key`` is a v1 X25519 key (static wrap, docs/envelope.md §4); a
tagged one (``0x01 || 32`` HPKE X25519, ``0x02 || 1216`` HPKE ML-KEM-768 +
X25519, :func:`i24net.keys.kem_public_bytes`) is a v2 KEM key. The tag is
inside the hashed key bytes, so a key id names a key *and* its suite. Any
other length or tag refuses the record on load: a reader never guesses.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PublicKey
from nacl.signing import VerifyKey

from i24net.directory._signed import open_root_signed
from i24net.directory.manifest import Manifest
from i24net.errors import (
    CodecError,
    DirectoryError,
    Reason,
    UnknownStationError,
    VerificationError,
)
from i24net.keys import (
    KemPublic,
    KemSuite,
    RootPublic,
    RootSecrets,
    StationPublic,
    kem_public_from_bytes,
    key_digest,
    key_id_matches,
)
from i24net.schemas import SchemaStore
from i24net.stations import Station, StationKind

LABEL = b"i24net/v1/directory"
"""Domain-separation label of the GS root signature over a DirectoryRecord."""


class Status(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One public key: valid on ``[valid_from_ms, valid_until_ms)`` unless revoked or suspended.

    A REVOKED key refuses signatures made at or after ``revoked_at_ms``
    (always, when ``revoked_at_ms`` is None); a SUSPENDED key refuses all
    until it is reactivated.
    """

    key_id: str
    public_key: bytes
    valid_from_ms: int
    valid_until_ms: int | None = None
    status: Status = Status.ACTIVE
    revoked_at_ms: int | None = None

    def check(self, station: str, at_ms: int) -> None:
        """Raise VerificationError unless this key is usable for something made at ``at_ms``."""
        if self.status is Status.REVOKED and (
            self.revoked_at_ms is None or at_ms >= self.revoked_at_ms
        ):
            raise VerificationError(
                Reason.REVOKED_KEY,
                f"key {self.key_id} of {station} revoked at {self.revoked_at_ms}, used at {at_ms}",
            )
        if self.status is Status.SUSPENDED:
            raise VerificationError(Reason.SUSPENDED_KEY, f"key {self.key_id} of {station}")
        if at_ms < self.valid_from_ms or (
            self.valid_until_ms is not None and at_ms >= self.valid_until_ms
        ):
            raise VerificationError(
                Reason.EXPIRED_KEY,
                f"key {self.key_id} of {station} valid [{self.valid_from_ms}, "
                f"{self.valid_until_ms}), used at {at_ms}",
            )

    def usable(self, at_ms: int) -> bool:
        try:
            self.check("", at_ms)
        except VerificationError:
            return False
        return True

    def to_avro(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "valid_from_ms": self.valid_from_ms,
            "valid_until_ms": self.valid_until_ms,
            "status": self.status.value,
            "revoked_at_ms": self.revoked_at_ms,
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any], *, encryption: bool = False) -> KeyRecord:
        """``encryption``: also accept a tagged v2 KEM key (see the module docstring)."""
        pk = d["public_key"]
        if len(pk) != 32:
            if not encryption:
                raise DirectoryError(f"key {d['key_id']}: public key must be 32 bytes")
            try:
                kem_public_from_bytes(pk)
            except ValueError as exc:
                raise DirectoryError(
                    f"key {d['key_id']}: encryption key must be 32 bytes (v1) or a tagged "
                    f"v2 KEM key: {exc}"
                ) from None
        return cls(
            d["key_id"],
            d["public_key"],
            d["valid_from_ms"],
            d["valid_until_ms"],
            Status(d["status"]),
            d["revoked_at_ms"],
        )


@dataclass(frozen=True, slots=True)
class StationRecord:
    """A station's directory record (``net.i24.DirectoryRecord``)."""

    station: str
    name: str
    kind: StationKind
    region: str | None
    signing_keys: tuple[KeyRecord, ...]
    encryption_keys: tuple[KeyRecord, ...]
    status: Status = Status.ACTIVE
    serial: int = 1
    issued_ms: int = 0

    @classmethod
    def for_station(
        cls, st: Station, keys: Iterable[StationPublic], *, valid_from_ms: int, issued_ms: int
    ) -> StationRecord:
        """A new ACTIVE record from a station identity and its public key files."""
        keys = list(keys)
        enc = [KeyRecord(k.encryption_key_id, k.encryption_public, valid_from_ms) for k in keys]
        enc += [
            KeyRecord(k.kem_key_id, k.kem_public, valid_from_ms)
            for k in keys
            if k.kem_key_id is not None and k.kem_public is not None
        ]
        return cls(
            st.code,
            st.name,
            st.kind,
            st.region.value if st.region else None,
            tuple(KeyRecord(k.signing_key_id, k.signing_public, valid_from_ms) for k in keys),
            tuple(enc),
            issued_ms=issued_ms,
        )

    def to_avro(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "name": self.name,
            "kind": self.kind.value,
            "region": self.region,
            "status": self.status.value,
            "signing_keys": [k.to_avro() for k in self.signing_keys],
            "encryption_keys": [k.to_avro() for k in self.encryption_keys],
            "serial": self.serial,
            "issued_ms": self.issued_ms,
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> StationRecord:
        return cls(
            d["station"],
            d["name"],
            StationKind(d["kind"]),
            d["region"],
            tuple(KeyRecord.from_avro(k) for k in d["signing_keys"]),
            tuple(KeyRecord.from_avro(k, encryption=True) for k in d["encryption_keys"]),
            Status(d["status"]),
            d["serial"],
            d["issued_ms"],
        )


def check_key_ids(record: StationRecord) -> None:
    """Raise DirectoryError unless every key id of ``record`` is recomputed from its key.

    Why: a key id names the key in every envelope (``sender_key_id``, the wrap's
    key ids) and in audits. If the directory could state any id for any key,
    one key could appear under two ids (or two stations' ids), and "key X was
    revoked" would no longer say which key. A key id is
    ``<STATION>-<YYYYMMDD>-<8 hex of BLAKE2b-32(public key)>`` (i24net.keys.key_id):
    the station part and the hash part are recomputed here; the date is the day
    the key was made, which the record does not carry, so it is only checked to
    be a valid date.
    """
    for kind, keys in (("signing", record.signing_keys), ("encryption", record.encryption_keys)):
        for k in keys:
            if not key_id_matches(k.key_id, record.station, k.public_key):
                raise DirectoryError(
                    f"station {record.station}: {kind} key id {k.key_id!r} does not match "
                    f"its public key (expected {record.station}-YYYYMMDD-"
                    f"{key_digest(k.public_key)})"
                )


def sign_record(record: StationRecord, root: RootSecrets, store: SchemaStore) -> bytes:
    """The ``i24.directory`` value for ``record``: single-object ``net.i24.DirectoryEntry``."""
    body = store.encode("net.i24.DirectoryRecord", record.to_avro())
    sig = root.signing.sign(LABEL + body).signature
    return store.encode_single(
        "net.i24.DirectoryEntry", {"record": body, "root_key_id": root.key_id, "signature": sig}
    )


def verify_entry(
    entry: bytes, root: RootPublic, store: SchemaStore, *, check_ids: bool = True
) -> StationRecord:
    """Check one ``i24.directory`` value against the pinned root key; DirectoryError if bad.

    The key ids are recomputed from the keys (:func:`check_key_ids`) unless
    ``check_ids=False`` (a caller that reports a bad key id on its own)."""
    inner = open_root_signed(
        entry,
        root,
        store,
        schema="net.i24.DirectoryEntry",
        field="record",
        label=LABEL,
        what="directory entry",
    )
    try:
        record = StationRecord.from_avro(store.decode("net.i24.DirectoryRecord", inner))
    except (CodecError, ValueError, KeyError) as exc:
        raise DirectoryError(f"directory record does not decode: {exc}") from exc
    if check_ids:
        check_key_ids(record)
    return record


@dataclass(frozen=True, slots=True)
class PeerKey:
    """A station's encryption public key, named: what a content key is wrapped to.

    ``suite`` None: a v1 X25519 key (``public_key`` a PyNaCl ``PublicKey``);
    otherwise a v2 HPKE key of that suite (``public_key`` the ``cryptography``
    public key object the suite encrypts to)."""

    station: str
    key_id: str
    public_key: PublicKey | KemPublic = field(repr=False)
    suite: KemSuite | None = None

    @property
    def version(self) -> int:
        """The envelope version this key wraps for."""
        return 1 if self.suite is None else 2


def _key_version(k: KeyRecord) -> int:
    return 1 if len(k.public_key) == 32 else 2


def _peer(station: str, k: KeyRecord) -> PeerKey:
    """The public key object of a directory key, made once when the record is put
    (an ML-KEM-768 key costs ~40 µs to load: not per wrap)."""
    if len(k.public_key) == 32:
        return PeerKey(station, k.key_id, PublicKey(k.public_key))
    suite, public = kem_public_from_bytes(k.public_key)
    return PeerKey(station, k.key_id, public, suite)


class Directory:
    """The verified station directory: lookups by station and key id.

    Build it from records (``Directory(records)``, for the GS tooling), or
    from signed ``i24.directory`` values with :meth:`from_entries`, which
    verifies every signature against the pinned root key first.
    """

    def __init__(
        self, records: Iterable[StationRecord], entries: Mapping[str, bytes] | None = None
    ) -> None:
        self._records: dict[str, StationRecord] = {}
        self._verify: dict[tuple[str, str], tuple[KeyRecord, VerifyKey]] = {}
        self._enc: dict[tuple[str, str], tuple[KeyRecord, PeerKey]] = {}
        self.entries: dict[str, bytes] = dict(entries or {})
        self._reader: Any = None  # a DirectoryReader that owns this directory (read_all)
        for r in records:
            self.put(r)

    @classmethod
    def from_entries(
        cls, entries: Iterable[bytes], root: RootPublic, store: SchemaStore
    ) -> Directory:
        d = cls(())
        for entry in entries:
            d.apply(entry, root, store)
        return d

    def apply(self, entry: bytes, root: RootPublic, store: SchemaStore) -> StationRecord | None:
        """Verify and apply one signed entry; a serial not above the current one is refused.

        Serials strictly increase: another record under the serial already held
        (or a lower one) raises DirectoryError; the very entry held again is a
        no-op that returns its record.

        A directory made by :func:`~i24net.directory.read_all` belongs to a
        ``DirectoryReader``: then the reader's rules apply (its root key and
        marks; a manifest value is taken and None returned), and a refused
        value raises DirectoryError naming the outcome.
        """
        if self._reader is not None:
            result: StationRecord | None = self._reader.apply_entry(entry)
            return result
        record = verify_entry(entry, root, store)
        current = self._records.get(record.station)
        if current is not None and self.entries.get(record.station) == entry:
            return record  # the very entry held: nothing to accept
        if current is not None and record.serial <= current.serial:
            what = "the same as" if record.serial == current.serial else "older than"
            raise DirectoryError(
                f"directory record of {record.station} has serial {record.serial}, "
                f"{what} the current {current.serial}: refused (serials strictly increase; "
                f"a changed record needs a new serial)"
            )
        self.put(record)
        self.entries[record.station] = entry
        return record

    def _install(self, record: StationRecord, entry: bytes) -> None:
        """Put a record the caller has verified and checked, with its signed entry."""
        self.put(record)
        self.entries[record.station] = entry

    def _drop(self, station: str) -> None:
        """Remove a station (a reader withholds an entry that is not current)."""
        old = self._records.pop(station, None)
        self.entries.pop(station, None)
        if old is not None:
            for k in old.signing_keys:
                self._verify.pop((station, k.key_id), None)
            for k in old.encryption_keys:
                self._enc.pop((station, k.key_id), None)

    def manifest(self, *, version: int, issued_ms: int, expires_ms: int) -> Manifest:
        """The manifest naming every signed entry of this directory (call :meth:`sign` first)."""
        missing = sorted(set(self._records) - set(self.entries))
        if missing:
            raise DirectoryError(f"stations without a signed entry: {', '.join(missing)}")
        return Manifest.of_entries(
            self.entries,
            {code: r.serial for code, r in self._records.items()},
            version=version,
            issued_ms=issued_ms,
            expires_ms=expires_ms,
        )

    def put(self, record: StationRecord) -> None:
        old = self._records.get(record.station)
        if old is not None:
            for k in old.signing_keys:
                self._verify.pop((old.station, k.key_id), None)
            for k in old.encryption_keys:
                self._enc.pop((old.station, k.key_id), None)
        self._records[record.station] = record
        try:
            for k in record.signing_keys:
                self._verify[(record.station, k.key_id)] = (k, VerifyKey(k.public_key))
            for k in record.encryption_keys:
                self._enc[(record.station, k.key_id)] = (k, _peer(record.station, k))
        except (ValueError, TypeError) as exc:
            raise DirectoryError(f"station {record.station}: invalid public key") from exc

    def sign(self, root: RootSecrets, store: SchemaStore) -> dict[str, bytes]:
        """Sign every record with the GS root key: station code -> entry bytes."""
        self.entries = {code: sign_record(r, root, store) for code, r in self._records.items()}
        return dict(self.entries)

    def verify(self, root: RootPublic, store: SchemaStore) -> None:
        """Raise DirectoryError unless every record carries a valid root signature."""
        for code, record in self._records.items():
            entry = self.entries.get(code)
            if entry is None:
                raise DirectoryError(f"station {code} has no signed directory entry")
            if verify_entry(entry, root, store) != record:
                raise DirectoryError(f"station {code}: signed entry differs from the record")

    def __iter__(self) -> Iterator[StationRecord]:
        return iter(sorted(self._records.values(), key=lambda r: r.station))

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, station: object) -> bool:
        return station in self._records

    def record(self, station: str) -> StationRecord:
        try:
            return self._records[station]
        except KeyError:
            raise UnknownStationError(f"station {station!r} is not in the directory") from None

    def _station(self, station: str) -> StationRecord:
        r = self._records.get(station)
        if r is None:
            raise VerificationError(Reason.UNKNOWN_SENDER, f"station {station!r} not in directory")
        if r.status is Status.REVOKED:
            raise VerificationError(Reason.REVOKED_KEY, f"station {station} is revoked")
        if r.status is Status.SUSPENDED:
            raise VerificationError(Reason.SUSPENDED_KEY, f"station {station} is suspended")
        return r

    def signing_key(self, station: str, key_id: str, at_ms: int) -> VerifyKey:
        """The Ed25519 key to verify something ``station`` signed at ``at_ms``; raises
        VerificationError (UNKNOWN_SENDER, UNKNOWN_KEY, REVOKED_KEY, SUSPENDED_KEY, EXPIRED_KEY)."""
        hit = self._verify.get((station, key_id))
        if hit is None:
            self._station(station)
            raise VerificationError(Reason.UNKNOWN_KEY, f"{station} has no signing key {key_id}")
        self._station(station)
        hit[0].check(station, at_ms)
        return hit[1]

    def encryption_key(self, station: str, key_id: str, at_ms: int) -> PeerKey:
        """A named encryption key of ``station`` (either version), checked like
        :meth:`signing_key`."""
        hit = self._enc.get((station, key_id))
        if hit is None:
            self._station(station)
            raise VerificationError(Reason.UNKNOWN_KEY, f"{station} has no encryption key {key_id}")
        self._station(station)
        hit[0].check(station, at_ms)
        return hit[1]

    def _usable_encryption_keys(
        self, station: str, at_ms: int, suspended_ok: bool
    ) -> list[KeyRecord]:
        r = self._records.get(station)
        if not (suspended_ok and r is not None and r.status is Status.SUSPENDED):
            r = self._station(station)
        return [k for k in r.encryption_keys if k.usable(at_ms)]

    def valid_from(self, station: str, key_ids: Iterable[str | None]) -> int | None:
        """The latest ``valid_from_ms`` of ``station``'s encryption keys named in
        ``key_ids`` (a key set's v1 and v2 keys: when wrapping to that set began), or None
        while the directory lists none of them."""
        if station not in self._records:
            return None
        wanted = set(key_ids)
        froms = [
            k.valid_from_ms for k in self._records[station].encryption_keys if k.key_id in wanted
        ]
        return max(froms) if froms else None

    def valid_until(self, station: str, key_ids: Iterable[str | None]) -> int | None:
        """The earliest ``valid_until_ms`` published for ``station``'s encryption keys named
        in ``key_ids``: when that key set must have been replaced (the rotation schedule,
        ``directory build --encryption-lifetime``); None when none of them has an end."""
        if station not in self._records:
            return None
        wanted = set(key_ids)
        ends = [
            k.valid_until_ms
            for k in self._records[station].encryption_keys
            if k.key_id in wanted and k.valid_until_ms is not None
        ]
        return min(ends) if ends else None

    def current_encryption_key(
        self, station: str, at_ms: int, *, version: int = 1, suspended_ok: bool = False
    ) -> PeerKey:
        """The newest usable encryption key of ``station`` at ``at_ms`` for envelope
        ``version`` (what to wrap to): 1, a 32-byte X25519 key; 2, a tagged KEM key.

        ``suspended_ok``: a SUSPENDED station still gets its usable key (the router's
        policy ``suspended_recipients = "deliver"``); unknown and revoked ones never do."""
        if version not in (1, 2):
            raise ValueError(f"envelope version {version} does not exist")
        usable = [
            k
            for k in self._usable_encryption_keys(station, at_ms, suspended_ok)
            if _key_version(k) == version
        ]
        if not usable:
            raise VerificationError(
                Reason.EXPIRED_KEY, f"{station} has no usable v{version} encryption key"
            )
        k = max(usable, key=lambda k: (k.valid_from_ms, k.key_id))
        return self._enc[(station, k.key_id)][1]

    def envelope_versions(self, station: str, at_ms: int) -> frozenset[int]:
        """The envelope versions ``station`` can open at ``at_ms``: from its usable keys
        (empty when it has none, or is unknown, revoked or suspended)."""
        try:
            usable = self._usable_encryption_keys(station, at_ms, False)
        except VerificationError:
            return frozenset()
        return frozenset(_key_version(k) for k in usable)
