"""The hash-chained audit log on ``i24.audit``: append, recover, verify.

chain = Chain("router/a", store, head)          # head recovered from the topic
appended = chain.append(Entry(Action.DELIVERED, "router/a", ...), at_ms=now)
producer.send(TOPIC, key=appended.key, value=appended.value, headers=appended.headers)
report = verify_chain(records, store)           # report.problems: edit/gap/reorder...
"""

from __future__ import annotations

from i24net.audit._chain import (
    HASH_HEADER,
    LABEL,
    SCHEMA,
    TOPIC,
    ZERO,
    Action,
    Appended,
    Chain,
    Entry,
    Head,
    chain_hash,
    digest,
    encode_reason,
)
from i24net.audit._verify import (
    ChainSummary,
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
    "Problem",
    "ProblemKind",
    "RawRecord",
    "Report",
    "chain_hash",
    "digest",
    "encode_reason",
    "head_of",
    "read_records",
    "verify_chain",
]
