"""The Apache Kafka broker jars, resolved from Maven Central and cached.

The pom under ``deploy/kafka/pom.xml`` names the broker (``kafka_2.13``) and a
Log4j2 SLF4J binding; ``mvn dependency:copy-dependencies`` copies them into
``<cache>/kafka/<version>/libs``. A complete copy is marked by a ``.complete``
file, so an interrupted download is redone instead of half-used.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from i24net.errors import BrokerFetchError, ToolMissingError

log = logging.getLogger(__name__)

#: The pom is part of the repository's deploy/ tree (src layout: three levels up).
DEFAULT_POM = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = Path(__file__).resolve().parent / "resources" / "log4j2.xml"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/i24net`` (``~/.cache/i24net`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "i24net"


def pom_kafka_version(pom: Path) -> str:
    """The ``kafka.version`` property of the pom."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not match:
        raise BrokerFetchError(f"{pom} has no <kafka.version> property")
    return match.group(1).strip()


def find_java() -> str:
    """The java executable: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ToolMissingError(
            "java was not found (set JAVA_HOME or put java on PATH); "
            "Kafka 4.x needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return found


@dataclass(frozen=True)
class KafkaDistribution:
    """Where the broker's jars live, and how to fetch them."""

    pom: Path = DEFAULT_POM
    cache_dir: Path | None = None

    @property
    def version(self) -> str:
        return pom_kafka_version(self.pom)

    @property
    def libs(self) -> Path:
        return (self.cache_dir or default_cache_dir()) / "kafka" / self.version / "libs"

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")

    def is_fetched(self) -> bool:
        return (self.libs / ".complete").exists()

    def fetch_command(self) -> list[str]:
        return [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(self.pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={self.libs}",
        ]

    def ensure(self) -> Path:
        """Fetch the jars unless a complete copy is cached; return the libs folder."""
        if self.is_fetched():
            return self.libs
        if not shutil.which("mvn"):
            raise ToolMissingError(
                "mvn was not found, and the Kafka jars are not cached in "
                f"{self.libs} (Debian: apt-get install maven)"
            )
        cmd = self.fetch_command()
        log.info(
            "fetching Apache Kafka %s jars from Maven Central into %s", self.version, self.libs
        )
        if self.libs.exists():
            shutil.rmtree(self.libs)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise BrokerFetchError(
                f"downloading the Kafka {self.version} jars failed (mvn exit {proc.returncode}):\n"
                f"{tail}\nretry with: {' '.join(cmd)}"
            )
        if not any(self.libs.glob("kafka_2.13-*.jar")):
            raise BrokerFetchError(f"mvn finished but {self.libs} holds no kafka_2.13 jar")
        (self.libs / ".complete").write_text(self.version + "\n")
        return self.libs
