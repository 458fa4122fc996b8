"""GS-root-signed values of the directory topic: entries and the manifest share one check."""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from i24net.errors import CodecError, DirectoryError
from i24net.keys import RootPublic
from i24net.schemas import SchemaStore


def signer_key_id(value: bytes, store: SchemaStore, *, schema: str, what: str) -> str:
    """The ``root_key_id`` a ``schema`` value names (unverified: which root to check it with)."""
    try:
        _, outer = store.decode_single(value, expected=schema)
    except CodecError as exc:
        raise DirectoryError(f"{what} does not decode: {exc}") from exc
    return str(outer["root_key_id"])


def open_root_signed(
    value: bytes,
    root: RootPublic,
    store: SchemaStore,
    *,
    schema: str,
    field: str,
    label: bytes,
    what: str,
) -> bytes:
    """The signed inner bytes (``field``) of a GS-root-signed ``schema`` value, after the
    root key id and the signature over ``label + inner`` are checked; DirectoryError if
    bad (``what`` names the value in the message).

    One root here; a reader with a set of roots picks the one the value names first
    (:class:`i24net.directory.roots.Roots`) and checks its validity window after."""
    try:
        _, outer = store.decode_single(value, expected=schema)
    except CodecError as exc:
        raise DirectoryError(f"{what} does not decode: {exc}") from exc
    if outer["root_key_id"] != root.key_id:
        raise DirectoryError(
            f"{what} signed by root key {outer['root_key_id']!r}, "
            f"the pinned root key is {root.key_id!r}"
        )
    try:
        VerifyKey(root.public_key).verify(label + outer[field], outer["signature"])
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise DirectoryError(f"{what}: bad GS root signature") from exc
    return bytes(outer[field])
