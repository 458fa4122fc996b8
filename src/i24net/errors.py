"""Every failure a caller of i24net may catch, under one root.

I24Error                          root; ``retriable`` says whether trying again may help
├── ConfigError                   a settings file or option is wrong (fix it, then restart)
├── BrokerError                   running or reaching a Kafka broker
│   ├── ToolMissingError          java or mvn is not installed
│   ├── BrokerFetchError          the broker jars could not be downloaded (retriable)
│   ├── PortInUseError            a port the broker needs is taken
│   ├── StorageNotFormattedError  the KRaft log directory was never formatted
│   ├── BrokerStartError          the JVM exited or never answered a metadata request
│   ├── BrokerUnavailableError    the broker does not answer (retriable)
│   ├── BrokerTlsError            the TLS handshake failed (untrusted CA, wrong host name)
│   ├── BrokerAuthenticationError the broker refused the credential (SASL/SCRAM)
│   └── BrokerAuthorizationError  the principal lacks an ACL for the operation
├── CodecError                    Avro single-object encoding and schemas
│   ├── UnknownSchemaError        fingerprint not in the schema store
│   ├── SchemaMismatchError       a record does not match its schema (missing/extra field...)
│   └── TrailingBytesError        bytes left over after the record
├── EnvelopeError                 building or reading an envelope
│   ├── VerificationError         the one opaque error verify/open raise at the boundary;
│   │                             ``reason`` (a Reason) goes to logs and metrics only
│   └── OversizedError            input larger than the configured bound, refused undecoded
├── DirectoryError                the GS-signed station directory
│   ├── UnknownStationError       a station code not in the directory
│   ├── UnknownRootError          signed by a root key id the reader does not trust (yet)
│   └── RetiredRootError          signed by a root whose rotation overlap has ended
├── KeyStoreError                 station key files (missing, bad mode, corrupt)
├── PolicyError                   the neutrality policy file is invalid
├── UnverifiedAuditError          the audit chain failed verification; no report is made from it
└── ServiceError                  gateway/router runtime failures
    ├── OutboxFullError           the gateway's disk bound is reached (retriable: 503)
    ├── IntakeRefusedError        a submitted message is refused; ``code`` names why (4xx)
    ├── AuthenticationError       a gateway request without valid credentials (401);
    │                             ``reason`` (an AuthFailure) goes to logs and metrics only
    ├── NotHeld                   no undecided hold with that message id (router review, 404)
    ├── ReviewConflict            the hold is already decided, claimed or has a pending
    │                             proposal (router review, 409)
    └── ReviewForbidden           a reviewer may not do this (confirm their own proposal, 403)
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Machine-readable refusal reasons: bounded label values for metrics."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    UNKNOWN_SCHEMA = "unknown_schema"
    BAD_VERSION = "bad_version"
    BAD_SIGNATURE = "bad_signature"
    BAD_ATTESTATION = "bad_attestation"
    UNKNOWN_SENDER = "unknown_sender"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    SUSPENDED_KEY = "suspended_key"
    EXPIRED_KEY = "expired_key"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED = "replayed"
    WRONG_RECIPIENT = "wrong_recipient"
    NOT_ADDRESSED = "not_addressed"
    """A delivery whose signed header excludes the recipient station or does not address
    it (its recipients, ALL or region resolved through the directory): refused by the
    recipient itself, whatever the router attested."""
    DECRYPT_FAILED = "decrypt_failed"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    UNAUTHORISED = "unauthorised"
    INTERNAL_ERROR = "internal_error"
    """Deciding the record raised something unexpected (a bug or a fault): dead-lettered."""
    BROKER_REFUSED = "broker_refused"
    """The broker refused to store what the decision produced (e.g. a record over the
    topic's ``max.message.bytes``): the record alone is dead-lettered."""


class I24Error(Exception):
    """Root of every i24net error."""

    retriable: bool = False


class ConfigError(I24Error):
    """A configuration file or option is invalid."""


class BrokerError(I24Error):
    """Running or reaching a Kafka broker failed."""


class ToolMissingError(BrokerError):
    """A required tool (java, mvn) is not on PATH."""


class BrokerFetchError(BrokerError):
    """Downloading the broker jars from Maven Central failed."""

    retriable = True


class PortInUseError(BrokerError):
    """A port the broker must listen on is already taken."""


class StorageNotFormattedError(BrokerError):
    """The KRaft log directory has no meta.properties."""


class BrokerStartError(BrokerError):
    """The broker process exited or never answered."""


class BrokerUnavailableError(BrokerError):
    """The broker does not answer."""

    retriable = True


class BrokerTlsError(BrokerError):
    """The TLS handshake with the broker failed (certificate, CA or host name)."""


class BrokerAuthenticationError(BrokerError):
    """The broker refused the client's credential (wrong user or password)."""


class BrokerAuthorizationError(BrokerError):
    """The authenticated principal is not allowed the operation (no ACL)."""


class CodecError(I24Error):
    """Avro encoding or decoding failed."""


class UnknownSchemaError(CodecError):
    """The single-object fingerprint names no known schema."""


class SchemaMismatchError(CodecError):
    """A record does not match its schema."""


class TrailingBytesError(CodecError):
    """Bytes remain after the encoded record."""


class EnvelopeError(I24Error):
    """Building or reading an envelope failed."""


class VerificationError(EnvelopeError):
    """An envelope failed verification.

    The message shown to a caller stays opaque on purpose; ``reason`` is for
    logs and metrics, ``detail`` for operators' logs (never key material).
    ``message_id`` is set when the envelope's signed header was read (``REPLAYED``
    always carries it), so callers need not parse ``detail``.
    """

    def __init__(self, reason: Reason, detail: str = "", *, message_id: str | None = None) -> None:
        super().__init__("envelope verification failed")
        self.reason = reason
        self.detail = detail
        self.message_id = message_id


class OversizedError(EnvelopeError):
    """Input exceeds a configured size bound."""


class DirectoryError(I24Error):
    """The station directory is invalid or unavailable."""


class UnknownStationError(DirectoryError):
    """A station code is not in the directory."""


class KeyStoreError(I24Error):
    """A station key file is missing, unreadable or unsafe."""


class PolicyError(I24Error):
    """The neutrality policy is invalid."""


class ServiceError(I24Error):
    """A gateway or router failed at run time."""


class OutboxFullError(ServiceError):
    """The gateway outbox reached its disk bound."""

    retriable = True


class IntakeRefusedError(ServiceError):
    """A message submitted at a gateway is refused before it is accepted.

    ``code`` is a bounded machine-readable reason (``unknown_kind``,
    ``schema_mismatch``, ``unknown_recipient``, ``oversized``, ``expired``,
    ``bad_handling_code``...), ``http_status`` the API's answer (4xx).
    """

    def __init__(self, code: str, detail: str, *, http_status: int = 422) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.http_status = http_status


class NotHeld(ServiceError):
    """No undecided hold with that message id (the router's review service)."""


class ReviewConflict(ServiceError):
    """The hold is already decided, being decided by another reviewer, or already has a
    pending proposal (the router's review service; 409)."""


class ReviewForbidden(ServiceError):
    """The reviewer may not take this action: four-eyes forbids confirming one's own
    proposal (the router's review service; 403)."""


class AuthFailure(enum.StrEnum):
    """Why a gateway request was not authenticated: bounded label values for metrics.

    The client is told only "not authenticated" (401); the reason is for the
    operator (``i24net_gateway_auth_failures_total{reason}``), not the caller.
    """

    MISSING = "missing"
    """Neither a bearer token nor a client certificate bound to an integrator."""
    MALFORMED = "malformed"
    """An ``Authorization`` header that is not ``Bearer i24t.<id>.<secret>``."""
    UNKNOWN = "unknown"
    """A token id or client certificate no integrator has."""
    BAD_TOKEN = "bad_token"
    """The token id exists, the secret does not match its hash."""
    EXPIRED = "expired"
    REVOKED = "revoked"
    CERT_MISMATCH = "cert_mismatch"
    """The integrator is bound to a client certificate and the request did not present it
    (or presented another integrator's)."""


class AuthenticationError(ServiceError):
    """A gateway request carries no valid credential; ``reason`` is for logs and metrics."""

    def __init__(self, reason: AuthFailure) -> None:
        super().__init__(f"not authenticated ({reason.value})")
        self.reason = reason


class UnverifiedAuditError(I24Error):
    """The audit chain failed verification (an edit, gap, reordering, duplicate or
    truncation), so no report is made from it: figures from a chain nobody can stand
    behind must not be published."""


class UnknownRootError(DirectoryError):
    """A directory value names a root key id that is not in the reader's trusted set;
    a reader holds it until a root rotation introduces that key (directory/roots.py)."""


class RetiredRootError(DirectoryError):
    """A directory value is signed by a root that a rotation retired: issued after its
    overlap ended, or offered after it ended (docs/security.md, Root rotation)."""
