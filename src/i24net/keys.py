"""Station and GS root key material: generation, key ids, files with mode 0600.

Each station holds an Ed25519 *signing* key and an X25519 *encryption* key,
each named by a key id ``<STATION>-<YYYYMMDD>-<8 hex>`` (the date the key was
made, and the first 4 bytes of BLAKE2b-256 of its public key). The GS *root*
key signs the directory; it is distinct from the GS station keys that sign
router attestations and wrap content keys.

Files (``keys generate --out DIR``):

- ``<STATION>.secret.json``: the 32-byte seeds, created with
  ``os.open(..., 0o600)``; loading refuses a file readable by group or others.
- ``<STATION>.public.json``: key ids and public keys, what ``directory build``
  reads.

Nothing here prints or logs a secret; ``repr`` of a secrets object shows only
station and key ids. Randomness is injectable (``rng``) for test vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from i24net.errors import KeyStoreError

Rng = Callable[[int], bytes]
ROOT_NAME = "gs-root"
"""File stem of the GS root key files."""


def key_digest(public_key: bytes) -> str:
    """The last part of a key id: 8 hex digits of BLAKE2b-32 of the public key."""
    return hashlib.blake2b(public_key, digest_size=4).hexdigest()


def key_id(station: str, public_key: bytes, created_ms: int) -> str:
    """The key id of ``public_key``: ``<station>-<YYYYMMDD>-<8 hex of BLAKE2b(public)>``."""
    day = datetime.fromtimestamp(created_ms / 1000, tz=UTC).strftime("%Y%m%d")
    return f"{station}-{day}-{key_digest(public_key)}"


def key_id_matches(kid: str, station: str, public_key: bytes) -> bool:
    """Whether ``kid`` is a key id of ``public_key`` for ``station`` (any valid day).

    Everything but the day is recomputed from the key; the day (when the key was
    made) is not in a directory record, so it only has to be a real date."""
    prefix, suffix = f"{station}-", f"-{key_digest(public_key)}"
    if not (kid.startswith(prefix) and kid.endswith(suffix)):
        return False
    day = kid[len(prefix) : len(kid) - len(suffix)]
    if len(day) != 8 or not day.isdigit():
        return False
    try:
        datetime.strptime(day, "%Y%m%d")
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class StationPublic:
    """The public half of a station's keys, as published in the directory."""

    station: str
    signing_key_id: str
    signing_public: bytes
    encryption_key_id: str
    encryption_public: bytes
    created_ms: int


@dataclass(frozen=True, slots=True)
class StationSecrets:
    """A station's secret keys. ``repr`` never shows key material."""

    station: str
    signing_key_id: str
    signing: SigningKey = field(repr=False)
    encryption_key_id: str
    encryption: PrivateKey = field(repr=False)
    created_ms: int

    @classmethod
    def generate(cls, station: str, *, now_ms: int, rng: Rng = os.urandom) -> StationSecrets:
        """New keys for ``station``; ``rng(32)`` supplies each seed."""
        return cls.from_seeds(station, rng(32), rng(32), created_ms=now_ms)

    @classmethod
    def from_seeds(
        cls, station: str, signing_seed: bytes, encryption_secret: bytes, *, created_ms: int
    ) -> StationSecrets:
        if len(signing_seed) != 32 or len(encryption_secret) != 32:
            raise KeyStoreError(f"station {station}: seeds must be 32 bytes each")
        sk = SigningKey(signing_seed)
        ek = PrivateKey(encryption_secret)
        return cls(
            station=station,
            signing_key_id=key_id(station, bytes(sk.verify_key), created_ms),
            signing=sk,
            encryption_key_id=key_id(station, bytes(ek.public_key), created_ms),
            encryption=ek,
            created_ms=created_ms,
        )

    def public(self) -> StationPublic:
        return StationPublic(
            station=self.station,
            signing_key_id=self.signing_key_id,
            signing_public=bytes(self.signing.verify_key),
            encryption_key_id=self.encryption_key_id,
            encryption_public=bytes(self.encryption.public_key),
            created_ms=self.created_ms,
        )


@dataclass(frozen=True, slots=True)
class RootSecrets:
    """The GS root signing key (signs directory records only)."""

    key_id: str
    signing: SigningKey = field(repr=False)
    created_ms: int

    @classmethod
    def generate(cls, *, now_ms: int, rng: Rng = os.urandom) -> RootSecrets:
        return cls.from_seed(rng(32), created_ms=now_ms)

    @classmethod
    def from_seed(cls, seed: bytes, *, created_ms: int) -> RootSecrets:
        if len(seed) != 32:
            raise KeyStoreError("root seed must be 32 bytes")
        sk = SigningKey(seed)
        return cls(key_id(ROOT_NAME.upper(), bytes(sk.verify_key), created_ms), sk, created_ms)

    @property
    def public(self) -> RootPublic:
        return RootPublic(self.key_id, bytes(self.signing.verify_key))


@dataclass(frozen=True, slots=True)
class RootPublic:
    """The pinned GS root public key."""

    key_id: str
    public_key: bytes


# --- files -----------------------------------------------------------------


