"""Trusted GS roots by key id, each with a validity window, and signed root rotation.

Why a set and not one pinned key: a root that can never change makes its
compromise (or its scheduled retirement) a manual re-pinning of every
station. Readers hold :class:`Roots`: one or more root public keys by key id,
each valid for values *issued* in ``[valid_from_ms, valid_until_ms)``. A
directory entry or manifest is accepted when the root its ``root_key_id``
names is in the set and valid at the value's ``issued_ms``
(:meth:`Roots.check`).

Rotation is itself a signed value on the directory topic, under the reserved
key ``@root/<new key id>`` (:data:`ROTATION_PREFIX`): a ``net.i24.RootRotation``
statement (old and new key id, the new public key, the new root's
``new_valid_from_ms``, the old root's ``old_valid_until_ms``), signed by the
**old** root (label ``b"i24net/v1/root-rotation"``: the authority) and by the
**new** root (label ``b"i24net/v1/root-rotation-possession"``: proof that
whoever introduces the key holds it, so nobody can introduce a key they do
not control, or one that is not a root's). A reader that trusts the old root
learns the new one from it (:meth:`Roots.learn`): stations need no manual
re-pinning. ``[new_valid_from_ms, old_valid_until_ms)`` is the overlap, in
which both roots sign; from ``old_valid_until_ms`` on, the old root is
*retired*.

Refused (:meth:`Roots.learn` raises, the reader counts the outcome):

- a rotation signed by a root the reader does not trust
  (:class:`~i24net.errors.UnknownRootError`; held in case its own
  predecessor's rotation arrives later on another partition);
- a bad old-root signature, or no valid proof of possession by the new key,
  or a new key id that is not recomputed from the new key;
- a rotation signed by a root that is retired at the statement's
  ``issued_ms`` or at the reader's clock (:class:`~i24net.errors.RetiredRootError`);
- a rotation *to* a root the set already retired (a rollback to a retired
  root), or to the very root that signs it;
- a second rotation of one root to another key (equivocation: a root
  names one successor, once).

Why the reader's clock counts too: ``issued_ms`` is chosen by the signer.
Someone holding the old root's secret after its retirement could back-date
a value into the old window; a reader whose clock is past the overlap
therefore accepts nothing *new* from a retired root (an entry it had already
accepted stays; :class:`i24net.directory.DirectoryReader` knows which).

Configuration: the single ``root_public`` file keeps working (a set of one,
valid forever); a list of root public files is accepted
(:func:`load_roots`), each optionally with ``valid_from_ms`` and
``valid_until_ms``. Rotations accepted by a reader are persisted with its
marks (:class:`i24net.directory.DirectoryState`) and replayed at start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from i24net.errors import (
    CodecError,
    DirectoryError,
    KeyStoreError,
    RetiredRootError,
    UnknownRootError,
)
from i24net.keys import (
    ROOT_NAME,
    RootPublic,
    RootSecrets,
    key_digest,
    key_id_matches,
    load_root_public,
)
from i24net.schemas import SchemaStore

ROTATION_LABEL = b"i24net/v1/root-rotation"
"""Label of the old root's signature over a RootRotation (the authority)."""

POSSESSION_LABEL = b"i24net/v1/root-rotation-possession"
"""Label of the new root's signature over the same RootRotation (proof of possession)."""

ROTATION_SCHEMA = "net.i24.RootRotationEntry"
ROTATION_PREFIX = "@root/"
"""Kafka key prefix of rotations on the directory topic (``@root/<new key id>``)."""

