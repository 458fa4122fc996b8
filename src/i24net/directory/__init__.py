"""The GS-signed station directory.

Each station's record (``net.i24.DirectoryRecord``: keys, validity, status,
region) is signed on its own by the GS root key, label
``b"i24net/v1/directory"``, and published as a ``net.i24.DirectoryEntry`` on
the log-compacted ``i24.directory`` topic under the station code; every
service trusts a set of root keys by key id (one pinned key is a set of one; a
GS-signed root rotation on the topic adds the next, :mod:`i24net.directory.roots`)
and verifies each entry before use
(:meth:`Directory.from_entries`). Lookups raise ``VerificationError`` with
UNKNOWN_SENDER / UNKNOWN_KEY / REVOKED_KEY / SUSPENDED_KEY / EXPIRED_KEY.

Rotation: add the new key with its ``valid_from_ms``, keep the old one until
its ``valid_until_ms``; both verify during the overlap. Revocation: set the
key's status to REVOKED with ``revoked_at_ms``; signatures made from then on
fail, earlier ones still verify. Each change increases ``serial``; readers
refuse a lower serial (no rollback to a record that still trusts a key) and
another record under the same serial (serials strictly increase). Key ids are
recomputed from the keys on load (:func:`check_key_ids`): a record whose stated
key id is not its key's is refused, so one id always names one key.

Rollback and freeze (docs/security.md): a :class:`DirectoryReader` keeps the
highest serial it accepted per station (persisted by :class:`DirectoryState`)
and the newest GS-signed :class:`Manifest` (label
``b"i24net/v1/directory-manifest"``, a version and an expiry), which names
each station's current serial; an entry below it is withheld, and an
expired manifest makes the reader ``stale``.
"""

from __future__ import annotations

from i24net.directory._directory import (
    LABEL,
    Directory,
    KeyRecord,
    PeerKey,
    StationRecord,
    Status,
    check_key_ids,
    sign_record,
    verify_entry,
)
from i24net.directory.manifest import (
    MANIFEST_KEY,
    MANIFEST_LABEL,
    Manifest,
    ManifestItem,
    entry_digest,
    sign_manifest,
    verify_manifest,
)
from i24net.directory.reader import (
    DirectoryReader,
    Outcome,
    Withheld,
    directory_from_entries,
    verify_entry_with,
)
from i24net.directory.roots import (
    ROTATION_PREFIX,
    RootRotation,
    Roots,
    TrustedRoot,
    load_roots,
    sign_rotation,
)
from i24net.directory.state import DirectoryState, Mark
from i24net.directory.topic import TOPIC, publish, read_all

__all__ = [
    "LABEL",
    "MANIFEST_KEY",
    "MANIFEST_LABEL",
    "ROTATION_PREFIX",
    "TOPIC",
    "Directory",
    "DirectoryReader",
    "DirectoryState",
    "KeyRecord",
    "Manifest",
    "ManifestItem",
    "Mark",
    "Outcome",
    "PeerKey",
    "RootRotation",
    "Roots",
    "StationRecord",
    "Status",
    "TrustedRoot",
    "Withheld",
    "check_key_ids",
    "directory_from_entries",
    "entry_digest",
    "load_roots",
    "publish",
    "read_all",
    "sign_manifest",
    "sign_record",
    "sign_rotation",
    "verify_entry",
    "verify_entry_with",
    "verify_manifest",
]
