"""Integrators: who may use a gateway's API, for what, and how fast.

A bureau connects several systems to its gateway (a case-management system,
a border-control system that only runs database queries, an analyst's
workstation). Each is an **integrator**: a name, scopes, and credentials.

**Store.** ``<data_dir>/integrators.sqlite3`` (mode 0600), its own SQLite
file so that ``i24net gateway integrators add|list|revoke`` can change it
while the gateway runs. The gateway keeps the integrators in memory and
checks SQLite's ``PRAGMA data_version`` on every request (a few
microseconds): a commit by another process changes it, and the next
request sees the new store. A revocation is therefore in force from the
next request on, with no restart and no polling interval to wait for.
Integrators are never deleted, only revoked: a name is never reused, so the
name recorded with a message (and used as a metric label) always means the
same system.

**Bearer tokens.** ``i24t.<id>.<secret>``: ``id`` is 12 hex characters (6
random bytes) to find the row, ``secret`` 32 random bytes (URL-safe base64).
Shown once at creation, stored only as a BLAKE2b-256 hash (personalised
``i24net-token``). A fast hash is right here and a password hash (argon2)
is not: the token carries 256 bits of entropy, so a stolen hash cannot be
brute-forced however fast the hash is; a deliberately slow hash would only
spend ~50 ms of the event loop's CPU on every request, and turn a flood of
bad tokens into a denial of service. The hash is compared in constant time.
Every integrator has an expiry (default 90 days); "never" needs an explicit
choice. ``renew`` gives it a new expiry and a new token (the old one stops
working), keeping its name and so its history.

**Client certificates.** An integrator may be bound to a client certificate
(mutual TLS, ``[api.tls] client_ca_file``): by its SHA-256 fingerprint (one
certificate) or its subject CN (any certificate the CA issues with that
CN). A certificate from another CA never gets this far: the TLS handshake
fails. An integrator with a token and a certificate binding must present
both.

**Scopes.** ``send`` (or ``send:<KIND>``, repeatable), ``inbox:read`` (or
``inbox:read:<KIND>``), ``status:read`` (the status of the messages it sent;
``/v1/status``) and ``operator`` (``/v1/rejected``, every message's status).

**Abuse.** A token bucket per integrator (rate and burst from the store, or
``[auth]``); a failed authentication is answered after a delay that grows
with the recent failures from the same peer address (bounded memory: the
least recently failing peers are forgotten first). Tokens never appear in
logs, errors or ``repr``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from i24net.clock import Clock, system_clock
from i24net.errors import AuthenticationError, AuthFailure, ConfigError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "i24t"
DEFAULT_EXPIRY_S = 90 * 86_400
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_TOKEN = re.compile(r"^i24t\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
PEER_CERT_KEY = "i24net.client_cert"
"""Where the HTTP protocol (``gateway/tls.py``) puts the verified client certificate in the
ASGI scope's ``extensions``."""

SEND = "send"
INBOX_READ = "inbox:read"
STATUS_READ = "status:read"
OPERATOR = "operator"

SCHEMA = """
CREATE TABLE IF NOT EXISTS integrators (
    name TEXT PRIMARY KEY,
    scopes TEXT NOT NULL,
    token_id TEXT UNIQUE,
    token_hash BLOB,
    cert_cn TEXT,
    cert_sha256 TEXT,
    rate_per_s REAL,
    burst INTEGER,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);
"""

