"""Who may use the console: reviewers' passwords, sessions, CSRF tokens, slowed guessing.

* **Reviewers file** (``[review] reviewers_file``, TOML, mode 0600): one table per
  reviewer identity, ``[reviewers."reviewer.alice"]`` with ``password`` (an argon2id
  hash made by ``i24net review reviewers add``) and ``language`` (ar, en, es or fr).
  The file holds hashes only; a password never reaches a log or a page. The
  existing tokens file (``[review] tokens_file``) is accepted too: a reviewer may
  sign in with their bearer token as the password.
* **Sessions** live in this instance's memory: a random 256-bit id in the cookie,
  only its BLAKE2b digest in the table (a memory dump does not give a usable
  cookie), an expiry, and a per-session CSRF token compared in constant time. No
  signing secret to manage, no new dependency; the price is that a restart signs
  everyone out and a session is valid on the instance that made it only (the
  console is served from one address).
* **Failed sign-ins** are counted per name; each is answered after
  ``signin_delay_ms`` doubled per earlier failure of that name (capped at 30 s),
  so guessing a password online costs time. A success resets the count.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from i24net.clock import Clock
from i24net.errors import ConfigError

__all__ = [
    "LANGUAGES",
    "Reviewer",
    "Reviewers",
    "Session",
    "Sessions",
    "Throttle",
    "add_reviewer",
]

LANGUAGES = ("ar", "en", "es", "fr")
MAX_DELAY_MS = 30_000
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Reviewer:
    identity: str
    password_hash: str
    language: str | None


class Reviewers:
    """The reviewers file, read once at start-up (restart the router after a change)."""

    def __init__(self, entries: dict[str, Reviewer]) -> None:
        self.entries = entries
        # verify against a dummy hash for unknown names: same cost, no name oracle
        self._dummy = _HASHER.hash(secrets.token_hex(16))

    @classmethod
    def load(cls, path: Path | None) -> Reviewers:
        if path is None:
            return cls({})
        try:
            mode = path.stat().st_mode
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"reviewers file {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"reviewers file {path} must be mode 0600 (chmod 600 {path})")
        table = raw.get("reviewers", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected [reviewers.<identity>] tables")
        out = {}
        for who, entry in table.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("password"), str):
                raise ConfigError(f"{path}: reviewer {who!r} has no password hash")
            lang = entry.get("language")
            if lang is not None and lang not in LANGUAGES:
                raise ConfigError(f"{path}: reviewer {who!r}: language must be one of {LANGUAGES}")
            out[str(who)] = Reviewer(str(who), entry["password"], lang)
        return cls(out)

    def check(self, identity: str, password: str) -> Reviewer | None:
        """The reviewer if the password is theirs (argon2 verify), else None."""
        r = self.entries.get(identity)
        try:
            _HASHER.verify(r.password_hash if r else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return r


def add_reviewer(path: Path, identity: str, password: str, language: str | None) -> None:
    """Add or replace ``identity`` in the reviewers file (created 0600), hashing with argon2id."""
    if not identity or any(c in identity for c in '"\\\n\r\t'):
        raise ConfigError(f"{identity!r} is not a reviewer identity")
    if len(password) < 12:
        raise ConfigError("a reviewer password needs at least 12 characters")
    if language is not None and language not in LANGUAGES:
        raise ConfigError(f"language must be one of {LANGUAGES}")
    current: dict[str, dict[str, str]] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"reviewers file {path}: {exc}") from exc
        current = {str(k): dict(v) for k, v in raw.get("reviewers", {}).items()}
    entry = {"password": _HASHER.hash(password)}
    if language:
        entry["language"] = language
    current[identity] = entry
    lines = ["# i24net review desk reviewers: argon2id hashes (i24net review reviewers add)"]
    for who in sorted(current):
        lines.append("")
        lines.append(f"[reviewers.{_q(who)}]")
        for k in sorted(current[who]):
            lines.append(f"{k} = {_q(current[who][k])}")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _q(s: str) -> str:
    """A TOML basic string (JSON escaping is valid TOML for these characters)."""
    import json

    return json.dumps(s)


@dataclass(slots=True)
class Session:
    reviewer: str
    language: str
    csrf: str
    expires_ms: int

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    """Server-side sessions: cookie value -> reviewer (see the module docstring)."""

    def __init__(self, clock: Clock, ttl_ms: int) -> None:
        self.clock = clock
        self.ttl_ms = ttl_ms
        self._by_digest: dict[str, Session] = {}

    @staticmethod
    def _key(sid: str) -> str:
        return hashlib.blake2b(sid.encode(), digest_size=32).hexdigest()

    def start(self, reviewer: str, language: str) -> tuple[str, Session]:
        now = self.clock()
        for k in [k for k, s in self._by_digest.items() if s.expires_ms <= now]:
            del self._by_digest[k]
        sid = secrets.token_urlsafe(32)
        s = Session(reviewer, language, secrets.token_urlsafe(32), now + self.ttl_ms)
        self._by_digest[self._key(sid)] = s
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        k = self._key(sid)
        s = self._by_digest.get(k)
        if s is not None and s.expires_ms <= self.clock():
            del self._by_digest[k]
            return None
        return s

    def end(self, sid: str | None) -> None:
        if sid:
            self._by_digest.pop(self._key(sid), None)


class Throttle:
    """Failed sign-ins per name and the delay the next answer waits."""

    def __init__(self, base_ms: int) -> None:
        self.base_ms = base_ms
        self.failures: dict[str, int] = {}
        self.total_failures = 0

    def failed(self, name: str) -> int:
        """Count a failure; return how long (ms) to wait before answering it."""
        n = self.failures.get(name, 0) + 1
        if len(self.failures) > 100_000:  # bounded: a flood of names resets the table
            self.failures.clear()
        self.failures[name] = n
        self.total_failures += 1
        return int(min(MAX_DELAY_MS, self.base_ms * (1 << min(n - 1, 16))))

    def delay_s(self, name: str) -> int:
        """The delay (whole seconds, rounded up) the next failure of ``name`` would get."""
        n = self.failures.get(name, 0)
        return -(-min(MAX_DELAY_MS, self.base_ms * (1 << min(n, 16))) // 1000)

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)
