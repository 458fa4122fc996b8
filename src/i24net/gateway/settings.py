"""The gateway's one validated settings object, read from a TOML file.

``deploy/gateway/gateway.toml`` is the documented example. Paths are
resolved relative to the file's folder. Nothing else in the gateway reads
files or the environment for configuration: the daemon gets a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from i24net.errors import ConfigError
from i24net.kafka.settings import KafkaSettings as SharedKafkaSettings
from i24net.stations import GS


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySettings(_Frozen):
    secret: Path = Field(description="this station's <STATION>.secret.json (mode 0600)")
    root_public: Path = Field(description="the pinned GS root public key (gs-root.public.json)")
    roots: list[Path] = Field(
        default_factory=list,
        description="further trusted GS root public key files (a set by key id, each file may "
        "carry valid_from_ms and valid_until_ms), besides root_public; a root rotation on the "
        "directory topic extends the set by itself (docs/security.md, Root rotation)",
    )
    previous: list[Path] = Field(
        default_factory=list,
        description="this station's key files from before a rotation: deliveries still "
        "wrapped to them are opened until previous_grace_s after the current key's "
        "valid_from_ms in the directory, then each file is overwritten and removed",
    )
    previous_grace_s: float = Field(
        8 * 24 * 3600.0,
        ge=0,
        description="how long previous keys are kept after the rotation (default 8 days: "
        "the 7-day longest message lifetime and a day of margin)",
    )


class DirectorySettings(_Frozen):
    entries: Path = Field(description="folder of GS-signed <STATION>.entry files")
    follow_topic: bool = Field(
        False,
        description="also read the directory topic at start (highest serial per station wins) "
        "and apply its updates while running",
    )
    topic: str = Field("i24.directory", min_length=1)
    start_wait_s: float = Field(
        15.0,
        ge=0,
        le=300,
        description="with follow_topic: how long the start waits for the topic to be read "
        "before serving on the files alone (the reading goes on in the background)",
    )


class KafkaSettings(SharedKafkaSettings):
    """The shared ``[kafka]`` section plus the gateway's topic prefix and request timeout."""

    topic_prefix: str = Field("i24", description="topics are <prefix>.out.<station> etc.")
    request_timeout_ms: int = Field(10_000, ge=1000)


class TlsSettings(_Frozen):
    """The integrator API over TLS; with ``client_ca_file``, mutual TLS.

    A client certificate must chain to ``client_ca_file`` or the handshake
    fails: nothing of the request is read. Which integrator a certificate is
    (its subject CN or SHA-256 fingerprint) is in the integrator store.
    """

    cert_file: Path = Field(description="the API's certificate chain (PEM)")
    key_file: Path = Field(description="its private key (PEM, mode 0600)")
    client_ca_file: Path | None = Field(
        None, description="CA bundle client certificates must chain to (mutual TLS)"
    )
    client_cert: Literal["none", "optional", "required"] = Field(
        "optional",
        description="optional: a client may authenticate by certificate or by bearer token; "
        "required: the handshake fails without a certificate from client_ca_file",
    )

    @model_validator(mode="after")
    def _ca_for_client_certs(self) -> TlsSettings:
        if self.client_cert == "required" and self.client_ca_file is None:
            raise ValueError("client_cert = 'required' needs client_ca_file")
        return self


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8024, ge=0, le=65535)
    max_request_bytes: int = Field(2 << 20, ge=1024, description="bigger requests get 413")
    max_wait_s: float = Field(30.0, gt=0, le=300, description="longest long-poll wait")
    max_header_bytes: int = Field(
        32 << 10,
        ge=1024,
        le=1 << 20,
        description="request line and headers together; more gets 431 and the connection "
        "is closed before it is buffered",
    )
    max_headers: int = Field(100, ge=10, le=10_000, description="more headers get 431")
    tls: TlsSettings | None = Field(None, description="serve the API over (mutual) TLS")
    allow_plain_http: bool = Field(
        False,
        description="serve plain HTTP on a non-loopback host anyway (bearer tokens then "
        "cross the network readable); without it such settings refuse to start",
    )

    @model_validator(mode="after")
    def _no_plain_http_off_the_machine(self) -> ApiSettings:
        if self.tls is None and not self.allow_plain_http and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines: give [api.tls] "
                "(cert_file, key_file) or set allow_plain_http = true"
            )
        return self


class AuthSettings(_Frozen):
    """Defaults for every integrator (the store may set its own rate and burst), and the
    slow-down of failed authentication."""

    rate_per_s: float = Field(50.0, gt=0, description="requests per second per integrator")
    burst: int = Field(100, ge=1, description="requests an idle integrator may send at once")
    failure_delay_s: float = Field(
        0.1, ge=0, le=5, description="added to a 401 per recent failure from the same peer"
    )
    max_failure_delay_s: float = Field(2.0, ge=0, le=30, description="the longest such delay")
    failure_forget_s: float = Field(
        300.0, gt=0, description="a peer's failures are forgotten after this quiet time"
    )
    failure_peers: int = Field(
        10_000, ge=1, description="peers remembered (least recently failed forgotten first)"
    )