# --- scopes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scopes:
    """What an integrator may do. An empty kind set means every kind."""

    send: bool = False
    send_kinds: frozenset[str] = frozenset()
    inbox: bool = False
    inbox_kinds: frozenset[str] = frozenset()
    status: bool = False
    operator: bool = False

    @classmethod
    def parse(cls, items: Iterable[str], known_kinds: Collection[str] | None = None) -> Scopes:
        """``["send:DB_QUERY", "inbox:read:DB_RESPONSE", "status:read"]`` -> Scopes.

        ``send`` with ``send:<KIND>`` is every kind (the wider grant wins).
        Raises ``ConfigError`` for an unknown scope or kind.
        """
        send_all = inbox_all = False
        send_kinds: set[str] = set()
        inbox_kinds: set[str] = set()
        status = operator = False
        for item in items:
            if item == SEND:
                send_all = True
            elif item.startswith(SEND + ":"):
                send_kinds.add(_kind(item[len(SEND) + 1 :], known_kinds, item))
            elif item == INBOX_READ:
                inbox_all = True
            elif item.startswith(INBOX_READ + ":"):
                inbox_kinds.add(_kind(item[len(INBOX_READ) + 1 :], known_kinds, item))
            elif item == STATUS_READ:
                status = True
            elif item == OPERATOR:
                operator = True
            else:
                raise ConfigError(
                    f"unknown scope {item!r}: send, send:<KIND>, inbox:read, "
                    "inbox:read:<KIND>, status:read, operator"
                )
        return cls(
            send=send_all or bool(send_kinds),
            send_kinds=frozenset() if send_all else frozenset(send_kinds),
            inbox=inbox_all or bool(inbox_kinds),
            inbox_kinds=frozenset() if inbox_all else frozenset(inbox_kinds),
            status=status,
            operator=operator,
        )

    def encode(self) -> list[str]:
        """The canonical list of scope strings (what the store keeps)."""
        out: list[str] = []
        if self.send:
            out += [f"{SEND}:{k}" for k in sorted(self.send_kinds)] or [SEND]
        if self.inbox:
            out += [f"{INBOX_READ}:{k}" for k in sorted(self.inbox_kinds)] or [INBOX_READ]
        if self.status:
            out.append(STATUS_READ)
        if self.operator:
            out.append(OPERATOR)
        return out

    def may_send(self, kind: str) -> bool:
        return self.send and (not self.send_kinds or kind in self.send_kinds)

    def may_read(self, kind: str) -> bool:
        return self.inbox and (not self.inbox_kinds or kind in self.inbox_kinds)

    @property
    def inbox_filter(self) -> frozenset[str] | None:
        """The kinds the inbox shows this integrator; None: every kind."""
        return self.inbox_kinds or None


def _kind(kind: str, known: Collection[str] | None, item: str) -> str:
    if not kind or (known is not None and kind not in known):
        raise ConfigError(f"scope {item!r}: {kind!r} is not a message kind")
    return kind


# --- integrators and tokens ------------------------------------------------------------


@dataclass(frozen=True)
class Integrator:
    """One system allowed to use the API. Never holds a token, only its hash."""

    name: str
    scopes: Scopes
    created_ms: int
    expires_ms: int | None = None
    revoked_ms: int | None = None
    token_id: str | None = None
    token_hash: bytes | None = field(default=None, repr=False)
    cert_cn: str | None = None
    cert_sha256: str | None = None
    rate_per_s: float | None = None
    burst: int | None = None

    def state(self, now_ms: int) -> str:
        if self.revoked_ms is not None:
            return "revoked"
        if self.expires_ms is not None and now_ms >= self.expires_ms:
            return "expired"
        return "active"

    @property
    def has_cert(self) -> bool:
        return self.cert_cn is not None or self.cert_sha256 is not None

    def cert_matches(self, cert: PeerCert | None) -> bool:
        if cert is None:
            return False
        if self.cert_sha256 is not None and hmac.compare_digest(self.cert_sha256, cert.sha256):
            return True
        return self.cert_cn is not None and cert.cn is not None and self.cert_cn == cert.cn


@dataclass(frozen=True)
class PeerCert:
    """The client certificate a TLS handshake verified: its SHA-256 (hex) and subject CN."""

    sha256: str
    cn: str | None


def token_hash(token: str) -> bytes:
    """What the store keeps of a token (see the module docstring for why BLAKE2b)."""
    return hashlib.blake2b(token.encode(), digest_size=32, person=b"i24net-token").digest()


