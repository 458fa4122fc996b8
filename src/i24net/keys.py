"""Station and GS root key material: generation, key ids, files with mode 0600.

Each station holds an Ed25519 *signing* key, an X25519 *encryption* key
(envelope v1's static wrap) and, since envelope v2, a *KEM* key (HPKE,
RFC 9180: X25519, or the post-quantum hybrid ML-KEM-768 + X25519), each named
by a key id ``<STATION>-<YYYYMMDD>-<8 hex>`` (the date the key was made, and
the first 4 bytes of BLAKE2b-256 of its public key; for a KEM key, of its
*tagged* public bytes, see :func:`kem_public_bytes`). The GS *root* key signs
the directory; it is distinct from the GS station keys that sign router
attestations and wrap content keys.

Why the KEM key is a separate key and not the X25519 key reused: v2 wraps
are ephemeral-static (HPKE Base mode), v1 wraps static-static; a key used by
both would keep v1's weakness alive for as long as the key lives, and the
KEM key must be rotatable and destroyable on its own schedule.

Files (``keys generate --out DIR``):

- ``<STATION>.secret.json``: the 32-byte seeds, created with
  ``os.open(..., 0o600)``; loading refuses a file readable by group or others.
- ``<STATION>.public.json``: key ids and public keys, what ``directory build``
  reads.

Nothing here prints or logs a secret; ``repr`` of a secrets object shows only
station and key ids. Randomness is injectable (``rng``) for test vectors.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from i24net.errors import ConfigError, KeyStoreError

Rng = Callable[[int], bytes]
ROOT_NAME = "gs-root"
"""File stem of the GS root key files."""


class KemSuite(enum.StrEnum):
    """The HPKE suites of envelope v2 (docs/envelope.md, part 2): Base mode, HKDF-SHA256,
    ChaCha20-Poly1305, and the KEM named here."""

    X25519 = "hpke-x25519"
    MLKEM768_X25519 = "hpke-mlkem768-x25519"


KemPrivate = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey
KemPublic = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey

KEM_TAG = {KemSuite.X25519: 0x01, KemSuite.MLKEM768_X25519: 0x02}
"""First byte of a v2 key's directory bytes (a v1 X25519 key is 32 untagged bytes)."""
KEM_SEED_SIZE = {KemSuite.X25519: 32, KemSuite.MLKEM768_X25519: 96}
"""Secret seed sizes: X25519 secret; ML-KEM-768 seed (d || z, 64 bytes) || X25519 secret."""
KEM_PUBLIC_SIZE = {KemSuite.X25519: 32, KemSuite.MLKEM768_X25519: 1184 + 32}
"""Public key sizes without the tag: X25519; ML-KEM-768 encapsulation key || X25519."""
_SUITE_BY_TAG = {tag: suite for suite, tag in KEM_TAG.items()}


def kem_private(suite: KemSuite, seed: bytes) -> KemPrivate:
    """The HPKE private key of ``suite`` made from ``seed`` (KEM_SEED_SIZE bytes)."""
    if len(seed) != KEM_SEED_SIZE[suite]:
        raise KeyStoreError(f"{suite} seed must be {KEM_SEED_SIZE[suite]} bytes")
    if suite is KemSuite.X25519:
        return x25519.X25519PrivateKey.from_private_bytes(seed)
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]),
        x25519.X25519PrivateKey.from_private_bytes(seed[64:]),
    )


def kem_public_bytes(suite: KemSuite, seed: bytes) -> bytes:
    """The tagged directory bytes of the KEM key made from ``seed``.

    ``0x01 || X25519 public`` or ``0x02 || ML-KEM-768 encapsulation key || X25519 public``.
    The tag makes the suite part of the key (and of its key id), so one key can
    never be read under two suites."""
    if suite is KemSuite.X25519:
        raw = x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    else:
        m = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]).public_key().public_bytes_raw()
        x = x25519.X25519PrivateKey.from_private_bytes(seed[64:]).public_key()
        raw = m + x.public_bytes_raw()
    return bytes((KEM_TAG[suite],)) + raw


def kem_public_from_bytes(tagged: bytes) -> tuple[KemSuite, KemPublic]:
    """Parse tagged directory bytes; ValueError for any other tag or length."""
    if not tagged:
        raise ValueError("empty KEM public key")
    suite = _SUITE_BY_TAG.get(tagged[0])
    if suite is None:
        raise ValueError(f"unknown KEM key tag {tagged[0]:#04x}")
    raw = tagged[1:]
    if len(raw) != KEM_PUBLIC_SIZE[suite]:
        raise ValueError(f"{suite} public key must be {KEM_PUBLIC_SIZE[suite]} bytes")
    if suite is KemSuite.X25519:
        return suite, _x25519_public(raw)
    return suite, hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]), _x25519_public(raw[1184:])
    )


