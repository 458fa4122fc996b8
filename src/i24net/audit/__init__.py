"""The hash-chained audit log on ``i24.audit``: append, recover, verify.

chain = Chain("router/a", store, head)          # head recovered from the topic
appended = chain.append(Entry(Action.DELIVERED, "router/a", ...), at_ms=now)
producer.send(TOPIC, key=appended.key, value=appended.value, headers=appended.headers)
report = verify_chain(records, store)           # report.problems: edit/gap/reorder...

A chain with ``signer=HeadSigner(key_id, signing_key)`` (the GS station key)
signs its head once per ``extend``; ``verify_chain(records, store,
heads=HeadCheck("GS", directory.signing_key))`` then also reports a signed
head that does not verify (BAD_HEAD) and an unsigned tail (UNSIGNED).
"""

from __future__ import annotations

from i24net.audit._chain import (
    HASH_HEADER,
    HEAD_KEY_HEADER,
    HEAD_LABEL,
    HEAD_SIG_HEADER,
    LABEL,
    SCHEMA,
    TOPIC,
    ZERO,
    Action,
    Appended,
    Chain,
    Entry,
    Head,
    HeadSigner,
    chain_hash,
    digest,
    encode_reason,
    head_message,
)
from i24net.audit._verify import (
    ChainSummary,
    HeadCheck,
    Problem,
    ProblemKind,
    RawRecord,
    Report,
    head_of,
    verify_chain,
)
from i24net.audit.topic import read_records

__all__ = [
    "HASH_HEADER",
    "HEAD_KEY_HEADER",
    "HEAD_LABEL",
    "HEAD_SIG_HEADER",
    "LABEL",
    "SCHEMA",
    "TOPIC",
    "ZERO",
    "Action",
    "Appended",
    "Chain",
    "ChainSummary",
    "Entry",
    "Head",
    "HeadCheck",
    "HeadSigner",
    "Problem",
    "ProblemKind",
    "RawRecord",
    "Report",
    "chain_hash",
    "digest",
    "encode_reason",
    "head_message",
    "head_of",
    "read_records",
    "verify_chain",
]
