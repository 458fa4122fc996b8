"""The broker manager against a real JVM: errors, restart, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from i24net.errors import StorageNotFormattedError
from i24net.kafka import Broker, BrokerSettings
from i24net.kafka.broker import _pid_is_kafka

pytestmark = pytest.mark.kafka


def test_unformatted_storage_is_a_clear_error(tmp_path: Path) -> None:
    broker = Broker(BrokerSettings(data_dir=tmp_path))
    with pytest.raises(StorageNotFormattedError, match="not formatted"):
        broker.start(format_if_needed=False)
    assert not broker.is_running()


def test_stop_and_restart_keeps_ports_and_data(broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory()
    bootstrap = broker.bootstrap
    broker.stop()
    assert not broker.is_running()
    broker.stop()  # idempotent
    broker.start()
    assert broker.bootstrap == bootstrap
    assert broker.is_running()


CHILD = """
import sys, time
from pathlib import Path
from i24net.kafka import Broker, BrokerSettings
b = Broker(BrokerSettings(data_dir=Path(sys.argv[1])))
b.start()
print(b.pid, flush=True)
time.sleep(600)
"""


def test_killed_parent_leaves_no_jvm(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    with child.stdout:
        pid = int(child.stdout.readline())
    assert _pid_is_kafka(pid)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 30
    while _pid_is_kafka(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pid_is_kafka(pid), "the broker JVM outlived the process that started it"
