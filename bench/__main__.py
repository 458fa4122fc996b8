"""``make bench``: start a local broker, run every section, print a table, save JSON.

Results go to ``bench/results/<UTC timestamp>.json`` and ``bench/results/latest.json``.
Figures are compared as ratios against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import crypto, transport
from i24net.kafka import Broker, BrokerSettings, KafkaConnection

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def print_table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for key, value in rows.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<34} {shown:>14}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--records", type=int, default=30000, help="records per transport run")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = parser.parse_args()
    count = 3000 if args.quick else args.records
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "sections": {},
    }
    print("crypto: PyNaCl primitives vs the project's seal / route / open ...", flush=True)
    report["sections"]["crypto"] = crypto.run(3.0 if args.quick else 12.0)
    print(crypto._table(report["sections"]["crypto"]))
    with tempfile.TemporaryDirectory(prefix="i24net-bench-") as tmp:
        print("starting a local Kafka broker ...", flush=True)
        broker = Broker(BrokerSettings(data_dir=Path(tmp), heap="1g"))
        broker.start()
        report["broker_start_s"] = broker.started_in_s
        conn = KafkaConnection(bootstrap=broker.bootstrap, client_id="i24net-bench")
        try:
            print(f"transport: {count} x 1 KiB produce→consume ...", flush=True)
            raw = asyncio.run(transport.produce_consume(conn, count))
            report["sections"]["transport"] = raw
            print_table("aiokafka produce → consume, 1 KiB (baseline)", raw)
            print(f"relay baseline: {count} x 1 KiB producer → relay → consumer ...", flush=True)
            relay = asyncio.run(transport.relay_baseline(conn, count))
            report["sections"]["relay_baseline"] = relay
            print_table("plaintext relay baseline, 1 KiB", relay)
        finally:
            broker.stop()
    RESULTS.mkdir(exist_ok=True)
    stamp = report["started"].replace(":", "").replace("-", "")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
