"""The GS-signed directory manifest: what makes an old directory detectably old.

A station's entry alone cannot say that it is still current: a compacted
topic keeps the last entry *written* under a key, so a re-published older
entry (from before a revocation) is all a reader that starts after
compaction would see. The manifest is the reference design of The Update
Framework (TUF) against rollback and freeze, with the snapshot and timestamp
roles folded into one object (one signer, the GS root key, signs both the
list and its freshness, so keeping them apart would protect nothing more):

- ``version``: grows with every manifest; a reader keeps the highest it
  accepted (persisted) and refuses a lower one (rollback of the manifest);
- ``expires_ms``: the GS re-signs the manifest periodically with a new
  version and expiry (``i24net directory manifest``); a reader whose newest
  manifest has expired knows its directory may be frozen (stale);
- ``stations``: per station the serial and BLAKE2b-256 digest of its current
  entry; an entry with a lower serial is not current and is not trusted.

It is published on the directory topic under :data:`MANIFEST_KEY`, a key no
station code can take (codes are upper-case letters, digits and ``-``), and
signed under its own label, distinct from the entries' label, so that no
signature over one can be passed off as the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from i24net.directory._signed import open_root_signed, signer_key_id
from i24net.directory.roots import Roots
from i24net.errors import CodecError, DirectoryError
from i24net.keys import RootPublic, RootSecrets
from i24net.schemas import SchemaStore

MANIFEST_LABEL = b"i24net/v1/directory-manifest"
"""Domain-separation label of the GS root signature over a DirectoryManifest."""

MANIFEST_KEY = "@manifest"
"""Kafka key of the manifest on the directory topic; never a station code."""

MANIFEST_SCHEMA = "net.i24.DirectoryManifestEntry"


def entry_digest(entry: bytes) -> bytes:
    """BLAKE2b-256 of a directory entry value: how a manifest names an entry."""
    return hashlib.blake2b(entry, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class ManifestItem:
    station: str
    serial: int
    entry_digest: bytes


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified ``net.i24.DirectoryManifest``; ``stations`` maps code -> item."""

    version: int
    issued_ms: int
    expires_ms: int
    stations: Mapping[str, ManifestItem]

    @classmethod
    def of_entries(
        cls, entries: Mapping[str, bytes], serials: Mapping[str, int], **kw: int
    ) -> Manifest:
        """A manifest naming ``entries`` (code -> entry bytes) at their ``serials``."""
        items = {
            code: ManifestItem(code, serials[code], entry_digest(e))
            for code, e in sorted(entries.items())
        }
        return cls(stations=items, **kw)

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms

    def to_avro(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "issued_ms": self.issued_ms,
            "expires_ms": self.expires_ms,
            "stations": [
                {"station": i.station, "serial": i.serial, "entry_digest": i.entry_digest}
                for i in sorted(self.stations.values(), key=lambda i: i.station)
            ],
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> Manifest:
        items: dict[str, ManifestItem] = {}
        for i in d["stations"]:
            if i["station"] in items:
                raise DirectoryError(f"manifest names station {i['station']} twice")
            items[i["station"]] = ManifestItem(i["station"], i["serial"], i["entry_digest"])
        return cls(d["version"], d["issued_ms"], d["expires_ms"], items)


def sign_manifest(manifest: Manifest, root: RootSecrets, store: SchemaStore) -> bytes:
    """The value published under :data:`MANIFEST_KEY`: a single-object DirectoryManifestEntry."""
    if manifest.version < 1:
        raise DirectoryError("a manifest version starts at 1")
    if manifest.expires_ms <= manifest.issued_ms:
        raise DirectoryError("a manifest must expire after it is issued")
    body = store.encode("net.i24.DirectoryManifest", manifest.to_avro())
    sig = root.signing.sign(MANIFEST_LABEL + body).signature
    return store.encode_single(
        MANIFEST_SCHEMA, {"manifest": body, "root_key_id": root.key_id, "signature": sig}
    )


def is_manifest(value: bytes, store: SchemaStore) -> bool:
    """Whether ``value`` claims to be a manifest (its single-object fingerprint); unverified."""
    return len(value) >= 10 and value[2:10] == store.fingerprint(MANIFEST_SCHEMA)


def verify_manifest(
    value: bytes, root: RootPublic | Roots, store: SchemaStore, *, now_ms: int | None = None
) -> Manifest:
    """Check a manifest value against the pinned root key, or against the set of trusted
    roots: the root it names must be valid at its ``issued_ms`` (and, with ``now_ms``,
    not retired then: :meth:`Roots.check`); DirectoryError (or a subclass) if bad."""
    if isinstance(root, Roots):
        kid = signer_key_id(value, store, schema=MANIFEST_SCHEMA, what="directory manifest")
        signer = root.require(kid, "directory manifest").public
    else:
        signer = root
    inner = open_root_signed(
        value,
        signer,
        store,
        schema=MANIFEST_SCHEMA,
        field="manifest",
        label=MANIFEST_LABEL,
        what="directory manifest",
    )
    try:
        m = Manifest.from_avro(store.decode("net.i24.DirectoryManifest", inner))
    except (CodecError, ValueError, KeyError) as exc:
        raise DirectoryError(f"directory manifest does not decode: {exc}") from exc
    if isinstance(root, Roots):
        root.check(signer.key_id, m.issued_ms, now_ms, f"directory manifest version {m.version}")
    return m
