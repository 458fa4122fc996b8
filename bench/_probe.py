"""The broker a ``bench/probe_*.py`` measures: one of yours, or a throwaway one.

Every probe takes ``--bootstrap`` (and, where it measures the broker's CPU,
``--broker-pid``) for a broker you started, and otherwise starts a broker of its
own in a temporary folder and stops it at the end. Written once here because of
the one rule it must keep: the broker is started from the main thread, since an
attached JVM dies with the thread that started it (a probe that started it from
``asyncio.to_thread`` would lose its broker mid-run).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from i24net.kafka import Broker, BrokerSettings


@contextlib.contextmanager
def probe_broker(
    bootstrap: str | None = None,
    *,
    pid: int | None = None,
    heap: str = "768m",
    jvm_options: tuple[str, ...] | None = None,
) -> Iterator[tuple[str, int | None]]:
    """``(bootstrap, broker pid)``: the broker at ``bootstrap`` (its ``pid`` as given), or
    one started here with ``heap`` (and ``jvm_options`` instead of
    ``LOCAL_JVM_OPTIONS`` when given) and stopped when the block ends. Call it from the main
    thread, outside ``asyncio.run``."""
    if bootstrap:
        yield bootstrap, pid
        return
    with tempfile.TemporaryDirectory() as tmp:
        extra = {} if jvm_options is None else {"jvm_options": jvm_options}
        broker = Broker(BrokerSettings(data_dir=Path(tmp) / "kafka", heap=heap, **extra))
        broker.start()
        try:
            yield broker.bootstrap, broker.pid
        finally:
            broker.stop()
