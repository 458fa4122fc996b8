"""The throughput cost of TLS + SASL/SCRAM: plaintext vs SASL_SSL on one secured broker.

One secured broker (``i24net.provision.start_secured_broker`` with its extra
PLAINTEXT listener) serves both runs, so the only difference is the listener:
1 KiB records, idempotent ``acks=all`` producer, a consumer reading them back
(``bench.transport.produce_consume``). Both principals (``User:ANONYMOUS`` on
the plaintext listener, a SCRAM user ``bench`` on SASL_SSL) get the same ACLs
on ``bench.*`` topics, so authorization costs the same on both sides.
Rounds alternate plaintext and SASL_SSL; the medians are compared.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.transport import produce_consume
from i24net.kafka.acls import (
    CLUSTER_RESOURCE,
    AclBinding,
    AclOperation,
    PatternType,
    ResourceType,
    SecurityAdmin,
)
from i24net.kafka.admin import KafkaConnection
from i24net.kafka.security import Credential, generate_password
from i24net.provision import SecuredBroker, start_secured_broker

BENCH_USER = "bench"


def _grants(principal: str) -> list[AclBinding]:
    return [
        AclBinding(principal, ResourceType.TOPIC, "bench.", PatternType.PREFIXED, AclOperation.ALL),
        AclBinding(
            principal,
            ResourceType.CLUSTER,
            CLUSTER_RESOURCE,
            PatternType.LITERAL,
            AclOperation.IDEMPOTENT_WRITE,
        ),
    ]


async def _prepare(secured: SecuredBroker) -> KafkaConnection:
    password = generate_password()
    async with SecurityAdmin(secured.admin) as admin:
        await admin.upsert_scram({BENCH_USER: password})
        await admin.create_acls(_grants(f"User:{BENCH_USER}") + _grants("User:ANONYMOUS"))
    return Credential(BENCH_USER, password).connection(
        secured.bootstrap, secured.ca_file, client_id="i24net-bench"
    )


def run(count: int = 20000, rounds: int = 2, data_dir: Path | None = None) -> dict[str, Any]:
    """Measure both listeners ``rounds`` times each; return medians and the ratio.

    Call from the main thread (the broker JVM is attached to the launching thread).
    """
    with tempfile.TemporaryDirectory(prefix="i24net-bench-secured-") as tmp:
        secured = start_secured_broker(
            data_dir or Path(tmp), [], heap="1g", plaintext_listener=True
        )
        try:
            assert secured.plaintext_bootstrap is not None
            sasl_ssl = asyncio.run(_prepare(secured))
            plaintext = KafkaConnection(secured.plaintext_bootstrap, client_id="i24net-bench")
            runs: dict[str, list[dict[str, Any]]] = {"plaintext": [], "sasl_ssl": []}
            for _ in range(rounds):
                runs["plaintext"].append(asyncio.run(produce_consume(plaintext, count)))
                runs["sasl_ssl"].append(asyncio.run(produce_consume(sasl_ssl, count)))
            broker_start_s = secured.broker.started_in_s
        finally:
            secured.stop()

    def median(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    out: dict[str, Any] = {"records": count, "rounds": rounds, "broker_start_s": broker_start_s}
    for name in runs:
        for key in (
            "end_to_end_msgs_per_s",
            "produce_msgs_per_s",
            "mb_per_s",
            "latency_p50_ms",
            "latency_p99_ms",
        ):
            out[f"{name}_{key}"] = median(name, key)
    out["sasl_ssl_vs_plaintext_throughput"] = (
        out["sasl_ssl_end_to_end_msgs_per_s"] / out["plaintext_end_to_end_msgs_per_s"]
    )
    out["runs"] = runs
    return out


if __name__ == "__main__":
    import json

    result = run()
    result.pop("runs")
    print(json.dumps(result, indent=2))