class OutboxSettings(_Frozen):
    max_pending_bytes: int = Field(1 << 30, ge=1 << 16, description="disk bound; then 503")
    max_pending_messages: int = Field(1_000_000, ge=1)
    batch: int = Field(500, ge=1, le=10_000, description="envelopes per produce round")
    default_lifetime_s: int = Field(86_400, ge=60, le=7 * 86_400)
    retry_backoff_s: float = Field(1.0, gt=0, le=60)
    progress_log_s: float = Field(10.0, gt=0)


class InboundSettings(_Frozen):
    batch: int = Field(500, ge=1, le=10_000)
    commit_interval_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="commit the stream's Kafka offsets at most this often (and when the "
        "gateway stops or loses a partition): each batch is stored before, and a re-read "
        "record is recognised by its message id, so a crash re-reads at most this much and "
        "stores nothing twice; 0: after every batch",
    )
    keep_rejected_bytes: int = Field(1 << 20, ge=0, description="raw bytes kept per rejected")


class EnvelopeSettings(_Frozen):
    """``[envelope]``: which envelope version intake seals (docs/gateway.md)."""

    version: Literal["auto", 1, 2] = Field(
        "auto",
        description="auto: v2 when the GS and every recipient the header resolves to have "
        "a usable v2 (KEM) key in the directory, else v1; 1 or 2: always that version (a "
        "recipient that cannot open it is refused unknown_recipient)",
    )


class TestingSettings(_Frozen):
    """Fault injection for the crash tests; never set in production."""

    exit_after_stored_batches: int = Field(
        0,
        ge=0,
        description="after this many inbound batches, exit the process (status 137, as "
        "kill -9 leaves it) once the next batch is stored in SQLite and before its Kafka "
        "offsets are committed; 0 (the default) turns it off",
    )


class Settings(_Frozen):
    station: str = Field(min_length=1, max_length=64)
    router: str = GS
    data_dir: Path
    shutdown_grace_s: float = Field(10.0, gt=0, le=300)
    keys: KeySettings
    directory: DirectorySettings
    kafka: KafkaSettings
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    outbox: OutboxSettings = OutboxSettings()
    inbound: InboundSettings = InboundSettings()
    envelope: EnvelopeSettings = EnvelopeSettings()
    testing: TestingSettings = TestingSettings()

    @field_validator("station", "router")
    @classmethod
    def _upper(cls, v: str) -> str:
        if v != v.upper() or not v.replace("-", "").isalnum():
            raise ValueError("a station code is upper case letters, digits and '-'")
        return v

    @property
    def out_topic(self) -> str:
        """The shared ingress topic (``i24.out``, partitioned by sender: docs/topics.md);
        the drain writes this station's records to its partition of it."""
        return f"{self.kafka.topic_prefix}.out"

    @property
    def in_topic(self) -> str:
        return f"{self.kafka.topic_prefix}.in.{self.station}"

    @property
    def group_id(self) -> str:
        return f"{self.kafka.topic_prefix}.gw.{self.station}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.sqlite3"

    @property
    def integrators_path(self) -> Path:
        """The integrator store (``i24net gateway integrators``; mode 0600)."""
        return self.data_dir / "integrators.sqlite3"

    def in_topic_of(self, station: str) -> str:
        return f"{self.kafka.topic_prefix}.in.{station}"


_PATHS = (
    ("data_dir",),
    ("keys", "secret"),
    ("keys", "root_public"),
    ("directory", "entries"),
    ("kafka", "password_file"),
    ("kafka", "ca_file"),
    ("api", "tls", "cert_file"),
    ("api", "tls", "key_file"),
    ("api", "tls", "client_ca_file"),
)


def load_settings(path: Path) -> Settings:
    """Read and validate a gateway TOML file; relative paths are taken from its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read gateway settings {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    base = path.resolve().parent
    for keys in _PATHS:
        node = raw
        for k in keys[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = str(base / node[keys[-1]])
    previous = raw.get("keys", {}).get("previous") if isinstance(raw.get("keys"), dict) else None
    if isinstance(previous, list):
        raw["keys"]["previous"] = [str(base / p) if isinstance(p, str) else p for p in previous]
    roots = raw.get("keys", {}).get("roots") if isinstance(raw.get("keys"), dict) else None
    if isinstance(roots, list):
        raw["keys"]["roots"] = [str(base / p) if isinstance(p, str) else p for p in roots]
    return parse_settings(raw, source=str(path))


def parse_settings(raw: dict[str, object], *, source: str = "settings") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc
