"""The envelope header (``net.i24.Header``) as a frozen dataclass, with its rules."""

from __future__ import annotations

import enum
import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

MAX_NAME = 64
"""Longest station code or key id, in UTF-8 bytes (§3: one length byte)."""


class Precedence(enum.StrEnum):
    FLASH = "FLASH"
    IMMEDIATE = "IMMEDIATE"
    PRIORITY = "PRIORITY"
    ROUTINE = "ROUTINE"
    DEFERRED = "DEFERRED"


class Language(enum.StrEnum):
    AR = "ar"
    EN = "en"
    ES = "es"
    FR = "fr"


class Handling(enum.StrEnum):
    CRIME_PREVENTION_ONLY = "CRIME_PREVENTION_ONLY"
    NO_COURT_USE_WITHOUT_CONSENT = "NO_COURT_USE_WITHOUT_CONSENT"
    NO_ONWARD_DISSEMINATION_WITHOUT_CONSENT = "NO_ONWARD_DISSEMINATION_WITHOUT_CONSENT"
    OTHER = "OTHER"


class Reliability(enum.StrEnum):
    A = "A"
    B = "B"
    C = "C"
    X = "X"


class RecipientsMode(enum.StrEnum):
    STATIONS = "STATIONS"
    ALL = "ALL"
    REGION = "REGION"


@dataclass(frozen=True, slots=True)
class HandlingCode:
    code: Handling
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Recipients:
    """Addressees: explicit stations, every station, or one regional group."""

    mode: RecipientsMode
    stations: tuple[str, ...] = ()
    region: str | None = None

    @classmethod
    def to(cls, *stations: str) -> Recipients:
        return cls(RecipientsMode.STATIONS, tuple(sorted(set(stations))))

    @classmethod
    def all(cls) -> Recipients:
        return cls(RecipientsMode.ALL)

    @classmethod
    def in_region(cls, region: str) -> Recipients:
        return cls(RecipientsMode.REGION, (), region)


def new_message_id(now_ms: int, rng: Callable[[int], bytes] = os.urandom) -> str:
    """A ULID: 48-bit ``now_ms`` + 80 bits from ``rng``, 26 Crockford base-32 characters."""
    return str(ULID.from_bytes(now_ms.to_bytes(6, "big") + rng(10)))


_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
"""A ULID as python-ulid reads it (upper-cased): Crockford base-32, at most 128 bits."""
_CROCKFORD_TO_INT = str.maketrans(
    "0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv"
)


def _ulid_ms(mid: str) -> int:
    """The 48-bit millisecond timestamp of a ULID matching ``_ULID``."""
    return int(mid[:10].translate(_CROCKFORD_TO_INT), 32)


def _sorted_unique(xs: Sequence[str]) -> bool:
    return all(a < b for a, b in itertools.pairwise(xs))


@dataclass(frozen=True, slots=True)
class Header:
    """The signed, unencrypted header. ``kind`` is a ``net.i24.MessageKind`` symbol."""

    message_id: str
    sender: str
    sender_key_id: str
    recipients: Recipients
    kind: str
    precedence: Precedence
    created_ms: int
    expires_ms: int
    language: Language
    payload_fingerprint: bytes = field(repr=False)
    handling: tuple[HandlingCode, ...] = ()
    excluded: tuple[str, ...] = ()
    source_reliability: Reliability | None = None
    source_accuracy: int | None = None
    offence_categories: tuple[str, ...] = ()

    def problems(self, max_lifetime_ms: int) -> list[str]:
        """Every rule of docs/envelope.md §2.3 this header breaks (empty when valid)."""
        out: list[str] = []
        mid = self.message_id
        if not isinstance(mid, str) or not _ULID.fullmatch(mid.upper()):
            out.append("message id is not a ULID")
        else:
            if _ulid_ms(mid.upper()) != self.created_ms or len(mid) != 26:
                out.append("message id timestamp differs from created_ms")
            if mid != mid.upper():
                out.append("message id must be upper case")
        if not self.created_ms < self.expires_ms:
            out.append("expires_ms must be after created_ms")
        if self.expires_ms - self.created_ms > max_lifetime_ms:
            out.append(f"lifetime over {max_lifetime_ms} ms")
        for name in (self.sender, self.sender_key_id, *self.recipients.stations, *self.excluded):
            if not name or len(name.encode()) > MAX_NAME:
                out.append(f"station code or key id of 1 to {MAX_NAME} bytes expected")
        r = self.recipients
        if not _sorted_unique(r.stations) or not _sorted_unique(self.excluded):
            out.append("station lists must be sorted and unique")
        if (r.mode is RecipientsMode.STATIONS) != bool(r.stations):
            out.append("stations must be listed exactly for mode STATIONS")
        if (r.mode is RecipientsMode.REGION) != (r.region is not None):
            out.append("region must be set exactly for mode REGION")
        if len(self.payload_fingerprint) != 8:
            out.append("payload fingerprint must be 8 bytes")
        if self.source_accuracy is not None and not 1 <= self.source_accuracy <= 4:
            out.append("source accuracy must be 1 to 4")
        for h in self.handling:
            if (h.code is Handling.OTHER) != (h.text is not None):
                out.append("handling text is required for OTHER and only for OTHER")
        return out

    def to_avro(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sender": self.sender,
            "sender_key_id": self.sender_key_id,
            "recipients": {
                "mode": self.recipients.mode.value,
                "stations": list(self.recipients.stations),
                "region": self.recipients.region,
            },
            "kind": self.kind,
            "precedence": self.precedence.value,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "language": self.language.value,
            "handling": [{"code": h.code.value, "text": h.text} for h in self.handling],
            "excluded": list(self.excluded),
            "source_reliability": self.source_reliability and self.source_reliability.value,
            "source_accuracy": self.source_accuracy,
            "offence_categories": list(self.offence_categories),
            "payload_fingerprint": self.payload_fingerprint,
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> Header:
        r = d["recipients"]
        rel = d["source_reliability"]
        return cls(
            message_id=d["message_id"],
            sender=d["sender"],
            sender_key_id=d["sender_key_id"],
            recipients=Recipients(RecipientsMode(r["mode"]), tuple(r["stations"]), r["region"]),
            kind=d["kind"],
            precedence=Precedence(d["precedence"]),
            created_ms=d["created_ms"],
            expires_ms=d["expires_ms"],
            language=Language(d["language"]),
            payload_fingerprint=d["payload_fingerprint"],
            handling=tuple(HandlingCode(Handling(h["code"]), h["text"]) for h in d["handling"]),
            excluded=tuple(d["excluded"]),
            source_reliability=None if rel is None else Reliability(rel),
            source_accuracy=d["source_accuracy"],
            offence_categories=tuple(d["offence_categories"]),
        )