def new_token() -> tuple[str, str]:
    """A fresh token and its id: ``("i24t.<id>.<secret>", "<id>")``."""
    token_id = secrets.token_hex(6)
    return f"{TOKEN_PREFIX}.{token_id}.{secrets.token_urlsafe(32)}", token_id


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``45s`` (or bare seconds) -> seconds."""
    m = re.fullmatch(r"(\d{1,9})([dhms]?)", text.strip())
    if m is None or int(m.group(1)) == 0:
        raise ConfigError(f"{text!r} is not a duration such as 90d, 12h, 30m or 45s")
    return int(m.group(1)) * {"d": 86_400, "h": 3600, "m": 60, "s": 1, "": 1}[m.group(2)]


# --- the store --------------------------------------------------------------------------


def open_store(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (or create, mode 0600) the integrator store; refuses one others can read."""
    if not path.exists():
        if not create:
            raise ConfigError(f"no integrator store at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"integrator store {path} is accessible to others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    except sqlite3.Error as exc:
        raise ConfigError(f"integrator store {path}: {exc}") from exc
    return conn


@contextlib.contextmanager
def _store(path: Path, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    conn = open_store(path, create=create)
    try:
        yield conn
    finally:
        conn.close()


_COLUMNS = (
    "name, scopes, created_ms, expires_ms, revoked_ms, token_id, token_hash, cert_cn,"
    " cert_sha256, rate_per_s, burst"
)


def _row(r: tuple[object, ...]) -> Integrator:
    scopes = Scopes.parse(json.loads(str(r[1])))
    return Integrator(
        name=str(r[0]),
        scopes=scopes,
        created_ms=int(r[2]),  # type: ignore[call-overload]
        expires_ms=None if r[3] is None else int(r[3]),  # type: ignore[call-overload]
        revoked_ms=None if r[4] is None else int(r[4]),  # type: ignore[call-overload]
        token_id=None if r[5] is None else str(r[5]),
        token_hash=None if r[6] is None else bytes(r[6]),  # type: ignore[call-overload]
        cert_cn=None if r[7] is None else str(r[7]),
        cert_sha256=None if r[8] is None else str(r[8]),
        rate_per_s=None if r[9] is None else float(r[9]),  # type: ignore[arg-type]
        burst=None if r[10] is None else int(r[10]),  # type: ignore[call-overload]
    )


def _load(conn: sqlite3.Connection) -> list[Integrator]:
    return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM integrators ORDER BY name")]


def create_integrator(
    path: Path,
    name: str,
    scopes: Iterable[str],
    *,
    expires_s: int | None = DEFAULT_EXPIRY_S,
    token: bool = True,
    cert_cn: str | None = None,
    cert_sha256: str | None = None,
    rate_per_s: float | None = None,
    burst: int | None = None,
    known_kinds: Collection[str] | None = None,
    clock: Clock = system_clock,
) -> str | None:
    """Add an integrator to the store at ``path``; returns its bearer token (shown once),
    or None when it authenticates by certificate only (``token=False``).

    ``expires_s=None`` is "never expires" (the CLI asks for ``--no-expiry`` to get it).
    ``path`` is the gateway's ``settings.integrators_path``. One call for tests and
    the bench::

        token = create_integrator(settings.integrators_path, "bench", ["send", "status:read"])
    """
    if known_kinds is None:
        from i24net.schemas import KIND_SCHEMAS

        known_kinds = KIND_SCHEMAS
    if not _NAME.match(name):
        raise ConfigError(
            f"integrator name {name!r}: 1-64 of a-z, 0-9, '.', '_', '-', starting with a "
            "letter or digit"
        )
    parsed = Scopes.parse(scopes, known_kinds)
    if not parsed.encode():
        raise ConfigError(f"integrator {name}: give at least one scope")
    if cert_sha256 is not None:
        cert_sha256 = cert_sha256.replace(":", "").lower()
        if not _FINGERPRINT.match(cert_sha256):
            raise ConfigError(
                "cert_sha256: 64 hex digits (colons allowed), the SHA-256 of the certificate "
                "in DER (`openssl x509 -in CERT.pem -noout -fingerprint -sha256`); or give "
                "the certificate itself with --cert-file CERT.pem"
            )
    if not token and cert_cn is None and cert_sha256 is None:
        raise ConfigError(f"integrator {name}: without a token it needs a certificate binding")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ConfigError("rate_per_s must be positive")
    if burst is not None and burst < 1:
        raise ConfigError("burst must be at least 1")
    now = clock()
    secret: str | None = None
    token_id: str | None = None
    digest: bytes | None = None
    if token:
        secret, token_id = new_token()
        digest = token_hash(secret)
    with _store(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM integrators WHERE name = ?", (name,)).fetchone():
                raise ConfigError(
                    f"integrator {name} exists (names are never reused, even once revoked)"
                )
            for other in _load(conn):
                if other.state(now) != "active" or not other.has_cert:
                    continue
                if (cert_cn is not None and other.cert_cn == cert_cn) or (
                    cert_sha256 is not None and other.cert_sha256 == cert_sha256
                ):
                    raise ConfigError(
                        f"integrator {other.name} is already bound to that certificate"
                    )
            conn.execute(
                f"INSERT INTO integrators ({_COLUMNS}) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    json.dumps(parsed.encode()),
                    now,
                    None if expires_s is None else now + expires_s * 1000,
                    token_id,
                    digest,
                    cert_cn,
                    cert_sha256,
                    rate_per_s,
                    burst,
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return secret


def list_integrators(path: Path) -> list[Integrator]:
    with _store(path, create=False) as conn:
        return _load(conn)


def renew_integrator(
    path: Path, name: str, *, expires_s: int | None = DEFAULT_EXPIRY_S, clock: Clock = system_clock
) -> str | None:
    """A new expiry for ``name`` and, if it has a token, a new token (returned, shown once):
    the old token stops working at the gateway's next request. The name, and so the
    history recorded under it, stays the same. A revoked integrator cannot be renewed."""
    now = clock()
    with _store(path, create=False) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT revoked_ms, token_id FROM integrators WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no integrator {name}")
            if row[0] is not None:
                raise ConfigError(f"integrator {name} is revoked; add a new one")
            secret: str | None = None
            token_id: str | None = None
            digest: bytes | None = None
            if row[1] is not None:
                secret, token_id = new_token()
                digest = token_hash(secret)
            conn.execute(
                "UPDATE integrators SET expires_ms = ?, token_id = ?, token_hash = ?"
                " WHERE name = ?",
                (None if expires_s is None else now + expires_s * 1000, token_id, digest, name),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return secret


def revoke_integrator(path: Path, name: str, *, clock: Clock = system_clock) -> bool:
    """Revoke ``name`` (from the next request on); False when it was already revoked."""
    with _store(path, create=False) as conn:
        if not conn.execute("SELECT 1 FROM integrators WHERE name = ?", (name,)).fetchone():
            raise ConfigError(f"no integrator {name}")
        cur = conn.execute(
            "UPDATE integrators SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL",
            (clock(), name),
        )
        return cur.rowcount == 1


# --- at the gateway: authentication, rate limits, failure slow-down -----------------------


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailureThrottle:
    """Delays for failed authentications, per peer address, in bounded memory."""

    def __init__(
        self,
        *,
        step_s: float,
        max_s: float,
        forget_s: float,
        max_peers: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step_s, self.max_s, self.forget_s, self.max_peers = step_s, max_s, forget_s, max_peers
        self._monotonic = monotonic
        self._peers: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()

    def fail(self, peer: str) -> float:
        """Count a failure from ``peer``; the delay to answer it with (seconds)."""
        now = self._monotonic()
        count, last = self._peers.pop(peer, (0, now))
        if now - last > self.forget_s:
            count = 0
        count += 1
        self._peers[peer] = (count, now)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        return min(self.max_s, (count - 1) * self.step_s)

    def __len__(self) -> int:
        return len(self._peers)


class Authenticator:
    """The gateway's view of the integrator store (reloaded when another process commits)."""

    def __init__(
        self,
        path: Path,
        *,
        rate_per_s: float,
        burst: int,
        throttle: FailureThrottle,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.rate_per_s, self.burst = rate_per_s, burst
        self.throttle = throttle
        self.clock = clock
        self._monotonic = monotonic
        self._conn = open_store(path)
        self._version: int | None = None
        self._by_name: dict[str, Integrator] = {}
        self._by_token: dict[str, Integrator] = {}
        self._by_fingerprint: dict[str, Integrator] = {}
        self._by_cn: dict[str, Integrator] = {}
        self._buckets: dict[str, _Bucket] = {}
        self.reloads = 0
        self.refresh()

    def close(self) -> None:
        self._conn.close()

    @property
    def integrators(self) -> dict[str, Integrator]:
        return dict(self._by_name)

    def refresh(self) -> None:
        """Reload the store if another connection committed since the last look."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return
        everyone = _load(self._conn)
        now = self.clock()
        # active integrators last, so a revoked one never hides a current binding
        everyone.sort(key=lambda i: i.state(now) == "active")
        self._by_name = {i.name: i for i in everyone}
        self._by_token = {i.token_id: i for i in everyone if i.token_id is not None}
        self._by_fingerprint = {i.cert_sha256: i for i in everyone if i.cert_sha256}
        self._by_cn = {i.cert_cn: i for i in everyone if i.cert_cn}
        self._buckets = {n: b for n, b in self._buckets.items() if n in self._by_name}
        self._version = version
        self.reloads += 1
        log.info("integrators: %d loaded from %s", len(everyone), self.path)

    def authenticate(self, authorization: str | None, cert: PeerCert | None) -> Integrator:
        """The integrator these credentials prove, or ``AuthenticationError(reason)``."""
        self.refresh()
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            m = _TOKEN.match(token.strip()) if scheme.lower() == "bearer" else None
            if m is None:
                raise AuthenticationError(AuthFailure.MALFORMED)
            who = self._by_token.get(m.group(1))
            if who is None or who.token_hash is None:
                raise AuthenticationError(AuthFailure.UNKNOWN)
            if not hmac.compare_digest(who.token_hash, token_hash(token.strip())):
                raise AuthenticationError(AuthFailure.BAD_TOKEN)
            if who.has_cert and not who.cert_matches(cert):
                raise AuthenticationError(AuthFailure.CERT_MISMATCH)
        elif cert is not None:
            found = self._by_fingerprint.get(cert.sha256)
            if found is None and cert.cn is not None:
                found = self._by_cn.get(cert.cn)
            if found is None:
                raise AuthenticationError(AuthFailure.UNKNOWN)
            if found.token_id is not None:  # it must present its token too
                raise AuthenticationError(AuthFailure.MISSING)
            who = found
        else:
            raise AuthenticationError(AuthFailure.MISSING)
        state = who.state(self.clock())
        if state == "revoked":
            raise AuthenticationError(AuthFailure.REVOKED)
        if state == "expired":
            raise AuthenticationError(AuthFailure.EXPIRED)
        return who

    def admit(self, who: Integrator) -> float | None:
        """Take one request from ``who``'s bucket: None, or the seconds until one is there."""
        rate = who.rate_per_s or self.rate_per_s
        burst = who.burst or self.burst
        now = self._monotonic()
        b = self._buckets.get(who.name)
        if b is None:
            b = self._buckets[who.name] = _Bucket(float(burst), now)
        b.tokens = min(float(burst), b.tokens + (now - b.at) * rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        return (1.0 - b.tokens) / rate


def describe(i: Integrator, now_ms: int) -> dict[str, object]:
    """An integrator as ``integrators list`` shows it (no token, no hash)."""
    d = dataclasses.asdict(i)
    d.pop("token_hash", None)
    d["scopes"] = i.scopes.encode()
    d["state"] = i.state(now_ms)
    d["token"] = i.token_id is not None
    return d


__all__ = [
    "DEFAULT_EXPIRY_S",
    "INBOX_READ",
    "OPERATOR",
    "PEER_CERT_KEY",
    "SEND",
    "STATUS_READ",
    "Authenticator",
    "FailureThrottle",
    "Integrator",
    "PeerCert",
    "Scopes",
    "create_integrator",
    "list_integrators",
    "open_store",
    "parse_duration",
    "renew_integrator",
    "revoke_integrator",
    "token_hash",
]