_PROBE = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _x25519_public(raw: bytes) -> x25519.X25519PublicKey:
    """An X25519 public key that is not of low order (ValueError otherwise).

    Why on load: HPKE refuses to encrypt to a low-order point (the shared secret
    would be all zeros), and a router that met one while delivering a broadcast would
    fail the whole decision; refusing the directory record keeps it out (~50 µs once
    per key)."""
    pub = x25519.X25519PublicKey.from_public_bytes(raw)
    _PROBE.exchange(pub)  # raises ValueError for a low-order point
    return pub


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
    kem_key_id: str | None = None
    kem_public: bytes | None = None
    """Tagged directory bytes (:func:`kem_public_bytes`); None for a v1-only key set."""


@dataclass(frozen=True, slots=True)
class StationSecrets:
    """A station's secret keys. ``repr`` never shows key material.

    ``kem`` is the HPKE private key of envelope v2 (None: a v1-only key set);
    ``kem_seed`` the bytes it is made from, kept to save it."""

    station: str
    signing_key_id: str
    signing: SigningKey = field(repr=False)
    encryption_key_id: str
    encryption: PrivateKey = field(repr=False)
    created_ms: int
    kem_key_id: str | None = None
    kem: KemPrivate | None = field(default=None, repr=False, compare=False)
    kem_suite: KemSuite | None = None
    kem_seed: bytes | None = field(default=None, repr=False)

    @classmethod
    def generate(
        cls,
        station: str,
        *,
        now_ms: int,
        rng: Rng = os.urandom,
        kem: KemSuite | None = KemSuite.MLKEM768_X25519,
    ) -> StationSecrets:
        """New keys for ``station``; ``rng(32)`` supplies each seed, then ``rng`` the KEM
        seed (``kem=None``: a v1-only key set, the draws of v1 unchanged)."""
        signing, encryption = rng(32), rng(32)
        kem_seed = None if kem is None else rng(KEM_SEED_SIZE[kem])
        return cls.from_seeds(
            station, signing, encryption, created_ms=now_ms, kem_seed=kem_seed, kem_suite=kem
        )

    @classmethod
    def from_seeds(
        cls,
        station: str,
        signing_seed: bytes,
        encryption_secret: bytes,
        *,
        created_ms: int,
        kem_seed: bytes | None = None,
        kem_suite: KemSuite | None = None,
    ) -> StationSecrets:
        if len(signing_seed) != 32 or len(encryption_secret) != 32:
            raise KeyStoreError(f"station {station}: seeds must be 32 bytes each")
        if (kem_seed is None) != (kem_suite is None):
            raise KeyStoreError(f"station {station}: a KEM seed needs its suite and back")
        sk = SigningKey(signing_seed)
        ek = PrivateKey(encryption_secret)
        kem = kem_kid = None
        if kem_seed is not None and kem_suite is not None:
            kem = kem_private(kem_suite, kem_seed)
            kem_kid = key_id(station, kem_public_bytes(kem_suite, kem_seed), created_ms)
        return cls(
            station=station,
            signing_key_id=key_id(station, bytes(sk.verify_key), created_ms),
            signing=sk,
            encryption_key_id=key_id(station, bytes(ek.public_key), created_ms),
            encryption=ek,
            created_ms=created_ms,
            kem_key_id=kem_kid,
            kem=kem,
            kem_suite=kem_suite,
            kem_seed=kem_seed,
        )

    def public(self) -> StationPublic:
        kem_public = None
        if self.kem_suite is not None and self.kem_seed is not None:
            kem_public = kem_public_bytes(self.kem_suite, self.kem_seed)
        return StationPublic(
            station=self.station,
            signing_key_id=self.signing_key_id,
            signing_public=bytes(self.signing.verify_key),
            encryption_key_id=self.encryption_key_id,
            encryption_public=bytes(self.encryption.public_key),
            created_ms=self.created_ms,
            kem_key_id=self.kem_key_id,
            kem_public=kem_public,
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


def _hex(data: dict[str, Any], *keys: str, path: Path, size: int | None = 32) -> bytes:
    value: Any = data
    try:
        for k in keys:
            value = value[k]
        raw = bytes.fromhex(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field {'.'.join(keys)}") from exc
    if size is not None and len(raw) != size:
        raise KeyStoreError(f"{path}: field {'.'.join(keys)} must be {size} bytes")
    return raw


def _kem_suite(data: dict[str, Any], path: Path) -> KemSuite | None:
    """The ``kem.suite`` of a key file; None when the file has no KEM key (before v2)."""
    kem = data.get("kem")
    if kem is None:
        return None
    try:
        return KemSuite(kem["suite"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field kem.suite") from exc


def public_to_json(pub: StationPublic) -> dict[str, Any]:
    out: dict[str, Any] = {
        "station": pub.station,
        "created_ms": pub.created_ms,
        "signing": {"key_id": pub.signing_key_id, "public": pub.signing_public.hex()},
        "encryption": {"key_id": pub.encryption_key_id, "public": pub.encryption_public.hex()},
    }
    if pub.kem_public is not None:
        suite, _ = kem_public_from_bytes(pub.kem_public)
        out["kem"] = {
            "key_id": pub.kem_key_id,
            "suite": suite.value,
            "public": pub.kem_public.hex(),
        }
    return out


def save_station(secrets: StationSecrets, out: Path) -> tuple[Path, Path]:
    """Write ``<station>.secret.json`` (0600) and ``<station>.public.json`` (0644)."""
    out.mkdir(parents=True, exist_ok=True)
    secret_path = out / f"{secrets.station}.secret.json"
    public_path = out / f"{secrets.station}.public.json"
    data: dict[str, Any] = {
        "station": secrets.station,
        "created_ms": secrets.created_ms,
        "signing": {"key_id": secrets.signing_key_id, "seed": bytes(secrets.signing).hex()},
        "encryption": {
            "key_id": secrets.encryption_key_id,
            "secret": bytes(secrets.encryption).hex(),
        },
    }
    if secrets.kem_suite is not None and secrets.kem_seed is not None:
        data["kem"] = {
            "key_id": secrets.kem_key_id,
            "suite": secrets.kem_suite.value,
            "seed": secrets.kem_seed.hex(),
        }
    _write(secret_path, data, 0o600)
    _write(public_path, public_to_json(secrets.public()), 0o644)
    return secret_path, public_path


def load_station(path: Path) -> StationSecrets:
    """Load a ``*.secret.json`` file; refuses group/world-readable files.

    A file written before envelope v2 has no ``kem`` part and loads as a v1-only
    key set (``kem=None``)."""
    data = _read(path, secret=True)
    try:
        station = str(data["station"])
        created = int(data["created_ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing station or created_ms") from exc
    suite = _kem_suite(data, path)
    kem_seed = None
    if suite is not None:
        kem_seed = _hex(data, "kem", "seed", path=path, size=KEM_SEED_SIZE[suite])
    s = StationSecrets.from_seeds(
        station,
        _hex(data, "signing", "seed", path=path),
        _hex(data, "encryption", "secret", path=path),
        created_ms=created,
        kem_seed=kem_seed,
        kem_suite=suite,
    )
    kem_kid = data["kem"].get("key_id") if suite is not None else None
    if (data["signing"].get("key_id"), data["encryption"].get("key_id"), kem_kid) != (
        s.signing_key_id,
        s.encryption_key_id,
        s.kem_key_id,
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
    suite = _kem_suite(data, path)
    try:
        kem_kid = kem_public = None
        if suite is not None:
            kem_kid = str(data["kem"]["key_id"])
            kem_public = _hex(data, "kem", "public", path=path, size=None)
            if kem_public_from_bytes(kem_public)[0] is not suite:
                raise ValueError("kem.suite differs from the key's tag")
        pub = StationPublic(
            station=str(data["station"]),
            signing_key_id=str(data["signing"]["key_id"]),
            signing_public=_hex(data, "signing", "public", path=path),
            encryption_key_id=str(data["encryption"]["key_id"]),
            encryption_public=_hex(data, "encryption", "public", path=path),
            created_ms=int(data["created_ms"]),
            kem_key_id=kem_kid,
            kem_public=kem_public,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path}: missing or invalid field") from exc
    # Recomputed here too, so that the GS never signs a directory record every reader
    # refuses (i24net.directory.check_key_ids).
    pairs = [
        (pub.signing_key_id, pub.signing_public),
        (pub.encryption_key_id, pub.encryption_public),
    ]
    if pub.kem_key_id is not None and pub.kem_public is not None:
        pairs.append((pub.kem_key_id, pub.kem_public))
    for kid, public in pairs:
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


def load_previous(
    current: StationSecrets, paths: Sequence[Path]
) -> list[tuple[Path, StationSecrets]]:
    """The older key sets of ``current``'s station listed for a rotation (``[keys]
    previous`` of a gateway or the router), with their files. A listed file that is gone
    was destroyed after its grace or hold (logged, skipped); a file of another station, or
    one holding the current encryption key, is a configuration error."""
    held: list[tuple[Path, StationSecrets]] = []
    for path in paths:
        if not path.exists():
            logging.getLogger(__name__).info(
                "keys: previous key file %s is gone (destroyed after its grace)", path
            )
            continue
        s = load_station(path)
        if s.station != current.station:
            raise ConfigError(f"previous key file {path} is for {s.station}, not {current.station}")
        if s.encryption_key_id == current.encryption_key_id:
            raise ConfigError(f"previous key file {path} holds the current encryption key")
        held.append((path, s))
    return held