def _write(path: Path, data: dict[str, Any], mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise KeyStoreError(f"{path} already exists; refusing to overwrite a key file") from exc
    except OSError as exc:
        raise KeyStoreError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")


def _read(path: Path, *, secret: bool) -> dict[str, Any]:
    try:
        st = os.stat(path)
        if secret and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyStoreError(
                f"{path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run `chmod 600 {path}` and check who may have copied it"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"{path} is not a valid key file (bad JSON)") from exc
    if not isinstance(data, dict):
        raise KeyStoreError(f"{path} is not a valid key file")
    return data


def _hex(data: dict[str, Any], *keys: str, path: Path) -> bytes:
    value: Any = data
    try:
        for k in keys:
            value = value[k]
        raw = bytes.fromhex(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field {'.'.join(keys)}") from exc
    if len(raw) != 32:
        raise KeyStoreError(f"{path}: field {'.'.join(keys)} must be 32 bytes")
    return raw


def public_to_json(pub: StationPublic) -> dict[str, Any]:
    return {
        "station": pub.station,
        "created_ms": pub.created_ms,
        "signing": {"key_id": pub.signing_key_id, "public": pub.signing_public.hex()},
        "encryption": {"key_id": pub.encryption_key_id, "public": pub.encryption_public.hex()},
    }


def save_station(secrets: StationSecrets, out: Path) -> tuple[Path, Path]:
    """Write ``<station>.secret.json`` (0600) and ``<station>.public.json`` (0644)."""
    out.mkdir(parents=True, exist_ok=True)
    secret_path = out / f"{secrets.station}.secret.json"
    public_path = out / f"{secrets.station}.public.json"
    _write(
        secret_path,
        {
            "station": secrets.station,
            "created_ms": secrets.created_ms,
            "signing": {"key_id": secrets.signing_key_id, "seed": bytes(secrets.signing).hex()},
            "encryption": {
                "key_id": secrets.encryption_key_id,
                "secret": bytes(secrets.encryption).hex(),
            },
        },
        0o600,
    )
    _write(public_path, public_to_json(secrets.public()), 0o644)
    return secret_path, public_path


def load_station(path: Path) -> StationSecrets:
    """Load a ``*.secret.json`` file; refuses group/world-readable files."""
    data = _read(path, secret=True)
    try:
        station = str(data["station"])
        created = int(data["created_ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing station or created_ms") from exc
    s = StationSecrets.from_seeds(
        station,
        _hex(data, "signing", "seed", path=path),
        _hex(data, "encryption", "secret", path=path),
        created_ms=created,
    )
    if (data["signing"].get("key_id"), data["encryption"].get("key_id")) != (
        s.signing_key_id,
        s.encryption_key_id,
    ):
        raise KeyStoreError(f"{path}: key ids do not match the keys (corrupt file?)")
    return s


def destroy_key_file(path: Path) -> None:
    """Overwrite a secret key file with zeros, flush it to disk, then unlink it.

    Why overwrite first: unlinking alone leaves the seeds in the freed blocks,
    where a later disk image or backup can still find them; a key destroyed
    after its rotation must not be recoverable from this machine (on
    copy-on-write or wear-levelled storage the overwrite is best effort:
    use an encrypted volume for key files). Idempotent: a missing file is
    already destroyed."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KeyStoreError(f"cannot destroy {path}: {exc.strerror}") from exc
    try:
        size = os.fstat(fd).st_size
        os.write(fd, bytes(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KeyStoreError(f"cannot remove {path}: {exc.strerror}") from exc


def load_public(path: Path) -> StationPublic:
    """Load a ``*.public.json`` file; KeyStoreError if a key id is not its key's."""
    data = _read(path, secret=False)
    try:
        pub = StationPublic(
            station=str(data["station"]),
            signing_key_id=str(data["signing"]["key_id"]),
            signing_public=_hex(data, "signing", "public", path=path),
            encryption_key_id=str(data["encryption"]["key_id"]),
            encryption_public=_hex(data, "encryption", "public", path=path),
            created_ms=int(data["created_ms"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field") from exc
    # Recomputed here too, so that the GS never signs a directory record every reader
    # refuses (i24net.directory.check_key_ids).
    for kid, public in (
        (pub.signing_key_id, pub.signing_public),
        (pub.encryption_key_id, pub.encryption_public),
    ):
        if not key_id_matches(kid, pub.station, public):
            raise KeyStoreError(f"{path}: key id {kid} does not match its public key")
    return pub


def save_root(root: RootSecrets, out: Path) -> tuple[Path, Path]:
    """Write ``gs-root.secret.json`` (0600) and ``gs-root.public.json``."""
    out.mkdir(parents=True, exist_ok=True)
    secret_path, public_path = out / f"{ROOT_NAME}.secret.json", out / f"{ROOT_NAME}.public.json"
    _write(
        secret_path,
        {"key_id": root.key_id, "created_ms": root.created_ms, "seed": bytes(root.signing).hex()},
        0o600,
    )
    _write(public_path, {"key_id": root.key_id, "public": root.public.public_key.hex()}, 0o644)
    return secret_path, public_path


def load_root(path: Path) -> RootSecrets:
    data = _read(path, secret=True)
    try:
        root = RootSecrets.from_seed(
            _hex(data, "seed", path=path), created_ms=int(data["created_ms"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field") from exc
    if data.get("key_id") != root.key_id:
        raise KeyStoreError(f"{path}: key id does not match the key (corrupt file?)")
    return root


def load_root_public(path: Path) -> RootPublic:
    data = _read(path, secret=False)
    return RootPublic(str(data.get("key_id", "")), _hex(data, "public", path=path))