ROOT_STATION = ROOT_NAME.upper()
"""The station part of every root key id (``GS-ROOT-YYYYMMDD-<8 hex>``)."""


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    """One trusted root: signs values issued in ``[valid_from_ms, valid_until_ms)``.

    ``successor``: the key id a rotation handed over to (None: not rotated)."""

    key_id: str
    public_key: bytes
    valid_from_ms: int = 0
    valid_until_ms: int | None = None
    successor: str | None = None

    @property
    def public(self) -> RootPublic:
        return RootPublic(self.key_id, self.public_key)

    def valid_at(self, at_ms: int) -> bool:
        return at_ms >= self.valid_from_ms and (
            self.valid_until_ms is None or at_ms < self.valid_until_ms
        )

    def retired(self, now_ms: int) -> bool:
        """The overlap after this root's rotation has ended at ``now_ms``."""
        return self.valid_until_ms is not None and now_ms >= self.valid_until_ms


@dataclass(frozen=True, slots=True)
class RootRotation:
    """A verified ``net.i24.RootRotation`` statement."""

    old_key_id: str
    new_key_id: str
    new_public_key: bytes
    new_valid_from_ms: int
    old_valid_until_ms: int
    issued_ms: int

    def to_avro(self) -> dict[str, Any]:
        return {
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "new_public_key": self.new_public_key,
            "new_valid_from_ms": self.new_valid_from_ms,
            "old_valid_until_ms": self.old_valid_until_ms,
            "issued_ms": self.issued_ms,
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> RootRotation:
        return cls(
            d["old_key_id"],
            d["new_key_id"],
            bytes(d["new_public_key"]),
            d["new_valid_from_ms"],
            d["old_valid_until_ms"],
            d["issued_ms"],
        )

    @property
    def kafka_key(self) -> str:
        return ROTATION_PREFIX + self.new_key_id


class Roots:
    """The set of trusted roots of one reader, by key id (copy with :meth:`copy`)."""

    def __init__(self, roots: Iterable[TrustedRoot | RootPublic] = ()) -> None:
        self._roots: dict[str, TrustedRoot] = {}
        for r in roots:
            t = r if isinstance(r, TrustedRoot) else TrustedRoot(r.key_id, r.public_key)
            if t.key_id in self._roots:
                raise DirectoryError(f"root key {t.key_id} is given twice")
            self._roots[t.key_id] = t
        if not self._roots:
            raise DirectoryError("no trusted root: give at least one root public key")

    @classmethod
    def of(cls, root: RootPublic | Roots) -> Roots:
        """``root`` as a set (a single pinned key: a set of one, valid forever); a copy."""
        return root.copy() if isinstance(root, Roots) else cls([root])

    def copy(self) -> Roots:
        return Roots(self._roots.values())

    def __iter__(self) -> Iterator[TrustedRoot]:
        return iter(sorted(self._roots.values(), key=lambda r: (r.valid_from_ms, r.key_id)))

    def __len__(self) -> int:
        return len(self._roots)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._roots

    def get(self, key_id: str) -> TrustedRoot | None:
        return self._roots.get(key_id)

    def __repr__(self) -> str:
        return f"Roots({', '.join(self._roots)})"

    def require(self, key_id: str, what: str) -> TrustedRoot:
        """The root named ``key_id``, whatever its window; UnknownRootError if not trusted."""
        r = self._roots.get(key_id)
        if r is None:
            raise UnknownRootError(
                f"{what} signed by root key {key_id!r}, which is not a trusted root "
                f"(trusted: {', '.join(sorted(self._roots))})"
            )
        return r

    def check(self, key_id: str, issued_ms: int, now_ms: int | None, what: str) -> TrustedRoot:
        """The root named ``key_id`` if it may sign ``what`` issued at ``issued_ms``, seen
        at ``now_ms`` (None: not checked against a clock). Raises UnknownRootError,
        RetiredRootError, or DirectoryError (outside the root's window)."""
        r = self.require(key_id, what)
        if r.valid_until_ms is not None and issued_ms >= r.valid_until_ms:
            raise RetiredRootError(
                f"{what} issued at {issued_ms} is signed by root {key_id}, retired "
                f"from {r.valid_until_ms} (rotated to {r.successor})"
            )
        if now_ms is not None and r.retired(now_ms):
            raise RetiredRootError(
                f"{what} is signed by root {key_id}, retired since {r.valid_until_ms} "
                f"(rotated to {r.successor}); a retired root's new signatures are refused"
            )
        if issued_ms < r.valid_from_ms:
            raise DirectoryError(
                f"{what} issued at {issued_ms}, before root {key_id} is valid "
                f"(from {r.valid_from_ms})"
            )
        return r

    def learn(
        self, value: bytes, store: SchemaStore, now_ms: int | None
    ) -> tuple[RootRotation, bool]:
        """Apply a rotation value (module docstring); returns it and whether it was new
        (False: the very rotation already applied). Raises on every refusal."""
        rot, old_sig, new_sig, inner = _open(value, store)
        what = f"root rotation {rot.old_key_id} -> {rot.new_key_id}"
        old = self._roots.get(rot.old_key_id)
        if old is None:
            raise UnknownRootError(f"{what} is signed by a root this reader does not trust")
        try:
            VerifyKey(old.public_key).verify(ROTATION_LABEL + inner, old_sig)
        except (BadSignatureError, ValueError, TypeError) as exc:
            raise DirectoryError(f"{what}: bad signature of the old root") from exc
        if old.successor is not None:
            if old.successor == rot.new_key_id:
                held = self._roots.get(rot.new_key_id)
                if held is not None and held.public_key == rot.new_public_key:
                    return rot, False
            raise _Equivocation(
                f"{what}: root {old.key_id} already rotated to {old.successor}; "
                f"a root names one successor"
            )
        if rot.new_key_id == rot.old_key_id:
            raise DirectoryError(f"{what}: a root cannot rotate to itself")
        if not key_id_matches(rot.new_key_id, ROOT_STATION, rot.new_public_key):
            raise DirectoryError(
                f"{what}: the new key id does not match the new key (expected "
                f"{ROOT_STATION}-YYYYMMDD-{key_digest(rot.new_public_key)})"
            )
        try:
            VerifyKey(rot.new_public_key).verify(POSSESSION_LABEL + inner, new_sig)
        except (BadSignatureError, ValueError, TypeError) as exc:
            raise DirectoryError(
                f"{what}: no valid proof of possession of the new root key"
            ) from exc
        self.check(old.key_id, rot.issued_ms, now_ms, what)
        held = self._roots.get(rot.new_key_id)
        if held is not None and (held.valid_until_ms is not None or held.successor is not None):
            raise _Rollback(f"{what}: {rot.new_key_id} is a retired root; no rotation back to it")
        if held is not None and held.public_key != rot.new_public_key:
            raise DirectoryError(f"{what}: another key is trusted under {rot.new_key_id}")
        if not (old.valid_from_ms <= rot.new_valid_from_ms < rot.old_valid_until_ms):
            raise DirectoryError(
                f"{what}: the overlap [{rot.new_valid_from_ms}, {rot.old_valid_until_ms}) "
                f"is empty or starts before the old root is valid"
            )
        if rot.issued_ms >= rot.old_valid_until_ms:
            raise DirectoryError(f"{what}: issued after the overlap it announces has ended")
        until = rot.old_valid_until_ms
        if old.valid_until_ms is not None:
            until = min(until, old.valid_until_ms)
        self._roots[old.key_id] = replace(old, valid_until_ms=until, successor=rot.new_key_id)
        if held is None:  # else pinned ahead of time: its configured window stands
            held = TrustedRoot(rot.new_key_id, rot.new_public_key, rot.new_valid_from_ms)
        self._roots[rot.new_key_id] = held
        return rot, True


class _Malformed(DirectoryError):
    """A rotation value that does not decode (reader outcome ``malformed``)."""


class _Equivocation(DirectoryError):
    """A second rotation of one root (reader outcome ``equivocation``)."""


class _Rollback(DirectoryError):
    """A rotation back to a retired root (reader outcome ``rollback``)."""


def rotation_refusal(exc: DirectoryError) -> str:
    """The reader outcome name of a refused rotation: ``malformed``, ``equivocation``,
    ``rollback``, ``unknown_root``, ``retired_root`` or ``bad_signature``."""
    if isinstance(exc, _Malformed):
        return "malformed"
    if isinstance(exc, _Equivocation):
        return "equivocation"
    if isinstance(exc, _Rollback):
        return "rollback"
    if isinstance(exc, UnknownRootError):
        return "unknown_root"
    if isinstance(exc, RetiredRootError):
        return "retired_root"
    return "bad_signature"


def _open(value: bytes, store: SchemaStore) -> tuple[RootRotation, bytes, bytes, bytes]:
    try:
        _, outer = store.decode_single(value, expected=ROTATION_SCHEMA)
        inner = bytes(outer["rotation"])
        rot = RootRotation.from_avro(store.decode("net.i24.RootRotation", inner))
    except (CodecError, ValueError, KeyError) as exc:
        raise _Malformed(f"root rotation does not decode: {exc}") from exc
    if len(rot.new_public_key) != 32:
        raise _Malformed("root rotation: the new public key must be 32 bytes")
    return rot, bytes(outer["old_signature"]), bytes(outer["new_signature"]), inner


def is_rotation(value: bytes, store: SchemaStore) -> bool:
    """Whether ``value`` claims to be a root rotation (its fingerprint); unverified."""
    return len(value) >= 10 and value[2:10] == store.fingerprint(ROTATION_SCHEMA)


def read_rotation(value: bytes, store: SchemaStore) -> RootRotation:
    """The statement of a rotation value, **unverified** (for display and keys)."""
    return _open(value, store)[0]


def sign_rotation(
    old: RootSecrets,
    new: RootSecrets,
    store: SchemaStore,
    *,
    new_valid_from_ms: int,
    old_valid_until_ms: int,
    issued_ms: int,
) -> bytes:
    """The value to publish under ``@root/<new key id>``: signed by both roots."""
    if not (new_valid_from_ms < old_valid_until_ms and issued_ms < old_valid_until_ms):
        raise DirectoryError("a root rotation needs an overlap that ends after it is issued")
    if old.key_id == new.key_id:
        raise DirectoryError("a root cannot rotate to itself")
    rot = RootRotation(
        old.key_id,
        new.key_id,
        new.public.public_key,
        new_valid_from_ms,
        old_valid_until_ms,
        issued_ms,
    )
    inner = store.encode("net.i24.RootRotation", rot.to_avro())
    return store.encode_single(
        ROTATION_SCHEMA,
        {
            "rotation": inner,
            "old_signature": old.signing.sign(ROTATION_LABEL + inner).signature,
            "new_signature": new.signing.sign(POSSESSION_LABEL + inner).signature,
        },
    )


def load_roots(paths: Iterable[Path]) -> Roots:
    """The trusted set from root public files (``gs-root.public.json``: ``key_id``,
    ``public``, optionally ``valid_from_ms``/``valid_until_ms``); each key id is
    recomputed from its key. KeyStoreError on a bad file."""
    roots: list[TrustedRoot] = []
    for path in paths:
        pub = load_root_public(path)
        if not key_id_matches(pub.key_id, ROOT_STATION, pub.public_key):
            raise KeyStoreError(
                f"{path}: root key id {pub.key_id!r} does not match its key "
                f"(expected {ROOT_STATION}-YYYYMMDD-{key_digest(pub.public_key)})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            start = int(data.get("valid_from_ms") or 0)
            until = data.get("valid_until_ms")
            until = None if until is None else int(until)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise KeyStoreError(f"{path}: invalid validity window") from exc
        roots.append(TrustedRoot(pub.key_id, pub.public_key, start, until))
    try:
        return Roots(roots)
    except DirectoryError as exc:
        raise KeyStoreError(str(exc)) from exc
