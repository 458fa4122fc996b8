"""Turning an integrator's submission into a sealed envelope, or a specific refusal.

The API hands a :class:`Submission` (JSON payload or Avro single-object
bytes) to :meth:`Intake.prepare`, which checks it against the kind's schema
and the directory, builds the signed header and **seals the envelope at
intake**: the outbox holds only ciphertext, and a retried produce sends the
identical bytes. Every refusal is an ``IntakeRefusedError`` with a bounded
``code`` (see ``docs/gateway.md``).

Which envelope version (``[envelope] version``, docs/gateway.md): ``"auto"``
(the default) seals v2 when the GS and every station the header resolves to
(``i24net.envelope.addressed``: the router's and the recipients' own
resolution) can open v2 now, by their usable keys in the directory, and v1
otherwise: during the transition a station that publishes only a v1 key keeps
receiving (the router delivers in the version it was sent in). ``1`` or ``2``
forces a version; a recipient that cannot open it is then refused
``unknown_recipient`` at intake. Delivery receipts follow the same rule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from i24net.clock import Clock
from i24net.directory import Directory
from i24net.envelope import (
    Handling,
    HandlingCode,
    Header,
    Language,
    Limits,
    Precedence,
    Recipients,
    RecipientsMode,
    Reliability,
    Sender,
    addressed,
    new_message_id,
)
from i24net.errors import (
    CodecError,
    EnvelopeError,
    IntakeRefusedError,
    OversizedError,
    UnknownSchemaError,
    VerificationError,
)
from i24net.keys import StationSecrets
from i24net.schemas import KIND_SCHEMAS, MAGIC, SchemaStore
from i24net.stations import Region

SYSTEM_KINDS = frozenset({"DELIVERY_RECEIPT", "STATUS_NOTICE", "AUDIT_RECORD", "REVIEW_DECISION"})
"""Kinds the network itself writes; integrators may not submit them."""

RANK: dict[Precedence, int] = {p: i for i, p in enumerate(Precedence)}
"""Drain order: FLASH (0) first, DEFERRED (4) last."""

_LIMITS = Limits()
SCHEMA_KIND = {schema: kind for kind, schema in KIND_SCHEMAS.items()}

VersionSetting = Literal["auto", 1, 2]
"""``[envelope] version``: auto (by the directory), or a forced 1 or 2."""


@dataclass(frozen=True, slots=True)
class EnvelopeVersionMetrics:
    """Envelopes sealed and opened by this gateway, by envelope version (1, 2)."""

    sealed: Counter
    opened: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EnvelopeVersionMetrics:
        return cls(
            sealed=Counter(
                "i24net_gateway_envelopes_sealed",
                "Envelopes sealed at intake (messages and delivery receipts), by envelope "
                "version ([envelope] version: auto seals v2 when the GS and every recipient "
                "can open it)",
                ["version"],
                registry=registry,
            ),
            opened=Counter(
                "i24net_gateway_envelopes_opened",
                "Deliveries opened (verified and decrypted) from the in topic, by envelope version",
                ["version"],
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class Submission:
    """What an integrator asks to send (the API's request, decoded)."""

    kind: str | None
    to: tuple[str, ...] = ()
    to_all: bool = False
    region: str | None = None
    excluded: tuple[str, ...] = ()
    precedence: str = "ROUTINE"
    language: str = "en"
    expires_in_s: int | None = None
    expires_ms: int | None = None
    handling: tuple[tuple[str, str | None], ...] = ()
    source_reliability: str | None = None
    source_accuracy: int | None = None
    offence_categories: tuple[str, ...] = ()
    payload: Mapping[str, Any] | None = field(default=None, repr=False)
    payload_avro: bytes | None = field(default=None, repr=False)

    def digest(self) -> bytes:
        """A digest of the whole request, to tell a true retry from a reused idempotency key."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "payload_avro"}
        blob = json.dumps(d, sort_keys=True, default=_json_default).encode()
        return hashlib.blake2b(blob + (self.payload_avro or b""), digest_size=32).digest()


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray):
        return base64.b64encode(o).decode()
    raise TypeError(type(o).__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A sealed envelope ready for the outbox."""

    header: Header
    envelope: bytes = field(repr=False)
    rank: int
    recipients: tuple[str, ...]


def choose_version(directory: Directory, router: str, header: Header, now: int) -> int:
    """``[envelope] version = "auto"``: 2 when ``router`` (the GS) and every station
    ``header`` resolves to (``addressed``: the router's own resolution) have a usable v2
    key at ``now``, else 1 -- one station that has not migrated keeps the message v1."""
    if 2 not in directory.envelope_versions(router, now):
        return 1
    for st in addressed(header, directory):
        if st in directory and 2 not in directory.envelope_versions(st, now):
            return 1
    return 2


def refuse(code: str, detail: str, status: int = 422) -> IntakeRefusedError:
    return IntakeRefusedError(code, detail, http_status=status)


class Intake:
    """Validation and sealing for one station."""

    def __init__(
        self,
        secrets: StationSecrets,
        directory: Callable[[], Directory],
        *,
        clock: Clock,
        store: SchemaStore,
        router: str,
        default_lifetime_ms: int,
        limits: Limits = _LIMITS,
        rng: Callable[[int], bytes] = os.urandom,
        version: VersionSetting = "auto",
        metrics: EnvelopeVersionMetrics | None = None,
    ) -> None:
        self.secrets = secrets
        self._directory = directory
        self.clock = clock
        self.store = store
        self.router = router
        self.default_lifetime_ms = default_lifetime_ms
        self.limits = limits
        self.rng = rng
        self.version: VersionSetting = version
        self.metrics = metrics
        self._senders: dict[int, tuple[tuple[str, int], Sender]] = {}

    # --- public ------------------------------------------------------------

    def prepare(self, sub: Submission) -> Prepared:
        """Validate ``sub`` and seal it; raise IntakeRefusedError with a specific code."""
        now = self.clock()
        kind, payload = self._payload(sub)
        recipients = self._recipients(sub)
        header = self._header(sub, kind, recipients, now)
        return self.seal(header, payload, now)

    def seal(self, header: Header, payload: bytes, now: int) -> Prepared:
        version = self.choose_version(header, now)
        try:
            envelope = self._sealer(now, version).seal(header, payload)
        except OversizedError as exc:
            raise refuse("oversized", str(exc), 413) from exc
        except EnvelopeError as exc:
            raise refuse("bad_header", str(exc)) from exc
        if self.metrics is not None:
            self.metrics.sealed.labels(str(version)).inc()
        stations = header.recipients.stations
        return Prepared(header, envelope, RANK[header.precedence], stations)

    def choose_version(self, header: Header, now: int) -> int:
        """The envelope version to seal ``header`` in (module docstring): forced, or
        :func:`choose_version` (auto)."""
        if self.version != "auto":
            return self.version
        return choose_version(self._directory(), self.router, header, now)

    def system_header(
        self, kind: str, to: str, precedence: Precedence, now: int, lifetime_ms: int
    ) -> Header:
        """A header for a message the gateway itself writes (a delivery receipt)."""
        s = self.secrets
        return Header(
            message_id=new_message_id(now, self.rng),
            sender=s.station,
            sender_key_id=s.signing_key_id,
            recipients=Recipients.to(to),
            kind=kind,
            precedence=precedence,
            created_ms=now,
            expires_ms=now + lifetime_ms,
            language=Language.EN,
            payload_fingerprint=self.store.fingerprint(KIND_SCHEMAS[kind]),
        )

    # --- steps ---------------------------------------------------------------

    def _sealer(self, now: int, version: int) -> Sender:
        d = self._directory()
        try:
            key = d.current_encryption_key(self.router, now, version=version)
        except VerificationError as exc:
            raise refuse(
                "router_unavailable", f"no usable v{version} key of {self.router}", 503
            ) from exc
        cached = self._senders.get(version)
        if cached is None or cached[0] != (key.key_id, id(d)):
            cached = (
                (key.key_id, id(d)),
                Sender(self.secrets, key, store=self.store, rng=self.rng),
            )
            self._senders[version] = cached
        return cached[1]

    def _payload(self, sub: Submission) -> tuple[str, bytes]:
        if (sub.payload is None) == (sub.payload_avro is None):
            raise refuse("schema_mismatch", "give exactly one of payload (JSON) or payload_avro")
        if sub.payload_avro is not None:
            data = sub.payload_avro
            if len(data) > self.limits.max_payload:
                raise refuse("oversized", f"payload is {len(data)} bytes", 413)
            if data[:2] != MAGIC or len(data) < 10:
                raise refuse("schema_mismatch", "payload_avro is not Avro single-object encoding")
            try:
                schema = self.store.by_fingerprint(data[2:10])
            except UnknownSchemaError as exc:
                raise refuse(
                    "unknown_kind", f"no kind has schema fingerprint {data[2:10].hex()}"
                ) from exc
            kind = sub.kind or SCHEMA_KIND.get(schema)
            self._check_kind(kind)
            assert kind is not None
            if KIND_SCHEMAS[kind] != schema:
                raise refuse(
                    "schema_mismatch", f"kind {kind} carries {KIND_SCHEMAS[kind]}, got {schema}"
                )
            try:
                _, record = self.store.decode_single(data, expected=schema)
            except OversizedError as exc:
                raise refuse("oversized", str(exc), 413) from exc
            except CodecError as exc:
                raise refuse("schema_mismatch", str(exc)) from exc
            if self.store.fingerprint(schema) != data[2:10]:
                # written with a superseded version: re-encode with the current one
                data = self.store.encode_single(schema, record)
            return kind, data
        kind = sub.kind
        self._check_kind(kind)
        assert kind is not None and sub.payload is not None
        schema = KIND_SCHEMAS[kind]
        try:
            record = from_json(self.store.schema(schema), sub.payload)
            data = self.store.encode_single(schema, record)
        except OversizedError as exc:
            raise refuse("oversized", str(exc), 413) from exc
        except (CodecError, ValueError, TypeError) as exc:
            raise refuse("schema_mismatch", f"{schema}: {exc}") from exc
        if len(data) > self.limits.max_payload:
            raise refuse("oversized", f"payload is {len(data)} bytes", 413)
        return kind, data

    def _check_kind(self, kind: str | None) -> None:
        if kind is None:
            raise refuse("unknown_kind", "kind is required")
        if kind not in KIND_SCHEMAS:
            raise refuse("unknown_kind", f"{kind!r} is not a message kind")
        if kind in SYSTEM_KINDS:
            raise refuse("unknown_kind", f"{kind} is written by the network, not by integrators")

    def _recipients(self, sub: Submission) -> Recipients:
        modes = int(bool(sub.to)) + int(sub.to_all) + int(sub.region is not None)
        if modes != 1:
            raise refuse("unknown_recipient", "give exactly one of to, to_all or region")
        d = self._directory()
        now = self.clock()
        for code in (*sub.to, *sub.excluded):
            if code not in d:
                raise refuse("unknown_recipient", f"station {code!r} is not in the directory")
        for code in sub.to:
            versions = d.envelope_versions(code, now)
            want = self.version if self.version != "auto" else max(versions, default=1)
            try:
                d.current_encryption_key(code, now, version=want)
            except VerificationError as exc:
                raise refuse(
                    "unknown_recipient",
                    f"station {code} cannot receive v{want} ({exc.reason.value})",
                ) from exc
        if sub.to:
            return Recipients.to(*sub.to)
        if sub.to_all:
            return Recipients.all()
        assert sub.region is not None
        if sub.region not in {r.value for r in Region}:
            raise refuse("unknown_recipient", f"{sub.region!r} is not a region")
        return Recipients.in_region(sub.region)

    def _header(self, sub: Submission, kind: str, rcpt: Recipients, now: int) -> Header:
        try:
            precedence = Precedence(sub.precedence)
        except ValueError:
            raise refuse("bad_precedence", f"{sub.precedence!r} is not a precedence") from None
        try:
            language = Language(sub.language)
        except ValueError:
            raise refuse("bad_language", f"{sub.language!r}: one of ar, en, es, fr") from None
        handling: list[HandlingCode] = []
        for code, text in sub.handling:
            try:
                h = Handling(code)
            except ValueError:
                raise refuse("bad_handling_code", f"{code!r} is not a handling code") from None
            if (h is Handling.OTHER) != (text is not None and text != ""):
                raise refuse("bad_handling_code", "text is required for OTHER and only for OTHER")
            handling.append(HandlingCode(h, text if h is Handling.OTHER else None))
        if sub.expires_ms is not None and sub.expires_in_s is not None:
            raise refuse("expired", "give expires_ms or expires_in_s, not both")
        if sub.expires_ms is not None:
            expires = sub.expires_ms
        elif sub.expires_in_s is not None:
            expires = now + sub.expires_in_s * 1000
        else:
            expires = now + self.default_lifetime_ms
        if expires <= now:
            raise refuse("expired", f"expires {now - expires} ms ago")
        if expires - now > self.limits.max_lifetime_ms:
            raise refuse("expired", f"lifetime over {self.limits.max_lifetime_ms // 1000} s")
        try:
            reliability = (
                None if sub.source_reliability is None else Reliability(sub.source_reliability)
            )
        except ValueError:
            raise refuse("bad_header", "source_reliability is one of A, B, C, X") from None
        if sub.source_accuracy is not None and not 1 <= sub.source_accuracy <= 4:
            raise refuse("bad_header", "source_accuracy is 1 to 4")
        s = self.secrets
        return Header(
            message_id=new_message_id(now, self.rng),
            sender=s.station,
            sender_key_id=s.signing_key_id,
            recipients=rcpt,
            kind=kind,
            precedence=precedence,
            created_ms=now,
            expires_ms=expires,
            language=language,
            payload_fingerprint=self.store.fingerprint(KIND_SCHEMAS[kind]),
            handling=tuple(handling),
            excluded=tuple(sorted(set(sub.excluded))),
            source_reliability=reliability,
            source_accuracy=sub.source_accuracy,
            offence_categories=tuple(sub.offence_categories),
        )


# --- JSON -> Avro datum ---------------------------------------------------------

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _index(schema: Any, named: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _index(s, named)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed") and "name" in schema:
            named[schema["name"]] = schema
        if t == "record":
            for f in schema["fields"]:
                _index(f["type"], named)
        elif t == "array":
            _index(schema["items"], named)
        elif t == "map":
            _index(schema["values"], named)
        elif isinstance(t, dict | list):
            _index(t, named)


def from_json(schema: Any, value: Any) -> Any:
    """A JSON value shaped like ``schema`` as the Python datum fastavro writes.

    Unions take the bare value (no ``{"type": value}`` wrapper); ``bytes`` and
    ``fixed`` take base64 strings; missing optional fields take their default.
    """
    named: dict[str, Any] = {}
    _index(schema, named)
    return _conv(schema, value, named, "$")


def _conv(schema: Any, v: Any, named: Mapping[str, Any], path: str) -> Any:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _prim(schema, v, path)
        return _conv(named[schema], v, named, path)
    if isinstance(schema, list):
        if v is None:
            if "null" in schema:
                return None
            raise ValueError(f"{path}: null is not allowed")
        errors = []
        for branch in schema:
            if branch == "null":
                continue
            try:
                return _conv(branch, v, named, path)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{path}: no branch matches")
    t = schema["type"]
    if t == "record":
        if not isinstance(v, dict):
            raise ValueError(f"{path}: object expected for {schema['name']}")
        names = {f["name"] for f in schema["fields"]}
        extra = set(v) - names
        if extra:
            raise ValueError(f"{path}: unknown field(s) {', '.join(sorted(extra))}")
        out = {}
        for f in schema["fields"]:
            if f["name"] in v:
                out[f["name"]] = _conv(f["type"], v[f["name"]], named, f"{path}.{f['name']}")
            elif "default" in f:
                out[f["name"]] = _conv(f["type"], f["default"], named, f"{path}.{f['name']}")
            else:
                raise ValueError(f"{path}: missing field {f['name']}")
        return out
    if t == "enum":
        if v not in schema["symbols"]:
            raise ValueError(f"{path}: {v!r} is not one of {', '.join(schema['symbols'])}")
        return v
    if t == "fixed":
        raw = _b64(v, path)
        if len(raw) != schema["size"]:
            raise ValueError(f"{path}: {schema['size']} bytes expected, got {len(raw)}")
        return raw
    if t == "array":
        if not isinstance(v, list):
            raise ValueError(f"{path}: array expected")
        return [_conv(schema["items"], x, named, f"{path}[{i}]") for i, x in enumerate(v)]
    if t == "map":
        if not isinstance(v, dict):
            raise ValueError(f"{path}: object expected")
        return {k: _conv(schema["values"], x, named, f"{path}.{k}") for k, x in v.items()}
    if isinstance(t, str | list | dict):
        return _conv(t, v, named, path)
    raise ValueError(f"{path}: unsupported schema")


def _b64(v: Any, path: str) -> bytes:
    if isinstance(v, bytes):
        return v
    if not isinstance(v, str):
        raise ValueError(f"{path}: base64 string expected")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{path}: invalid base64") from exc


def _prim(t: str, v: Any, path: str) -> Any:
    ok: bool
    if t == "null":
        ok = v is None
    elif t == "boolean":
        ok = isinstance(v, bool)
    elif t in ("int", "long"):
        ok = isinstance(v, int) and not isinstance(v, bool)
        bits = 31 if t == "int" else 63
        if ok and not -(1 << bits) <= v < 1 << bits:
            raise ValueError(f"{path}: {v} is out of range for an Avro {t}")
    elif t in ("float", "double"):
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        v = float(v) if ok else v
    elif t == "string":
        ok = isinstance(v, str)
    else:  # bytes
        return _b64(v, path)
    if not ok:
        raise ValueError(f"{path}: {t} expected, got {type(v).__name__}")
    return v


_STATION_CODE = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}", re.ASCII)
"""What a station code is made of (ISO alpha-2, ``GS``, ``RB-ABIDJAN``, ``UN-NY``), checked
before upper-casing: Unicode case mapping makes codes nobody sent (``"ıt"`` -> ``IT``,
``"ﬁ"`` -> ``FI``)."""


def parse_stations(items: Sequence[str]) -> tuple[str, ...]:
    """Distinct station codes, upper-cased, sorted; a repeated code counts once."""
    out = set()
    for item in items:
        s = item.strip(" \t")
        if not s:
            continue
        if not _STATION_CODE.fullmatch(s):
            raise refuse("unknown_recipient", f"{s[:40]!r} is not a station code")
        out.add(s.upper())
    return tuple(sorted(out))


def recipients_list(r: Recipients) -> list[str]:
    if r.mode is RecipientsMode.STATIONS:
        return list(r.stations)
    return ["ALL"] if r.mode is RecipientsMode.ALL else [f"REGION:{r.region}"]
