"""The i24net envelope: seal at the sending gateway, route at the GS, open at the recipient.

The wire format is specified in ``docs/envelope.md``; this package is its
only writer. Everything that varies is injected: the clock lives in the
``ReplayWindow``, randomness is ``rng`` (``os.urandom`` by default), the
schema store and the directory are passed in. Every verification failure
raises ``VerificationError(reason, detail)``; nothing returns a bool.

    sender = Sender(fr_secrets, directory.current_encryption_key("GS", now))
    data = sender.seal(header, payload)                       # -> i24.out.FR
    router = Router(gs_secrets, directory, router_window)
    inbound = router.open(data)                               # verified + decrypted
    deliveries = router.deliver(inbound, ["JP", "BR"])        # station -> bytes (i24.in.*)
    opened = Receiver(jp_secrets, directory, jp_window).open(deliveries["JP"])
    opened.header, opened.payload, opened.attestation

Two versions coexist (docs/envelope.md, part 2): the router key given to a
``Sender`` decides which it seals (``current_encryption_key("GS", now,
version=2)`` for v2), every reader opens both, and the router delivers in
the version it received.
"""

from __future__ import annotations

from i24net.envelope._addressing import addressed, check_addressed
from i24net.envelope._crypto import (
    LABEL_ATTESTATION,
    LABEL_MESSAGE,
    LABEL_SENDER_SIG,
    LABEL_WRAP_GS,
    LABEL_WRAP_RECIPIENT,
    SharedKeys,
    message_digest,
)
from i24net.envelope._envelope import (
    VERSIONS,
    Attestation,
    Decision,
    Inbound,
    Limits,
    Opened,
    Receiver,
    Router,
    Sender,
    envelope_version,
    open_delivery,
    seal,
)
from i24net.envelope._header import (
    Handling,
    HandlingCode,
    Header,
    Language,
    Precedence,
    Recipients,
    RecipientsMode,
    Reliability,
    new_message_id,
)

__all__ = [
    "LABEL_ATTESTATION",
    "LABEL_MESSAGE",
    "LABEL_SENDER_SIG",
    "LABEL_WRAP_GS",
    "LABEL_WRAP_RECIPIENT",
    "VERSIONS",
    "Attestation",
    "Decision",
    "Handling",
    "HandlingCode",
    "Header",
    "Inbound",
    "Language",
    "Limits",
    "Opened",
    "Precedence",
    "Receiver",
    "Recipients",
    "RecipientsMode",
    "Reliability",
    "Router",
    "Sender",
    "SharedKeys",
    "addressed",
    "check_addressed",
    "envelope_version",
    "message_digest",
    "new_message_id",
    "open_delivery",
    "seal",
]
